/* ir.c: the graph IR: construction, the deterministic dump, the verifier.
 *
 * A graph is an arena array of IrNodes addressed by 32-bit ValIds; node 0 is
 * reserved as "none". Nodes are appended in a topological order (operands
 * before users), which the verifier checks. */
#include <stdlib.h>
#include <string.h>

#include "dstc.h"

const OpInfo op_info[OP__COUNT] = {
#define OP(id, name, arity, group) [OP_##id] = {name, arity, group},
#include "ops.def"
#undef OP
};

static const char *const dtype_names[DT__COUNT] = {"f32", "bf16", "f16", "i32"};

const char *dtype_name(DType t) { return t < DT__COUNT ? dtype_names[t] : "?"; }

bool dtype_from_name(const char *s, DType *out) {
  for (int i = 0; i < DT__COUNT; i++)
    if (!strcmp(s, dtype_names[i])) {
      *out = (DType)i;
      return true;
    }
  return false;
}

size_t dtype_size(DType t) { return t == DT_BF16 || t == DT_F16 ? 2 : 4; }

void ir_init(IrGraph *g, Arena *a) {
  memset(g, 0, sizeof *g);
  g->arena = a;
  IrNode none = {0};
  ARENA_PUSH(a, g->nodes, g->n, g->cap, none);
}

ValId ir_add(IrGraph *g, const IrNode *proto) {
  if (g->n >= DST_MAX_IR_NODES) die("IR node limit reached");
  ARENA_PUSH(g->arena, g->nodes, g->n, g->cap, *proto);
  ValId id = (ValId)(g->n - 1);
  if (proto->op == OP_PARAM) ARENA_PUSH(g->arena, g->params, g->nparams, g->capparams, id);
  if (proto->op == OP_INPUT) ARENA_PUSH(g->arena, g->inputs, g->ninputs, g->capinputs, id);
  return id;
}

int64_t ir_numel(const IrNode *n) {
  int64_t e = 1;
  for (int i = 0; i < n->ndim; i++) e *= n->shape[i];
  return e;
}

int shape_format(char *buf, size_t sz, const int64_t *shape, int ndim) {
  size_t o = 0;
  int w = snprintf(buf, sz, "[");
  o = (size_t)w;
  for (int i = 0; i < ndim && o < sz; i++) {
    w = snprintf(buf + o, sz - o, "%s%lld", i ? ", " : "", (long long)shape[i]);
    o += (size_t)w;
  }
  if (o < sz) o += (size_t)snprintf(buf + o, sz - o, "]");
  return (int)o;
}

static const char *const shard_names[] = {"", "column", "row", "vocab", "heads", "experts",
                                          "replicated"};

