/* kc_pointwise.cu: elementwise kernels: fill/add/scale/axpy, activations
 * (GELU, SiLU, ReLU, SwiGLU), counter-based random fills and dropout,
 * fp32 <-> bf16/fp16 casts, and the Inf/NaN check of dynamic loss scaling.
 *
 * Invariants: each output element depends only on the inputs at its index
 * (and, for random kernels, on (seed, offset + index) through the same
 * hash as the CPU twin), so any launch shape gives the same bits.
 * Grid-stride loops with 64-bit indices; when every pointer is 16-byte
 * aligned the body moves float4s and a scalar loop takes the tail.
 */
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "kc_internal.cuh"

/* ---- the generic map: out[i] (=|+=) f(a[i], b[i]) */

/* NIN inputs (1: b unused), ACC: accumulate into out. out may alias a or
 * b: each index is read before it is written, by the same thread. */
template <int NIN, bool ACC, class F>
__global__ void map_kernel(float *out, const float *a, const float *b, int64_t n, bool vec, F f) {
  int64_t tid = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
  int64_t stride = (int64_t)gridDim.x * blockDim.x;
  int64_t start = 0;
  if (vec) {
    int64_t n4 = n / 4;
    for (int64_t i = tid; i < n4; i += stride) {
      float4 va = reinterpret_cast<const float4 *>(a)[i];
      float4 vb = va;
      if constexpr (NIN > 1) vb = reinterpret_cast<const float4 *>(b)[i];
      float4 r = {f(va.x, vb.x), f(va.y, vb.y), f(va.z, vb.z), f(va.w, vb.w)};
      if constexpr (ACC) {
        float4 o = reinterpret_cast<float4 *>(out)[i];
        r.x += o.x;
        r.y += o.y;
        r.z += o.z;
        r.w += o.w;
      }
      reinterpret_cast<float4 *>(out)[i] = r;
    }
    start = n4 * 4;
  }
  for (int64_t i = start + tid; i < n; i += stride) {
    float va = a[i];
    float vb = va;
    if constexpr (NIN > 1) vb = b[i];
    float r = f(va, vb);
    if constexpr (ACC) r += out[i];
    out[i] = r;
  }
}

template <int NIN, bool ACC, class F>
static void launch_map(float *out, const float *a, const float *b, int64_t n, F f,
                       cudaStream_t stream) {
  if (n <= 0) return;
  bool vec = kc_aligned16(out) && kc_aligned16(a) && (NIN < 2 || kc_aligned16(b));
  int64_t work = vec ? (n + 3) / 4 : n;
  map_kernel<NIN, ACC, F><<<kc_blocks(work, KC_THREADS), KC_THREADS, 0, stream>>>(out, a, b, n, vec,
                                                                                f);
  KC_CHECK_LAUNCH();
}

/* ---- fill, add, scale, axpy */

__global__ void fill_kernel(float *x, float value, int64_t n) {
  int64_t stride = (int64_t)gridDim.x * blockDim.x;
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += stride)
    x[i] = value;
}

extern "C" void kc_fill(float *x, float value, int64_t n, cudaStream_t stream) {
  if (n <= 0) return;
  if (value == 0.0f && !signbit(value)) { /* +0.0 is all zero bytes; -0.0 is not */
    KC_CHECK(cudaMemsetAsync(x, 0, (size_t)n * sizeof(float), stream));
    return;
  }
  fill_kernel<<<kc_blocks(n, KC_THREADS), KC_THREADS, 0, stream>>>(x, value, n);
  KC_CHECK_LAUNCH();
}

struct AddOp {
  __device__ float operator()(float a, float b) const { return a + b; }
};
struct ScaleOp {
  float s;
  __device__ float operator()(float x, float) const { return s * x; }
};

extern "C" void kc_add(float *out, const float *a, const float *b, int64_t n,
                       cudaStream_t stream) {
  launch_map<2, false>(out, a, b, n, AddOp{}, stream);
}

