/* fuse.c: fusion of elementwise chains.
 *
 * A forward elementwise value that is read exactly once, by another
 * elementwise op over the same number of elements, and by no backward rule,
 * is never stored: the reader computes it inline, so a chain such as
 * x * s + b or sigmoid(a) - tanh(b) becomes one generated loop with no
 * intermediate arrays. Runs after autodiff, which is what says whether the
 * backward pass needs a value. The memory plan gives fused values no
 * storage and reads their operands where the fused loop runs. */
#include <stdlib.h>

#include "dstc.h"

bool fuse_is_loop_op(OpKind op) {
  switch (op) {
  case OP_ADD: case OP_SUB: case OP_MUL: case OP_DIV: case OP_NEG: case OP_SIGMOID: case OP_EXP:
  case OP_LOG: case OP_TANH: case OP_SQRT:
    return true;
  default: return false;
  }
}

enum { MAX_CHAIN = 8 }; /* ops computed in one fused expression */

/* Whether every stored value the expression of v reads is indexed like
 * the output (same element count), or is a single element: then one flat
 * loop computes the whole fused expression. */
static bool flat_leaves(const IrGraph *g, ValId v, int64_t numel) {
  const IrNode *x = &g->nodes[v];
  if (!x->fused) return x->op == OP_CONST || ir_numel(x) == numel || ir_numel(x) == 1;
  for (uint32_t k = 0; k < x->nin; k++)
    if (!flat_leaves(g, x->in[k], numel)) return false;
  return true;
}

void pass_fuse(IrGraph *g) {
  int *readers = calloc((size_t)g->n, sizeof(int));
  ValId *reader = calloc((size_t)g->n, sizeof(ValId));
  int *depth = calloc((size_t)g->n, sizeof(int));
  if (!readers || !reader || !depth) die("out of memory");
  ir_readers(g, readers, reader);
  if (g->loss) readers[g->loss] += 2;
  for (int i = 0; i < g->nnamed; i++) readers[g->named[i].v] += 2;
  for (int i = 1; i <= g->nforward; i++) {
    IrNode *n = &g->nodes[i];
    if (n->dead || !fuse_is_loop_op((OpKind)n->op) || readers[i] != 1) continue;
    ValId u = reader[i];
    const IrNode *un = &g->nodes[u];
    if (u > (ValId)g->nforward || !fuse_is_loop_op((OpKind)un->op) || ir_numel(un) != ir_numel(n)) continue;
    bool flat = true;
    for (uint32_t k = 0; k < un->nin; k++) flat &= flat_leaves(g, un->in[k], ir_numel(un));
    for (uint32_t k = 0; k < n->nin; k++) flat &= flat_leaves(g, n->in[k], ir_numel(un));
    if (!flat) continue;
    int d = 1;
    for (uint32_t k = 0; k < n->nin; k++)
      if (depth[n->in[k]] + 1 > d) d = depth[n->in[k]] + 1;
    if (d >= MAX_CHAIN) continue;
    depth[i] = d;
    n->fused = true;
  }
  free(readers);
  free(reader);
  free(depth);
}
