/* emit_c.c: the C backend, and in CUDA mode the CUDA backend.
 *
 * Writes one C file that defines the model's DstModel (runtime/dst_model.h):
 * the slab sizes and offsets of the memory plan, the parameter and input
 * tables, the training settings, and two functions, forward and backward,
 * that run the scheduled nodes in order as calls into the CPU kernel library
 * (kernels/cpu/k_cpu.h) or as generated loops (elementwise arithmetic with
 * broadcasting, copies for slices). Every value is addressed as
 * slab + constant offset, so the program allocates nothing while training.
 *
 * CUDA mode (Emit.cuda) writes a .cu file from the same code: kernel calls
 * become their k_cuda.h twins (kc_*, launched on the run's stream), and
 * each generated loop becomes a __global__ kernel of its own, defined
 * before forward and launched in its place, whose body is the loop body of
 * the C backend (the slab base pointers are its argument, so F(), I() and
 * W() read the same). Nothing on that path synchronizes the stream, except
 * the profile timers when the program profiles.
 *
 * Output is deterministic: a function of the graph and plan only (no dates,
 * no pointers), so compiling twice gives identical bytes. */
#include <ctype.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "dstc.h"

/* ZeRO-2/3 unit buffers reach a generated CUDA kernel as arguments of
 * its own, one per unit it addresses. A fused loop reads at most
 * 2^MAX_CHAIN stored values (fuse.c), so this bound, which keeps the
 * arguments well below CUDA's 4 KiB, is never reached. */
enum { KERNEL_MAX_UNITS = 400 };
/* Where kernel_end puts those arguments in the kernel's signature. */
static const char kernel_units_mark[] = "/*UNITS*/";

typedef struct {
  FILE *f;
  Arena *strs;      /* every string the emitter builds (operands, literals,
                       expressions) lives here until emit_c returns: no
                       string is ever reused while something refers to it */
  const IrGraph *g;
  const MemPlan *m;
  DiagSink *d;
  bool failed;
  int64_t ce_work; /* workspace offset of cross-entropy row buffers */
  uint8_t *ow;      /* per BACKWARD node: bit k set when it is the first to
                       write operand k's gradient and overwrites it (no
                       zeroing needed) */
  bool *nozero;     /* per GRAD node: its first writer overwrites it */
  int *bucket_at;   /* per node: the first bucket completed right after it, or -1 */
  int *bucket_cnt;  /* per node: how many (consecutive) buckets complete there */
  int64_t (*buckets)[2]; /* offset, bytes */
  int nbuckets;
  /* ZeRO-2/3 (dp > 1): the buckets are the partition units of the slab.
   * Gradients (and with stage 3 parameters) of unit u are addressed through
   * r->gunit[u] (r->punit[u]), buffers the runtime fills and releases. */
  bool zgrads, zparams;
  int world;
  int *by_lo;              /* unit indices sorted by offset */
  int *stamp_p, *stamp_g;  /* per unit: the capture that last referenced it */
  int stamp;
  int *refs_p, *refs_g;    /* units the node being captured references */
  int nrefs_p, nrefs_g;
  /* CUDA mode */
  bool cuda;
  FILE *kern;              /* the generated kernels, written before forward */
  FILE *host;              /* while a kernel is open: where its launch goes */
  FILE *kbody;             /* the open kernel's text */
  char *kbuf, *kbuf2;      /* the open kernel's text; kernel_end's rewrite of it */
  size_t klen, klen2;
  const char *klaunch;     /* the open kernel's launch macro, blocks, name */
  int64_t kblocks;
  int kidx;
  ValId node;              /* the node being captured (names its kernels) */
  int nkern;               /* kernels of that node so far */
  int64_t ids_work;        /* workspace offset of the id-check flags */
  const char **ids_what;   /* per flag: the error it reports */
  int nids, ids_max;
  int64_t scratch_work, scratch_bytes; /* kernel scratch (norm and attention backward) */
  int64_t device_work_off;             /* workspace offset of the CUDA runtime's buffers */
  int64_t lowp_work;       /* C backend: workspace offset where 16-bit GEMM operands are widened */
  int64_t loop_in;         /* the inner size of the elementwise loop being written */
  int zero_inflight;       /* ZeRO-2/3: reduce-scatters in flight before the oldest is waited for */
} Emit;

/* How a backward rule writes operand k's gradient. A parameter gradient is
 * overwritten only on the first micro-step of gradient accumulation. */
typedef enum { W_ADD, W_SET, W_SET_FIRST } WriteMode;

static WriteMode ow(const Emit *e, ValId bid, uint32_t k) {
  if (k >= 8 || !((e->ow[bid] >> k) & 1)) return W_ADD;
  ValId v = e->g->nodes[bid].out[k];
  return e->m->cat[v] == MEM_GRADS ? W_SET_FIRST : W_SET;
}