extern "C" void kc_scale(float *out, const float *x, float s, int64_t n, cudaStream_t stream) {
  launch_map<1, false>(out, x, nullptr, n, ScaleOp{s}, stream);
}

extern "C" void kc_axpy(float *y, float alpha, const float *x, int64_t n, cudaStream_t stream) {
  launch_map<1, true>(y, x, nullptr, n, ScaleOp{alpha}, stream);
}

/* ---- GELU (tanh approximation) */

#define KC_GELU_C 0.7978845608028654f /* sqrt(2/pi) */
#define KC_GELU_A 0.044715f

struct GeluFwd {
  __device__ float operator()(float x, float) const {
    float u = KC_GELU_C * (x + KC_GELU_A * x * x * x);
    return 0.5f * x * (1.0f + tanhf(u));
  }
};
struct GeluBwd { /* (x, dout) -> gelu'(x) * dout */
  __device__ float operator()(float x, float g) const {
    float u = KC_GELU_C * (x + KC_GELU_A * x * x * x);
    float t = tanhf(u);
    float du = KC_GELU_C * (1.0f + 3.0f * KC_GELU_A * x * x);
    return (0.5f * (1.0f + t) + 0.5f * x * (1.0f - t * t) * du) * g;
  }
};

extern "C" void kc_gelu_forward(float *out, const float *x, int64_t n, cudaStream_t stream) {
  launch_map<1, false>(out, x, nullptr, n, GeluFwd{}, stream);
}

extern "C" void kc_gelu_backward(float *dx, const float *x, const float *dout, int64_t n,
                                 cudaStream_t stream) {
  launch_map<2, true>(dx, x, dout, n, GeluBwd{}, stream);
}

/* ---- SiLU, ReLU, SwiGLU */

__device__ __forceinline__ float sigmoidf_(float x) { return 1.0f / (1.0f + expf(-x)); }

struct SiluFwd {
  __device__ float operator()(float x, float) const { return x * sigmoidf_(x); }
};
struct SiluBwd {
  __device__ float operator()(float x, float g) const {
    float s = sigmoidf_(x);
    return g * s * (1.0f + x * (1.0f - s));
  }
};
struct ReluFwd {
  __device__ float operator()(float x, float) const { return x > 0.0f ? x : 0.0f; }
};
struct ReluBwd {
  __device__ float operator()(float x, float g) const { return x > 0.0f ? g : 0.0f; }
};
struct SwigluFwd {
  __device__ float operator()(float a, float b) const { return a * sigmoidf_(a) * b; }
};

extern "C" void kc_silu_forward(float *out, const float *x, int64_t n, cudaStream_t stream) {
  launch_map<1, false>(out, x, nullptr, n, SiluFwd{}, stream);
}
extern "C" void kc_silu_backward(float *dx, const float *x, const float *dout, int64_t n,
                                 cudaStream_t stream) {
  launch_map<2, true>(dx, x, dout, n, SiluBwd{}, stream);
}
extern "C" void kc_relu_forward(float *out, const float *x, int64_t n, cudaStream_t stream) {
  launch_map<1, false>(out, x, nullptr, n, ReluFwd{}, stream);
}
extern "C" void kc_relu_backward(float *dx, const float *x, const float *dout, int64_t n,
                                 cudaStream_t stream) {
  launch_map<2, true>(dx, x, dout, n, ReluBwd{}, stream);
}
extern "C" void kc_swiglu_forward(float *out, const float *a, const float *b, int64_t n,
                                  cudaStream_t stream) {
  launch_map<2, false>(out, a, b, n, SwigluFwd{}, stream);
}

/* Two optional outputs: scalar loop (the gate is rarely the bottleneck
 * next to its GEMMs). */
__global__ void swiglu_backward_kernel(float *da, float *db, const float *dout, const float *a,
                                       const float *b, int64_t n) {
  int64_t stride = (int64_t)gridDim.x * blockDim.x;
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += stride) {
    float ai = a[i], g = dout[i];
    float s = sigmoidf_(ai);
    if (da) da[i] += g * b[i] * s * (1.0f + ai * (1.0f - s));
    if (db) db[i] += g * ai * s;
  }
}

