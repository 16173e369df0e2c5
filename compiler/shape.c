/* shape.c: dtype and shape rules of every IR operation.
 *
 * shape_infer is the single place that knows what each op accepts; lowering
 * calls it for every op it builds and turns a refusal into a diagnostic at
 * the source expression, and later passes can call it again to re-check.
 * Attributes (dims) arrive already normalized to non-negative indices. */
#include <string.h>

#include "dstc.h"

static const IrNode *arg(const IrGraph *g, const IrNode *n, int i) { return &g->nodes[n->in[i]]; }

static void fmt_type(char *buf, size_t sz, const IrNode *t) {
  int o = snprintf(buf, sz, "%s", dtype_name(t->dtype));
  shape_format(buf + o, sz - (size_t)o, t->shape, t->ndim);
}

static bool is_float(DType t) { return t == DT_F32 || t == DT_BF16 || t == DT_F16; }

static void copy_shape(IrNode *n, const IrNode *from) {
  n->ndim = from->ndim;
  memcpy(n->shape, from->shape, sizeof n->shape);
}

/* Numpy broadcasting of two shapes; false if incompatible. */
static bool broadcast(const IrNode *a, const IrNode *b, IrNode *out) {
  int nd = a->ndim > b->ndim ? a->ndim : b->ndim;
  for (int i = 0; i < nd; i++) {
    int ia = a->ndim - nd + i, ib = b->ndim - nd + i;
    int64_t da = ia >= 0 ? a->shape[ia] : 1, db = ib >= 0 ? b->shape[ib] : 1;
    if (da != db && da != 1 && db != 1) return false;
    out->shape[i] = da == 1 ? db : da;
  }
  out->ndim = (uint8_t)nd;
  return true;
}

#define FAIL(...)                              \
  do {                                         \
    snprintf(msg, msgsz, __VA_ARGS__);         \
    return false;                              \
  } while (0)

