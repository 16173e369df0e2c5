/* k_pointwise.c: elementwise helpers, activations, counter-based random
 * numbers and dropout.
 *
 * Invariants: every output element depends only on the inputs at the same
 * index (and, for random kernels, on (seed, offset + index)), so results are
 * identical for any thread count. Backward kernels accumulate into dx.
 */
#include <math.h>
#include <string.h>

#include "k_internal.h"

void k_fill(float *x, float value, int64_t n) {
  if (value == 0.0f) {
    memset(x, 0, (size_t)(n > 0 ? n : 0) * sizeof(float));
    return;
  }
#pragma omp parallel for simd if (n >= K_PAR_MIN) schedule(static)
  for (int64_t i = 0; i < n; i++) x[i] = value;
}

void k_add(float *out, const float *a, const float *b, int64_t n) {
#pragma omp parallel for simd if (n >= K_PAR_MIN) schedule(static)
  for (int64_t i = 0; i < n; i++) out[i] = a[i] + b[i];
}

void k_scale(float *out, const float *x, float s, int64_t n) {
#pragma omp parallel for simd if (n >= K_PAR_MIN) schedule(static)
  for (int64_t i = 0; i < n; i++) out[i] = s * x[i];
}

void k_axpy(float *y, float alpha, const float *x, int64_t n) {
#pragma omp parallel for simd if (n >= K_PAR_MIN) schedule(static)
  for (int64_t i = 0; i < n; i++) y[i] += alpha * x[i];
}

/* ---- GELU (tanh approximation) */

#define K_GELU_C 0.7978845608028654f /* sqrt(2/pi) */
#define K_GELU_A 0.044715f

/* tanh through the vectorizable exp; absolute error ~1e-7, which is what
 * GELU needs since it only ever uses 1 + tanh and 1 - tanh^2. */
static inline float tanh_fast(float u) { return 1.0f - 2.0f / (1.0f + k_expf(2.0f * u)); }

void k_gelu_forward(float *out, const float *x, int64_t n) {
#pragma omp parallel for simd if (n >= K_PAR_MIN) schedule(static)
  for (int64_t i = 0; i < n; i++) {
    float xi = x[i];
    float u = K_GELU_C * (xi + K_GELU_A * xi * xi * xi);
    out[i] = 0.5f * xi * (1.0f + tanh_fast(u));
  }
}

void k_gelu_backward(float *dx, const float *x, const float *dout, int64_t n) {
#pragma omp parallel for simd if (n >= K_PAR_MIN) schedule(static)
  for (int64_t i = 0; i < n; i++) {
    float xi = x[i];
    float u = K_GELU_C * (xi + K_GELU_A * xi * xi * xi);
    float t = tanh_fast(u);
    float du = K_GELU_C * (1.0f + 3.0f * K_GELU_A * xi * xi);
    float g = 0.5f * (1.0f + t) + 0.5f * xi * (1.0f - t * t) * du;
    dx[i] += g * dout[i];
  }
}

/* ---- SiLU, ReLU, SwiGLU */

static inline float sigmoidf(float x) { return 1.0f / (1.0f + k_expf(-x)); }

void k_silu_forward(float *out, const float *x, int64_t n) {
#pragma omp parallel for simd if (n >= K_PAR_MIN) schedule(static)
  for (int64_t i = 0; i < n; i++) out[i] = x[i] * sigmoidf(x[i]);
}

void k_silu_backward(float *dx, const float *x, const float *dout, int64_t n) {
#pragma omp parallel for simd if (n >= K_PAR_MIN) schedule(static)
  for (int64_t i = 0; i < n; i++) {
    float s = sigmoidf(x[i]);
    dx[i] += dout[i] * s * (1.0f + x[i] * (1.0f - s));
  }
}

void k_relu_forward(float *out, const float *x, int64_t n) {
#pragma omp parallel for simd if (n >= K_PAR_MIN) schedule(static)
  for (int64_t i = 0; i < n; i++) out[i] = x[i] > 0.0f ? x[i] : 0.0f;
}

void k_relu_backward(float *dx, const float *x, const float *dout, int64_t n) {
#pragma omp parallel for simd if (n >= K_PAR_MIN) schedule(static)
  for (int64_t i = 0; i < n; i++) dx[i] += x[i] > 0.0f ? dout[i] : 0.0f;
}