extern "C" void kc_swiglu_backward(float *da, float *db, const float *dout, const float *a,
                                   const float *b, int64_t n, cudaStream_t stream) {
  if (n <= 0 || (!da && !db)) return;
  swiglu_backward_kernel<<<kc_blocks(n, KC_THREADS), KC_THREADS, 0, stream>>>(da, db, dout, a, b,
                                                                              n);
  KC_CHECK_LAUNCH();
}

/* ---- counter-based random numbers: k_rng_hash, bit for bit */

__device__ __forceinline__ uint64_t mix64(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

__device__ __forceinline__ uint64_t rng_hash(uint64_t seed, uint64_t counter) {
  return mix64(mix64(seed ^ 0x6a09e667f3bcc909ULL) + counter * 0x9e3779b97f4a7c15ULL);
}

__global__ void fill_uniform_kernel(float *x, int64_t n, float lo, float span, uint64_t seed,
                                    uint64_t offset) {
  int64_t stride = (int64_t)gridDim.x * blockDim.x;
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += stride) {
    float u = (float)(rng_hash(seed, offset + (uint64_t)i) >> 40) * 0x1p-24f;
    x[i] = __fadd_rn(lo, __fmul_rn(span, u)); /* no FMA: the CPU rounds twice */
  }
}

extern "C" void kc_fill_uniform(float *x, int64_t n, float lo, float hi, uint64_t seed,
                                uint64_t offset, cudaStream_t stream) {
  if (n <= 0) return;
  fill_uniform_kernel<<<kc_blocks(n, KC_THREADS), KC_THREADS, 0, stream>>>(x, n, lo, hi - lo, seed,
                                                                           offset);
  KC_CHECK_LAUNCH();
}

/* Box-Muller in double as on the CPU; log/cos may differ from glibc's in
 * the last double ulp, which the final rounding to float almost always
 * hides. */
__global__ void fill_normal_kernel(float *x, int64_t n, float mean, float std, uint64_t seed,
                                   uint64_t offset) {
  int64_t stride = (int64_t)gridDim.x * blockDim.x;
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += stride) {
    uint64_t c = 2 * (offset + (uint64_t)i);
    double u1 = ((double)(rng_hash(seed, c) >> 11) + 1.0) * 0x1p-53; /* (0,1] */
    double u2 = (double)(rng_hash(seed, c + 1) >> 11) * 0x1p-53;
    double z = sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
    x[i] = (float)(mean + std * z);
  }
}

extern "C" void kc_fill_normal(float *x, int64_t n, float mean, float std, uint64_t seed,
                               uint64_t offset, cudaStream_t stream) {
  if (n <= 0) return;
  fill_normal_kernel<<<kc_blocks(n, KC_THREADS), KC_THREADS, 0, stream>>>(x, n, mean, std, seed,
                                                                          offset);
  KC_CHECK_LAUNCH();
}

/* ---- dropout: the CPU's threshold and scale */

static uint64_t drop_threshold(float p) {
  if (p <= 0.0f) return 0;
  if (p >= 1.0f) return (uint64_t)1 << 32;
  return (uint64_t)((double)p * 4294967296.0);
}

static float keep_scale(float p) { return p >= 1.0f ? 0.0f : p <= 0.0f ? 1.0f : 1.0f / (1.0f - p); }

/* ACC = false: out = mask(x); ACC = true: out += mask(x) (the backward). */
template <bool ACC>
__global__ void dropout_kernel(float *out, const float *x, int64_t n, uint64_t thr, float scale,
                               uint64_t seed, uint64_t offset) {
  int64_t stride = (int64_t)gridDim.x * blockDim.x;
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += stride) {
    bool drop = (rng_hash(seed, offset + (uint64_t)i) >> 32) < thr;
    if constexpr (ACC) {
      if (!drop) out[i] += x[i] * scale;
    } else {
      out[i] = drop ? 0.0f : x[i] * scale;
    }
  }
}