/* printf into the emitter's arena. */
static const char *S(Emit *e, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static const char *S(Emit *e, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  char *s = arena_vprintf(e->strs, fmt, ap);
  va_end(ap);
  return s;
}

/* "lhs op rhs;" for a write mode. */
static const char *store(Emit *e, WriteMode w, const char *lhs, const char *rhs) {
  if (w == W_SET) return S(e, "%s = %s;", lhs, rhs);
  if (w == W_ADD) return S(e, "%s += %s;", lhs, rhs);
  return S(e, "if (r->acc) %s += %s; else %s = %s;", lhs, rhs, lhs, rhs);
}

static const char *beta_of(WriteMode w) {
  return w == W_SET ? "0.0f" : w == W_ADD ? "1.0f" : "(r->acc ? 1.0f : 0.0f)";
}

static const char *slab(MemCat c) {
  switch (c) {
  case MEM_PARAMS: return "params";
  case MEM_GRADS: return "grads";
  case MEM_DATA: return "data";
  case MEM_ACTIVATIONS: return "arena";
  default: return NULL;
  }
}

/* The partition unit holding byte `off` of the parameter slab. */
static int unit_of(const Emit *e, int64_t off) {
  int lo = 0, hi = e->nbuckets - 1;
  while (lo < hi) {
    int mid = (lo + hi + 1) / 2;
    if (e->buckets[e->by_lo[mid]][0] <= off) lo = mid;
    else hi = mid - 1;
  }
  int u = e->by_lo[lo];
  if (off < e->buckets[u][0] || off >= e->buckets[u][0] + e->buckets[u][1])
    die("parameter byte %" PRId64 " is in no partition unit", off);
  return u;
}

static void ref_unit(Emit *e, int u, bool grad) {
  int *stamp = grad ? e->stamp_g : e->stamp_p;
  if (stamp[u] == e->stamp) return;
  stamp[u] = e->stamp;
  if (grad) e->refs_g[e->nrefs_g++] = u;
  else e->refs_p[e->nrefs_p++] = u;
}

/* A C expression for the address of value v ("F(arena, 4096)"). */
static const char *P(Emit *e, ValId v) {
  const IrNode *n = &e->g->nodes[v];
  MemCat c = (MemCat)e->m->cat[v];
  const char *s = slab(c);
  int64_t off = e->m->offset[v];
  if (!s || off < 0) die("value %%%u (%s) has no storage", v, op_info[n->op].name);
  if ((c == MEM_PARAMS && e->zparams) || (c == MEM_GRADS && e->zgrads)) {
    int u = unit_of(e, off);
    bool grad = c == MEM_GRADS;
    ref_unit(e, u, grad);
    return S(e, "%s(%d, %" PRId64 ")", grad ? "GU" : "PU", u, off - e->buckets[u][0]);
  }
  const char *mac = n->dtype == DT_I32 ? "I" : n->dtype == DT_BF16 || n->dtype == DT_F16 ? "H" : "F";
  return S(e, "%s(%s, %" PRId64 ")", mac, s, off);
}

static const IrNode *N(Emit *e, ValId v) { return &e->g->nodes[v]; }

/* A C float literal that reads back to the same float ("1.0f", "3e-05f"). */
static const char *fl(Emit *e, double x) {
  float v = (float)x;
  if (isnan(v)) return "NAN";
  if (isinf(v)) return v > 0 ? "INFINITY" : "-INFINITY";
  char b[48];
  snprintf(b, sizeof b, "%.9g", (double)(float)x);
  return S(e, "%s%sf", b, strpbrk(b, ".eEn") ? "" : ".0");
}
static int64_t numel(const IrNode *n) { return ir_numel(n); }
static int64_t last(const IrNode *n) { return n->ndim ? n->shape[n->ndim - 1] : 1; }
static int64_t prod(const IrNode *n, int from, int to) {
  int64_t p = 1;
  for (int i = from; i < to; i++) p *= n->shape[i];
  return p;
}

static void unsupported(Emit *e, const IrNode *n, const char *what) {
  diag_error(e->d, n->loc, "the %s backend does not support %s yet", e->cuda ? "CUDA" : "C", what);
  e->failed = true;
}

/* The prefix of a kernel library call ("k_" or "kc_") and its trailing
 * stream argument ("" or ", STREAM"), so one format writes both twins. */
static const char *kp(const Emit *e) { return e->cuda ? "kc_" : "k_"; }
static const char *ks(const Emit *e) { return e->cuda ? ", STREAM" : ""; }

/* CUDA: starts the next kernel of the node being captured: its launch
 * (macro LAUNCH or LAUNCH_COLS of the prelude) goes where the node's code
 * goes, and what is written until kernel_end is its definition, which goes
 * before forward. */
enum { KERNEL_THREADS = 256, KERNEL_MAX_BLOCKS = 1 << 20 };
/* The CUDA device's buffers in the workspace: kc_blas_workspace_bytes()
 * (32 MiB), then kc_global_norm_scratch_bytes() (1024 doubles), then the
 * norm's result (one double); runtime/cuda/dst_device_cuda.c checks them. */
enum { CUDA_DEVICE_WORK = (32 << 20) + 1024 * 8 + 8 };
/* KC_ATTENTION_MAX_D of kernels/cuda/k_cuda.h */
enum { CUDA_MAX_HEAD_DIM = 256 };
static void kernel_begin(Emit *e, const char *launch, int64_t blocks) {
  e->kidx = e->nkern++;
  e->klaunch = launch;
  e->kblocks = blocks;
  e->host = e->f;
  e->kbody = e->f = open_memstream(&e->kbuf, &e->klen);
  if (!e->f) die("out of memory");
  fprintf(e->f, "static __global__ void node%u_%d(Slabs rs%s) {\n  const Slabs *r = &rs;\n", e->node, e->kidx,
          kernel_units_mark);
}

/* ZeRO-2/3: the host's r->punit/r->gunit are not device memory, so the
 * unit buffers a kernel addresses (PU(u, off), GU(u, off) in its text)
 * reach it as arguments u0, u1, ... (KU(slot, off)), passed at launch. The
 * launch goes after the body, which names the buffers it needs. */
static void kernel_end(Emit *e) {
  fputs("}\n\n", e->f);
  fclose(e->kbody);
  e->kbody = NULL;
  int *unit = arena_alloc(e->strs, sizeof(int) * KERNEL_MAX_UNITS);
  char *kind = arena_alloc(e->strs, KERNEL_MAX_UNITS);
  int nunit = 0;
  const char *t = e->kbuf; /* written up to here */
  FILE *body = open_memstream(&e->kbuf2, &e->klen2);
  if (!body) die("out of memory");
  for (const char *at = e->kbuf; (at = strstr(at, "U(")) != NULL; at += 2) {
    bool macro = at > e->kbuf && (at[-1] == 'P' || at[-1] == 'G') &&
                 (at - 1 == e->kbuf || !(isalnum((unsigned char)at[-2]) || at[-2] == '_'));
    if (!macro) continue;
    char *end;
    long u = strtol(at + 2, &end, 10);
    if (end == at + 2 || *end != ',') die("unexpected unit reference in a generated kernel");
    int slot = 0;
    while (slot < nunit && !(unit[slot] == u && kind[slot] == at[-1])) slot++;
    if (slot == nunit) {
      if (slot == KERNEL_MAX_UNITS) die("a generated kernel addresses more than %d partition units", slot);
      unit[slot] = (int)u;
      kind[slot] = at[-1];
      nunit++;
    }
    fwrite(t, 1, (size_t)(at - 1 - t), body);
    fprintf(body, "KU(%d", slot);
    t = end; /* ", off)" follows */
    at = end - 2;
  }
  fputs(t, body);
  fclose(body);
  /* the signature: one argument per unit buffer */
  const char *mark = strstr(e->kbuf2, kernel_units_mark);
  if (!mark) die("a generated kernel lost its signature");
  fwrite(e->kbuf2, 1, (size_t)(mark - e->kbuf2), e->kern);
  for (int k = 0; k < nunit; k++) fprintf(e->kern, ", char *u%d", k);
  fputs(mark + strlen(kernel_units_mark), e->kern);
  free(e->kbuf);
  free(e->kbuf2);
  e->kbuf = e->kbuf2 = NULL;
  e->f = e->host;
  e->host = NULL;
  if (!nunit) {
    fprintf(e->f, "  %s(node%u_%d, %" PRId64 ");\n", e->klaunch, e->node, e->kidx, e->kblocks);
    return;
  }
  fprintf(e->f, "  %s_UNITS(node%u_%d, %" PRId64, e->klaunch, e->node, e->kidx, e->kblocks);
  for (int k = 0; k < nunit; k++) fprintf(e->f, ", r->%s[%d]", kind[k] == 'G' ? "gunit" : "punit", unit[k]);
  fputs(");\n", e->f);
}

/* A kernel of `threads` threads: what is written until kernel_close is the
 * body of a grid-stride loop over t < threads. */
static void kernel_open(Emit *e, int64_t threads) {
  int64_t blocks = (threads + KERNEL_THREADS - 1) / KERNEL_THREADS;
  if (blocks < 1) blocks = 1;
  if (blocks > KERNEL_MAX_BLOCKS) blocks = KERNEL_MAX_BLOCKS;
  kernel_begin(e, "LAUNCH", blocks);
  fprintf(e->f, "  for (int64_t t = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; t < %" PRId64
                "; t += (int64_t)gridDim.x * blockDim.x) {\n", threads);
}

static void kernel_close(Emit *e) {
  fputs("  }\n", e->f);
  kernel_end(e);
}

/* ------------------------------------------------------------ elementwise */

/* How an operand of an elementwise op is indexed inside the loop nest
 * "for o < outer, for j < inner" over the output (flat position
 * o * in + j): as the output, one element, the output's trailing dims
 * (index j), a constant, or any other broadcast (IDX_GENERAL: its index
 * is computed from the flat position, see general_index). */
typedef enum { IDX_FULL, IDX_SCALAR, IDX_INNER, IDX_CONST, IDX_GENERAL } IdxKind;

static IdxKind index_kind(const IrNode *x, const IrNode *out, int64_t *inner) {
  if (x->op == OP_CONST) return IDX_CONST;
  if (numel(x) == numel(out)) return IDX_FULL;
  if (numel(x) == 1) return IDX_SCALAR;
  /* x's shape (leading 1s dropped) equals out's trailing dims */
  int xd = 0;
  while (xd < x->ndim && x->shape[xd] == 1) xd++;
  int k = x->ndim - xd;
  if (k > out->ndim) return IDX_GENERAL; /* cannot happen for valid shapes */
  for (int i = 0; i < k; i++)
    if (x->shape[xd + i] != out->shape[out->ndim - k + i]) return IDX_GENERAL;
  *inner = numel(x);
  return IDX_INNER;
}

/* The dims of out, innermost first, grouped in runs that x either keeps
 * (its size there is out's) or broadcasts (size 1 where out's is not);
 * dims of size 1 in out belong to no run. Each run has its size, its
 * stride in out, in x (kept runs) and in the broadcast space (broadcast
 * runs: the positions of out that map to one element of x). */
typedef struct {
  bool kept;
  int64_t size, ostride, xstride, rstride;
} Run;

static int broadcast_runs(const IrNode *x, const IrNode *out, Run *runs) {
  int n = 0;
  int64_t ostride = 1, xstride = 1, rstride = 1;
  for (int d = out->ndim - 1; d >= 0; d--) {
    int xi = x->ndim - (out->ndim - d);
    int64_t os = out->shape[d], xs = xi >= 0 ? x->shape[xi] : 1;
    if (os == 1) continue;
    bool kept = xs == os;
    if (n > 0 && runs[n - 1].kept == kept && runs[n - 1].ostride * runs[n - 1].size == ostride) {
      runs[n - 1].size *= os;
    } else {
      runs[n++] = (Run){kept, os, ostride, kept ? xstride : 0, kept ? 0 : rstride};
    }
    ostride *= os;
    if (kept) xstride *= os;
    else rstride *= os;
  }
  return n;
}

/* "(a / b % c) * d" with the trivial parts left out; outermost: no % c. */
static const char *coord_term(Emit *e, const char *pos, int64_t div, int64_t mod, bool outermost, int64_t mul) {
  const char *c = div == 1 ? pos : S(e, "%s / %" PRId64, pos, div);
  if (!outermost) c = S(e, "%s %% %" PRId64, c, mod);
  return mul == 1 ? S(e, "(%s)", c) : S(e, "(%s) * %" PRId64, c, mul);
}

/* The index into x (broadcast to out's shape) of the output element at the
 * flat position o * in + j. */
static const char *general_index(Emit *e, const IrNode *x, const IrNode *out) {
  Run runs[DST_MAX_DIMS];
  int n = broadcast_runs(x, out, runs);
  const char *idx = NULL;
  for (int k = 0; k < n; k++) {
    if (!runs[k].kept) continue;
    const char *t = coord_term(e, "(o * in + j)", runs[k].ostride, runs[k].size, k == n - 1, runs[k].xstride);
    idx = idx ? S(e, "%s + %s", idx, t) : t;
  }
  return idx ? idx : "0";
}

static const char *operand(Emit *e, ValId v, IdxKind k, const IrNode *out) {
  const IrNode *x = N(e, v);
  switch (k) {
  case IDX_CONST: return fl(e, x->fattr[0]);
  case IDX_FULL: return S(e, "%s[o * in + j]", P(e, v));
  case IDX_SCALAR: return S(e, "%s[0]", P(e, v));
  case IDX_GENERAL: return S(e, "%s[%s]", P(e, v), general_index(e, x, out));
  default: return S(e, "%s[j]", P(e, v));
  }
}

/* Chooses the loop nest for an elementwise op over `out` with operands
 * xs; returns false when some operand broadcasts in a way the two-level
 * nest cannot express. */
static int64_t plan_loops(Emit *e, const IrNode *out, const ValId *xs, int nx) {
  int64_t inner = 0;
  for (int i = 0; i < nx; i++) {
    int64_t in = 0;
    if (index_kind(N(e, xs[i]), out, &in) == IDX_INNER && !inner) inner = in;
  }
  /* operands with another inner size are indexed as IDX_GENERAL */
  return inner ? inner : numel(out);
}

static void loop_open(Emit *e, int64_t total, int64_t inner) {
  int64_t outer = total / inner;
  if (e->cuda) { /* one thread per (o, j) */
    kernel_open(e, total);
    fprintf(e->f, "    [[maybe_unused]] const int64_t outer = %" PRId64 ", in = %" PRId64 ", o = t / in, j = t %% in;\n",
            outer, inner);
    return;
  }
  fprintf(e->f, "  {\n    const int64_t outer = %" PRId64 ", in = %" PRId64 ";\n", outer, inner);
  fprintf(e->f, "    #pragma omp parallel for if (outer * in >= 32768)\n");
  fprintf(e->f, "    for (int64_t o = 0; o < outer; o++)\n      for (int64_t j = 0; j < in; j++) {\n");
}

static void loop_close(Emit *e) {
  if (e->cuda) kernel_close(e);
  else fputs("      }\n  }\n", e->f);
}

static const char *unary_expr(OpKind op) {
  switch (op) {
  case OP_NEG: return "-(X)";
  case OP_SIGMOID: return "1.0f / (1.0f + expf(-(X)))";
  case OP_EXP: return "expf(X)";
  case OP_LOG: return "logf(X)";
  case OP_TANH: return "tanhf(X)";
  case OP_SQRT: return "sqrtf(X)";
  default: return NULL;
  }
}

/* tmpl with every X replaced by x. */
static const char *subst(Emit *e, const char *tmpl, const char *x) {
  size_t n = 1, lx = strlen(x);
  for (const char *t = tmpl; *t; t++) n += *t == 'X' ? lx : 1;
  char *out = arena_alloc(e->strs, n), *o = out;
  for (const char *t = tmpl; *t; t++) {
    if (*t == 'X') {
      memcpy(o, x, lx);
      o += lx;
    } else {
      *o++ = *t;
    }
  }
  *o = 0;
  return out;
}

static const char *binary_op(OpKind op) {
  return op == OP_ADD ? "+" : op == OP_SUB ? "-" : op == OP_MUL ? "*" : "/";
}

/* The stored values an elementwise expression reads (fused values are
 * expanded into their operands). */
static void leaves(Emit *e, ValId v, ValId *out, int *n) {
  const IrNode *x = N(e, v);
  if (!x->fused) {
    out[(*n)++] = v;
    return;
  }
  for (uint32_t k = 0; k < x->nin; k++) leaves(e, x->in[k], out, n);
}

static void count_leaves(Emit *e, ValId v, int *n) {
  const IrNode *x = N(e, v);
  if (!x->fused) {
    (*n)++;
    return;
  }
  for (uint32_t k = 0; k < x->nin; k++) count_leaves(e, x->in[k], n);
}

/* The C expression of value v at output position (o, j) of `out`: a load,
 * or for a fused value its own expression over its operands. */
static const char *expr_of(Emit *e, ValId v, const IrNode *out) {
  const IrNode *x = N(e, v);
  if (!x->fused) {
    int64_t inner = 0;
    IdxKind k = index_kind(x, out, &inner);
    if (k == IDX_INNER && inner != e->loop_in) k = IDX_GENERAL;
    return operand(e, v, k, out);
  }
  const char *a = expr_of(e, x->in[0], out);
  if (x->nin == 2) return S(e, "(%s %s %s)", a, binary_op((OpKind)x->op), expr_of(e, x->in[1], out));
  return S(e, "(%s)", subst(e, unary_expr((OpKind)x->op), a));
}

static void emit_elementwise(Emit *e, ValId id) {
  const IrNode *n = N(e, id);
  /* the loop nest is chosen from the loads of the whole fused expression */
  int nloads = 0;
  for (uint32_t k = 0; k < n->nin; k++) count_leaves(e, n->in[k], &nloads);
  ValId *loads = arena_alloc(e->strs, sizeof(ValId) * (size_t)(nloads + 1));
  nloads = 0;
  for (uint32_t k = 0; k < n->nin; k++) leaves(e, n->in[k], loads, &nloads);
  int64_t inner = e->loop_in = plan_loops(e, n, loads, nloads);
  const char *a = expr_of(e, n->in[0], n), *body;
  if (n->nin == 2) body = S(e, "%s %s %s", a, binary_op((OpKind)n->op), expr_of(e, n->in[1], n));
  else body = subst(e, unary_expr((OpKind)n->op), a);
  loop_open(e, numel(n), inner);
  fprintf(e->f, "        %s[o * in + j] = %s;\n", P(e, id), body);
  loop_close(e);
}

/* dst[j] += sum over o < outer of expr(o, j), for j < in: columns are
 * split in blocks of 64 among threads, rows are walked in order inside a
 * block (contiguous, vectorizable), and each column sums in double in a
 * fixed order, whatever the thread count. */
static void emit_column_sum(Emit *e, int64_t outer, int64_t in, const char *expr, const char *dst, WriteMode w) {
  if (e->cuda) {
    /* blocks of 32 columns x 32 row lanes (LAUNCH_COLS): lane y sums rows
     * y, y+32, ... in double, then lane 0 adds the 32 partial sums in
     * order, so the result does not depend on timing */
    const char *st = store(e, w, S(e, "%s[j]", dst), "(float)acc");
    kernel_begin(e, "LAUNCH_COLS", (in + 31) / 32);
    fprintf(e->f, "  __shared__ double part[32][33];\n");
    fprintf(e->f, "  const int64_t outer = %" PRId64 ", in = %" PRId64 ", j = blockIdx.x * 32 + threadIdx.x;\n", outer,
            in);
    fprintf(e->f, "  double acc = 0;\n  if (j < in)\n    for (int64_t o = threadIdx.y; o < outer; o += 32) acc += %s;\n",
            expr);
    fputs("  part[threadIdx.y][threadIdx.x] = acc;\n  __syncthreads();\n  if (threadIdx.y != 0 || j >= in) return;\n"
          "  acc = 0;\n  for (int k = 0; k < 32; k++) acc += part[k][threadIdx.x];\n", e->f);
    fprintf(e->f, "  %s\n", st);
    kernel_end(e);
    return;
  }
  fprintf(e->f, "  {\n    const int64_t outer = %" PRId64 ", in = %" PRId64 ";\n", outer, in);
  fprintf(e->f, "    #pragma omp parallel for if (outer * in >= 32768)\n");
  fprintf(e->f, "    for (int64_t jb = 0; jb < in; jb += 64) {\n");
  fprintf(e->f, "      const int64_t je = jb + 64 < in ? jb + 64 : in;\n      double acc[64] = {0};\n");
  fprintf(e->f, "      for (int64_t o = 0; o < outer; o++)\n        for (int64_t j = jb; j < je; j++) acc[j - jb] += %s;\n",
          expr);
  const char *st = store(e, w, S(e, "%s[j]", dst), "(float)acc[j - jb]");
  fprintf(e->f, "      for (int64_t j = jb; j < je; j++) %s\n    }\n  }\n", st);
}

/* gx[q] += the sum of expr over the output positions that x's element q
 * is broadcast to, for any broadcast: one thread per element of x, which
 * walks those positions in increasing order (summing in double), so the
 * result does not depend on the thread count. expr reads the flat output
 * position as o * in + j (o = 0, in = 1 here); rb counts the positions. */
static void emit_general_sum(Emit *e, ValId gx, const IrNode *x, const IrNode *out, const char *expr, WriteMode w) {
  Run runs[DST_MAX_DIMS];
  int n = broadcast_runs(x, out, runs);
  int64_t nq = numel(x), nr = numel(out) / nq;
  const char *pos = NULL;
  int last_kept = -1, last_bcast = -1;
  for (int k = 0; k < n; k++) *(runs[k].kept ? &last_kept : &last_bcast) = k;
  for (int k = 0; k < n; k++) {
    const Run *r = &runs[k];
    const char *c = coord_term(e, r->kept ? "q" : "rb", r->kept ? r->xstride : r->rstride, r->size,
                               k == (r->kept ? last_kept : last_bcast), r->ostride);
    pos = pos ? S(e, "%s + %s", pos, c) : c;
  }
  const char *st = store(e, w, S(e, "%s[q]", P(e, gx)), "(float)acc");
  if (e->cuda) {
    kernel_open(e, nq);
    fputs("    const int64_t q = t;\n", e->f);
  } else {
    fprintf(e->f, "  #pragma omp parallel for if (%" PRId64 " >= 32768)\n", numel(out));
    fprintf(e->f, "  for (int64_t q = 0; q < %" PRId64 "; q++) {\n", nq);
  }
  fprintf(e->f, "    double acc = 0;\n    for (int64_t rb = 0; rb < %" PRId64 "; rb++) {\n", nr);
  fprintf(e->f, "      const int64_t o = 0, in = 1, j = %s;\n      (void)o;\n      (void)in;\n", pos ? pos : "0");
  fprintf(e->f, "      acc += %s;\n    }\n    %s\n", expr, st);
  if (e->cuda) kernel_close(e);
  else fputs("  }\n", e->f);
}

/* grad_x += expr, where x may broadcast: when x is smaller than the output,
 * the output positions that map to one element of x are summed in a fixed
 * order by the thread that owns that element. */
static void emit_accumulate(Emit *e, ValId gx, ValId x, const IrNode *out, const char *expr, WriteMode w) {
  const IrNode *xn = N(e, x);
  int64_t inner = 0;
  IdxKind k = index_kind(xn, out, &inner);
  if (xn->op == OP_CONST) return;
  if (k == IDX_FULL && e->cuda) {
    const char *st = store(e, w, S(e, "%s[j]", P(e, gx)), expr);
    loop_open(e, numel(out), numel(out));
    fprintf(e->f, "        %s\n", st);
    loop_close(e);
    return;
  }
  if (k == IDX_FULL) {
    fprintf(e->f, "  {\n    const int64_t outer = 1, in = %" PRId64 ";\n    (void)outer;\n", numel(out));
    fprintf(e->f, "    #pragma omp parallel for if (in >= 32768)\n");
    const char *st = store(e, w, S(e, "%s[j]", P(e, gx)), expr);
    fprintf(e->f, "    for (int64_t j = 0; j < in; j++) { const int64_t o = 0; %s }\n  }\n", st);
    return;
  }
  if (k == IDX_GENERAL) {
    emit_general_sum(e, gx, xn, out, expr, w);
    return;
  }
  if (k == IDX_SCALAR) inner = 1;
  emit_column_sum(e, numel(out) / inner, inner, expr, P(e, gx), w);
}

/* The value of operand v at output position (o, j), for backward formulas. */
static const char *at(Emit *e, ValId v, const IrNode *out) {
  int64_t inner;
  IdxKind k = index_kind(N(e, v), out, &inner);
  if (k == IDX_INNER && inner == numel(out)) k = IDX_FULL;
  if (k == IDX_INNER) /* inside emit_accumulate's loop over a smaller operand,
                         the other operand may be full: index it by
                         o * in + j only when shapes agree */
    return S(e, "%s[(o * in + j) %% %" PRId64 "]", P(e, v), inner);
  return operand(e, v, k, out);
}

static void emit_elementwise_backward(Emit *e, ValId bid, const IrNode *b) {
  const IrNode *f = N(e, (ValId)b->iattr[0]);
  ValId self = (ValId)b->iattr[0];
  /* g has the output's shape: index it as the full output */
  const char *G = S(e, "%s[o * in + j]", P(e, b->in[0]));
  for (uint32_t k = 0; k < b->nout; k++) {
    ValId gx = b->out[k];
    if (!gx) continue;
    ValId x = f->in[k];
    const char *expr, *A, *B, *Y;
    switch (f->op) {
    case OP_ADD: expr = G; break;
    case OP_SUB: expr = k == 0 ? G : S(e, "-%s", G); break;
    case OP_NEG: expr = S(e, "-%s", G); break;
    case OP_MUL: expr = S(e, "%s * %s", G, at(e, f->in[1 - k], f)); break;
    case OP_DIV:
      A = at(e, f->in[0], f);
      B = at(e, f->in[1], f);
      expr = k == 0 ? S(e, "%s / %s", G, B) : S(e, "-%s * %s / (%s * %s)", G, A, B, B);
      break;
    case OP_LOG: /* the only one that reads its input */
      expr = S(e, "%s / %s", G, at(e, x, f));
      break;
    default:
      /* the others read their own output (the input may be a fused value
       * with no storage) */
      Y = S(e, "%s[o * in + j]", P(e, self));
      switch (f->op) {
      case OP_SIGMOID: expr = S(e, "%s * %s * (1.0f - %s)", G, Y, Y); break;
      case OP_TANH: expr = S(e, "%s * (1.0f - %s * %s)", G, Y, Y); break;
      case OP_EXP: expr = S(e, "%s * %s", G, Y); break;
      case OP_SQRT: expr = S(e, "%s * 0.5f / %s", G, Y); break;
      default: die("no elementwise backward for %s", op_info[f->op].name);
      }
    }
    emit_accumulate(e, gx, x, f, expr, ow(e, bid, k));
  }
}

/* ------------------------------------------------------------ matmul */

/* C (..., M, N) = op(A) op(B) [+ bias]; A is stored (..., M, K), or
 * (..., K, M) with ta; B (..., K, N), or (..., N, K) with tb. */
typedef struct {
  int64_t M, K, N;
  bool ta, tb;
  bool flat;       /* B is one matrix: all rows of A in one GEMM */
  int64_t batch, sa, sb, sc; /* batched: count and element strides */
} MatmulShape;

static bool mm_shape(Emit *e, const IrNode *n, MatmulShape *s) {
  const IrNode *a = N(e, n->in[0]), *b = N(e, n->in[1]);
  s->ta = n->iattr[0];
  s->tb = n->iattr[1];
  s->M = n->shape[n->ndim - 2];
  s->N = n->shape[n->ndim - 1];
  s->K = s->ta ? a->shape[a->ndim - 2] : a->shape[a->ndim - 1];
  int64_t ba = prod(a, 0, a->ndim - 2), bb = prod(b, 0, b->ndim - 2);
  s->sc = s->M * s->N;
  s->flat = bb == 1 && !s->ta;
  if (s->flat) {
    s->batch = 1;
    s->sa = s->sb = 0;
    s->M = prod(a, 0, a->ndim - 1); /* every row of A */
    return true;
  }
  s->batch = ba > bb ? ba : bb;
  if (!(ba == bb || ba == 1 || bb == 1)) return false;
  s->sa = ba == 1 ? 0 : s->M * s->K;
  s->sb = bb == 1 ? 0 : s->K * s->N;
  return true;
}

/* The 16-bit type of a GEMM's operands (precision.c), or DT_F32. */
static DType lowp_of(const IrNode *x) { return x->dtype == DT_BF16 || x->dtype == DT_F16 ? (DType)x->dtype : DT_F32; }

/* CUDA: declares and fills "KcMatmul mm_" (operands of type dt, an fp32
 * out, fp32 accumulation), inside a block the caller opened. */
static void emit_kc_matmul(Emit *e, DType dt, const char *c, const char *a, const char *b, int64_t M, int64_t K,
                           int64_t N, bool ta, bool tb, const char *beta, int64_t batch, int64_t sc, int64_t sa,
                           int64_t sb) {
  fprintf(e->f,
          "    KcMatmul mm_;\n    memset(&mm_, 0, sizeof mm_);\n"
          "    mm_.out = %s; mm_.a = %s; mm_.b = %s;\n"
          "    mm_.out_type = KC_DT_F32; mm_.ab_type = %s; mm_.compute = KC_COMPUTE_F32;\n"
          "    mm_.M = %" PRId64 "; mm_.K = %" PRId64 "; mm_.N = %" PRId64 "; mm_.trans_a = %s; mm_.trans_b = %s;\n"
          "    mm_.alpha = 1.0f; mm_.beta = %s; mm_.batch = %" PRId64 ";\n"
          "    mm_.stride_out = %" PRId64 "; mm_.stride_a = %" PRId64 "; mm_.stride_b = %" PRId64 ";\n",
          c, a, b, dt == DT_BF16 ? "KC_DT_BF16" : dt == DT_F16 ? "KC_DT_F16" : "KC_DT_F32", M, K, N,
          ta ? "true" : "false", tb ? "true" : "false", beta, batch, sc, sa, sb);
}

/* A GEMM on 16-bit operands a (na elements) and b (nb) with an fp32 c and
 * fp32 accumulation: cuBLASLt's mixed GEMM on CUDA; on the CPU the operands
 * are widened into the workspace and multiplied in fp32 (exact products). */
static void emit_gemm_lowp(Emit *e, DType dt, const MatmulShape *s, const char *c, const char *a, int64_t na,
                           const char *b, int64_t nb, int64_t M, int64_t K, int64_t N, bool ta, bool tb,
                           WriteMode w, int64_t sc, int64_t sa, int64_t sb, bool batched) {
  int64_t batch = batched ? s->batch : 1;
  if (!batched) sc = sa = sb = 0;
  if (e->cuda) {
    fputs("  {\n", e->f);
    emit_kc_matmul(e, dt, c, a, b, M, K, N, ta, tb, beta_of(w), batch, sc, sa, sb);
    fputs("    CHECK_KC(kc_matmul_ex(BLAS, &mm_, STREAM));\n  }\n", e->f);
    return;
  }
  fprintf(e->f,
          "  k_matmul_lowp(%s, %" PRId64 ", %s, %s, %" PRId64 ", %s, %" PRId64 ", %" PRId64 ", %" PRId64
          ", %" PRId64 ", %s, %s, %s, %" PRId64 ", %" PRId64 ", %" PRId64 ", W(%" PRId64 "));\n",
          dt == DT_BF16 ? "K_DT_BF16" : "K_DT_F16", batch, c, a, na, b, nb, M, K, N, ta ? "true" : "false",
          tb ? "true" : "false", beta_of(w), sc, sa, sb, e->lowp_work);
}

/* c (fp32) = op(a) op(b) for IR values a and b (fp32, or both 16-bit:
 * emit_gemm_lowp), written as w says. */
static void emit_gemm(Emit *e, const MatmulShape *s, const char *c, ValId av, ValId bv, int64_t M, int64_t K,
                      int64_t N, bool ta, bool tb, WriteMode w, int64_t sc, int64_t sa, int64_t sb, bool batched) {
  const char *a = P(e, av), *b = P(e, bv);
  const IrNode *an = &e->g->nodes[av], *bn = &e->g->nodes[bv]; /* (N is a size here) */
  DType dt = lowp_of(an);
  if (dt != DT_F32) {
    emit_gemm_lowp(e, dt, s, c, a, numel(an), b, numel(bn), M, K, N, ta, tb, w, sc, sa, sb, batched);
    return;
  }
  /* CUDA: cuBLASLt in full fp32, the handle first; a failure is an error */
  const char *pre = e->cuda ? "CHECK_KC(kc_" : "k_", *blas = e->cuda ? "BLAS, " : "";
  const char *post = e->cuda ? ", KC_COMPUTE_F32, STREAM))" : ")";
  if (!batched)
    fprintf(e->f, "  %smatmul(%s%s, %s, %s, %" PRId64 ", %" PRId64 ", %" PRId64 ", %s, %s, %s%s;\n", pre, blas, c, a,
            b, M, K, N, ta ? "true" : "false", tb ? "true" : "false", beta_of(w), post);
  else
    fprintf(e->f,
            "  %smatmul_batched(%s%" PRId64 ", %s, %s, %s, %" PRId64 ", %" PRId64 ", %" PRId64
            ", %s, %s, %s, %" PRId64 ", %" PRId64 ", %" PRId64 "%s;\n",
            pre, blas, s->batch, c, a, b, M, K, N, ta ? "true" : "false", tb ? "true" : "false", beta_of(w), sc, sa,
            sb, post);
}

static void emit_matmul(Emit *e, ValId id) {
  const IrNode *n = N(e, id);
  MatmulShape s;
  if (!mm_shape(e, n, &s)) {
    unsupported(e, n, "matmul with differently broadcast batch dimensions");
    return;
  }
  bool bias = n->nin == 3;
  DType dt = lowp_of(N(e, n->in[0]));
  if (bias && e->cuda && s.flat) {
    /* cuBLASLt's bias epilogue; where it has no algorithm for the case,
     * the broadcast bias and an accumulating GEMM */
    fputs("  {\n", e->f);
    emit_kc_matmul(e, dt, P(e, id), P(e, n->in[0]), P(e, n->in[1]), s.M, s.K, s.N, s.ta, s.tb, "0.0f", 1, 0, 0, 0);
    fprintf(e->f, "    mm_.epilogue = KC_EPI_BIAS; mm_.bias = %s;\n", P(e, n->in[2]));
    fputs("    int st_ = kc_matmul_ex(BLAS, &mm_, STREAM);\n    if (st_ == KC_ERR_UNSUPPORTED) {\n", e->f);
    loop_open(e, numel(n), s.N);
    fprintf(e->f, "        %s[o * in + j] = %s[j];\n", P(e, id), P(e, n->in[2]));
    loop_close(e);
    fputs("      mm_.epilogue = KC_EPI_NONE;\n      mm_.beta = 1.0f;\n"
          "      st_ = kc_matmul_ex(BLAS, &mm_, STREAM);\n    }\n    CHECK_KC(st_);\n  }\n", e->f);
    return;
  }
  if (bias && e->cuda) {
    loop_open(e, numel(n), s.N);
    fprintf(e->f, "        %s[o * in + j] = %s[j];\n", P(e, id), P(e, n->in[2]));
    loop_close(e);
  } else if (bias) { /* the bias epilogue: start from the broadcast bias */
    fprintf(e->f, "  #pragma omp parallel for if (%" PRId64 " >= 32768)\n", numel(n));
    fprintf(e->f, "  for (int64_t row = 0; row < %" PRId64 "; row++) memcpy(%s + row * %" PRId64 ", %s, %" PRId64 ");\n",
            numel(n) / s.N, P(e, id), s.N, P(e, n->in[2]), s.N * 4);
  }
  emit_gemm(e, &s, P(e, id), n->in[0], n->in[1], s.M, s.K, s.N, s.ta, s.tb, bias ? W_ADD : W_SET, s.sc, s.sa,
            s.sb, !s.flat);
}

static void emit_matmul_backward(Emit *e, ValId bid, const IrNode *bw) {
  ValId fid = (ValId)bw->iattr[0];
  const IrNode *n = N(e, fid);
  MatmulShape s;
  mm_shape(e, n, &s);
  /* the operands as the backward reads them: the forward's, or (16-bit)
   * parameters cast again; the GEMMs read the first operand, the gradient
   * (16-bit: rounded), and a 16-bit one's bias the fp32 gradient, last */
  ValId g = bw->in[0], A = bw->in[1], B = bw->in[2];
  ValId gbias = lowp_of(N(e, A)) != DT_F32 && n->nin == 3 ? bw->in[bw->nin - 1] : g;
  ValId ga = bw->out[0], gb = bw->out[1];
  bool batched = !s.flat;
  /* A shared operand (stride 0) receives the sum over the batch: the
   * batched kernel reduces when its output stride is 0. */
  if (ga) {
    WriteMode acc = ow(e, bid, 0);
    if (!s.ta) /* dA (M,K) += dC (M,N) . op(B)^T */
      emit_gemm(e, &s, P(e, ga), g, B, s.M, s.N, s.K, false, !s.tb, acc, s.sa, s.sc, s.sb, batched);
    else /* A stored (K,M): dA += op(B) (K,N) . dC^T */
      emit_gemm(e, &s, P(e, ga), B, g, s.K, s.N, s.M, s.tb, true, acc, s.sa, s.sb, s.sc, batched);
  }
  if (gb) {
    WriteMode acc = ow(e, bid, 1);
    if (!s.tb) /* dB (K,N) += op(A)^T (K,M) . dC (M,N) */
      emit_gemm(e, &s, P(e, gb), A, g, s.K, s.M, s.N, !s.ta, false, acc, s.sb, s.sa, s.sc, batched);
    else /* B stored (N,K): dB += dC^T (N,M) . op(A) (M,K) */
      emit_gemm(e, &s, P(e, gb), g, A, s.N, s.M, s.K, true, s.ta, acc, s.sb, s.sc, s.sa, batched);
  }
  if (n->nin == 3 && bw->out[2]) { /* dbias (N) += column sums of dC */
    emit_column_sum(e, numel(n) / s.N, s.N, S(e, "%s[o * in + j]", P(e, gbias)), P(e, bw->out[2]), ow(e, bid, 2));
  }
}

/* ------------------------------------------------------------ layout ops */

/* A swap of dims d0 < d1 as (A, B, C, D) -> (A, C, B, D) needs them adjacent
 * or the middle dims to be 1. */
static bool transpose_dims(const IrNode *x, int64_t d0, int64_t d1, int64_t *A, int64_t *B, int64_t *C,
                           int64_t *D) {
  if (d0 > d1) {
    int64_t t = d0;
    d0 = d1;
    d1 = t;
  }
  if (prod(x, (int)d0 + 1, (int)d1) != 1) return false;
  *A = prod(x, 0, (int)d0);
  *B = x->shape[d0];
  *C = x->shape[d1];
  *D = prod(x, (int)d1 + 1, x->ndim);
  return true;
}

static void emit_transpose(Emit *e, ValId id, bool backward, ValId gin, ValId gout) {
  const IrNode *n = N(e, id), *x = N(e, n->in[0]);
  int64_t A, B, C, D;
  if (!transpose_dims(x, n->iattr[0], n->iattr[1], &A, &B, &C, &D)) {
    unsupported(e, n, "transposing two non-adjacent dimensions");
    return;
  }
  if (!backward)
    fprintf(e->f, "  %spermute_0213(%s, %s, %" PRId64 ", %" PRId64 ", %" PRId64 ", %" PRId64 "%s);\n", kp(e), P(e, id),
            P(e, n->in[0]), A, B, C, D, ks(e));
  else
    fprintf(e->f, "  %spermute_0213_backward(%s, %s, %" PRId64 ", %" PRId64 ", %" PRId64 ", %" PRId64 "%s);\n", kp(e),
            P(e, gin), P(e, gout), A, B, C, D, ks(e));
}

/* Copies a slice [start, end) of dimension dim between x and y, in either
 * direction, adding when accumulate is set. */
static void emit_slice_copy(Emit *e, const IrNode *big, int64_t dim, int64_t start, int64_t len, const char *dst,
                            const char *src, bool to_big, bool accumulate) {
  int64_t outer = prod(big, 0, (int)dim), inner = prod(big, (int)dim + 1, big->ndim);
  int64_t bigrow = big->shape[dim] * inner, smallrow = len * inner;
  if (e->cuda) {
    loop_open(e, outer * smallrow, smallrow);
    fputs("        ", e->f);
  } else {
    fprintf(e->f, "  #pragma omp parallel for if (%" PRId64 " >= 32768)\n", outer * smallrow);
    fprintf(e->f, "  for (int64_t o = 0; o < %" PRId64 "; o++)\n", outer);
    fprintf(e->f, "    for (int64_t j = 0; j < %" PRId64 "; j++) ", smallrow);
  }
  const char *bidx = S(e, "[o * %" PRId64 " + %" PRId64 " + j]", bigrow, start * inner);
  const char *sidx = S(e, "[o * %" PRId64 " + j]", smallrow);
  fprintf(e->f, "%s%s %s %s%s;\n", dst, to_big ? bidx : sidx, accumulate ? "+=" : "=", src, to_big ? sidx : bidx);
  if (e->cuda) loop_close(e);
}

/* ------------------------------------------------------------ one node */

/* CUDA: the next id-check flag (a workspace int64_t the kernel sets to
 * KC_IDS_VALID or the first bad position), reporting `what`. */
static const char *ids_flag(Emit *e, const char *what) {
  if (e->nids >= e->ids_max) die("more id checks than planned");
  e->ids_what[e->nids] = what;
  return S(e, "(int64_t *)W(%" PRId64 ")", e->ids_work + 8 * (int64_t)e->nids++);
}

/* The seed and counter offset of dropout node id's mask: the seed mixes
 * the run's seed with a key of the node that does not depend on node
 * numbering (its layer path and its rank among the dropouts of that
 * layer), and the offset is the micro-batch's block of the stream
 * (DstRun.dropout_block), so ranks and micro-steps draw different masks
 * and a resumed run draws the same ones. */
static const char *dropout_stream(Emit *e, ValId id) {
  const IrGraph *g = e->g;
  const IrNode *n = &g->nodes[id];
  const char *path = n->path ? n->path : "";
  uint64_t h = 1469598103934665603ull;
  for (const char *c = path; *c; c++) h = (h ^ (unsigned char)*c) * 1099511628211ull;
  int ordinal = 0;
  for (ValId v = 1; v < id; v++)
    if (g->nodes[v].op == OP_DROPOUT && !strcmp(g->nodes[v].path ? g->nodes[v].path : "", path)) ordinal++;
  h = (h ^ (uint64_t)ordinal) * 1099511628211ull;
  return S(e, "r->seed ^ 0x%016" PRIx64 "ull, r->dropout_block * %" PRId64 "ull", h, numel(n));
}

/* memset of `bytes` at p, under `cond` when given. */
static void emit_zero(Emit *e, const char *cond, const char *p, int64_t bytes) {
  if (e->cuda)
    fprintf(e->f, "  %sKC_CHECK(cudaMemsetAsync(%s, 0, %" PRId64 ", STREAM));\n", cond ? cond : "", p, bytes);
  else fprintf(e->f, "  %smemset(%s, 0, %" PRId64 ");\n", cond ? cond : "", p, bytes);
}

static void emit_forward_node(Emit *e, ValId id) {
  const IrNode *n = N(e, id);
  FILE *f = e->f;
  if (n->dead || n->fused) return;
  char sh[128];
  shape_format(sh, sizeof sh, n->shape, n->ndim);
  if (n->op == OP_PARAM || n->op == OP_INPUT || n->op == OP_CONST || n->op == OP_RESHAPE || n->op == OP_AUX)
    return;
  fprintf(f, "  /* %%%u %s %s%s%s%s */\n", id, op_info[n->op].name, dtype_name((DType)n->dtype), sh,
          n->path && *n->path ? " " : "", n->path ? n->path : "");
  const IrNode *x = n->nin ? N(e, n->in[0]) : NULL;
  switch (n->op) {
  case OP_ADD: case OP_SUB: case OP_MUL: case OP_DIV: case OP_NEG: case OP_SIGMOID: case OP_EXP:
  case OP_LOG: case OP_TANH: case OP_SQRT:
    emit_elementwise(e, id);
    break;
  case OP_GELU: case OP_RELU: case OP_SILU:
    fprintf(f, "  %s%s_forward(%s, %s, %" PRId64 "%s);\n", kp(e), op_info[n->op].name, P(e, id), P(e, n->in[0]),
            numel(n), ks(e));
    break;
  case OP_ARANGE:
    if (e->cuda) {
      loop_open(e, numel(n), numel(n));
      fprintf(e->f, "        %s[j] = (int32_t)j;\n", P(e, id));
      loop_close(e);
      break;
    }
    fprintf(f, "  for (int32_t i = 0; i < %" PRId64 "; i++) %s[i] = i;\n", numel(n), P(e, id));
    break;
  case OP_MATMUL: emit_matmul(e, id); break;
  case OP_CAST:
    if (e->cuda)
      fprintf(f, "  kc_cast_f32_to_%s(%s, %s, %" PRId64 ", STREAM);\n", n->dtype == DT_BF16 ? "bf16" : "f16", P(e, id),
              P(e, n->in[0]), numel(n));
    else
      fprintf(f, "  k_cast_from_f32(%s, %s, %s, %" PRId64 ");\n", n->dtype == DT_BF16 ? "K_DT_BF16" : "K_DT_F16",
              P(e, id), P(e, n->in[0]), numel(n));
    if (x->dtype != DT_F32) unsupported(e, n, "a cast from a 16-bit value");
    break;
  case OP_TRANSPOSE: emit_transpose(e, id, false, 0, 0); break;
  case OP_SLICE:
    emit_slice_copy(e, x, n->iattr[0], n->iattr[1], n->iattr[2] - n->iattr[1], P(e, id), P(e, n->in[0]), false,
                    false);
    break;
  case OP_CONCAT: {
    int64_t start = 0, dim = n->iattr[0];
    for (uint32_t k = 0; k < n->nin; k++) {
      const IrNode *part = N(e, n->in[k]);
      emit_slice_copy(e, n, dim, start, part->shape[dim], P(e, id), P(e, n->in[k]), true, false);
      start += part->shape[dim];
    }
    break;
  }
  case OP_SUM: case OP_MEAN: case OP_MAX: {
    int64_t outer = 1, dim = numel(x), inner = 1;
    if (!n->iattr[2]) {
      outer = prod(x, 0, (int)n->iattr[0]);
      dim = x->shape[n->iattr[0]];
      inner = prod(x, (int)n->iattr[0] + 1, x->ndim);
    }
    fprintf(f, "  %sreduce_%s_forward(%s, %s, %" PRId64 ", %" PRId64 ", %" PRId64 "%s);\n", kp(e),
            op_info[n->op].name, P(e, id), P(e, n->in[0]), outer, dim, inner, ks(e));
    break;
  }
  case OP_SOFTMAX:
    fprintf(f, "  %ssoftmax_forward(%s, %s, %" PRId64 ", %" PRId64 "%s);\n", kp(e), P(e, id), P(e, n->in[0]),
            numel(n) / last(n), last(n), ks(e));
    break;
  case OP_LAYERNORM:
    fprintf(f, "  %slayernorm_forward(%s, %s, %s, %s, %s, %s, %" PRId64 ", %" PRId64 ", %s%s);\n", kp(e), P(e, id),
            n->nout ? P(e, n->out[0]) : "NULL", n->nout ? P(e, n->out[1]) : "NULL", P(e, n->in[0]),
            P(e, n->in[1]), n->nin > 2 ? P(e, n->in[2]) : "NULL", numel(n) / last(n), last(n), fl(e, n->fattr[0]),
            ks(e));
    break;
  case OP_RMSNORM:
    fprintf(f, "  %srmsnorm_forward(%s, %s, %s, %s, %" PRId64 ", %" PRId64 ", %s%s);\n", kp(e), P(e, id),
            n->nout ? P(e, n->out[0]) : "NULL", P(e, n->in[0]), P(e, n->in[1]), numel(n) / last(n), last(n),
            fl(e, n->fattr[0]), ks(e));
    break;
  case OP_EMBEDDING: {
    const IrNode *t = N(e, n->in[1]);
    if (e->cuda) {
      fprintf(f, "  kc_embedding_forward(%s, %s, %s, %" PRId64 ", %" PRId64 ", %" PRId64 ", %s, STREAM);\n", P(e, id),
              P(e, n->in[0]), P(e, n->in[1]), numel(x), t->shape[0], t->shape[1],
              ids_flag(e, "token id outside the embedding table"));
      break;
    }
    fprintf(f, "  CHECK_IDS(k_embedding_forward(%s, %s, %s, %" PRId64 ", %" PRId64 ", %" PRId64 "), \"%s\");\n",
            P(e, id), P(e, n->in[0]), P(e, n->in[1]), numel(x), t->shape[0], t->shape[1],
            "token id outside the embedding table");
    break;
  }
  case OP_ATTENTION: {
    const IrNode *k = N(e, n->in[1]);
    fprintf(f,
            "  %s(%sattention_forward(%s, %s, %s, %s, %s, %" PRId64 ", %" PRId64 ", %" PRId64 ", %" PRId64
            ", %" PRId64 ", %s%s));\n",
            e->cuda ? "CHECK_KC" : "CHECK_MEM", kp(e), P(e, id), n->nout ? P(e, n->out[0]) : "r->lse_scratch",
            P(e, n->in[0]), P(e, n->in[1]), P(e, n->in[2]), x->shape[0], x->shape[1], k->shape[1], x->shape[2],
            x->shape[3], n->iattr[0] ? "true" : "false", ks(e));
    if (!n->nout) unsupported(e, n, "attention outside a differentiated graph");
    if (e->cuda && x->shape[3] > CUDA_MAX_HEAD_DIM) {
      unsupported(e, n, S(e, "attention with head dimension %" PRId64 " (at most %d)", x->shape[3],
                          CUDA_MAX_HEAD_DIM));
    }
    break;
  }
  case OP_ROPE: {
    int64_t T = x->shape[x->ndim - 2], D = last(x);
    fprintf(f, "  %srope_forward(%s, %s, %" PRId64 ", 1, %" PRId64 ", %" PRId64 ", %s%s);\n", kp(e), P(e, id),
            P(e, n->in[0]), numel(x) / (T * D), T, D, fl(e, n->fattr[0]), ks(e));
    break;
  }
  case OP_DROPOUT:
    fprintf(f, "  %sdropout_forward(%s, %s, %" PRId64 ", r->training ? %s : 0.0f, %s%s);\n", kp(e), P(e, id),
            P(e, n->in[0]), numel(n), fl(e, n->fattr[0]), dropout_stream(e, id), ks(e));
    break;
  case OP_CROSS_ENTROPY: {
    const IrNode *t = N(e, n->in[1]);
    if (e->cuda) { /* the per-row losses, then their mean (summed in double) */
      fprintf(f, "  kc_crossentropy_forward(NULL, W(%" PRId64 "), NULL, %s, %s, %" PRId64 ", %" PRId64 ", %s, STREAM);\n",
              e->ce_work, P(e, n->in[0]), P(e, n->in[1]), numel(t), last(x),
              ids_flag(e, "target id outside the classes"));
      fprintf(f, "  kc_reduce_mean_forward(%s, W(%" PRId64 "), 1, %" PRId64 ", 1, STREAM);\n", P(e, id), e->ce_work,
              numel(t));
      break;
    }
    fprintf(f, "  {\n    double mean;\n");
    fprintf(f, "    CHECK_IDS(k_crossentropy_forward(&mean, W(%" PRId64 "), NULL, %s, %s, %" PRId64 ", %" PRId64
               "), \"target id outside the classes\");\n",
            e->ce_work, P(e, n->in[0]), P(e, n->in[1]), numel(t), last(x));
    fprintf(f, "    %s[0] = (float)mean;\n  }\n", P(e, id));
    break;
  }
  case OP_GRAD: {
    if (e->nozero[id]) break; /* its first writer overwrites it */
    if (n->iattr[1] && e->cuda) fprintf(f, "  kc_fill(%s, 1.0f, 1, STREAM);\n", P(e, id));
    else if (n->iattr[1]) fprintf(f, "  %s[0] = 1.0f;\n", P(e, id));
    else if (e->m->cat[id] == MEM_GRADS) /* kept across accumulation micro-steps */
      emit_zero(e, "if (!r->acc) ", P(e, id), memplan_bytes(n));
    else emit_zero(e, NULL, P(e, id), memplan_bytes(n));
    break;
  }
  default: unsupported(e, n, op_info[n->op].name);
  }
}

/* CUDA: the kernel scratch of the norm and attention backward kernels, one
 * workspace region for all of them (they run in order on one stream).
 * Its size repeats k_cuda.h's *_scratch_bytes formulas (kc_norm.cu: fp32
 * partial sums of (C) per chunk of rows, 2 arrays for layernorm, 1 for
 * rmsnorm; kc_attention.cu: one float per (B,Hq,T) row); the generated code
 * checks the library's own figure before each call (scratch_guard). */
static int64_t scratch_need(const char *kernel, int64_t rows, int64_t cols) {
  if (rows <= 0 || cols <= 0) return 0;
  if (!strcmp(kernel, "attention")) return rows * cols * 4; /* rows B*Hq, cols T */
  int64_t chunk = (rows + 127) / 128;
  if (chunk < 32) chunk = 32;
  int64_t chunks = (rows + chunk - 1) / chunk;
  return (!strcmp(kernel, "layernorm") ? 2 : 1) * chunks * cols * 4;
}

static void plan_scratch(Emit *e) {
  const IrGraph *g = e->g;
  e->scratch_bytes = 0;
  for (int i = g->nforward + 1; i < g->n; i++) {
    const IrNode *b = &g->nodes[i];
    if (b->op != OP_BACKWARD) continue;
    const IrNode *n = &g->nodes[b->iattr[0]], *x = n->nin ? &g->nodes[n->in[0]] : NULL;
    int64_t need = 0;
    if (n->op == OP_LAYERNORM) need = scratch_need("layernorm", numel(n) / last(n), last(n));
    else if (n->op == OP_RMSNORM) need = scratch_need("rmsnorm", numel(n) / last(n), last(n));
    else if (n->op == OP_ATTENTION) need = scratch_need("attention", x->shape[0] * x->shape[1], x->shape[2]);
    if (need > e->scratch_bytes) e->scratch_bytes = need;
  }
}

/* CUDA: "if (SCRATCH_OK(kc_K_backward_scratch_bytes(ARGS)))" before a
 * call that takes scratch_arg(), whose planned need is `need`; C: nothing. */
static void scratch_guard(Emit *e, const char *kernel, int64_t need, const char *args) {
  if (!e->cuda) return;
  if (need > e->scratch_bytes) die("kernel scratch larger than planned");
  fprintf(e->f, "  if (SCRATCH_OK(kc_%s_backward_scratch_bytes(%s)))\n  ", kernel, args);
}

static const char *scratch_arg(Emit *e) {
  return e->cuda ? S(e, ", W(%" PRId64 ")", e->scratch_work) : "";
}

static void emit_backward_node(Emit *e, ValId bid) {
  const IrNode *b = N(e, bid);
  ValId fid = (ValId)b->iattr[0];
  const IrNode *n = N(e, fid);
  const IrNode *x = n->nin ? N(e, n->in[0]) : NULL;
  FILE *f = e->f;
  const char *g = P(e, b->in[0]);
  char args[96]; /* of a *_scratch_bytes call */
#define OUT(k) (b->out[k] ? P(e, b->out[k]) : "NULL")
  fprintf(f, "  /* %%%u backward of %%%u %s%s%s */\n", bid, fid, op_info[n->op].name, n->path && *n->path ? " " : "",
          n->path ? n->path : "");
  switch (n->op) {
  case OP_ADD: case OP_SUB: case OP_MUL: case OP_DIV: case OP_NEG: case OP_SIGMOID: case OP_EXP:
  case OP_LOG: case OP_TANH: case OP_SQRT:
    emit_elementwise_backward(e, bid, b);
    break;
  case OP_GELU: case OP_RELU: case OP_SILU:
    if (b->out[0])
      fprintf(f, "  %s%s_backward(%s, %s, %s, %" PRId64 "%s);\n", kp(e), op_info[n->op].name, OUT(0), P(e, n->in[0]),
              g, numel(n), ks(e));
    break;
  case OP_MATMUL: emit_matmul_backward(e, bid, b); break;
  case OP_TRANSPOSE:
    if (b->out[0]) emit_transpose(e, fid, true, b->out[0], b->in[0]);
    break;
  case OP_RESHAPE:
    if (b->out[0]) {
      WriteMode w = ow(e, bid, 0);
      if (w == W_SET_FIRST) fputs("  if (r->acc)", f);
      if (w != W_SET) fprintf(f, "  %saxpy(%s, 1.0f, %s, %" PRId64 "%s);\n", kp(e), OUT(0), g, numel(n), ks(e));
      if (w == W_SET_FIRST) fputs("  else", f);
      if (w != W_ADD && e->cuda)
        fprintf(f, "  KC_CHECK(cudaMemcpyAsync(%s, %s, %" PRId64 ", cudaMemcpyDeviceToDevice, STREAM));\n", OUT(0), g,
                memplan_bytes(n));
      else if (w != W_ADD) fprintf(f, "  memcpy(%s, %s, %" PRId64 ");\n", OUT(0), g, memplan_bytes(n));
    }
    break;
  case OP_SLICE:
    if (b->out[0])
      emit_slice_copy(e, x, n->iattr[0], n->iattr[1], n->iattr[2] - n->iattr[1], OUT(0), g, true, true);
    break;
  case OP_CONCAT: {
    int64_t start = 0, dim = n->iattr[0];
    for (uint32_t k = 0; k < n->nin; k++) {
      const IrNode *part = N(e, n->in[k]);
      if (b->out[k]) emit_slice_copy(e, n, dim, start, part->shape[dim], OUT(k), g, false, true);
      start += part->shape[dim];
    }
    break;
  }
  case OP_SUM: case OP_MEAN: case OP_MAX: {
    int64_t outer = 1, dim = numel(x), inner = 1;
    if (!n->iattr[2]) {
      outer = prod(x, 0, (int)n->iattr[0]);
      dim = x->shape[n->iattr[0]];
      inner = prod(x, (int)n->iattr[0] + 1, x->ndim);
    }
    if (!b->out[0]) break;
    if (n->op == OP_MAX)
      fprintf(f, "  %sreduce_max_backward(%s, %s, %s, %" PRId64 ", %" PRId64 ", %" PRId64 "%s);\n", kp(e), OUT(0), g,
              P(e, n->in[0]), outer, dim, inner, ks(e));
    else
      fprintf(f, "  %sreduce_%s_backward(%s, %s, %" PRId64 ", %" PRId64 ", %" PRId64 "%s);\n", kp(e),
              op_info[n->op].name, OUT(0), g, outer, dim, inner, ks(e));
    break;
  }
  case OP_SOFTMAX:
    if (b->out[0])
      fprintf(f, "  %ssoftmax_backward(%s, %s, %s, %" PRId64 ", %" PRId64 "%s);\n", kp(e), OUT(0), g, P(e, fid),
              numel(n) / last(n), last(n), ks(e));
    break;
  case OP_LAYERNORM:
    snprintf(args, sizeof args, "%" PRId64 ", %" PRId64, numel(n) / last(n), last(n));
    scratch_guard(e, "layernorm", scratch_need("layernorm", numel(n) / last(n), last(n)), args);
    fprintf(f, "  %slayernorm_backward(%s, %s, %s, %s, %s, %s, %s, %s, %" PRId64 ", %" PRId64 "%s%s);\n", kp(e), OUT(0),
            OUT(1), n->nin > 2 ? OUT(2) : "NULL", g, P(e, n->in[0]), P(e, n->in[1]), P(e, n->out[0]),
            P(e, n->out[1]), numel(n) / last(n), last(n), scratch_arg(e), ks(e));
    break;
  case OP_RMSNORM:
    snprintf(args, sizeof args, "%" PRId64 ", %" PRId64, numel(n) / last(n), last(n));
    scratch_guard(e, "rmsnorm", scratch_need("rmsnorm", numel(n) / last(n), last(n)), args);
    fprintf(f, "  %srmsnorm_backward(%s, %s, %s, %s, %s, %s, %" PRId64 ", %" PRId64 "%s%s);\n", kp(e), OUT(0), OUT(1),
            g, P(e, n->in[0]), P(e, n->in[1]), P(e, n->out[0]), numel(n) / last(n), last(n), scratch_arg(e), ks(e));
    break;
  case OP_EMBEDDING: {
    const IrNode *t = N(e, n->in[1]);
    /* CUDA: the ids were checked in forward (NULL: no flag) */
    if (b->out[1])
      fprintf(f, "  %sembedding_backward(%s, %s, %s, %" PRId64 ", %" PRId64 ", %" PRId64 "%s);\n", kp(e), OUT(1), g,
              P(e, n->in[0]), numel(x), t->shape[0], t->shape[1], e->cuda ? ", NULL, STREAM" : "");
    break;
  }
  case OP_ATTENTION: {
    const IrNode *k = N(e, n->in[1]);
    /* the kernel needs all three gradient buffers */
    if (!b->out[0] || !b->out[1] || !b->out[2]) {
      unsupported(e, n, "attention where only some of q, k, v need gradients");
      break;
    }
    snprintf(args, sizeof args, "%" PRId64 ", %" PRId64 ", %" PRId64, x->shape[0], x->shape[1], x->shape[2]);
    scratch_guard(e, "attention", scratch_need("attention", x->shape[0] * x->shape[1], x->shape[2]), args);
    fprintf(f,
            "  %s(%sattention_backward(%s, %s, %s, %s, %s, %s, %s, %s, %s, %" PRId64 ", %" PRId64 ", %" PRId64
            ", %" PRId64 ", %" PRId64 ", %s%s%s));\n",
            e->cuda ? "CHECK_KC" : "CHECK_MEM", kp(e), OUT(0), OUT(1), OUT(2), g, P(e, n->in[0]), P(e, n->in[1]),
            P(e, n->in[2]), P(e, fid), P(e, n->out[0]), x->shape[0], x->shape[1], k->shape[1], x->shape[2],
            x->shape[3], n->iattr[0] ? "true" : "false", scratch_arg(e), ks(e));
    break;
  }
  case OP_ROPE: {
    int64_t T = x->shape[x->ndim - 2], D = last(x);
    if (b->out[0])
      fprintf(f, "  %srope_backward(%s, %s, %" PRId64 ", 1, %" PRId64 ", %" PRId64 ", %s%s);\n", kp(e), OUT(0), g,
              numel(x) / (T * D), T, D, fl(e, n->fattr[0]), ks(e));
    break;
  }
  case OP_DROPOUT:
    if (b->out[0])
      fprintf(f, "  %sdropout_backward(%s, %s, %" PRId64 ", r->training ? %s : 0.0f, %s%s);\n", kp(e), OUT(0), g,
              numel(n), fl(e, n->fattr[0]), dropout_stream(e, fid), ks(e));
    break;
  case OP_CROSS_ENTROPY: {
    const IrNode *t = N(e, n->in[1]);
    int64_t rows = numel(t);
    if (!b->out[0]) break;
    if (e->cuda) { /* dloss (rows) in the workspace, then the kernel */
      int64_t dloss = e->ce_work + ((rows * 4 + 63) / 64) * 64;
      loop_open(e, rows, rows);
      fprintf(e->f, "        W(%" PRId64 ")[j] = %s[0] / %" PRId64 ".0f;\n", dloss, g, rows);
      loop_close(e);
      fprintf(f, "  kc_crossentropy_backward(%s, %s, %s, W(%" PRId64 "), %" PRId64 ", %" PRId64 ", NULL, STREAM);\n",
              OUT(0), P(e, n->in[0]), P(e, n->in[1]), dloss, rows, last(x));
      break;
    }
    fprintf(f, "  {\n    float *dloss = W(%" PRId64 ");\n", e->ce_work + ((rows * 4 + 63) / 64) * 64);
    fprintf(f, "    for (int64_t i = 0; i < %" PRId64 "; i++) dloss[i] = %s[0] / %" PRId64 ".0f;\n", rows, g, rows);
    fprintf(f, "    k_crossentropy_backward(%s, %s, %s, dloss, %" PRId64 ", %" PRId64 ");\n  }\n", OUT(0),
            P(e, n->in[0]), P(e, n->in[1]), rows, last(x));
    break;
  }
  default: unsupported(e, n, "the backward of this operation");
  }
#undef OUT
}

/* ------------------------------------------------------------ the file */

static void emit_string(FILE *f, const char *s) {
  fputc('"', f);
  for (; *s; s++) {
    unsigned char c = (unsigned char)*s;
    if (c == '"' || c == '\\') fprintf(f, "\\%c", c);
    else if (c < 0x20 || c >= 0x7f) fprintf(f, "\\%03o", c);
    else fputc(c, f);
  }
  fputc('"', f);
}

/* Forward + backward FLOPs per step: 2 per multiply-add in forward, twice
 * that in backward, for matmuls and attention (the rest is negligible). */
static double step_flops(const IrGraph *g) {
  double fl = 0;
  for (int i = 1; i <= g->nforward; i++) {
    const IrNode *n = &g->nodes[i];
    if (n->dead) continue;
    if (n->op == OP_MATMUL) {
      const IrNode *a = &g->nodes[n->in[0]];
      fl += 6.0 * (double)ir_numel(n) * (double)a->shape[a->ndim - (n->iattr[0] ? 2 : 1)];
    } else if (n->op == OP_ATTENTION) {
      const IrNode *q = &g->nodes[n->in[0]];
      double B = (double)q->shape[0], H = (double)q->shape[1], T = (double)q->shape[2], D = (double)q->shape[3];
      double fwd = 4.0 * B * H * T * T * D * (n->iattr[0] ? 0.5 : 1.0);
      fl += 3.0 * fwd;
    }
  }
  return fl;
}

/* The ids input v may hold: the smallest embedding table or class count
 * of the ops that read it as ids (through views), 0 when none does. The
 * program checks its data against it before training. */
static int64_t input_id_limit(const IrGraph *g, ValId v) {
  int64_t limit = 0;
  for (int i = 1; i <= g->nforward; i++) {
    const IrNode *n = &g->nodes[i];
    if (n->dead || (n->op != OP_EMBEDDING && n->op != OP_CROSS_ENTROPY)) continue;
    ValId ids = n->op == OP_EMBEDDING ? n->in[0] : n->in[1];
    while (g->nodes[ids].op == OP_RESHAPE) ids = g->nodes[ids].in[0];
    if (ids != v) continue;
    const IrNode *t = &g->nodes[n->op == OP_EMBEDDING ? n->in[1] : n->in[0]];
    int64_t k = n->op == OP_EMBEDDING ? t->shape[0] : t->shape[t->ndim - 1];
    if (!limit || k < limit) limit = k;
  }
  return limit;
}

typedef struct {
  ValId param;
  int last; /* the last backward node writing its gradient */
} Ready;

static int by_last(const void *a, const void *b) {
  const Ready *x = a, *y = b;
  return x->last != y->last ? (x->last > y->last) - (x->last < y->last) : (x->param > y->param) - (x->param < y->param);
}

/* ZeRO-2/3: the buckets become the partition units of the parameter slab,
 * and parameters no gradient reaches get units of their own, so that every
 * parameter belongs to exactly one unit (each rank owns 1/dp of every unit:
 * its optimizer state, its reduced gradients and, at stage 3, its only copy
 * of the parameters). */
static void plan_units(Emit *e, int64_t cap) {
  const IrGraph *g = e->g;
  const int64_t(*b)[2] = (const int64_t(*)[2])e->buckets;
  int64_t lo = 0, hi = 0;
  for (int i = 0; i <= g->nparams; i++) {
    int64_t off = 0, end = 0;
    bool covered = true;
    if (i < g->nparams) {
      off = e->m->offset[g->params[i]];
      end = (off + memplan_bytes(&g->nodes[g->params[i]]) + 63) / 64 * 64;
      covered = false;
      for (int k = 0; k < e->nbuckets && !covered; k++) covered = off >= b[k][0] && off < b[k][0] + b[k][1];
    }
    if (hi > lo && (covered || off != hi || (end - lo) > cap)) {
      e->buckets[e->nbuckets][0] = lo;
      e->buckets[e->nbuckets][1] = hi - lo;
      e->nbuckets++;
      lo = hi = 0;
    }
    if (covered) continue;
    if (hi == lo) lo = off;
    hi = end;
  }
  e->by_lo = malloc(sizeof(int) * (size_t)(e->nbuckets + 1));
  if (!e->by_lo) die("out of memory");
  for (int i = 0; i < e->nbuckets; i++) { /* insertion sort: units are few */
    int j = i;
    for (; j > 0 && e->buckets[e->by_lo[j - 1]][0] > e->buckets[i][0]; j--) e->by_lo[j] = e->by_lo[j - 1];
    e->by_lo[j] = i;
  }
}

/* Gradient buckets for data parallelism: parameters in the order their
 * gradients become final in the backward pass, grouped while they stay
 * contiguous in the slab and under bucket_mb; each bucket is reduced as soon
 * as its last gradient is written (overlapping the rest of the backward). */
static void plan_buckets(Emit *e, const Program *p) {
  const IrGraph *g = e->g;
  e->bucket_at = malloc(sizeof(int) * (size_t)g->n);
  e->bucket_cnt = calloc((size_t)g->n, sizeof(int));
  if (!e->bucket_at || !e->bucket_cnt) die("out of memory");
  for (int i = 0; i < g->n; i++) e->bucket_at[i] = -1;
  e->nbuckets = 0;
  if (p->par.dp.i <= 1 || !g->grad_of) return;
  /* without overlap, gradients are reduced in one piece after the backward
   * pass (ZeRO-2/3 still need their units, reduced one by one) */
  if (!p->par.overlap_comm.i && !e->zgrads) return;
  int *last = calloc((size_t)g->n, sizeof(int));
  Ready *r = malloc(sizeof(Ready) * (size_t)(g->nparams + 1));
  e->buckets = malloc(sizeof *e->buckets * (size_t)(g->nparams + 1));
  if (!last || !r || !e->buckets) die("out of memory");
  for (int i = g->nforward + 1; i < g->n; i++) {
    const IrNode *b = &g->nodes[i];
    if (b->op != OP_BACKWARD) continue;
    for (uint32_t k = 0; k < b->nout; k++)
      if (b->out[k]) last[b->out[k]] = i;
  }
  int nr = 0;
  for (int i = 0; i < g->nparams; i++) {
    ValId gr = g->grad_of[g->params[i]];
    if (gr && last[gr]) r[nr++] = (Ready){g->params[i], last[gr]};
  }
  qsort(r, (size_t)nr, sizeof *r, by_last);
  int64_t cap = (int64_t)(p->par.bucket_mb.f * (1 << 20));
  int64_t lo = 0, hi = 0;
  int at = -1;
  for (int i = 0; i <= nr; i++) {
    int64_t off = i < nr ? e->m->offset[r[i].param] : 0;
    int64_t end = i < nr ? off + memplan_bytes(&g->nodes[r[i].param]) : 0;
    int64_t aend = (end + 63) / 64 * 64;
    bool adjacent = hi > lo && (off == hi || aend == lo);
    if (i == nr || (hi > lo && (!adjacent || (hi - lo) + (aend - off) > cap))) {
      if (hi > lo) {
        e->buckets[e->nbuckets][0] = lo;
        e->buckets[e->nbuckets][1] = hi - lo;
        /* buckets are made in completion order, so those completing at the
         * same node are consecutive */
        if (!e->bucket_cnt[at]) e->bucket_at[at] = e->nbuckets;
        e->bucket_cnt[at]++;
        e->nbuckets++;
      }
      lo = hi = 0;
      if (i == nr) break;
    }
    if (hi == lo) {
      lo = off;
      hi = aend;
    } else if (off == hi) {
      hi = aend;
    } else {
      lo = off;
    }
    at = r[i].last;
  }
  free(last);
  free(r);
  if (e->zgrads) plan_units(e, cap);
}

/* Whether a backward rule can overwrite operand k's gradient instead of
 * adding to it: it must write every element of it, in code we generate or
 * through a GEMM whose beta we choose. */
static bool can_overwrite(const IrNode *fwd, uint32_t k) {
  switch (fwd->op) {
  case OP_MATMUL: return k <= 2;
  case OP_RESHAPE: case OP_ADD: case OP_SUB: case OP_MUL: case OP_DIV: case OP_NEG: case OP_SIGMOID:
  case OP_EXP: case OP_LOG: case OP_TANH: case OP_SQRT:
    return true;
  default: return false;
  }
}

/* A gradient (of an activation or a parameter) is zeroed before its first
 * write only when that write adds: where the first writer can overwrite,
 * the memset goes. Every step writes every gradient this way, so the
 * program never clears the whole gradient slab. */
static void plan_overwrites(Emit *e) {
  const IrGraph *g = e->g;
  e->ow = calloc((size_t)g->n, 1);
  e->nozero = calloc((size_t)g->n, sizeof(bool));
  bool *seen = calloc((size_t)g->n, sizeof(bool));
  if (!e->ow || !e->nozero || !seen) die("out of memory");
  for (int i = g->nforward + 1; i < g->n; i++) {
    const IrNode *b = &g->nodes[i];
    if (b->op != OP_BACKWARD) continue;
    const IrNode *fwd = &g->nodes[b->iattr[0]];
    for (uint32_t k = 0; k < b->nout; k++) {
      ValId v = b->out[k];
      if (!v || seen[v]) continue;
      seen[v] = true;
      const IrNode *gv = &g->nodes[v];
      bool planned = e->m->cat[v] == MEM_ACTIVATIONS || e->m->cat[v] == MEM_GRADS;
      if (!planned || gv->iattr[1] || !can_overwrite(fwd, k) || k >= 8) continue;
      e->ow[i] |= (uint8_t)(1u << k);
      e->nozero[v] = true;
    }
  }
  free(seen);
}

/* One node's generated code (inside a block that, when the program profiles
 * with --profile, adds its time to a profile slot), and the partition units
 * it references. Nodes with no code (views, fused values) get none. */
typedef struct {
  char *code;
  int *pu, *gu; /* units whose parameters / gradients the code addresses */
  int npu, ngu;
} Chunk;

static int *dup_ints(const int *x, int n) {
  if (!n) return NULL;
  int *y = malloc(sizeof(int) * (size_t)n);
  if (!y) die("out of memory");
  memcpy(y, x, sizeof(int) * (size_t)n);
  return y;
}

static Chunk capture(Emit *e, ValId id, int slot) {
  Chunk c = {0};
  FILE *real = e->f;
  char *buf = NULL;
  size_t len = 0;
  FILE *mem = open_memstream(&buf, &len);
  if (!mem) die("out of memory");
  e->f = mem;
  e->node = id;
  e->nkern = 0;
  e->stamp++;
  e->nrefs_p = e->nrefs_g = 0;
  if (e->g->nodes[id].op == OP_BACKWARD) emit_backward_node(e, id);
  else emit_forward_node(e, id);
  fclose(mem);
  e->f = real;
  if (len) {
    size_t sz = len + 64;
    c.code = malloc(sz);
    if (!c.code) die("out of memory");
    snprintf(c.code, sz, "  { PROF_BEGIN();\n%s  PROF_END(%d); }\n", buf, slot);
  }
  free(buf);
  c.pu = dup_ints(e->refs_p, e->nrefs_p);
  c.npu = e->nrefs_p;
  c.gu = dup_ints(e->refs_g, e->nrefs_g);
  c.ngu = e->nrefs_g;
  return c;
}

/* ZeRO-2/3 schedule: where each unit is first and last referenced in the
 * forward and backward code, the order the runtime fetches parameter units
 * in, and a simulation of the runtime's buffer policy that gives the peak
 * bytes of gathered parameters and of unreduced gradients (the runtime
 * follows the same policy, so the plan is what it allocates):
 *  - a parameter unit is gathered at its first use in a pass, or earlier as
 *    the prefetch of the unit fetched just before it, and released after
 *    its last use in that pass;
 *  - a gradient unit's buffer exists from its first write until its
 *    reduce-scatter has finished; at most ZERO_INFLIGHT reduce-scatters are
 *    in flight (a later one waits for the oldest), and all have finished
 *    when the backward pass ends. */
enum { ZERO_INFLIGHT = 2 }; /* 0 with overlap_comm = false: each waits at once */
typedef struct {
  int *first_f, *last_f, *first_b, *last_b, *first_g, *last_g; /* node ids; 0: none */
  int *fetch, nfetch_fwd, nfetch, cursor;
  bool *held;
  int *inflight, ninflight;
  int64_t plive, ppeak, glive, gpeak;
} ZeroSched;

static int64_t unit_buf_bytes(const Emit *e, int u) {
  int64_t n = e->buckets[u][1] / 4, c = (n + e->world - 1) / e->world;
  return c * e->world * 4;
}

static void zero_sched_plan(Emit *e, ZeroSched *z, const Chunk *ch) {
  const IrGraph *g = e->g;
  int U = e->nbuckets;
  int **arrs[] = {&z->first_f, &z->last_f, &z->first_b, &z->last_b, &z->first_g, &z->last_g, &z->inflight};
  for (size_t k = 0; k < sizeof arrs / sizeof arrs[0]; k++)
    if (!(*arrs[k] = calloc((size_t)U + 1, sizeof(int)))) die("out of memory");
  z->fetch = calloc(2 * (size_t)U + 1, sizeof(int));
  z->held = calloc((size_t)U + 1, sizeof(bool));
  if (!z->fetch || !z->held) die("out of memory");
  for (int i = 1; i < g->n; i++) {
    bool fwd = i <= g->nforward;
    for (int k = 0; k < ch[i].npu; k++) {
      int u = ch[i].pu[k];
      int *first = fwd ? z->first_f : z->first_b, *last = fwd ? z->last_f : z->last_b;
      if (!first[u]) first[u] = i;
      last[u] = i;
    }
    for (int k = 0; k < ch[i].ngu; k++) {
      int u = ch[i].gu[k];
      if (!z->first_g[u]) z->first_g[u] = i;
      z->last_g[u] = i;
    }
  }
  for (int i = 1; i < g->n; i++) {
    if (i == g->nforward + 1) z->nfetch_fwd = z->nfetch;
    const int *first = i <= g->nforward ? z->first_f : z->first_b;
    for (int k = 0; k < ch[i].npu; k++)
      if (first[ch[i].pu[k]] == i) z->fetch[z->nfetch++] = ch[i].pu[k];
  }
  if (g->n <= g->nforward + 1) z->nfetch_fwd = z->nfetch;
}

/* The runtime's DST_ZERO_* events (dst_model.h), in its order. */
enum { Z_NEED, Z_DONE, Z_GRAD_BEGIN, Z_GRAD_READY };
static const char *const zero_event[] = {"DST_ZERO_NEED", "DST_ZERO_DONE", "DST_ZERO_GRAD_BEGIN",
                                         "DST_ZERO_GRAD_READY"};

static void zero_hook(Emit *e, ZeroSched *z, int kind, int u) {
  fprintf(e->f, "  r->zero_hook(r, %s, %d);\n", zero_event[kind], u);
  if (kind == Z_NEED) {
    int end = z->cursor < z->nfetch_fwd ? z->nfetch_fwd : z->nfetch;
    int next = z->cursor + 1 < end ? z->fetch[z->cursor + 1] : -1;
    z->cursor++;
    for (int k = 0; k < 2; k++) {
      int v = k ? next : u;
      if (v < 0 || z->held[v]) continue;
      z->held[v] = true;
      z->plive += unit_buf_bytes(e, v);
    }
    if (z->plive > z->ppeak) z->ppeak = z->plive;
  } else if (kind == Z_DONE) {
    z->held[u] = false;
    z->plive -= unit_buf_bytes(e, u);
  } else if (kind == Z_GRAD_BEGIN) {
    z->glive += unit_buf_bytes(e, u);
    if (z->glive > z->gpeak) z->gpeak = z->glive;
  } else { /* Z_GRAD_READY */
    z->inflight[z->ninflight++] = u;
    if (z->ninflight > e->zero_inflight) {
      z->glive -= unit_buf_bytes(e, z->inflight[0]);
      memmove(z->inflight, z->inflight + 1, sizeof(int) * (size_t)--z->ninflight);
    }
  }
}

/* Writes node i's code between the hooks of the units it starts and ends. */
static void write_chunk(Emit *e, ZeroSched *z, const Chunk *c, int i) {
  bool fwd = i <= e->g->nforward;
  if (z) {
    const int *first = fwd ? z->first_f : z->first_b;
    for (int k = 0; k < c->npu; k++)
      if (first[c->pu[k]] == i) zero_hook(e, z, Z_NEED, c->pu[k]);
    for (int k = 0; k < c->ngu; k++)
      if (z->first_g[c->gu[k]] == i) zero_hook(e, z, Z_GRAD_BEGIN, c->gu[k]);
  }
  if (c->code) fputs(c->code, e->f);
  if (z) {
    const int *last = fwd ? z->last_f : z->last_b;
    for (int k = 0; k < c->npu; k++)
      if (last[c->pu[k]] == i) zero_hook(e, z, Z_DONE, c->pu[k]);
    for (int k = 0; k < c->ngu; k++)
      if (z->last_g[c->gu[k]] == i) zero_hook(e, z, Z_GRAD_READY, c->gu[k]);
  }
}

static void zero_sched_free(ZeroSched *z) {
  free(z->first_f);
  free(z->last_f);
  free(z->first_b);
  free(z->last_b);
  free(z->first_g);
  free(z->last_g);
  free(z->inflight);
  free(z->fetch);
  free(z->held);
}

/* The text of the generated file before the tables: includes and the
 * addressing macros, per backend. */
static const char c_prelude[] =
    "#include <math.h>\n#include <stdint.h>\n#include <string.h>\n\n#include \"dst_model.h\"\n"
    "#include \"k_cpu.h\"\n\n"
    "#define F(slab, off) ((float *)(r->slab + (off)))\n"
    "#define I(slab, off) ((int32_t *)(r->slab + (off)))\n"
    "#define H(slab, off) ((uint16_t *)(r->slab + (off)))\n"
    "#define W(off) ((float *)(r->work + (off)))\n"
    "#define PU(u, off) ((float *)(r->punit[u] + (off)))\n"
    "#define GU(u, off) ((float *)(r->gunit[u] + (off)))\n"
    "#define CHECK_IDS(call, what)                             \\\n"
    "  do {                                                    \\\n"
    "    int64_t bad_ = (call);                                \\\n"
    "    if (bad_ != K_IDS_VALID && !r->error) {               \\\n"
    "      r->error = what;                                    \\\n"
    "      r->error_pos = bad_;                                \\\n"
    "    }                                                     \\\n"
    "  } while (0)\n"
    "#define PROF_BEGIN() double prof_t0_ = r->prof ? dst_prof_now() : 0.0\n"
    "#define PROF_END(slot) if (r->prof) r->prof[slot] += dst_prof_now() - prof_t0_\n"
    "#define CHECK_MEM(call)                                   \\\n"
    "  do {                                                    \\\n"
    "    if ((call) != K_OK && !r->error) r->error = \"out of memory in a kernel\"; \\\n"
    "  } while (0)\n\n";

/* CUDA: slabs are device pointers; kernels and copies go on r->stream. The
 * profile timers synchronize it, only when the program profiles. */
static const char cuda_prelude[] =
    "#include <math.h>\n#include <stdint.h>\n#include <string.h>\n\n#include \"dst_model.h\"\n"
    "#include \"k_cuda.h\"\n\n"
    "#define F(slab, off) ((float *)(r->slab + (off)))\n"
    "#define I(slab, off) ((int32_t *)(r->slab + (off)))\n"
    "#define H(slab, off) ((uint16_t *)(r->slab + (off)))\n"
    "#define W(off) ((float *)(r->work + (off)))\n"
    "#define PU(u, off) ((float *)(r->punit[u] + (off)))\n"
    "#define GU(u, off) ((float *)(r->gunit[u] + (off)))\n"
    "#define STREAM ((cudaStream_t)r->stream)\n"
    "#define BLAS ((KcBlas *)r->blas)\n"
    "/* What a generated kernel sees of the run: the slabs and the accumulation\n"
    " * flag, so that F(), I(), W() and r->acc read the same in kernels. */\n"
    "typedef struct {\n"
    "  char *params, *grads, *arena, *data, *work;\n"
    "  bool acc;\n"
    "} Slabs;\n"
    "/* ZeRO-2/3: the unit buffers a kernel addresses are its arguments u0, u1, ... */\n"
    "#define KU(slot, off) ((float *)(u##slot + (off)))\n"
    "#define SLABS Slabs{r->params, r->grads, r->arena, r->data, r->work, r->acc}\n"
    "#define LAUNCH_WITH(kernel, blocks, threads, ...)                               \\\n"
    "  do {                                                                          \\\n"
    "    kernel<<<(blocks), threads, 0, STREAM>>>(__VA_ARGS__);                      \\\n"
    "    KC_CHECK(cudaGetLastError());                                               \\\n"
    "  } while (0)\n"
    "/* elementwise kernels: 256 threads; column sums: 32 columns x 32 rows */\n"
    "#define LAUNCH(kernel, blocks) LAUNCH_WITH(kernel, blocks, 256, SLABS)\n"
    "#define LAUNCH_COLS(kernel, blocks) LAUNCH_WITH(kernel, blocks, dim3(32, 32), SLABS)\n"
    "#define LAUNCH_UNITS(kernel, blocks, ...) LAUNCH_WITH(kernel, blocks, 256, SLABS, __VA_ARGS__)\n"
    "#define LAUNCH_COLS_UNITS(kernel, blocks, ...) LAUNCH_WITH(kernel, blocks, dim3(32, 32), SLABS, __VA_ARGS__)\n"
    "#define PROF_BEGIN() \\\n"
    "  double prof_t0_ = r->prof ? (KC_CHECK(cudaStreamSynchronize(STREAM)), dst_prof_now()) : 0.0\n"
    "#define PROF_END(slot)                                                          \\\n"
    "  if (r->prof) {                                                                \\\n"
    "    KC_CHECK(cudaStreamSynchronize(STREAM));                                    \\\n"
    "    r->prof[slot] += dst_prof_now() - prof_t0_;                                 \\\n"
    "  }\n"
    "#define CHECK_KC(call)                                                          \\\n"
    "  do {                                                                          \\\n"
    "    int check_st_ = (call);                                                     \\\n"
    "    if (check_st_ != KC_OK && !r->error)                                        \\\n"
    "      r->error = check_st_ == KC_ERR_UNSUPPORTED ? \"cuBLASLt has no algorithm for a matmul\" \\\n"
    "                                           : \"a CUDA kernel rejected its shapes\"; \\\n"
    "  } while (0)\n\n";

/* The groups of DstModel fields, in the C backend's order. */
enum { DM_NAME, DM_SLABS, DM_PLAN, DM_FETCH, DM_TABLES, DM_LOSS, DM_LOGITS, DM_COUNT, DM_OPT, DM_LR, DM_MOMENTUM,
       DM_STEPS, DM_PROF, DM_LAYOUT, DM_BACKEND, DM_FUNCS, DM__COUNT };
/* The same in the order dst_model.h declares them (C++ designators). */
static const int dm_decl_order[DM__COUNT] = {DM_NAME, DM_SLABS, DM_TABLES, DM_LOSS, DM_LOGITS, DM_COUNT,
                                             DM_OPT, DM_LR, DM_MOMENTUM, DM_STEPS, DM_LAYOUT, DM_PLAN,
                                             DM_FETCH, DM_PROF, DM_BACKEND, DM_FUNCS};

bool emit_c(FILE *f, Program *p, IrGraph *g, MemPlan *m, const char *source_name, Backend backend) {
  Arena strs;
  arena_init(&strs);
  Emit e = {.f = f, .strs = &strs, .g = g, .m = m, .d = p->diag, .cuda = backend == BACKEND_CUDA};
  char *kern_text = NULL;
  size_t kern_len = 0;
  e.world = (int)p->par.dp.i;
  e.zgrads = p->par.dp.i > 1 && p->par.zero.i >= 2 && g->grad_of;
  e.zparams = e.zgrads && p->par.zero.i >= 3;
  e.zero_inflight = p->par.overlap_comm.i ? ZERO_INFLIGHT : 0;
  plan_overwrites(&e);
  plan_buckets(&e, p);
  if (e.zgrads) {
    size_t U = (size_t)e.nbuckets + 1;
    e.stamp_p = calloc(U, sizeof(int));
    e.stamp_g = calloc(U, sizeof(int));
    e.refs_p = calloc(U, sizeof(int));
    e.refs_g = calloc(U, sizeof(int));
    if (!e.stamp_p || !e.stamp_g || !e.refs_p || !e.refs_g) die("out of memory");
  }
  /* Workspace: the cross-entropy per-row losses and their gradients. */
  int64_t ce_rows = 0;
  for (int i = 1; i <= g->nforward; i++)
    if (g->nodes[i].op == OP_CROSS_ENTROPY) {
      int64_t r = ir_numel(&g->nodes[g->nodes[i].in[1]]);
      if (r > ce_rows) ce_rows = r;
    }
  e.ce_work = m->bytes[MEM_WORKSPACE];
  m->bytes[MEM_WORKSPACE] += 2 * ((ce_rows * 4 + 63) / 64) * 64;
  /* C backend: fp32 room for the operands of the largest 16-bit GEMM
   * (forward: A and B; backward: the gradient with either) */
  int64_t lowp = 0;
  for (int i = 1; !e.cuda && i <= g->nforward; i++) {
    const IrNode *n = &g->nodes[i];
    if (n->op != OP_MATMUL || n->dead || lowp_of(&g->nodes[n->in[0]]) == DT_F32) continue;
    int64_t a = ir_numel(&g->nodes[n->in[0]]), b = ir_numel(&g->nodes[n->in[1]]), c = ir_numel(n);
    int64_t need = a + b; /* of the pairs (a, b), (c, b), (a, c): the largest */
    if (c + (a > b ? a : b) > need) need = c + (a > b ? a : b);
    if (need > lowp) lowp = need;
  }
  e.lowp_work = m->bytes[MEM_WORKSPACE];
  m->bytes[MEM_WORKSPACE] += (lowp * 4 + 63) / 64 * 64;

  /* CUDA: the id-check flags (one per checking call in forward) and the
   * kernel scratch, after the cross-entropy rows. */
  if (e.cuda) {
    for (int i = 1; i <= g->nforward; i++) {
      const IrNode *n = &g->nodes[i];
      if (!n->dead && !n->fused && (n->op == OP_EMBEDDING || n->op == OP_CROSS_ENTROPY)) e.ids_max++;
    }
    e.ids_what = calloc((size_t)e.ids_max + 1, sizeof *e.ids_what);
    e.kern = open_memstream(&kern_text, &kern_len);
    if (!e.ids_what || !e.kern) die("out of memory");
    e.ids_work = m->bytes[MEM_WORKSPACE];
    m->bytes[MEM_WORKSPACE] += (8 * e.ids_max + 63) / 64 * 64;
    plan_scratch(&e);
    e.scratch_work = m->bytes[MEM_WORKSPACE];
    m->bytes[MEM_WORKSPACE] += (e.scratch_bytes + 63) / 64 * 64;
    /* the runtime's own device buffers: cuBLASLt's workspace, the global
     * norm's partial sums and its result, so the plan covers every byte the
     * program takes from the device (the device checks these sizes) */
    m->bytes[MEM_WORKSPACE] = (m->bytes[MEM_WORKSPACE] + 255) / 256 * 256;
    e.device_work_off = m->bytes[MEM_WORKSPACE];
    m->bytes[MEM_WORKSPACE] += CUDA_DEVICE_WORK;
    m->device_work = CUDA_DEVICE_WORK;
  }

  fprintf(f, "/* Generated by dstc %s from %s. Do not edit: change the .dst file. */\n", DST_VERSION, source_name);
  fputs(e.cuda ? cuda_prelude : c_prelude, f);
  if (e.scratch_bytes)
    fprintf(f, "/* The kernel scratch dstc planned (at W(%" PRId64 ")); the library must agree. */\n"
               "#define SCRATCH_OK(bytes) scratch_ok(r, (bytes))\n"
               "static bool scratch_ok(DstRun *r, size_t bytes) {\n"
               "  if (bytes <= %" PRId64 ") return true;\n"
               "  if (!r->error) r->error = \"internal error: a CUDA kernel needs more scratch than dstc planned\";\n"
               "  return false;\n}\n\n",
            e.scratch_work, e.scratch_bytes);

  /* Parameter and input tables. */
  static const int init_map[] = {[INIT_NONE] = 0, [INIT_NORMAL] = 1, [INIT_ZEROS] = 2, [INIT_ONES] = 3,
                                 [INIT_UNIFORM] = 4, [INIT_CONST] = 5};
  fprintf(f, "static const DstParamInfo params[%d] = {\n", g->nparams ? g->nparams : 1);
  int64_t count = 0;
  for (int i = 0; i < g->nparams; i++) {
    const IrNode *n = &g->nodes[g->params[i]];
    fputs("  {", f);
    emit_string(f, n->name);
    fprintf(f, ", %" PRId64 ", %d, {", m->offset[g->params[i]], n->ndim);
    for (int k = 0; k < n->ndim; k++) fprintf(f, "%s%" PRId64, k ? ", " : "", n->shape[k]);
    fprintf(f, "}, %" PRId64 ", %d, %s, %s},\n", ir_numel(n), init_map[n->init], fl(&e, n->fattr[0]),
            n->iattr[1] ? "false" : "true");
    count += ir_numel(n);
  }
  fputs("};\n\n", f);
  fprintf(f, "static const DstInputInfo inputs[%d] = {\n", g->ninputs ? g->ninputs : 1);
  for (int i = 0; i < g->ninputs; i++) {
    const IrNode *n = &g->nodes[g->inputs[i]];
    fputs("  {", f);
    emit_string(f, n->name);
    fprintf(f, ", %" PRId64 ", %d, {", m->offset[g->inputs[i]], n->ndim);
    for (int k = 0; k < n->ndim; k++) fprintf(f, "%s%" PRId64, k ? ", " : "", n->shape[k]);
    fprintf(f, "}, %" PRId64 "},\n", input_id_limit(g, g->inputs[i]));
  }
  fputs("};\n\n", f);

  /* Profile slots: one per op kind in forward, one per op kind in backward. */
  fputs("static const char *const prof_names[] = {\n", f);
  for (int k = 0; k < 2 * OP__COUNT; k++)
    fprintf(f, "  \"%s%s\",\n", op_info[k % OP__COUNT].name, k >= OP__COUNT ? ".backward" : "");
  fputs("};\n\n", f);
  fprintf(f, "static const DstBucket buckets[%d] = {\n", e.nbuckets ? e.nbuckets : 1);
  for (int i = 0; i < e.nbuckets; i++)
    fprintf(f, "  {%" PRId64 ", %" PRId64 "},\n", e.buckets[i][0], e.buckets[i][1]);
  fputs("};\n\n", f);
  /* Every node's code first (the ZeRO hooks depend on what all of it
   * references), then the two functions. */
  Chunk *ch = calloc((size_t)g->n + 1, sizeof(Chunk));
  if (!ch) die("out of memory");
  for (int i = 1; i < g->n; i++) {
    const IrNode *n = &g->nodes[i];
    if (i <= g->nforward) ch[i] = capture(&e, (ValId)i, n->op);
    else if (n->op == OP_BACKWARD) ch[i] = capture(&e, (ValId)i, OP__COUNT + g->nodes[n->iattr[0]].op);
    else ch[i] = capture(&e, (ValId)i, n->op); /* GRAD, CAST (AUX: no code) */
  }
  ZeroSched zs = {0}, *z = NULL;
  if (e.zgrads) {
    z = &zs;
    zero_sched_plan(&e, z, ch);
  }
  fprintf(f, "static const int fetch[%d] = {", zs.nfetch ? zs.nfetch : 1);
  for (int i = 0; i < zs.nfetch; i++) fprintf(f, "%s%d", i % 16 ? ", " : i ? ",\n  " : "\n  ", zs.fetch[i]);
  fputs(zs.nfetch ? "\n};\n\n" : "0};\n\n", f);
  if (e.cuda) { /* the kernels of the generated loops, and the id checks */
    fclose(e.kern);
    e.kern = NULL;
    fwrite(kern_text, 1, kern_len, f);
    free(kern_text);
    if (e.nids != e.ids_max) die("%d id checks planned, %d emitted", e.ids_max, e.nids);
    if (e.nids) {
      fprintf(f, "static const char *const ids_what[%d] = {\n", e.nids);
      for (int i = 0; i < e.nids; i++) fprintf(f, "  \"%s\",\n", e.ids_what[i]);
      fputs("};\n\n", f);
    }
  }
  fputs("static void forward(DstRun *r) {\n", f);
  for (int i = 1; i <= g->nforward; i++) write_chunk(&e, z, &ch[i], i);
  fputs("}\n\nstatic void backward(DstRun *r) {\n", f);
  if (z) z->cursor = z->nfetch_fwd;
  for (int i = g->nforward + 1; i < g->n; i++) {
    write_chunk(&e, z, &ch[i], i);
    for (int k = 0; !z && k < e.bucket_cnt[i]; k++)
      fprintf(f, "  if (r->bucket_ready) r->bucket_ready(r, %d);\n", e.bucket_at[i] + k);
  }
  fputs("}\n\n", f);
  for (int i = 1; i < g->n; i++) {
    free(ch[i].code);
    free(ch[i].pu);
    free(ch[i].gu);
  }
  free(ch);
  /* Per-rank model state under ZeRO-2/3: each rank owns ceil(n/dp) floats
   * of every unit. Stage 2 keeps all parameters plus an fp32 master copy
   * of its shard (and gathers the updated shards unit by unit through one
   * staging buffer); stage 3 keeps its shard only plus the gathered units
   * of the moment. Both keep the gradient shard and the unreduced unit
   * buffers; grad_accum > 1 adds a receive buffer of one shard. */
  m->slab_params = m->bytes[MEM_PARAMS];
  if (z) {
    int64_t shard = 0, maxbuf = 0;
    for (int u = 0; u < e.nbuckets; u++) {
      shard += unit_buf_bytes(&e, u) / e.world;
      if (unit_buf_bytes(&e, u) > maxbuf) maxbuf = unit_buf_bytes(&e, u);
    }
    TrainCfg *tc = &p->train_cfg;
    int nstate = tc->opt == OPT_ADAMW ? 2 : (tc->momentum > 0 ? 1 : 0);
    m->zero_shard = shard;
    m->zero_pbuf = e.zparams ? zs.ppeak : maxbuf;
    m->zero_gbuf = zs.gpeak;
    m->zero_units = e.nbuckets;
    /* bytes each rank sends per step in ring collectives: (N-1) chunks per
     * gather or reduce-scatter of a unit; stage 3 gathers in every forward
     * and backward pass, both stages reduce-scatter every micro-step */
    double fetched = 0, reduced = 0, all = 0, ga = (double)p->par.grad_accum.i;
    for (int i = 0; i < zs.nfetch; i++) fetched += (double)(unit_buf_bytes(&e, zs.fetch[i]) / e.world);
    for (int u = 0; u < e.nbuckets; u++) {
      all += (double)(unit_buf_bytes(&e, u) / e.world);
      if (zs.first_g[u]) reduced += (double)(unit_buf_bytes(&e, u) / e.world);
    }
    m->zero_comm = (e.world - 1) * (ga * reduced + (e.zparams ? ga * fetched : all));
    m->bytes[MEM_PARAMS] = (e.zparams ? 0 : m->slab_params) + shard + m->zero_pbuf;
    m->bytes[MEM_GRADS] = shard + zs.gpeak + (p->par.grad_accum.i > 1 ? shard : 0);
    m->bytes[MEM_OPTSTATE] = nstate * shard;
  }

  ValId logits = 0;
  for (int i = 0; i < g->nnamed; i++)
    if (!strcmp(g->named[i].name, "logits")) logits = g->named[i].v;
  TrainCfg *t = &p->train_cfg;
  /* The initializer in groups of fields, written in the C backend's order
   * or, for C++ (CUDA), in declaration order. */
  char *dm_text[DM__COUNT];
  size_t dm_len[DM__COUNT];
  FILE *dm[DM__COUNT];
  for (int k = 0; k < DM__COUNT; k++)
    if (!(dm[k] = open_memstream(&dm_text[k], &dm_len[k]))) die("out of memory");
  fputs("  .name = ", dm[DM_NAME]);
  emit_string(dm[DM_NAME], p->model->name);
  fputs(",\n  .source = ", dm[DM_NAME]);
  emit_string(dm[DM_NAME], source_name);
  fputs(",\n  .precision = ", dm[DM_NAME]);
  emit_string(dm[DM_NAME], p->par.precision.s);
  fputs(",\n", dm[DM_NAME]);
  fprintf(dm[DM_SLABS], "  .params_bytes = %" PRId64 ", .arena_bytes = %" PRId64 ", .data_bytes = %" PRId64
                        ", .work_bytes = %" PRId64 ", .optstate_bytes = %" PRId64 ",\n",
          m->slab_params, m->bytes[MEM_ACTIVATIONS], m->bytes[MEM_DATA], m->bytes[MEM_WORKSPACE],
          m->bytes[MEM_OPTSTATE]);
  fprintf(dm[DM_PLAN], "  .planned_bytes = %" PRId64 ", .shard_bytes = %" PRId64 ", .zero_pbuf_bytes = %" PRId64
                       ", .zero_gbuf_bytes = %" PRId64 ", .zero_inflight = %d,\n",
          memplan_total(m), m->zero_shard, m->zero_pbuf, m->zero_gbuf, e.zero_inflight);
  fprintf(dm[DM_FETCH], "  .fetch = fetch, .nfetch_fwd = %d, .nfetch = %d,\n", zs.nfetch_fwd, zs.nfetch);
  fprintf(dm[DM_TABLES], "  .params = params, .nparams = %d, .inputs = inputs, .ninputs = %d,\n", g->nparams,
          g->ninputs);
  fprintf(dm[DM_LOSS], "  .loss_offset = %" PRId64 ",\n", m->offset[g->loss]);
  if (logits) {
    const IrNode *ln = &g->nodes[logits];
    fprintf(dm[DM_LOGITS], "  .logits_offset = %" PRId64 ", .logits_ndim = %d, .logits_shape = {", m->offset[logits],
            ln->ndim);
    for (int k = 0; k < ln->ndim; k++) fprintf(dm[DM_LOGITS], "%s%" PRId64, k ? ", " : "", ln->shape[k]);
    fputs("},\n", dm[DM_LOGITS]);
  } else {
    fputs("  .logits_offset = -1, .logits_ndim = 0, .logits_shape = {0},\n", dm[DM_LOGITS]);
  }
  int64_t tokens = g->ninputs ? ir_numel(&g->nodes[g->inputs[0]]) : 1;
  fprintf(dm[DM_COUNT], "  .param_count = %" PRId64 ", .flops_per_token = %.17g,\n", count,
          step_flops(g) / (double)tokens);
  fprintf(dm[DM_OPT], "  .opt = %d, .sched = %d,\n", t->opt == OPT_ADAMW ? 0 : 1, (int)t->sched);
  fprintf(dm[DM_LR], "  .lr = %s, .beta1 = %s, .beta2 = %s, .eps = %s, .weight_decay = %s,\n", fl(&e, t->lr),
          fl(&e, t->beta1), fl(&e, t->beta2), fl(&e, t->eps), fl(&e, t->weight_decay));
  fprintf(dm[DM_MOMENTUM], "  .momentum = %s, .min_lr = %s, .clip = %s, .nesterov = %s,\n", fl(&e, t->momentum),
          fl(&e, t->min_lr), fl(&e, t->clip_grad_norm), t->nesterov ? "true" : "false");
  fprintf(dm[DM_STEPS], "  .warmup = %" PRId64 ", .steps = %" PRId64 ", .seed = %" PRId64 ", .log_every = %" PRId64
                        ", .eval_every = %" PRId64 ", .save_every = %" PRId64 ",\n",
          t->warmup, t->steps, t->seed, t->log_every, t->eval_every, t->save_every);
  fprintf(dm[DM_PROF], "  .prof_names = prof_names, .nprof = %d,\n", 2 * OP__COUNT);
  fprintf(dm[DM_LAYOUT], "  .dp = %lld, .grad_accum = %lld, .zero = %lld, .buckets = buckets, .nbuckets = %d,\n",
          (long long)p->par.dp.i, (long long)p->par.grad_accum.i, (long long)p->par.zero.i, e.nbuckets);
  if (e.nids)
    fprintf(dm[DM_BACKEND], "  .backend = DST_BACKEND_CUDA, .ids_offset = %" PRId64 ", .nids = %d, .ids_what = ids_what,\n",
            e.ids_work, e.nids);
  else
    fprintf(dm[DM_BACKEND], "  .backend = %s, .ids_offset = -1, .nids = 0,\n",
            e.cuda ? "DST_BACKEND_CUDA" : "DST_BACKEND_CPU");
  if (e.cuda)
    fprintf(dm[DM_BACKEND], "  .device_work_offset = %" PRId64 ", .device_work_bytes = %d,\n", e.device_work_off,
            (int)CUDA_DEVICE_WORK);
  else
    fputs("  .device_work_offset = -1,\n", dm[DM_BACKEND]);
  fputs("  .forward = forward, .backward = backward,\n", dm[DM_FUNCS]);
  fputs("const DstModel dst_model = {\n", f);
  for (int k = 0; k < DM__COUNT; k++) {
    int i = e.cuda ? dm_decl_order[k] : k;
    fclose(dm[i]);
    dm[i] = NULL;
    fwrite(dm_text[i], 1, dm_len[i], f);
    free(dm_text[i]);
  }
  fputs("};\n\n", f);
  if (e.cuda) fputs("int main(int argc, char **argv) { return dst_cuda_main(&dst_model, argc, argv); }\n", f);
  else fputs("int main(int argc, char **argv) { return dst_train_main(&dst_model, argc, argv); }\n", f);
  free(e.ow);
  free(e.nozero);
  free(e.bucket_at);
  free(e.bucket_cnt);
  free(e.buckets);
  free(e.by_lo);
  free(e.stamp_p);
  free(e.stamp_g);
  free(e.refs_p);
  free(e.refs_g);
  free(e.ids_what);
  zero_sched_free(&zs);
  arena_free(&strs);
  return !e.failed;
}
