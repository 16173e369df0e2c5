/* memplan.c: the static memory plan of one rank.
 *
 * The schedule is the node order (forward, then backward). Every value gets
 * a home:
 *   parameters            the params slab, in declaration order
 *   parameter gradients   the grads slab, same order (zeroed each step)
 *   optimizer state       per parameter (AdamW: m and v; SGD: momentum)
 *   inputs                the data slab (token ids of one step)
 *   everything else       the activation arena, at an offset chosen from its
 *                         lifetime: two values share bytes only if their
 *                         lifetimes [first write, last read] are disjoint.
 * RESHAPE is a view: it shares its operand's bytes and extends its lifetime.
 * The arena size is the exact peak of live activation bytes under this
 * placement; the generated program allocates exactly these sizes, so the
 * plan is what the run uses. */
#include <stdlib.h>
#include <string.h>

#include "dstc.h"

enum { ALIGN = 64 };

static int64_t align_up(int64_t x) { return (x + ALIGN - 1) / ALIGN * ALIGN; }

int64_t memplan_bytes(const IrNode *n) { return ir_numel(n) * (int64_t)dtype_size((DType)n->dtype); }

static ValId view_root(const IrGraph *g, ValId v) {
  while (g->nodes[v].op == OP_RESHAPE) v = g->nodes[v].in[0];
  return v;
}

static bool has_storage(const IrNode *n) {
  if (n->dead || n->fused) return false;
  switch (n->op) {
  case OP_BACKWARD: case OP_CONST: case OP_RESHAPE: return false;
  default: return true;
  }
}

/* Value v is read at position pos: a fused value is computed there, so its
 * operands are what is read. */
static void extend_reads(const IrGraph *g, ValId v, int64_t pos, int64_t *end) {
  if (g->nodes[v].fused) {
    for (uint32_t k = 0; k < g->nodes[v].nin; k++) extend_reads(g, g->nodes[v].in[k], pos, end);
    return;
  }
  ValId r = view_root(g, v);
  if (end[r] >= 0 && end[r] < pos) end[r] = pos;
}

typedef struct {
  ValId v;
  int64_t size, start, end;
} Interval;

static int by_size_desc(const void *a, const void *b) {
  const Interval *x = a, *y = b;
  if (x->size != y->size) return x->size > y->size ? -1 : 1;
  return x->v < y->v ? -1 : x->v > y->v;
}

MemPlan *memplan_build(IrGraph *g, const Program *prog) {
  const TrainCfg *t = &prog->train_cfg;
  int64_t dp = prog->par.dp.i, zero = prog->par.zero.i;
  Arena *a = g->arena;
  MemPlan *m = arena_alloc(a, sizeof *m);
  memset(m, 0, sizeof *m);
  m->n = g->n;
  m->cat = arena_alloc(a, (size_t)g->n);
  m->offset = arena_alloc(a, sizeof(int64_t) * (size_t)g->n);
  for (int i = 0; i < g->n; i++) m->offset[i] = -1;

  /* Persistent slabs. */
  for (int i = 0; i < g->nparams; i++) {
    ValId p = g->params[i];
    m->cat[p] = MEM_PARAMS;
    m->offset[p] = m->bytes[MEM_PARAMS];
    m->bytes[MEM_PARAMS] += align_up(memplan_bytes(&g->nodes[p]));
    ValId gr = g->grad_of ? g->grad_of[p] : 0;
    if (gr) {
      m->cat[gr] = MEM_GRADS;
      m->offset[gr] = m->offset[p];
    }
  }
  /* ZeRO partitions the flat parameter slab into dp equal shards (the
   * slab is padded so that every shard is whole and 64-byte aligned); each
   * rank keeps the optimizer state of its shard only. */
  if (zero >= 1 && dp > 1) m->bytes[MEM_PARAMS] = (m->bytes[MEM_PARAMS] + dp * ALIGN - 1) / (dp * ALIGN) * (dp * ALIGN);
  if (g->grad_of) m->bytes[MEM_GRADS] = m->bytes[MEM_PARAMS];
  int nstate = t->opt == OPT_ADAMW ? 2 : (t->momentum > 0 ? 1 : 0);
  m->bytes[MEM_OPTSTATE] = nstate * m->bytes[MEM_PARAMS] / (zero >= 1 ? dp : 1);
  for (int i = 0; i < g->ninputs; i++) {
    ValId v = g->inputs[i];
    m->cat[v] = MEM_DATA;
    m->offset[v] = m->bytes[MEM_DATA];
    m->bytes[MEM_DATA] += align_up(memplan_bytes(&g->nodes[v]));
  }

  /* Lifetimes of arena values, in schedule positions. */
  int64_t *start = malloc(sizeof(int64_t) * (size_t)g->n);
  int64_t *end = malloc(sizeof(int64_t) * (size_t)g->n);
  if (!start || !end) die("out of memory");
  for (int i = 0; i < g->n; i++) start[i] = end[i] = -1;
  for (int i = 1; i < g->n; i++) {
    const IrNode *n = &g->nodes[i];
    if (m->cat[i] != MEM_NONE || !has_storage(n)) continue;
    m->cat[i] = MEM_ACTIVATIONS;
    start[i] = end[i] = n->op == OP_AUX ? n->iattr[0] : i;
  }
  for (int i = 1; i < g->n; i++) {
    const IrNode *n = &g->nodes[i];
    if (n->fused) continue; /* its reader reads its operands */
    for (uint32_t k = 0; k < n->nin; k++) extend_reads(g, n->in[k], i, end);
    for (uint32_t k = 0; k < n->nout; k++)
      if (n->out[k] && end[n->out[k]] >= 0 && end[n->out[k]] < i) end[n->out[k]] = i;
  }
  /* The loss and named outputs (logits, for sampling) live to the end. */
  if (g->loss) end[view_root(g, g->loss)] = g->n;
  for (int i = 0; i < g->nnamed; i++) {
    ValId r = view_root(g, g->named[i].v);
    if (end[r] >= 0) end[r] = g->n;
  }

  Interval *iv = malloc(sizeof(Interval) * (size_t)g->n);
  if (!iv) die("out of memory");
  int niv = 0;
  for (int i = 1; i < g->n; i++)
    if (m->cat[i] == MEM_ACTIVATIONS && start[i] >= 0)
      iv[niv++] = (Interval){(ValId)i, align_up(memplan_bytes(&g->nodes[i])), start[i], end[i]};
  qsort(iv, (size_t)niv, sizeof *iv, by_size_desc);
  /* Greedy best fit: biggest first, each at the lowest offset free over its
   * whole lifetime. placed[] is kept sorted by offset. */
  Interval *placed = malloc(sizeof(Interval) * (size_t)(niv + 1));
  int64_t *poff = malloc(sizeof(int64_t) * (size_t)(niv + 1));
  if (!placed || !poff) die("out of memory");
  int np = 0;
  int64_t peak = 0;
  for (int k = 0; k < niv; k++) {
    Interval *x = &iv[k];
    int64_t off = 0;
    int at = 0;
    for (int j = 0; j < np; j++) {
      bool overlap_t = placed[j].start <= x->end && x->start <= placed[j].end;
      if (!overlap_t) continue;
      if (poff[j] - off >= x->size) break; /* fits in the gap before j */
      if (poff[j] + placed[j].size > off) off = poff[j] + placed[j].size;
    }
    while (at < np && poff[at] <= off) at++;
    memmove(placed + at + 1, placed + at, sizeof *placed * (size_t)(np - at));
    memmove(poff + at + 1, poff + at, sizeof *poff * (size_t)(np - at));
    placed[at] = *x;
    poff[at] = off;
    np++;
    m->offset[x->v] = off;
    if (off + x->size > peak) peak = off + x->size;
  }
  m->bytes[MEM_ACTIVATIONS] = peak;
  /* Views share their root's bytes. */
  for (int i = 1; i < g->n; i++)
    if (g->nodes[i].op == OP_RESHAPE) {
      ValId r = view_root(g, (ValId)i);
      m->cat[i] = m->cat[r];
      m->offset[i] = m->offset[r];
    }
  /* Workspace: the largest scratch any kernel needs (attention keeps one
   * score row per thread; reserve for 64 threads). */
  for (int i = 1; i < g->nforward + 1 && i < g->n; i++) {
    const IrNode *n = &g->nodes[i];
    if (n->op == OP_ATTENTION) {
      int64_t ws = align_up(64 * 2 * n->shape[2] * 4);
      if (ws > m->bytes[MEM_WORKSPACE]) m->bytes[MEM_WORKSPACE] = ws;
    }
  }
  m->start = start;
  m->end = end;
  free(iv);
  free(placed);
  free(poff);
  return m;
}

