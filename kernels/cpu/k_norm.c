/* k_norm.c: LayerNorm and RMSNorm over the last dim, (N,C) rows.
 *
 * Invariants: row statistics are computed by one thread per row and
 * accumulated in double (float partials over K_SUM_BLOCK terms, see
 * k_internal.h). Weight/bias gradients sum over rows; instead of per-thread
 * partial sums (whose combination order would depend on the thread count)
 * the columns are split into fixed blocks and each block walks all rows in
 * order, so every result is independent of the thread count.
 */
#include <math.h>

#include "k_internal.h"

/* Columns per block in the weight-gradient pass: a 128-byte slice of each
 * row, small enough to give many blocks, large enough to stream well. Rows
 * are summed ROW_BLOCK at a time in float, then into double. */
#define COL_BLOCK 32
#define ROW_BLOCK 32

void k_layernorm_forward(float *out, float *mean, float *rstd, const float *x, const float *w,
                         const float *b, int64_t N, int64_t C, float eps) {
  if (C <= 0) return;
#pragma omp parallel for if (N * C >= K_PAR_ROWS_MIN) schedule(static)
  for (int64_t n = 0; n < N; n++) {
    const float *xr = x + n * C;
    float *yr = out + n * C;
    double s = 0.0;
    for (int64_t c0 = 0; c0 < C; c0 += K_SUM_BLOCK) {
      int64_t c1 = k_min64(C, c0 + K_SUM_BLOCK);
      float part = 0.0f;
#pragma omp simd reduction(+ : part)
      for (int64_t c = c0; c < c1; c++) part += xr[c];
      s += part;
    }
    float mu = (float)(s / (double)C);
    /* Second pass around the mean: no cancellation when |mean| >> std. */
    double ss = 0.0;
    for (int64_t c0 = 0; c0 < C; c0 += K_SUM_BLOCK) {
      int64_t c1 = k_min64(C, c0 + K_SUM_BLOCK);
      float part = 0.0f;
#pragma omp simd reduction(+ : part)
      for (int64_t c = c0; c < c1; c++) part += (xr[c] - mu) * (xr[c] - mu);
      ss += part;
    }
    float rs = (float)(1.0 / sqrt(ss / (double)C + (double)eps));
    if (w && b) {
#pragma omp simd
      for (int64_t c = 0; c < C; c++) yr[c] = (xr[c] - mu) * rs * w[c] + b[c];
    } else {
      for (int64_t c = 0; c < C; c++)
        yr[c] = (xr[c] - mu) * rs * (w ? w[c] : 1.0f) + (b ? b[c] : 0.0f);
    }
    if (mean) mean[n] = mu;
    if (rstd) rstd[n] = rs;
  }
}

void k_layernorm_backward(float *dx, float *dw, float *db, const float *dout, const float *x,
                          const float *w, const float *mean, const float *rstd, int64_t N,
                          int64_t C) {
  if (C <= 0) return;
  if (dx) {
    /* dx = rstd * (g - mean(g) - xhat * mean(g * xhat)), g = dout * w. */
#pragma omp parallel for if (N * C >= K_PAR_ROWS_MIN) schedule(static)
    for (int64_t n = 0; n < N; n++) {
      const float *xr = x + n * C, *gr = dout + n * C;
      float *dr = dx + n * C;
      float mu = mean[n], rs = rstd[n];
      double sg = 0.0, sgx = 0.0;
      for (int64_t c0 = 0; c0 < C; c0 += K_SUM_BLOCK) {
        int64_t c1 = k_min64(C, c0 + K_SUM_BLOCK);
        float pg = 0.0f, pgx = 0.0f;
#pragma omp simd reduction(+ : pg, pgx)
        for (int64_t c = c0; c < c1; c++) {
          float g = gr[c] * (w ? w[c] : 1.0f);
          pg += g;
          pgx += g * ((xr[c] - mu) * rs);
        }
        sg += pg;
        sgx += pgx;
      }
      float mg = (float)(sg / (double)C), mgx = (float)(sgx / (double)C);
#pragma omp simd
      for (int64_t c = 0; c < C; c++) {
        float g = gr[c] * (w ? w[c] : 1.0f);
        float xh = (xr[c] - mu) * rs;
        dr[c] += rs * (g - mg - xh * mgx);
      }
    }
  }
  if (!dw && !db) return;
  int64_t nblk = (C + COL_BLOCK - 1) / COL_BLOCK;
#pragma omp parallel for if (N * C >= K_PAR_ROWS_MIN) schedule(static)
  for (int64_t blk = 0; blk < nblk; blk++) {
    int64_t c0 = blk * COL_BLOCK, nc = k_min64(C - c0, COL_BLOCK);
    double aw[COL_BLOCK] = {0}, ab[COL_BLOCK] = {0};
    for (int64_t n0 = 0; n0 < N; n0 += ROW_BLOCK) {
      float pw[COL_BLOCK] = {0}, pb[COL_BLOCK] = {0};
      for (int64_t n = n0; n < k_min64(N, n0 + ROW_BLOCK); n++) {
        const float *xr = x + n * C + c0, *gr = dout + n * C + c0;
        float mu = mean[n], rs = rstd[n];
#pragma omp simd
        for (int64_t c = 0; c < nc; c++) {
          pw[c] += gr[c] * ((xr[c] - mu) * rs);
          pb[c] += gr[c];
        }
      }
      for (int64_t c = 0; c < nc; c++) {
        aw[c] += pw[c];
        ab[c] += pb[c];
      }
    }
    for (int64_t c = 0; c < nc; c++) {
      if (dw) dw[c0 + c] += (float)aw[c];
      if (db) db[c0 + c] += (float)ab[c];
    }
  }
}

