/* k_attention.c: scaled dot-product attention (causal or not, grouped-query
 * heads), flash-attention style on the CPU.
 *
 * Invariants:
 *  - Only out and the row log-sum-exp leave the forward; the backward
 *    recomputes probabilities one tile of K_ATT_BR query rows at a time, in
 *    a per-thread scratch of K_ATT_BR x T floats (never T x T).
 *  - Each output element has exactly one writer: forward tasks own
 *    (b, q head, query tile); backward tasks own (b, kv head) and walk that
 *    head's query heads and tiles in a fixed order, so dk/dv accumulate
 *    without atomics and identically for any thread count.
 *  - Tile products go through single-threaded OpenBLAS GEMMs issued from an
 *    OpenMP loop (see k_blas_single).
 */
/* cblas.h first: see k_matmul.c. */
#include <cblas.h>

#include <math.h>
#include <omp.h>
#include <stdlib.h>

#include "k_internal.h"

/* Query rows per tile: big enough that the tile GEMMs run near OpenBLAS's
 * peak, small enough that two K_ATT_BR x T scratch tiles stay in L2 for
 * typical T. */
#define K_ATT_BR 64

size_t k_attention_scratch_bytes(int64_t T) {
  return 2 * (size_t)K_ATT_BR * (size_t)(T > 0 ? T : 0) * sizeof(float);
}

static void sgemm(bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha,
                  const float *a, int64_t lda, const float *b, int64_t ldb, float beta, float *c,
                  int64_t ldc) {
  cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans,
              (int)M, (int)N, (int)K, alpha, a, (int)lda, b, (int)ldb, beta, c, (int)ldc);
}

/* One query tile [i0, i0+rows) of one head: q, k, v, o point at the head's
 * (T,D) slices, lse at its (T) slice, s at rows x T scratch. */
static void fwd_tile(float *o, float *lse, const float *q, const float *k, const float *v,
                     int64_t T, int64_t D, int64_t i0, bool causal, float scale, float *s) {
  int64_t rows = k_min64(K_ATT_BR, T - i0);
  int64_t L = causal ? i0 + rows : T; /* keys any row of the tile can see */
  sgemm(false, true, rows, L, D, scale, q + i0 * D, D, k, D, 0.0f, s, L);
  for (int64_t r = 0; r < rows; r++) {
    int64_t i = i0 + r, lim = causal ? i + 1 : T;
    float *sr = s + r * L;
    float m = k_max_row(sr, lim);
    double sum = k_sum_exp(sr, sr, m, lim);
    float inv = (float)(1.0 / sum);
    for (int64_t j = 0; j < lim; j++) sr[j] *= inv;
    for (int64_t j = lim; j < L; j++) sr[j] = 0.0f;
    lse[i] = (float)((double)m + log(sum));
  }
  sgemm(false, false, rows, D, L, 1.0f, s, L, v, D, 0.0f, o + i0 * D, D);
}

int k_attention_forward(float *out, float *lse, const float *q, const float *k, const float *v,
                        int64_t B, int64_t Hq, int64_t Hkv, int64_t T, int64_t D, bool causal) {
  if (Hkv <= 0 || Hq % Hkv != 0) return K_ERR_SHAPE;
  if (B <= 0 || Hq <= 0 || T <= 0 || D <= 0) return K_OK;
  int64_t group = Hq / Hkv;
  int64_t ntile = (T + K_ATT_BR - 1) / K_ATT_BR;
  int64_t ntask = B * Hq * ntile;
  float scale = (float)(1.0 / sqrt((double)D));
  int status = K_OK;
  bool par = omp_get_max_threads() > 1 && ntask > 1 && !omp_in_parallel();
  k_blas_single();
#pragma omp parallel if (par)
  {
    float *s = malloc((size_t)K_ATT_BR * (size_t)T * sizeof(float));
    if (!s) {
#pragma omp atomic write
      status = K_ERR_NOMEM;
    }
    /* Dynamic: under a causal mask later tiles see more keys. */
#pragma omp for schedule(dynamic, 1)
    for (int64_t task = 0; task < ntask; task++) {
      if (!s) continue;
      int64_t bh = task / ntile, tile = task % ntile;
      int64_t b = bh / Hq, h = bh % Hq;
      const float *kh = k + (b * Hkv + h / group) * T * D;
      const float *vh = v + (b * Hkv + h / group) * T * D;
      fwd_tile(out + bh * T * D, lse + bh * T, q + bh * T * D, kh, vh, T, D, tile * K_ATT_BR,
               causal, scale, s);
    }
    free(s);
  }
  return status;
}

