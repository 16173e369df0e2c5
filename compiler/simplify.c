/* simplify.c: rewrites of the forward graph before differentiation.
 *
 *  - Transposes feeding a matmul become the matmul's transpose flags
 *    (x @ transpose(w) reads w in place: no copy forward, none backward).
 *  - A bias add of a matmul's result becomes the matmul's epilogue (the
 *    output starts as the broadcast bias and the GEMM accumulates into it).
 *  - Dead-value elimination: forward nodes that reach neither the loss nor a
 *    named model value are marked dead; no later pass computes or stores
 *    them. (Parameters and inputs are never dead: they are the model's
 *    interface.)
 * Rewrites keep node ids (and so the topological order): a replaced node's
 * users are redirected and the node is left to dead-value elimination. */
#include <stdlib.h>
#include <string.h>

#include "dstc.h"

/* Replaces every use of `from` by `to` in the nodes after `to`. */
static void redirect(IrGraph *g, ValId from, ValId to) {
  for (int i = (int)to + 1; i < g->n; i++) {
    IrNode *n = &g->nodes[i];
    for (uint32_t k = 0; k < n->nin; k++)
      if (n->in[k] == from) n->in[k] = to;
  }
  if (g->loss == from) g->loss = to;
  for (int i = 0; i < g->nnamed; i++)
    if (g->named[i].v == from) g->named[i].v = to;
}

static int *count_uses(const IrGraph *g) {
  int *uses = calloc((size_t)g->n, sizeof(int));
  if (!uses) die("out of memory");
  for (int i = 1; i < g->n; i++) {
    const IrNode *n = &g->nodes[i];
    if (n->dead) continue;
    for (uint32_t k = 0; k < n->nin; k++) uses[n->in[k]]++;
  }
  if (g->loss) uses[g->loss]++;
  for (int i = 0; i < g->nnamed; i++) uses[g->named[i].v]++;
  return uses;
}

/* A transpose of the last two dimensions. */
static bool is_last2_transpose(const IrNode *t) {
  return t->op == OP_TRANSPOSE && t->ndim >= 2 &&
         ((t->iattr[0] == t->ndim - 2 && t->iattr[1] == t->ndim - 1) ||
          (t->iattr[1] == t->ndim - 2 && t->iattr[0] == t->ndim - 1));
}

static void fold_transposes(IrGraph *g) {
  for (int i = 1; i < g->n; i++) {
    IrNode *n = &g->nodes[i];
    if (n->op != OP_MATMUL || n->dead) continue;
    const IrNode *b = &g->nodes[n->in[1]];
    if (!n->iattr[1] && is_last2_transpose(b)) {
      n->in[1] = b->in[0];
      n->iattr[1] = 1;
    }
    /* transA only where the left operand is not flattened into rows (the
     * right operand has batch dimensions too, or the left is 2-D) */
    const IrNode *a = &g->nodes[n->in[0]];
    const IrNode *bb = &g->nodes[n->in[1]];
    bool right_batched = ir_numel(bb) != bb->shape[bb->ndim - 1] * bb->shape[bb->ndim - 2];
    if (!n->iattr[0] && is_last2_transpose(a) && (a->ndim == 2 || right_batched)) {
      n->in[0] = a->in[0];
      n->iattr[0] = 1;
    }
  }
}

static void fold_bias(IrGraph *g) {
  int *uses = count_uses(g);
  for (int i = 1; i < g->n; i++) {
    IrNode *add = &g->nodes[i];
    if (add->op != OP_ADD || add->dead) continue;
    for (int side = 0; side < 2; side++) {
      ValId mm = add->in[side], bias = add->in[1 - side];
      IrNode *m = &g->nodes[mm];
      const IrNode *bn = &g->nodes[bias];
      if (m->op != OP_MATMUL || m->nin != 2 || uses[mm] != 1) continue;
      if (bn->ndim != 1 || bn->shape[0] != m->shape[m->ndim - 1] || bn->dtype != m->dtype) continue;
      ValId *in = arena_alloc(g->arena, sizeof(ValId) * 3);
      in[0] = m->in[0];
      in[1] = m->in[1];
      in[2] = bias;
      m->in = in;
      m->nin = 3;
      /* the matmul now stands where the add did: move it there, so the
       * bias (defined before the add) is defined before its use */
      IrNode moved = *m;
      moved.loc = add->loc;
      *add = moved;
      m->dead = true;
      m->nin = 0;
      redirect(g, mm, (ValId)i);
      break;
    }
  }
  free(uses);
}

static void eliminate_dead(IrGraph *g) {
  bool *live = calloc((size_t)g->n, 1);
  if (!live) die("out of memory");
  if (g->loss) live[g->loss] = true;
  for (int i = 0; i < g->nnamed; i++) live[g->named[i].v] = true;
  for (int i = g->n - 1; i >= 1; i--) {
    IrNode *n = &g->nodes[i];
    if (n->op == OP_PARAM || n->op == OP_INPUT) live[i] = true;
    if (!live[i] || n->dead) continue;
    for (uint32_t k = 0; k < n->nin; k++) live[n->in[k]] = true;
  }
  for (int i = 1; i < g->n; i++)
    if (!live[i]) g->nodes[i].dead = true;
  free(live);
}

void pass_simplify(IrGraph *g) {
  fold_transposes(g);
  fold_bias(g);
  eliminate_dead(g);
}