void k_rmsnorm_forward(float *out, float *rstd, const float *x, const float *w, int64_t N,
                       int64_t C, float eps) {
  if (C <= 0) return;
#pragma omp parallel for if (N * C >= K_PAR_ROWS_MIN) schedule(static)
  for (int64_t n = 0; n < N; n++) {
    const float *xr = x + n * C;
    float *yr = out + n * C;
    double ss = 0.0;
    for (int64_t c0 = 0; c0 < C; c0 += K_SUM_BLOCK) {
      int64_t c1 = k_min64(C, c0 + K_SUM_BLOCK);
      float part = 0.0f;
#pragma omp simd reduction(+ : part)
      for (int64_t c = c0; c < c1; c++) part += xr[c] * xr[c];
      ss += part;
    }
    float rs = (float)(1.0 / sqrt(ss / (double)C + (double)eps));
#pragma omp simd
    for (int64_t c = 0; c < C; c++) yr[c] = xr[c] * rs * (w ? w[c] : 1.0f);
    if (rstd) rstd[n] = rs;
  }
}

void k_rmsnorm_backward(float *dx, float *dw, const float *dout, const float *x, const float *w,
                        const float *rstd, int64_t N, int64_t C) {
  if (C <= 0) return;
  if (dx) {
    /* dx = rstd * (g - xhat * mean(g * xhat)), g = dout * w, xhat = x*rstd. */
#pragma omp parallel for if (N * C >= K_PAR_ROWS_MIN) schedule(static)
    for (int64_t n = 0; n < N; n++) {
      const float *xr = x + n * C, *gr = dout + n * C;
      float *dr = dx + n * C;
      float rs = rstd[n];
      double sgx = 0.0;
      for (int64_t c0 = 0; c0 < C; c0 += K_SUM_BLOCK) {
        int64_t c1 = k_min64(C, c0 + K_SUM_BLOCK);
        float part = 0.0f;
#pragma omp simd reduction(+ : part)
        for (int64_t c = c0; c < c1; c++) part += gr[c] * (w ? w[c] : 1.0f) * (xr[c] * rs);
        sgx += part;
      }
      float mgx = (float)(sgx / (double)C);
#pragma omp simd
      for (int64_t c = 0; c < C; c++) {
        float g = gr[c] * (w ? w[c] : 1.0f);
        dr[c] += rs * (g - xr[c] * rs * mgx);
      }
    }
  }
  if (!dw) return;
  int64_t nblk = (C + COL_BLOCK - 1) / COL_BLOCK;
#pragma omp parallel for if (N * C >= K_PAR_ROWS_MIN) schedule(static)
  for (int64_t blk = 0; blk < nblk; blk++) {
    int64_t c0 = blk * COL_BLOCK, nc = k_min64(C - c0, COL_BLOCK);
    double aw[COL_BLOCK] = {0};
    for (int64_t n0 = 0; n0 < N; n0 += ROW_BLOCK) {
      float pw[COL_BLOCK] = {0};
      for (int64_t n = n0; n < k_min64(N, n0 + ROW_BLOCK); n++) {
        const float *xr = x + n * C + c0, *gr = dout + n * C + c0;
        float rs = rstd[n];
#pragma omp simd
        for (int64_t c = 0; c < nc; c++) pw[c] += gr[c] * (xr[c] * rs);
      }
      for (int64_t c = 0; c < nc; c++) aw[c] += pw[c];
    }
    for (int64_t c = 0; c < nc; c++) dw[c0 + c] += (float)aw[c];
  }
}