void ir_dump(FILE *out, const IrGraph *g) {
  for (int i = 1; i < g->n; i++) {
    const IrNode *n = &g->nodes[i];
    if (n->dead) continue;
    char sh[256];
    shape_format(sh, sizeof sh, n->shape, n->ndim);
    fprintf(out, "%%%d = %s %s%s", i, op_info[n->op].name, dtype_name(n->dtype), sh);
    for (uint32_t k = 0; k < n->nin; k++) fprintf(out, "%s%%%u", k ? ", " : " (", n->in[k]);
    if (n->nin) fputc(')', out);
    if (n->nout) {
      fputs(" ->", out);
      for (uint32_t k = 0; k < n->nout; k++) {
        if (n->out[k]) fprintf(out, " %%%u", n->out[k]);
        else fputs(" _", out);
      }
    }
    if (n->op == OP_AUX || n->op == OP_GRAD || n->op == OP_BACKWARD) fprintf(out, " of=%%%lld", (long long)n->iattr[0]);
    if (n->op == OP_GRAD && n->iattr[1]) fputs(" seed", out);
    if (n->name) fprintf(out, " name=%s", n->name);
    switch (n->op) {
    case OP_TRANSPOSE: fprintf(out, " dims=%lld,%lld", (long long)n->iattr[0], (long long)n->iattr[1]); break;
    case OP_SLICE:
      fprintf(out, " dim=%lld range=%lld:%lld", (long long)n->iattr[0], (long long)n->iattr[1],
              (long long)n->iattr[2]);
      break;
    case OP_CONCAT: case OP_SOFTMAX: fprintf(out, " dim=%lld", (long long)n->iattr[0]); break;
    case OP_MATMUL:
      if (n->iattr[0]) fputs(" ta", out);
      if (n->iattr[1]) fputs(" tb", out);
      break;
    case OP_SUM: case OP_MEAN: case OP_MAX:
      if (n->iattr[2]) fprintf(out, " all");
      else fprintf(out, " dim=%lld keepdim=%lld", (long long)n->iattr[0], (long long)n->iattr[1]);
      break;
    case OP_CONST: fprintf(out, " value=%.9g", n->fattr[0]); break;
    case OP_LAYERNORM: case OP_RMSNORM: fprintf(out, " eps=%g", n->fattr[0]); break;
    case OP_ROPE: fprintf(out, " theta=%g", n->fattr[0]); break;
    case OP_DROPOUT: fprintf(out, " p=%g", n->fattr[0]); break;
    case OP_ATTENTION: fprintf(out, " causal=%lld", (long long)n->iattr[0]); break;
    case OP_PARAM: {
      static const char *const inits[] = {"none", "normal", "zeros", "ones", "uniform", "const"};
      fprintf(out, " init=%s", inits[n->init]);
      if (n->init == INIT_NORMAL || n->init == INIT_UNIFORM || n->init == INIT_CONST)
        fprintf(out, "(%g)", n->fattr[0]);
      if (n->shard) {
        fprintf(out, " shard=%s:%lld", shard_names[n->shard], (long long)n->iattr[0]);
        if (n->shard_units) fprintf(out, "/%lld", (long long)n->shard_units);
      }
      if (n->iattr[1]) fprintf(out, " no_decay");
      break;
    }
    default: break;
    }
    if (n->path && *n->path && n->op != OP_PARAM && n->op != OP_INPUT) fprintf(out, " in=%s", n->path);
    if (n->stage >= 0 && n->op == OP_PARAM) fprintf(out, " stage=%d", n->stage);
    if (n->checkpoint) fprintf(out, " checkpoint");
    if (n->fused) fprintf(out, " fused");
    fputc('\n', out);
  }
  if (g->loss) fprintf(out, "loss = %%%u\n", g->loss);
}

void ir_readers(const IrGraph *g, int *readers, ValId *reader) {
  for (int i = 1; i < g->n; i++) {
    const IrNode *n = &g->nodes[i];
    if (n->dead) continue;
    for (uint32_t k = 0; k < n->nin; k++) {
      readers[n->in[k]]++;
      reader[n->in[k]] = (ValId)i;
    }
  }
}