extern "C" void kc_dropout_forward(float *out, const float *x, int64_t n, float p, uint64_t seed,
                                   uint64_t offset, cudaStream_t stream) {
  if (n <= 0) return;
  dropout_kernel<false><<<kc_blocks(n, KC_THREADS), KC_THREADS, 0, stream>>>(
      out, x, n, drop_threshold(p), keep_scale(p), seed, offset);
  KC_CHECK_LAUNCH();
}

extern "C" void kc_dropout_backward(float *dx, const float *dout, int64_t n, float p,
                                    uint64_t seed, uint64_t offset, cudaStream_t stream) {
  if (n <= 0) return;
  dropout_kernel<true><<<kc_blocks(n, KC_THREADS), KC_THREADS, 0, stream>>>(
      dx, dout, n, drop_threshold(p), keep_scale(p), seed, offset);
  KC_CHECK_LAUNCH();
}

/* ---- casts */

template <bool BF16>
__global__ void cast_from_f32_kernel(uint16_t *out, const float *x, int64_t n) {
  int64_t stride = (int64_t)gridDim.x * blockDim.x;
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += stride) {
    if constexpr (BF16)
      out[i] = __bfloat16_as_ushort(__float2bfloat16_rn(x[i]));
    else
      out[i] = __half_as_ushort(__float2half_rn(x[i]));
  }
}

template <bool BF16>
__global__ void cast_to_f32_kernel(float *out, const uint16_t *x, int64_t n) {
  int64_t stride = (int64_t)gridDim.x * blockDim.x;
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += stride) {
    if constexpr (BF16)
      out[i] = __bfloat162float(__ushort_as_bfloat16(x[i]));
    else
      out[i] = __half2float(__ushort_as_half(x[i]));
  }
}

extern "C" void kc_cast_f32_to_bf16(uint16_t *out, const float *x, int64_t n,
                                    cudaStream_t stream) {
  if (n <= 0) return;
  cast_from_f32_kernel<true><<<kc_blocks(n, KC_THREADS), KC_THREADS, 0, stream>>>(out, x, n);
  KC_CHECK_LAUNCH();
}

extern "C" void kc_cast_bf16_to_f32(float *out, const uint16_t *x, int64_t n,
                                    cudaStream_t stream) {
  if (n <= 0) return;
  cast_to_f32_kernel<true><<<kc_blocks(n, KC_THREADS), KC_THREADS, 0, stream>>>(out, x, n);
  KC_CHECK_LAUNCH();
}

extern "C" void kc_cast_f32_to_f16(uint16_t *out, const float *x, int64_t n,
                                   cudaStream_t stream) {
  if (n <= 0) return;
  cast_from_f32_kernel<false><<<kc_blocks(n, KC_THREADS), KC_THREADS, 0, stream>>>(out, x, n);
  KC_CHECK_LAUNCH();
}

extern "C" void kc_cast_f16_to_f32(float *out, const uint16_t *x, int64_t n,
                                   cudaStream_t stream) {
  if (n <= 0) return;
  cast_to_f32_kernel<false><<<kc_blocks(n, KC_THREADS), KC_THREADS, 0, stream>>>(out, x, n);
  KC_CHECK_LAUNCH();
}

/* ---- Inf/NaN check */

/* Each block ORs its threads' findings; one thread per finding block stores
 * 1 (all writers store the same value, so the race is benign). */
__global__ void check_finite_kernel(int *flag, const float *x, int64_t n) {
  int64_t stride = (int64_t)gridDim.x * blockDim.x;
  int bad = 0;
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += stride)
    bad |= !isfinite(x[i]);
  if (__syncthreads_or(bad) && threadIdx.x == 0) *flag = 1;
}

extern "C" void kc_check_finite(int *flag, const float *x, int64_t n, cudaStream_t stream) {
  if (n <= 0) return;
  check_finite_kernel<<<kc_blocks(n, KC_THREADS), KC_THREADS, 0, stream>>>(flag, x, n);
  KC_CHECK_LAUNCH();
}
