/* precision.c: mixed precision as an IR pass.
 *
 * With precision = bf16 (or fp16) every matmul multiplies 16-bit operands
 * and accumulates in fp32: each operand of a forward matmul is replaced by
 * a CAST of it to the 16-bit type, placed just before the matmul's first
 * use of it (a value several matmuls read is cast once). Everything else
 * stays fp32: parameters (the master weights), gradients, optimizer state,
 * the norms, softmax, attention and the loss, and the matmul results.
 *
 * What that buys is in the memory plan: a value whose only readers are
 * matmuls (a norm's output, the MLP's activation) is read once by its cast
 * and then dies, so the backward pass keeps only its 16-bit copy alive.
 * Autodiff completes the picture (autodiff.c): gradients pass through a
 * CAST unchanged (the cast's gradient is its operand's fp32 gradient), a
 * matmul's backward rounds its incoming gradient to the 16-bit type for
 * its GEMMs, and re-casts parameters right before them, so the forward's
 * 16-bit weight copies die at the forward matmul instead of living until
 * backward. Inserting nodes renumbers the graph; the pass runs before
 * autodiff, when only the forward graph exists. */
#include <stdlib.h>
#include <string.h>

#include "dstc.h"

bool precision_from_name(const char *s, DType *out) {
  if (!strcmp(s, "fp32")) *out = DT_F32;
  else if (!strcmp(s, "bf16")) *out = DT_BF16;
  else if (!strcmp(s, "fp16")) *out = DT_F16;
  else return false;
  return true;
}

ValId precision_cast(IrGraph *g, ValId x, DType dt) {
  IrNode c = g->nodes[x];
  IrNode n;
  memset(&n, 0, sizeof n);
  n.op = OP_CAST;
  n.dtype = (uint8_t)dt;
  n.ndim = c.ndim;
  memcpy(n.shape, c.shape, sizeof n.shape);
  n.nin = 1;
  n.in = arena_alloc(g->arena, sizeof(ValId));
  n.in[0] = x;
  n.path = c.path;
  n.loc = c.loc;
  n.stage = c.stage;
  n.checkpoint = c.checkpoint;
  return ir_add(g, &n);
}

static bool wants_cast(const IrNode *v) { return v->dtype == DT_F32 && !v->dead; }

void pass_precision(IrGraph *g, DType dt) {
  if (dt == DT_F32 || g->grad_of) return;
  int n0 = g->n;
  IrNode *old = g->nodes;
  ValId *map = calloc((size_t)n0, sizeof(ValId));  /* old id -> new id */
  ValId *cast = calloc((size_t)n0, sizeof(ValId)); /* old id -> new id of its cast */
  if (!map || !cast) die("out of memory");
  /* Rebuild the node array in order, with each cast just before the
   * first matmul that needs it. */
  int nnamed = g->nnamed, capnamed = g->capnamed;
  struct IrNamed *named = g->named;
  ValId loss = g->loss;
  ir_init(g, g->arena); /* the old array stays in the arena; params and
                           inputs are listed again as they are re-added */
  g->named = named;
  g->nnamed = nnamed;
  g->capnamed = capnamed;
  for (int i = 1; i < n0; i++) {
    IrNode n = old[i];
    if (n.op == OP_MATMUL && !n.dead)
      for (int k = 0; k < 2; k++) {
        ValId x = n.in[k];
        if (!wants_cast(&old[x]) || cast[x]) continue;
        cast[x] = precision_cast(g, map[x], dt);
      }
    if (n.nin) {
      ValId *in = arena_alloc(g->arena, sizeof(ValId) * n.nin);
      for (uint32_t k = 0; k < n.nin; k++)
        in[k] = n.op == OP_MATMUL && !n.dead && k < 2 && cast[n.in[k]] ? cast[n.in[k]] : map[n.in[k]];
      n.in = in;
    }
    map[i] = ir_add(g, &n);
  }
  g->loss = loss ? map[loss] : 0;
  for (int i = 0; i < g->nnamed; i++) g->named[i].v = map[g->named[i].v];
  free(map);
  free(cast);
}
