/* kc_softmax.cu: softmax over the last dim and the fused softmax +
 * cross-entropy classifier.
 *
 * Invariants:
 *  - One block per row. Each thread keeps an online (max, sum of exp) pair
 *    over its strided columns; the pairs merge in a fixed shuffle tree, so
 *    the row is read once for its statistics and nothing overflows for
 *    finite inputs. NaN inputs propagate to the row's outputs.
 *  - Cross-entropy stores no probabilities for its backward: the backward
 *    recomputes the row's log-sum-exp. The mean loss is summed by a single
 *    block in a fixed order (double), not with atomics.
 */
#include "kc_internal.cuh"

/* Threads per row block: a warp for short rows, up to 256 for long ones. */
static int row_threads(int64_t C) { return C > 1024 ? 256 : C > 256 ? 128 : 32; }

/* Adds x to an online (max, sum) pair. -inf adds nothing; NaN poisons. */
__device__ __forceinline__ void maxsum_push(KcMaxSum &a, float v) {
  float m = fmaxf(a.m, v); /* a NaN v leaves m, then poisons s below */
  if (m != a.m) {
    a.s *= expf(a.m - m); /* a.m = -inf: a.s is 0 and stays 0 */
    a.m = m;
  }
  a.s += v == -INFINITY ? 0.0f : expf(v - a.m);
}

/* The row's (max, sum) over all of xr (C), for every thread of the block. */
__device__ __forceinline__ KcMaxSum row_maxsum(const float *xr, int64_t C) {
  __shared__ KcMaxSum shared[32];
  KcMaxSum a = {-INFINITY, 0.0f};
  for (int64_t c = threadIdx.x; c < C; c += blockDim.x) maxsum_push(a, xr[c]);
  return kc_block_maxsum(a, shared);
}

/* ---- softmax */

__global__ void softmax_forward_kernel(float *out, const float *x, int64_t C) {
  const float *xr = x + blockIdx.x * C;
  float *yr = out + blockIdx.x * C;
  KcMaxSum ms = row_maxsum(xr, C);
  float inv = 1.0f / ms.s;
  for (int64_t c = threadIdx.x; c < C; c += blockDim.x) yr[c] = expf(xr[c] - ms.m) * inv;
}

extern "C" void kc_softmax_forward(float *out, const float *x, int64_t N, int64_t C,
                                   cudaStream_t stream) {
  if (N <= 0 || C <= 0) return;
  softmax_forward_kernel<<<(unsigned)N, row_threads(C), 0, stream>>>(out, x, C);
  KC_CHECK_LAUNCH();
}

/* dx += out * (dout - sum_c dout*out). */
__global__ void softmax_backward_kernel(float *dx, const float *dout, const float *out,
                                        int64_t C) {
  __shared__ float shared[32];
  const float *yr = out + blockIdx.x * C, *gr = dout + blockIdx.x * C;
  float *dr = dx + blockIdx.x * C;
  float dot = 0.0f;
  for (int64_t c = threadIdx.x; c < C; c += blockDim.x) dot += gr[c] * yr[c];
  dot = kc_block_sum(dot, shared);
  for (int64_t c = threadIdx.x; c < C; c += blockDim.x) dr[c] += yr[c] * (gr[c] - dot);
}

extern "C" void kc_softmax_backward(float *dx, const float *dout, const float *out, int64_t N,
                                    int64_t C, cudaStream_t stream) {
  if (N <= 0 || C <= 0) return;
  softmax_backward_kernel<<<(unsigned)N, row_threads(C), 0, stream>>>(dx, dout, out, C);
  KC_CHECK_LAUNCH();
}

/* ---- cross-entropy */

__global__ void crossentropy_forward_kernel(float *losses, float *probs, const float *logits,
                                            const int32_t *targets, int64_t V) {
  int64_t n = blockIdx.x;
  const float *xr = logits + n * V;
  int64_t t = targets[n];
  bool ok = t >= 0 && t < V;
  KcMaxSum ms = row_maxsum(xr, V);
  double lse = (double)ms.m + log((double)ms.s);
  if (threadIdx.x == 0) losses[n] = ok ? (float)(lse - (double)xr[t]) : 0.0f;
  if (probs) {
    float lf = (float)lse;
    float *pr = probs + n * V;
    for (int64_t c = threadIdx.x; c < V; c += blockDim.x) pr[c] = expf(xr[c] - lf);
  }
}

/* One block: mean of losses (N), threads summing strided in double, then
 * the block's fixed tree. */
__global__ void mean_kernel(double *mean, const float *losses, int64_t N) {
  __shared__ double shared[32];
  double s = 0.0;
  for (int64_t n = threadIdx.x; n < N; n += blockDim.x) s += losses[n];
  s = kc_block_sum(s, shared);
  if (threadIdx.x == 0) *mean = N > 0 ? s / (double)N : 0.0;
}

extern "C" void kc_crossentropy_forward(double *mean_loss, float *losses, float *probs,
                                        const float *logits, const int32_t *targets, int64_t N,
                                        int64_t V, int64_t *first_bad, cudaStream_t stream) {
  kc_find_bad_ids(first_bad, targets, N, V, stream);
  if (N > 0) {
    if (V <= 0) {
      KC_CHECK(cudaMemsetAsync(losses, 0, (size_t)N * sizeof(float), stream));
    } else {
      crossentropy_forward_kernel<<<(unsigned)N, row_threads(V), 0, stream>>>(losses, probs,
                                                                             logits, targets, V);
      KC_CHECK_LAUNCH();
    }
  }
  if (mean_loss) {
    mean_kernel<<<1, 1024, 0, stream>>>(mean_loss, losses, N);
    KC_CHECK_LAUNCH();
  }
}

/* dlogits += dloss * (softmax - onehot); the target column adds g*p, then
 * subtracts g, in the CPU twin's order. */
__global__ void crossentropy_backward_kernel(float *dlogits, const float *logits,
                                             const int32_t *targets, const float *dloss,
                                             int64_t V) {
  int64_t n = blockIdx.x;
  int64_t t = targets[n];
  if (t < 0 || t >= V) return; /* the whole block leaves before any sync */
  const float *xr = logits + n * V;
  float *dr = dlogits + n * V;
  KcMaxSum ms = row_maxsum(xr, V);
  float lse = (float)((double)ms.m + log((double)ms.s));
  float g = dloss[n];
  for (int64_t c = threadIdx.x; c < V; c += blockDim.x) {
    float d = dr[c] + g * expf(xr[c] - lse);
    if (c == t) d -= g;
    dr[c] = d;
  }
}

extern "C" void kc_crossentropy_backward(float *dlogits, const float *logits,
                                         const int32_t *targets, const float *dloss, int64_t N,
                                         int64_t V, int64_t *first_bad, cudaStream_t stream) {
  kc_find_bad_ids(first_bad, targets, N, V, stream);
  if (N <= 0 || V <= 0) return;
  crossentropy_backward_kernel<<<(unsigned)N, row_threads(V), 0, stream>>>(dlogits, logits,
                                                                          targets, dloss, V);
  KC_CHECK_LAUNCH();
}
