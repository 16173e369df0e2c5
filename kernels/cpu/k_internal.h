/* k_internal.h: helpers shared by the kernel sources, not part of the API:
 * parallel thresholds, OpenBLAS thread pinning, and the vectorizable exp,
 * row max and blocked sums that the softmax-like kernels share.
 *
 * Invariant: nothing here changes results with the thread count; the
 * thresholds only decide whether a loop is worth a parallel region, and the
 * row helpers run on one thread with a fixed summation order.
 */
#ifndef DST_K_INTERNAL_H
#define DST_K_INTERNAL_H

#include <stdint.h>
#include <string.h>

#include "k_cpu.h"

/* Elementwise loops shorter than this run on one thread: opening a parallel
 * region costs a few microseconds, about what 32k simple flops take. */
#define K_PAR_MIN 32768

/* Row loops go parallel when the whole tensor is at least this big. */
#define K_PAR_ROWS_MIN 8192


/* Keeps OpenBLAS on one thread (once per process; k_matmul.c): every
 * sgemm call of the kernels then runs on its caller's thread, so its
 * result does not depend on how many threads there are. */
void k_blas_single(void);

/* exp(x) for the softmax-style loops, written so gcc vectorizes it (libm's
 * expf is a scalar call): exp(x) = 2^n * exp(r), n = round(x/ln2),
 * |r| <= ln2/2, exp(r) by its degree-7 Taylor polynomial (truncation below
 * 1e-8). Relative error about 2 ulp for x in [-87, 88]. Outside, x is
 * clamped: exp(88) instead of overflow, exp(-87) ~ 1.6e-38 instead of
 * underflow (negligible next to any softmax row's largest term, which is
 * 1); NaN propagates. No final select keeps the vector code short. */
static inline float k_expf(float x) {
  const float shift = 12582912.0f; /* 1.5*2^23: adding it rounds to integer */
  float xc = x < -87.0f ? -87.0f : x;
  xc = xc > 88.0f ? 88.0f : xc;
  float t = xc * 1.44269504f + shift;
  float n = t - shift;
  float r = xc - n * 0.693359375f; /* ln2 split in two so n*hi is exact */
  r = r + n * 2.12194440e-4f;
  float p = 1.98412698e-4f;
  p = p * r + 1.38888889e-3f;
  p = p * r + 8.33333333e-3f;
  p = p * r + 4.16666667e-2f;
  p = p * r + 1.66666667e-1f;
  p = p * r + 0.5f;
  p = p * r + 1.0f;
  p = p * r + 1.0f;
  uint32_t tb;
  memcpy(&tb, &t, sizeof tb);
  /* The low mantissa bits of t hold n; n + 127 lies in [1, 254], a normal
   * power of two. Unsigned math keeps NaN inputs free of overflow. */
  uint32_t eb = (tb - 0x4b400000u + 127u) << 23;
  float scale;
  memcpy(&scale, &eb, sizeof scale);
  return p * scale;
}

/* "Double accumulation" in this library means: float partial sums over
 * blocks of at most K_SUM_BLOCK terms (which vectorize; 4 lanes of 16 terms
 * keep their rounding within a few ulp), added into a double running
 * total. A plain double accumulator over floats does not vectorize and
 * costs about twice as much. */
#define K_SUM_BLOCK 64

/* sum_j exp(x[j] - m) for j < n, also storing each term in e when e is not
 * NULL (e may alias x). */
static inline double k_sum_exp(float *e, const float *x, float m, int64_t n) {
  double total = 0.0;
  for (int64_t j0 = 0; j0 < n; j0 += K_SUM_BLOCK) {
    int64_t nb = n - j0 < K_SUM_BLOCK ? n - j0 : K_SUM_BLOCK;
    float part = 0.0f;
    if (e) {
#pragma omp simd reduction(+ : part)
      for (int64_t j = 0; j < nb; j++) {
        float v = k_expf(x[j0 + j] - m);
        e[j0 + j] = v;
        part += v;
      }
    } else {
#pragma omp simd reduction(+ : part)
      for (int64_t j = 0; j < nb; j++) part += k_expf(x[j0 + j] - m);
    }
    total += part;
  }
  return total;
}

/* max_j x[j] for n >= 1 (for NaN-free rows; a NaN may or may not win).
 * Eight independent running maxima, an elementwise select that vectorizes
 * without relying on a reduction clause. */
static inline float k_max_row(const float *x, int64_t n) {
  float lane[8];
  for (int i = 0; i < 8; i++) lane[i] = x[0];
  int64_t j = 0;
  for (; j + 8 <= n; j += 8)
    for (int i = 0; i < 8; i++) lane[i] = x[j + i] > lane[i] ? x[j + i] : lane[i];
  float m = lane[0];
  for (int i = 1; i < 8; i++) m = lane[i] > m ? lane[i] : m;
  for (; j < n; j++) m = x[j] > m ? x[j] : m;
  return m;
}

static inline int64_t k_min64(int64_t a, int64_t b) { return a < b ? a : b; }

#endif
