/* k_reduce.c: sum / mean / max over one dim of an (outer, dim, inner) view,
 * and the global sum of squares used for gradient clipping.
 *
 * Invariants: each output element is reduced by one thread, over d in
 * increasing order, in double for sums; the global norm sums a fixed number
 * of fixed blocks, so every result is independent of the thread count.
 */
#include <math.h>

#include "k_internal.h"

/* Inner elements reduced together: the d loop then reads RED_CHUNK
 * contiguous floats per step instead of striding by inner. */
#define RED_CHUNK 64

enum { RED_SUM, RED_MEAN, RED_MAX };

static inline bool beats(float v, float best) {
  /* Strictly greater keeps the first maximum; NaN beats any number. */
  return v > best || (isnan(v) && !isnan(best));
}

static void reduce_forward(float *out, const float *x, int64_t outer, int64_t dim, int64_t inner,
                           int op) {
  int64_t nchunk = (inner + RED_CHUNK - 1) / RED_CHUNK;
#pragma omp parallel for if (outer * dim * inner >= K_PAR_ROWS_MIN) schedule(static)
  for (int64_t task = 0; task < outer * nchunk; task++) {
    int64_t o = task / nchunk, i0 = (task % nchunk) * RED_CHUNK;
    int64_t ni = k_min64(RED_CHUNK, inner - i0);
    const float *xo = x + o * dim * inner + i0;
    float *yo = out + o * inner + i0;
    if (op == RED_MAX) {
      float best[RED_CHUNK];
      for (int64_t i = 0; i < ni; i++) best[i] = dim > 0 ? xo[i] : -INFINITY;
      for (int64_t d = 1; d < dim; d++)
        for (int64_t i = 0; i < ni; i++)
          if (beats(xo[d * inner + i], best[i])) best[i] = xo[d * inner + i];
      for (int64_t i = 0; i < ni; i++) yo[i] = best[i];
    } else {
      double acc[RED_CHUNK] = {0};
      for (int64_t d = 0; d < dim; d++)
        for (int64_t i = 0; i < ni; i++) acc[i] += xo[d * inner + i];
      double s = op == RED_MEAN && dim > 0 ? 1.0 / (double)dim : 1.0;
      for (int64_t i = 0; i < ni; i++) yo[i] = (float)(acc[i] * s);
    }
  }
}

static void broadcast_backward(float *dx, const float *dout, int64_t outer, int64_t dim,
                               int64_t inner, float s) {
#pragma omp parallel for if (outer * dim * inner >= K_PAR_MIN) schedule(static)
  for (int64_t od = 0; od < outer * dim; od++) {
    const float *g = dout + (od / dim) * inner;
    float *d = dx + od * inner;
    for (int64_t i = 0; i < inner; i++) d[i] += s * g[i];
  }
}

void k_reduce_sum_forward(float *out, const float *x, int64_t outer, int64_t dim, int64_t inner) {
  reduce_forward(out, x, outer, dim, inner, RED_SUM);
}

void k_reduce_sum_backward(float *dx, const float *dout, int64_t outer, int64_t dim,
                           int64_t inner) {
  broadcast_backward(dx, dout, outer, dim, inner, 1.0f);
}

void k_reduce_mean_forward(float *out, const float *x, int64_t outer, int64_t dim,
                           int64_t inner) {
  reduce_forward(out, x, outer, dim, inner, RED_MEAN);
}

void k_reduce_mean_backward(float *dx, const float *dout, int64_t outer, int64_t dim,
                            int64_t inner) {
  if (dim > 0) broadcast_backward(dx, dout, outer, dim, inner, (float)(1.0 / (double)dim));
}

void k_reduce_max_forward(float *out, const float *x, int64_t outer, int64_t dim, int64_t inner) {
  reduce_forward(out, x, outer, dim, inner, RED_MAX);
}

void k_reduce_max_backward(float *dx, const float *dout, const float *x, int64_t outer,
                           int64_t dim, int64_t inner) {
  if (dim <= 0) return;
  int64_t nchunk = (inner + RED_CHUNK - 1) / RED_CHUNK;
#pragma omp parallel for if (outer * dim * inner >= K_PAR_ROWS_MIN) schedule(static)
  for (int64_t task = 0; task < outer * nchunk; task++) {
    int64_t o = task / nchunk, i0 = (task % nchunk) * RED_CHUNK;
    int64_t ni = k_min64(RED_CHUNK, inner - i0);
    const float *xo = x + o * dim * inner + i0;
    float best[RED_CHUNK];
    int64_t arg[RED_CHUNK];
    for (int64_t i = 0; i < ni; i++) {
      best[i] = xo[i];
      arg[i] = 0;
    }
    for (int64_t d = 1; d < dim; d++)
      for (int64_t i = 0; i < ni; i++)
        if (beats(xo[d * inner + i], best[i])) {
          best[i] = xo[d * inner + i];
          arg[i] = d;
        }
    for (int64_t i = 0; i < ni; i++)
      dx[(o * dim + arg[i]) * inner + i0 + i] += dout[o * inner + i0 + i];
  }
}

/* Fixed block count: enough blocks to feed many threads, and the partial
 * sums live on the stack. */
#define NORM_BLOCKS 64

double k_global_norm_sq(const float *grad, int64_t n) {
  if (n <= 0) return 0.0;
  double part[NORM_BLOCKS];
#pragma omp parallel for if (n >= K_PAR_MIN) schedule(static)
  for (int64_t blk = 0; blk < NORM_BLOCKS; blk++) {
    int64_t lo = n * blk / NORM_BLOCKS, hi = n * (blk + 1) / NORM_BLOCKS;
    double s = 0.0;
    for (int64_t i0 = lo; i0 < hi; i0 += K_SUM_BLOCK) {
      int64_t i1 = k_min64(hi, i0 + K_SUM_BLOCK);
      float p = 0.0f;
#pragma omp simd reduction(+ : p)
      for (int64_t i = i0; i < i1; i++) p += grad[i] * grad[i];
      s += p;
    }
    part[blk] = s;
  }
  double total = 0.0;
  for (int64_t blk = 0; blk < NORM_BLOCKS; blk++) total += part[blk];
  return total;
}