void k_swiglu_forward(float *out, const float *a, const float *b, int64_t n) {
#pragma omp parallel for simd if (n >= K_PAR_MIN) schedule(static)
  for (int64_t i = 0; i < n; i++) out[i] = a[i] * sigmoidf(a[i]) * b[i];
}

void k_swiglu_backward(float *da, float *db, const float *dout, const float *a, const float *b,
                       int64_t n) {
#pragma omp parallel for simd if (n >= K_PAR_MIN) schedule(static)
  for (int64_t i = 0; i < n; i++) {
    float s = sigmoidf(a[i]);
    if (da) da[i] += dout[i] * b[i] * s * (1.0f + a[i] * (1.0f - s));
    if (db) db[i] += dout[i] * a[i] * s;
  }
}

/* ---- counter-based random numbers */

/* The splitmix64 output function: a bijection on 64 bits in which every
 * input bit flips each output bit with probability close to 1/2. */
static inline uint64_t mix64(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

uint64_t k_rng_hash(uint64_t seed, uint64_t counter) {
  /* Seed is mixed first so nearby seeds give unrelated streams; the counter
   * then walks a Weyl sequence through the mixer. */
  return mix64(mix64(seed ^ 0x6a09e667f3bcc909ULL) + counter * 0x9e3779b97f4a7c15ULL);
}

void k_fill_uniform(float *x, int64_t n, float lo, float hi, uint64_t seed, uint64_t offset) {
  float span = hi - lo;
#pragma omp parallel for if (n >= K_PAR_MIN) schedule(static)
  for (int64_t i = 0; i < n; i++) {
    /* 24 bits: exactly representable in a float, so u < 1 strictly. */
    float u = (float)(k_rng_hash(seed, offset + (uint64_t)i) >> 40) * 0x1p-24f;
    x[i] = lo + span * u;
  }
}

void k_fill_normal(float *x, int64_t n, float mean, float std, uint64_t seed, uint64_t offset) {
#pragma omp parallel for if (n >= K_PAR_MIN) schedule(static)
  for (int64_t i = 0; i < n; i++) {
    uint64_t c = 2 * (offset + (uint64_t)i);
    double u1 = ((double)(k_rng_hash(seed, c) >> 11) + 1.0) * 0x1p-53; /* (0,1] */
    double u2 = (double)(k_rng_hash(seed, c + 1) >> 11) * 0x1p-53;
    double z = sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
    x[i] = (float)(mean + std * z);
  }
}

/* ---- dropout */

/* Element i is dropped when the high 32 hash bits fall below p * 2^32. */
static uint64_t drop_threshold(float p) {
  if (p <= 0.0f) return 0;
  if (p >= 1.0f) return (uint64_t)1 << 32;
  return (uint64_t)((double)p * 4294967296.0);
}

void k_dropout_forward(float *out, const float *x, int64_t n, float p, uint64_t seed,
                       uint64_t offset) {
  uint64_t thr = drop_threshold(p);
  float keep_scale = p >= 1.0f ? 0.0f : p <= 0.0f ? 1.0f : 1.0f / (1.0f - p);
#pragma omp parallel for if (n >= K_PAR_MIN) schedule(static)
  for (int64_t i = 0; i < n; i++) {
    bool drop = (k_rng_hash(seed, offset + (uint64_t)i) >> 32) < thr;
    out[i] = drop ? 0.0f : x[i] * keep_scale;
  }
}

void k_dropout_backward(float *dx, const float *dout, int64_t n, float p, uint64_t seed,
                        uint64_t offset) {
  uint64_t thr = drop_threshold(p);
  float keep_scale = p >= 1.0f ? 0.0f : p <= 0.0f ? 1.0f : 1.0f / (1.0f - p);
#pragma omp parallel for if (n >= K_PAR_MIN) schedule(static)
  for (int64_t i = 0; i < n; i++) {
    bool drop = (k_rng_hash(seed, offset + (uint64_t)i) >> 32) < thr;
    if (!drop) dx[i] += dout[i] * keep_scale;
  }
}
