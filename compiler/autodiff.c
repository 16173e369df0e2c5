/* autodiff.c: reverse-mode differentiation as an IR pass.
 *
 * The forward graph (nodes 1..nforward) is left as it is. Appended after it:
 *  - AUX values that forward ops save for their backward (statistics of the
 *    norms, attention's log-sum-exp), listed in the producer's `out`;
 *  - one GRAD buffer per value that needs a gradient, placed just before the
 *    first BACKWARD that accumulates into it (the buffer is zeroed there; the
 *    loss's GRAD is the seed and holds 1);
 *  - one BACKWARD node per forward node on a path from a parameter to the
 *    loss, in reverse order. Its `in` lists exactly the forward values its
 *    rule reads (so liveness keeps them, and nothing else, alive), its `out`
 *    the GRADs of the forward node's operands.
 * Backward kernels accumulate (+=), so a value used several times (a
 * residual stream, a tied embedding) sums its contributions in one buffer.
 * A CAST (precision.c) has no BACKWARD: its readers accumulate straight
 * into the gradient of its operand, which stays fp32. */
#include <stdlib.h>
#include <string.h>

#include "dstc.h"

bool autodiff_operand_differentiable(const IrNode *n, int i) {
  switch (n->op) {
  case OP_EMBEDDING: return i == 1;
  case OP_CROSS_ENTROPY: return i == 0;
  default: return (op_info[n->op].groups & GRP_SOURCE) == 0;
  }
}

/* What the backward of op reads besides the incoming gradient. */
enum { SAVE_IN0 = 1, SAVE_IN1 = 2, SAVE_IN2 = 4, SAVE_SELF = 8, SAVE_AUX = 16 };

static unsigned saved(const IrNode *n) {
  switch (n->op) {
  case OP_MATMUL: case OP_MUL: case OP_DIV: return SAVE_IN0 | SAVE_IN1;
  case OP_GELU: case OP_RELU: case OP_SILU: case OP_LOG: return SAVE_IN0;
  case OP_SIGMOID: case OP_TANH: case OP_EXP: case OP_SQRT: case OP_SOFTMAX: return SAVE_SELF;
  case OP_MAX: return SAVE_IN0 | SAVE_SELF;
  case OP_LAYERNORM: case OP_RMSNORM: return SAVE_IN0 | SAVE_IN1 | SAVE_AUX;
  case OP_EMBEDDING: return SAVE_IN0;
  case OP_ATTENTION: return SAVE_IN0 | SAVE_IN1 | SAVE_IN2 | SAVE_SELF | SAVE_AUX;
  case OP_CROSS_ENTROPY: return SAVE_IN0 | SAVE_IN1;
  default: return 0;
  }
}

/* Auxiliary outputs a forward op writes for its backward: count and shape. */
static int aux_outputs(const IrGraph *g, const IrNode *n, IrNode *aux) {
  if (n->op != OP_LAYERNORM && n->op != OP_RMSNORM && n->op != OP_ATTENTION) return 0;
  const IrNode *x = &g->nodes[n->in[0]];
  IrNode a;
  memset(&a, 0, sizeof a);
  a.op = OP_AUX;
  a.dtype = DT_F32;
  a.path = n->path;
  a.loc = n->loc;
  a.stage = -1;
  switch (n->op) {
  case OP_LAYERNORM: case OP_RMSNORM: {
    /* per row of the normalized dimension: mean and 1/std (rmsnorm: 1/rms) */
    a.ndim = (uint8_t)(x->ndim - 1);
    memcpy(a.shape, x->shape, sizeof(int64_t) * a.ndim);
    int cnt = n->op == OP_LAYERNORM ? 2 : 1;
    for (int i = 0; i < cnt; i++) {
      aux[i] = a;
      aux[i].iattr[1] = i;
    }
    return cnt;
  }
  case OP_ATTENTION:
    /* log-sum-exp of each score row: [B, H, T] */
    a.ndim = 3;
    memcpy(a.shape, x->shape, sizeof(int64_t) * 3);
    aux[0] = a;
    return 1;
  default: return 0;
  }
}

static ValId *grow_ids(ValId *v, int *cap, int need) {
  if (need < *cap) return v;
  int ncap = *cap * 2 > need + 1 ? *cap * 2 : need + 1;
  ValId *nv = realloc(v, sizeof(ValId) * (size_t)ncap);
  if (!nv) die("out of memory");
  memset(nv + *cap, 0, sizeof(ValId) * (size_t)(ncap - *cap));
  *cap = ncap;
  return nv;
}

static ValId new_grad(IrGraph *g, ValId of, bool seed) {
  const IrNode *v = &g->nodes[of];
  IrNode n;
  memset(&n, 0, sizeof n);
  n.op = OP_GRAD;
  n.dtype = DT_F32;
  n.ndim = v->ndim;
  memcpy(n.shape, v->shape, sizeof n.shape);
  n.iattr[0] = of;
  n.iattr[1] = seed;
  n.name = v->op == OP_PARAM ? arena_printf(g->arena, "grad.%s", v->name) : NULL;
  n.path = v->path;
  n.loc = v->loc;
  n.stage = v->stage;
  return ir_add(g, &n);
}