void memplan_free(MemPlan *m) {
  if (!m) return;
  free(m->start);
  free(m->end);
  m->start = m->end = NULL;
}

const char *memplan_cat_name(MemCat c) {
  static const char *const names[] = {"none", "parameters", "gradients", "optimizer state",
                                      "activations", "workspace", "data"};
  return c < MEM__COUNT ? names[c] : "?";
}

void memplan_human(char *buf, size_t sz, int64_t b) {
  if (b >= (int64_t)1 << 30) snprintf(buf, sz, "%.2f GiB", (double)b / (1 << 30));
  else if (b >= (int64_t)1 << 20) snprintf(buf, sz, "%.2f MiB", (double)b / (1 << 20));
  else if (b >= 1024) snprintf(buf, sz, "%.2f KiB", (double)b / 1024);
  else snprintf(buf, sz, "%lld B", (long long)b);
}

int64_t memplan_total(const MemPlan *m) {
  int64_t t = 0;
  for (int c = 1; c < MEM__COUNT; c++) t += m->bytes[c];
  return t;
}

void memplan_print(FILE *out, const IrGraph *g, const MemPlan *m, const char *ignored) {
  if (ignored)
    fprintf(out, "memory per rank (static plan that ignores %s: not what a run of this layout needs):\n", ignored);
  else
    fprintf(out, "memory per rank (static plan; the run allocates exactly this):\n");
  for (int c = MEM_PARAMS; c < MEM__COUNT; c++) {
    char h[32];
    memplan_human(h, sizeof h, m->bytes[c]);
    fprintf(out, "  %-16s %12lld bytes  %10s\n", memplan_cat_name((MemCat)c), (long long)m->bytes[c], h);
  }
  char h[32];
  memplan_human(h, sizeof h, memplan_total(m));
  fprintf(out, "  %-16s %12lld bytes  %10s\n", "peak", (long long)memplan_total(m), h);
  /* Where the activation peak is reached, and what is live there. */
  int64_t best = -1, at = -1;
  for (int pos = 1; pos < g->n; pos++) {
    int64_t live = 0;
    for (int i = 1; i < g->n; i++)
      if (m->cat[i] == MEM_ACTIVATIONS && m->start[i] >= 0 && m->start[i] <= pos && m->end[i] >= pos)
        live += align_up(memplan_bytes(&g->nodes[i]));
    if (live > best) {
      best = live;
      at = pos;
    }
  }
  if (at > 0) {
    const IrNode *n = &g->nodes[at];
    fprintf(out, "  activation peak at step %lld of %d (%s%s%s)\n", (long long)at, g->n - 1,
            op_info[n->op].name, n->path && *n->path ? " in " : "", n->path ? n->path : "");
  }
}
