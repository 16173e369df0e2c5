/* kc_internal.cuh: helpers shared by the CUDA kernel sources, not part of
 * the API: the cuBLAS overload of KC_CHECK, launch sizing, warp and block
 * reductions, and the alignment test for float4 paths.
 *
 * Invariants: every reduction here combines values in an order fixed by
 * the launch shape (lane and warp numbers), never by timing, so results
 * are reproducible run to run.
 */
#ifndef DST_KC_INTERNAL_CUH
#define DST_KC_INTERNAL_CUH

#include <cublasLt.h>
#include <cuda_runtime.h>
#include <stdint.h>

#include "k_cuda.h"

/* KC_CHECK on a cuBLAS / cuBLASLt status. */
void kc_check_cublas(cublasStatus_t st, const char *file, int line, const char *expr);
static inline void kc_check_(cublasStatus_t st, const char *file, int line, const char *expr) {
  kc_check_cublas(st, file, line, expr);
}

/* After every launch: reports a bad configuration at its call site. */
#define KC_CHECK_LAUNCH() KC_CHECK(cudaGetLastError())

/* Threads per block for 1-D kernels. */
#define KC_THREADS 256
/* Grid-stride loops cap their grid here: plenty of blocks to fill any
 * current GPU, and gridDim.x stays far below its limit. */
#ifndef KC_MAX_BLOCKS
#define KC_MAX_BLOCKS 8192
#endif

/* Blocks for `work` items at `per_block` items per block, in [1, cap]. */
static inline unsigned kc_blocks(int64_t work, int64_t per_block, int64_t cap = KC_MAX_BLOCKS) {
  int64_t b = (work + per_block - 1) / per_block;
  if (b < 1) b = 1;
  if (b > cap) b = cap;
  return (unsigned)b;
}

/* True when p is 16-byte aligned (float4 loads and stores). */
static inline bool kc_aligned16(const void *p) { return ((uintptr_t)p & 15u) == 0; }

#define KC_FULL_MASK 0xffffffffu

__device__ __forceinline__ float kc_warp_sum(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(KC_FULL_MASK, v, o);
  return v;
}

__device__ __forceinline__ double kc_warp_sum(double v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(KC_FULL_MASK, v, o);
  return v;
}

__device__ __forceinline__ float kc_warp_max(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(KC_FULL_MASK, v, o));
  return v;
}

/* Sum over the whole block (blockDim.x a multiple of 32, at most 1024);
 * every thread gets the result. `shared` holds 32 values of T. All threads
 * must call it; it synchronizes, and may be called again right away. */
template <typename T>
__device__ __forceinline__ T kc_block_sum(T v, T *shared) {
  int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nwarp = blockDim.x >> 5;
  v = kc_warp_sum(v);
  __syncthreads(); /* the previous call's readers are done with shared */
  if (lane == 0) shared[warp] = v;
  __syncthreads();
  T r = lane < nwarp ? shared[lane] : (T)0;
  return kc_warp_sum(r);
}

/* Online-softmax pair: running max m and sum s of exp(x - m). */
struct KcMaxSum {
  float m;
  float s;
};

/* Merges two partial (max, sum) pairs; -inf maxima (nothing seen) are
 * handled without NaN. */
__device__ __forceinline__ KcMaxSum kc_maxsum_merge(KcMaxSum a, KcMaxSum b) {
  float m = fmaxf(a.m, b.m);
  if (m == -INFINITY) return {m, 0.0f};
  return {m, a.s * expf(a.m - m) + b.s * expf(b.m - m)};
}

__device__ __forceinline__ KcMaxSum kc_block_maxsum(KcMaxSum v, KcMaxSum *shared) {
  int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nwarp = blockDim.x >> 5;
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) {
    KcMaxSum w = {__shfl_xor_sync(KC_FULL_MASK, v.m, o), __shfl_xor_sync(KC_FULL_MASK, v.s, o)};
    v = kc_maxsum_merge(v, w);
  }
  __syncthreads();
  if (lane == 0) shared[warp] = v;
  __syncthreads();
  KcMaxSum r = lane < nwarp ? shared[lane] : KcMaxSum{-INFINITY, 0.0f};
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) {
    KcMaxSum w = {__shfl_xor_sync(KC_FULL_MASK, r.m, o), __shfl_xor_sync(KC_FULL_MASK, r.s, o)};
    r = kc_maxsum_merge(r, w);
  }
  return r;
}

/* Records the smallest bad position into *first_bad (initialized to all
 * ones, i.e. KC_IDS_VALID, by kc_first_bad_init). Unsigned min: -1 is the
 * largest value, so any real position wins. */
__device__ __forceinline__ void kc_note_bad(int64_t *first_bad, int64_t pos) {
  atomicMin(reinterpret_cast<unsigned long long *>(first_bad), (unsigned long long)pos);
}
void kc_first_bad_init(int64_t *first_bad, cudaStream_t stream);
/* Writes the first index n with ids[n] outside [0, V) into *first_bad
 * (KC_IDS_VALID when none); nothing when first_bad is NULL. */
void kc_find_bad_ids(int64_t *first_bad, const int32_t *ids, int64_t N, int64_t V,
                     cudaStream_t stream);

/* Makes `bytes` of dynamic shared memory launchable for kernel func (the
 * opt-in above 48 KiB). */
void kc_allow_smem(const void *func, size_t bytes);

#endif