void pass_autodiff(IrGraph *g) {
  int nf = g->n - 1;
  g->nforward = nf;
  if (!g->loss) return;
  bool *rg = calloc((size_t)nf + 1, 1);   /* depends on a parameter */
  bool *live = calloc((size_t)nf + 1, 1); /* the loss depends on it */
  if (!rg || !live) die("out of memory");
  for (int i = 1; i <= nf; i++) {
    const IrNode *n = &g->nodes[i];
    if (n->op == OP_PARAM) rg[i] = true;
    for (uint32_t k = 0; k < n->nin; k++)
      if (autodiff_operand_differentiable(n, (int)k) && rg[n->in[k]]) rg[i] = true;
  }
  live[g->loss] = true;
  for (int i = (int)g->loss; i >= 1; i--) {
    if (!live[i]) continue;
    const IrNode *n = &g->nodes[i];
    for (uint32_t k = 0; k < n->nin; k++) live[n->in[k]] = true;
  }

  /* Saved statistics. */
  for (int i = 1; i <= nf; i++) {
    if (!rg[i] || !live[i]) continue;
    IrNode aux[2];
    int na = aux_outputs(g, &g->nodes[i], aux);
    if (!na) continue;
    ValId *ids = arena_alloc(g->arena, sizeof(ValId) * (size_t)na);
    for (int k = 0; k < na; k++) {
      aux[k].iattr[0] = i;
      ids[k] = ir_add(g, &aux[k]);
    }
    g->nodes[i].out = ids; /* nodes may have moved: index, do not hold pointers */
    g->nodes[i].nout = (uint32_t)na;
  }

  int cap = g->n + 1;
  ValId *grad = calloc((size_t)cap, sizeof(ValId));
  if (!grad) die("out of memory");
  grad[g->loss] = new_grad(g, g->loss, true);
  for (int i = (int)g->loss; i >= 1; i--) {
    if (!rg[i] || !live[i] || !grad[i]) continue;
    IrNode fwd = g->nodes[i]; /* a copy: ir_add may move the array */
    if (op_info[fwd.op].groups & GRP_SOURCE) continue;
    ValId *outs = arena_alloc(g->arena, sizeof(ValId) * (fwd.nin ? fwd.nin : 1));
    for (uint32_t k = 0; k < fwd.nin; k++) {
      ValId v = fwd.in[k];
      if (!autodiff_operand_differentiable(&fwd, (int)k) || !rg[v]) continue;
      while (g->nodes[v].op == OP_CAST) v = g->nodes[v].in[0]; /* a cast's gradient is its operand's */
      if (!grad[v]) {
        grad = grow_ids(grad, &cap, g->n + 1);
        grad[v] = new_grad(g, v, false);
      }
      outs[k] = grad[v];
    }
    unsigned sv = saved(&fwd);
    ValId ins[8];
    int nin = 0;
    ins[nin++] = grad[i];
    /* A matmul on 16-bit operands (precision.c) keeps them 16-bit in its
     * backward: parameters are cast again here (so the forward's copies
     * die at the forward matmul), and the incoming gradient is rounded
     * too: the BACKWARD reads that copy first, and the fp32 gradient last
     * only for a bias (else the fp32 one dies at its cast). */
    DType lowp = fwd.op == OP_MATMUL ? (DType)g->nodes[fwd.in[0]].dtype : DT_F32;
    if (lowp != DT_BF16 && lowp != DT_F16) lowp = DT_F32;
    for (int k = 0; k < 3; k++) {
      if (!(sv & (1u << k))) continue;
      ValId x = fwd.in[k];
      if (lowp != DT_F32 && g->nodes[x].op == OP_CAST && g->nodes[g->nodes[x].in[0]].op == OP_PARAM)
        x = precision_cast(g, g->nodes[x].in[0], lowp);
      ins[nin++] = x;
    }
    if (sv & SAVE_SELF) ins[nin++] = (ValId)i;
    if (sv & SAVE_AUX)
      for (uint32_t k = 0; k < fwd.nout; k++) ins[nin++] = fwd.out[k];
    if (lowp != DT_F32) { /* the GEMMs read the rounded gradient; only a bias needs the fp32 one */
      if (fwd.nin == 3) ins[nin++] = grad[i];
      ins[0] = precision_cast(g, grad[i], lowp);
    }
    IrNode b;
    memset(&b, 0, sizeof b);
    b.op = OP_BACKWARD;
    b.dtype = fwd.dtype;
    b.iattr[0] = i;
    b.path = fwd.path;
    b.loc = fwd.loc;
    b.stage = -1;
    b.checkpoint = fwd.checkpoint;
    b.nin = (uint32_t)nin;
    b.in = arena_alloc(g->arena, sizeof(ValId) * (size_t)nin);
    memcpy(b.in, ins, sizeof(ValId) * (size_t)nin);
    b.out = outs;
    b.nout = fwd.nin;
    ir_add(g, &b);
  }
  g->grad_of = arena_alloc(g->arena, sizeof(ValId) * (size_t)(nf + 1));
  for (int i = 1; i <= nf; i++) g->grad_of[i] = i < cap ? grad[i] : 0;
  free(grad);
  free(rg);
  free(live);
}