bool ir_verify(const IrGraph *g, FILE *err) {
  bool ok = true;
  for (int i = 1; i < g->n; i++) {
    const IrNode *n = &g->nodes[i];
    if (n->op >= OP__COUNT) {
      fprintf(err, "ir: %%%d has bad op %u\n", i, n->op);
      ok = false;
      continue;
    }
    if (n->dead) continue;
    for (uint32_t k = 0; k < n->nin; k++)
      if (n->in[k] && n->in[k] < (ValId)g->n && g->nodes[n->in[k]].dead) {
        fprintf(err, "ir: %%%d uses the dead value %%%u\n", i, n->in[k]);
        ok = false;
      }
    if (n->op == OP_MATMUL && n->nin != 2 && n->nin != 3) {
      fprintf(err, "ir: %%%d (matmul) has %u operands\n", i, n->nin);
      ok = false;
    }
    int ar = op_info[n->op].arity;
    if (ar >= 0 && (int)n->nin != ar && !(n->op == OP_LAYERNORM && n->nin == 2)) {
      fprintf(err, "ir: %%%d (%s) has %u operands, expected %d\n", i, op_info[n->op].name, n->nin, ar);
      ok = false;
    }
    if (n->ndim > DST_MAX_DIMS) {
      fprintf(err, "ir: %%%d rank %d too large\n", i, n->ndim);
      ok = false;
    }
    for (int d = 0; d < n->ndim; d++)
      if (n->shape[d] <= 0) {
        fprintf(err, "ir: %%%d has non-positive dim %d\n", i, d);
        ok = false;
      }
    for (uint32_t k = 0; k < n->nout; k++) {
      ValId o = n->out[k];
      if (!o) continue;
      bool ok_out = n->op == OP_BACKWARD ? o < (ValId)i && g->nodes[o].op == OP_GRAD
                                         : o > (ValId)i && g->nodes[o].op == OP_AUX;
      if (!ok_out) {
        fprintf(err, "ir: %%%d writes %%%u, which is not a %s of it\n", i, o,
                n->op == OP_BACKWARD ? "gradient defined before" : "later auxiliary value");
        ok = false;
      }
    }
    if (n->op == OP_BACKWARD && (n->iattr[0] < 1 || n->iattr[0] > g->nforward)) {
      fprintf(err, "ir: %%%d is the backward of a node outside the forward graph\n", i);
      ok = false;
    }
    for (uint32_t k = 0; k < n->nin; k++)
      if (n->in[k] == 0 || n->in[k] >= (ValId)i) {
        fprintf(err, "ir: %%%d operand %u (%%%u) is not defined before use\n", i, k, n->in[k]);
        ok = false;
      }
    if (n->op == OP_PARAM && !n->name) {
      fprintf(err, "ir: %%%d parameter without a name\n", i);
      ok = false;
    }
  }
  if (g->loss && (g->loss >= (ValId)g->n || g->nodes[g->loss].ndim != 0)) {
    fprintf(err, "ir: loss %%%u is not a scalar value of the graph\n", g->loss);
    ok = false;
  }
  if (!ok) return false; /* the checks below follow operands */
  /* Every forward value still has the shape and dtype its op gives its
   * operands, whatever the passes rewrote (views keep the shape they were
   * given; matmuls may have folded a transpose or a bias in). */
  for (int i = 1; i <= g->nforward && i < g->n; i++) {
    const IrNode *n = &g->nodes[i];
    if (n->dead || n->op == OP_RESHAPE || n->op == OP_CAST || n->op == OP_MATMUL ||
        (op_info[n->op].groups & GRP_SOURCE))
      continue;
    IrNode copy = *n;
    char msg[256];
    if (!shape_infer(g, &copy, msg, sizeof msg)) {
      fprintf(err, "ir: %%%d (%s): %s\n", i, op_info[n->op].name, msg);
      ok = false;
      continue;
    }
    bool same = copy.ndim == n->ndim && copy.dtype == n->dtype;
    for (int d = 0; same && d < n->ndim; d++) same = copy.shape[d] == n->shape[d];
    if (!same) {
      char want[128], have[128];
      shape_format(want, sizeof want, copy.shape, copy.ndim);
      shape_format(have, sizeof have, n->shape, n->ndim);
      fprintf(err, "ir: %%%d (%s) is %s%s, but its operands make it %s%s\n", i, op_info[n->op].name,
              dtype_name((DType)n->dtype), have, dtype_name((DType)copy.dtype), want);
      ok = false;
    }
  }
  /* A fused value is computed inline by its only reader, an elementwise
   * loop of the forward graph over as many elements. */
  int *readers = calloc((size_t)g->n, sizeof(int));
  ValId *reader = calloc((size_t)g->n, sizeof(ValId));
  if (!readers || !reader) die("out of memory");
  ir_readers(g, readers, reader);
  for (int i = 1; i < g->n; i++) {
    const IrNode *n = &g->nodes[i];
    if (n->dead || !n->fused) continue;
    const IrNode *u = readers[i] == 1 ? &g->nodes[reader[i]] : NULL;
    if (!fuse_is_loop_op((OpKind)n->op) || !u || !u->nin || reader[i] > (ValId)g->nforward ||
        !fuse_is_loop_op((OpKind)u->op) || ir_numel(u) != ir_numel(n) || (ValId)i == g->loss) {
      fprintf(err, "ir: %%%d (%s) is fused, but not an elementwise value read once by an elementwise loop\n", i,
              op_info[n->op].name);
      ok = false;
    }
  }
  free(readers);
  free(reader);
  return ok;
}
