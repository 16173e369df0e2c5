/* k_cast.c: fp32 <-> bf16/fp16 conversions, and GEMMs on 16-bit operands.
 *
 * Mixed precision on the CPU stores bf16/fp16 values as their 16-bit bit
 * patterns and computes in fp32, so the precision logic (which values are
 * rounded, where) runs and is tested without a GPU. The conversions round
 * to nearest even, keep NaN a NaN and overflow to infinity exactly as the
 * GPU's __float2bfloat16_rn / __float2half_rn do. A 16-bit GEMM widens its
 * operands into caller-given fp32 scratch and runs the fp32 GEMM: products
 * of two bf16 (or fp16) values are exact in fp32, so it differs from a
 * tensor-core GEMM only in summation order.
 *
 * Invariant: every output element depends only on the input at its index,
 * so results are identical for any thread count.
 */
#include <string.h>

#include "k_internal.h"

static inline uint32_t bits_of(float f) {
  uint32_t u;
  memcpy(&u, &f, sizeof u);
  return u;
}

static inline float float_of(uint32_t u) {
  float f;
  memcpy(&f, &u, sizeof f);
  return f;
}

uint16_t k_f32_to_bf16(float f) {
  uint32_t u = bits_of(f);
  if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40u); /* quiet NaN */
  u += 0x7fffu + ((u >> 16) & 1u); /* ties to the even bf16 */
  return (uint16_t)(u >> 16);
}

float k_bf16_to_f32(uint16_t h) { return float_of((uint32_t)h << 16); }

uint16_t k_f32_to_f16(float f) {
  uint32_t u = bits_of(f);
  uint16_t sign = (uint16_t)((u >> 16) & 0x8000u);
  uint32_t a = u & 0x7fffffffu;
  if (a > 0x7f800000u) return sign | 0x7e00u; /* NaN */
  if (a >= 0x477ff000u) return sign | 0x7c00u; /* rounds past 65504: infinity */
  if (a >= 0x38800000u) {                        /* a normal half (>= 2^-14) */
    a -= (uint32_t)(127 - 15) << 23;             /* rebias the exponent */
    a += 0xfffu + ((a >> 13) & 1u);              /* ties to even */
    return sign | (uint16_t)(a >> 13);
  }
  if (a < 0x33000000u) return sign; /* at most 2^-25: rounds to zero */
  /* Subnormal half: the value in units of 2^-24, rounded to nearest even. */
  uint32_t m = (a & 0x7fffffu) | 0x800000u;
  int shift = 126 - (int)(a >> 23); /* 14 .. 24 */
  uint32_t r = m >> shift, rem = m & ((1u << shift) - 1u), half = 1u << (shift - 1);
  if (rem > half || (rem == half && (r & 1u))) r++;
  return sign | (uint16_t)r;
}

float k_f16_to_f32(uint16_t h) {
  uint32_t sign = (uint32_t)(h & 0x8000u) << 16, e = (h >> 10) & 0x1fu, m = h & 0x3ffu;
  if (e == 0x1f) return float_of(sign | 0x7f800000u | (m << 13)); /* Inf, NaN */
  if (e == 0) {
    if (!m) return float_of(sign);
    float v = (float)m * (1.0f / 16777216.0f); /* m * 2^-24, exact */
    return sign ? -v : v;
  }
  return float_of(sign | ((e + 127 - 15) << 23) | (m << 13));
}

void k_cast_from_f32(KDtype dt, uint16_t *out, const float *x, int64_t n) {
  if (dt == K_DT_BF16) {
#pragma omp parallel for simd if (n >= K_PAR_MIN) schedule(static)
    for (int64_t i = 0; i < n; i++) out[i] = k_f32_to_bf16(x[i]);
  } else {
#pragma omp parallel for if (n >= K_PAR_MIN) schedule(static)
    for (int64_t i = 0; i < n; i++) out[i] = k_f32_to_f16(x[i]);
  }
}

void k_cast_to_f32(KDtype dt, float *out, const uint16_t *x, int64_t n) {
  if (dt == K_DT_BF16) {
#pragma omp parallel for simd if (n >= K_PAR_MIN) schedule(static)
    for (int64_t i = 0; i < n; i++) out[i] = k_bf16_to_f32(x[i]);
  } else {
#pragma omp parallel for if (n >= K_PAR_MIN) schedule(static)
    for (int64_t i = 0; i < n; i++) out[i] = k_f16_to_f32(x[i]);
  }
}

void k_matmul_lowp(KDtype dt, int64_t batch, float *out, const uint16_t *a, int64_t na, const uint16_t *b,
                   int64_t nb, int64_t M, int64_t K, int64_t N, bool trans_a, bool trans_b, float beta,
                   int64_t stride_out, int64_t stride_a, int64_t stride_b, float *work) {
  float *wa = work, *wb = work + na;
  k_cast_to_f32(dt, wa, a, na);
  k_cast_to_f32(dt, wb, b, nb);
  if (batch <= 1) k_matmul(out, wa, wb, M, K, N, trans_a, trans_b, beta);
  else k_matmul_batched(batch, out, wa, wb, M, K, N, trans_a, trans_b, beta, stride_out, stride_a, stride_b);
}