bool shape_infer(const IrGraph *g, IrNode *n, char *msg, size_t msgsz) {
  char ta[160], tb[160];
  const OpInfo *info = &op_info[n->op];
  if (n->nin >= 1) fmt_type(ta, sizeof ta, arg(g, n, 0));
  if (n->nin >= 2) fmt_type(tb, sizeof tb, arg(g, n, 1));
  if (info->groups & GRP_BINARY) {
    const IrNode *a = arg(g, n, 0), *b = arg(g, n, 1);
    if (!is_float(a->dtype) || !is_float(b->dtype))
      FAIL("arithmetic needs floating-point tensors, not %s and %s", ta, tb);
    if (!broadcast(a, b, n))
      FAIL("shapes %s and %s do not broadcast (dimensions must match or be 1, aligned from the right)",
           ta, tb);
    n->dtype = a->dtype == b->dtype ? a->dtype : DT_F32;
    return true;
  }
  if (info->groups & GRP_UNARY) {
    const IrNode *a = arg(g, n, 0);
    if (!is_float(a->dtype)) FAIL("%s needs a floating-point tensor, not %s", info->name, ta);
    copy_shape(n, a);
    n->dtype = a->dtype;
    return true;
  }
  switch (n->op) {
  case OP_INPUT: case OP_PARAM: case OP_CONST: case OP_ARANGE: return true;
  case OP_MATMUL: {
    const IrNode *a = arg(g, n, 0), *b = arg(g, n, 1);
    if (!is_float(a->dtype) || !is_float(b->dtype))
      FAIL("matmul needs floating-point tensors, not %s and %s", ta, tb);
    if (a->ndim < 2 || b->ndim < 2)
      FAIL("matmul needs operands of rank 2 or more, not %s @ %s", ta, tb);
    int64_t k1 = a->shape[a->ndim - 1], k2 = b->shape[b->ndim - 2];
    if (k1 != k2)
      FAIL("matmul inner dimensions differ: the left operand %s has %lld columns but the right "
           "operand %s has %lld rows", ta, (long long)k1, tb, (long long)k2);
    IrNode ba = *a, bb = *b;
    ba.ndim -= 2;
    bb.ndim -= 2;
    if (!broadcast(&ba, &bb, n))
      FAIL("matmul batch dimensions of %s and %s do not broadcast", ta, tb);
    n->shape[n->ndim++] = a->shape[a->ndim - 2];
    n->shape[n->ndim++] = b->shape[b->ndim - 1];
    n->dtype = a->dtype;
    return true;
  }
  case OP_TRANSPOSE: {
    const IrNode *a = arg(g, n, 0);
    int64_t d0 = n->iattr[0], d1 = n->iattr[1];
    if (d0 < 0 || d1 < 0 || d0 >= a->ndim || d1 >= a->ndim)
      FAIL("transpose dimensions out of range for %s", ta);
    copy_shape(n, a);
    n->shape[d0] = a->shape[d1];
    n->shape[d1] = a->shape[d0];
    n->dtype = a->dtype;
    return true;
  }
  case OP_RESHAPE: {
    const IrNode *a = arg(g, n, 0);
    int64_t e = 1;
    for (int i = 0; i < n->ndim; i++) e *= n->shape[i];
    if (e != ir_numel(a)) {
      char ts[160];
      shape_format(ts, sizeof ts, n->shape, n->ndim);
      FAIL("cannot reshape %s (%lld elements) to %s (%lld elements)", ta, (long long)ir_numel(a), ts,
           (long long)e);
    }
    n->dtype = a->dtype;
    return true;
  }
  case OP_SLICE: {
    const IrNode *a = arg(g, n, 0);
    int64_t d = n->iattr[0], s = n->iattr[1], en = n->iattr[2];
    if (d < 0 || d >= a->ndim) FAIL("slice dimension out of range for %s", ta);
    if (s < 0 || en > a->shape[d] || s >= en)
      FAIL("slice %lld:%lld is empty or outside dimension %lld (size %lld) of %s", (long long)s,
           (long long)en, (long long)d, (long long)a->shape[d], ta);
    copy_shape(n, a);
    n->shape[d] = en - s;
    n->dtype = a->dtype;
    return true;
  }
  case OP_CONCAT: {
    const IrNode *a = arg(g, n, 0);
    int64_t d = n->iattr[0];
    if (d < 0 || d >= a->ndim) FAIL("concat dimension out of range for %s", ta);
    copy_shape(n, a);
    n->dtype = a->dtype;
    for (uint32_t k = 1; k < n->nin; k++) {
      const IrNode *b = arg(g, n, (int)k);
      fmt_type(tb, sizeof tb, b);
      bool same = b->ndim == a->ndim && b->dtype == a->dtype;
      for (int i = 0; same && i < a->ndim; i++) same = i == d || a->shape[i] == b->shape[i];
      if (!same)
        FAIL("concat along dimension %lld needs equal other dimensions: %s and %s", (long long)d, ta, tb);
      n->shape[d] += b->shape[d];
    }
    return true;
  }
  case OP_SUM: case OP_MEAN: case OP_MAX: {
    const IrNode *a = arg(g, n, 0);
    if (!is_float(a->dtype)) FAIL("%s needs a floating-point tensor, not %s", info->name, ta);
    n->dtype = a->dtype;
    if (n->iattr[2]) { /* all dimensions */
      n->ndim = 0;
      return true;
    }
    int64_t d = n->iattr[0];
    if (d < 0 || d >= a->ndim) FAIL("%s dimension out of range for %s", info->name, ta);
    n->ndim = 0;
    for (int i = 0; i < a->ndim; i++) {
      if (i == d && !n->iattr[1]) continue;
      n->shape[n->ndim++] = i == d ? 1 : a->shape[i];
    }
    return true;
  }
  case OP_SOFTMAX: {
    const IrNode *a = arg(g, n, 0);
    if (!is_float(a->dtype)) FAIL("softmax needs a floating-point tensor, not %s", ta);
    if (a->ndim == 0) FAIL("softmax needs a tensor of rank 1 or more");
    if (n->iattr[0] != a->ndim - 1)
      FAIL("softmax is supported over the last dimension only (dim = -1), not dimension %lld of %s",
           (long long)n->iattr[0], ta);
    copy_shape(n, a);
    n->dtype = a->dtype;
    return true;
  }
  case OP_LAYERNORM: case OP_RMSNORM: {
    const IrNode *a = arg(g, n, 0);
    if (!is_float(a->dtype) || a->ndim == 0) FAIL("%s needs a floating-point tensor, not %s", info->name, ta);
    int64_t c = a->shape[a->ndim - 1];
    for (uint32_t k = 1; k < n->nin; k++) {
      const IrNode *w = arg(g, n, (int)k);
      fmt_type(tb, sizeof tb, w);
      if (w->ndim != 1 || w->shape[0] != c)
        FAIL("%s %s must have shape [%lld] to match the last dimension of %s", k == 1 ? "weight" : "bias",
             tb, (long long)c, ta);
    }
    copy_shape(n, a);
    n->dtype = a->dtype;
    return true;
  }
  case OP_EMBEDDING: {
    const IrNode *ids = arg(g, n, 0), *t = arg(g, n, 1);
    if (ids->dtype != DT_I32) FAIL("embedding ids must be an integer tensor (i32), not %s", ta);
    if (t->ndim != 2 || !is_float(t->dtype))
      FAIL("embedding table must be a floating-point matrix [rows, dim], not %s", tb);
    if (ids->ndim + 1 > DST_MAX_DIMS) FAIL("embedding ids have too many dimensions");
    copy_shape(n, ids);
    n->shape[n->ndim++] = t->shape[1];
    n->dtype = t->dtype;
    return true;
  }
  case OP_ATTENTION: {
    const IrNode *q = arg(g, n, 0), *k = arg(g, n, 1), *v = arg(g, n, 2);
    char tc[160];
    fmt_type(tc, sizeof tc, v);
    if (q->ndim != 4 || k->ndim != 4 || v->ndim != 4)
      FAIL("attention needs q, k, v of shape [batch, heads, seq, head_dim]; got %s, %s, %s", ta, tb, tc);
    if (k->shape[0] != q->shape[0] || v->shape[0] != q->shape[0])
      FAIL("attention batch sizes differ: q %s, k %s, v %s", ta, tb, tc);
    if (memcmp(k->shape, v->shape, sizeof(int64_t) * 4))
      FAIL("attention k %s and v %s must have the same shape", tb, tc);
    if (k->shape[3] != q->shape[3])
      FAIL("attention head_dim differs: q %s has %lld, k %s has %lld", ta, (long long)q->shape[3], tb,
           (long long)k->shape[3]);
    if (q->shape[1] % k->shape[1])
      FAIL("attention query heads (%lld) must be a multiple of key/value heads (%lld)",
           (long long)q->shape[1], (long long)k->shape[1]);
    if (n->iattr[0] && k->shape[2] != q->shape[2])
      FAIL("causal attention needs equal query and key lengths: q %s, k %s", ta, tb);
    copy_shape(n, q);
    n->dtype = q->dtype;
    return true;
  }
  case OP_ROPE: {
    const IrNode *a = arg(g, n, 0);
    if (!is_float(a->dtype) || a->ndim < 2) FAIL("rope needs a float tensor [..., seq, head_dim], not %s", ta);
    if (a->shape[a->ndim - 1] % 2) FAIL("rope needs an even head_dim, not %lld in %s",
                                        (long long)a->shape[a->ndim - 1], ta);
    copy_shape(n, a);
    n->dtype = a->dtype;
    return true;
  }
  case OP_DROPOUT: {
    const IrNode *a = arg(g, n, 0);
    if (!is_float(a->dtype)) FAIL("dropout needs a floating-point tensor, not %s", ta);
    copy_shape(n, a);
    n->dtype = a->dtype;
    return true;
  }
  case OP_CROSS_ENTROPY: {
    const IrNode *l = arg(g, n, 0), *t = arg(g, n, 1);
    if (!is_float(l->dtype) || l->ndim < 1) FAIL("cross_entropy logits must be a float tensor [..., classes], not %s", ta);
    if (t->dtype != DT_I32) FAIL("cross_entropy targets must be an integer tensor (i32), not %s", tb);
    bool ok = t->ndim == l->ndim - 1;
    for (int i = 0; ok && i < t->ndim; i++) ok = t->shape[i] == l->shape[i];
    if (!ok) FAIL("cross_entropy targets %s must match the logits %s without the last dimension", tb, ta);
    n->ndim = 0;
    n->dtype = DT_F32;
    return true;
  }
  default: FAIL("no shape rule for %s", info->name);
  }
}