/* Backward of one query tile of one query head; accumulates into dq's tile
 * and into dk, dv rows [0, L). p and dp are rows x T scratch. */
static void bwd_tile(float *dq, float *dk, float *dv, const float *dout, const float *q,
                     const float *k, const float *v, const float *out, const float *lse,
                     int64_t T, int64_t D, int64_t i0, bool causal, float scale, float *p,
                     float *dp) {
  int64_t rows = k_min64(K_ATT_BR, T - i0);
  int64_t L = causal ? i0 + rows : T;
  const float *qt = q + i0 * D, *dot = dout + i0 * D;
  /* P = exp(S - lse): the forward's probabilities, bit-for-bit up to the
   * rounding of lse. Masked entries are 0 so they drop out of every product. */
  sgemm(false, true, rows, L, D, scale, qt, D, k, D, 0.0f, p, L);
  for (int64_t r = 0; r < rows; r++) {
    int64_t i = i0 + r, lim = causal ? i + 1 : T;
    float *pr = p + r * L;
    float l = lse[i];
    for (int64_t j = 0; j < lim; j++) pr[j] = k_expf(pr[j] - l);
    for (int64_t j = lim; j < L; j++) pr[j] = 0.0f;
  }
  sgemm(true, false, L, D, rows, 1.0f, p, L, dot, D, 1.0f, dv, D); /* dV += P^T dO */
  sgemm(false, true, rows, L, D, 1.0f, dot, D, v, D, 0.0f, dp, L); /* dP = dO V^T */
  for (int64_t r = 0; r < rows; r++) {
    /* dS = P * (dP - rowsum(dO * O)); rowsum(dP * P) equals rowsum(dO * O). */
    const float *dor = dot + r * D, *orow = out + (i0 + r) * D;
    double di = 0.0;
    for (int64_t d = 0; d < D; d++) di += (double)dor[d] * orow[d];
    float dif = (float)di;
    float *pr = p + r * L, *dpr = dp + r * L;
    for (int64_t j = 0; j < L; j++) dpr[j] = pr[j] * (dpr[j] - dif);
  }
  sgemm(false, false, rows, D, L, scale, dp, L, k, D, 1.0f, dq + i0 * D, D); /* dQ += dS K */
  sgemm(true, false, L, D, rows, scale, dp, L, qt, D, 1.0f, dk, D);          /* dK += dS^T Q */
}

int k_attention_backward(float *dq, float *dk, float *dv, const float *dout, const float *q,
                         const float *k, const float *v, const float *out, const float *lse,
                         int64_t B, int64_t Hq, int64_t Hkv, int64_t T, int64_t D, bool causal) {
  if (Hkv <= 0 || Hq % Hkv != 0) return K_ERR_SHAPE;
  if (B <= 0 || Hq <= 0 || T <= 0 || D <= 0) return K_OK;
  int64_t group = Hq / Hkv;
  int64_t ntile = (T + K_ATT_BR - 1) / K_ATT_BR;
  int64_t ntask = B * Hkv;
  float scale = (float)(1.0 / sqrt((double)D));
  int status = K_OK;
  bool par = omp_get_max_threads() > 1 && ntask > 1 && !omp_in_parallel();
  k_blas_single();
#pragma omp parallel if (par)
  {
    float *p = malloc(2 * (size_t)K_ATT_BR * (size_t)T * sizeof(float));
    if (!p) {
#pragma omp atomic write
      status = K_ERR_NOMEM;
    }
#pragma omp for schedule(dynamic, 1)
    for (int64_t task = 0; task < ntask; task++) {
      if (!p) continue;
      int64_t b = task / Hkv, hk = task % Hkv;
      int64_t kv_off = (b * Hkv + hk) * T * D;
      for (int64_t g = 0; g < group; g++) {
        int64_t bh = b * Hq + hk * group + g;
        int64_t off = bh * T * D;
        for (int64_t tile = 0; tile < ntile; tile++)
          bwd_tile(dq + off, dk + kv_off, dv + kv_off, dout + off, q + off, k + kv_off,
                   v + kv_off, out + off, lse + bh * T, T, D, tile * K_ATT_BR, causal, scale, p,
                   p + (size_t)K_ATT_BR * (size_t)T);
      }
    }
    free(p);
  }
  return status;
}
