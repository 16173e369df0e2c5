/* kc_reduce.cu: sum / mean / max over one dim of an (outer, dim, inner)
 * view, the global sum of squares for gradient clipping, and the clip
 * coefficient.
 *
 * Invariants: sums accumulate in double; every combination order is fixed
 * by the launch shape (which depends on the sizes only), so results are
 * reproducible; max follows the CPU twin exactly (first NaN wins, else the
 * first maximum), so its backward routes to the same element.
 */
#include "kc_internal.cuh"

enum { RED_SUM, RED_MEAN, RED_MAX };

/* A candidate for max: value and its position along dim. */
struct Arg {
  float v;
  int64_t i;
};

/* Whether a is the better max candidate than b: NaN beats numbers, then
 * the larger value, ties (and NaN pairs) to the smaller position. This is
 * what the CPU's sequential scan computes, in any combination order. */
__device__ __forceinline__ bool better(Arg a, Arg b) {
  bool an = isnan(a.v), bn = isnan(b.v);
  if (an != bn) return an;
  if (!an && a.v != b.v) return a.v > b.v;
  return a.i < b.i;
}

#define RX 32 /* inner elements per block (blockDim.x) */
#define RY 8  /* dim lanes per block (blockDim.y) */

/* Block (x: 32 inner positions, y: 8 dim lanes); block b covers outer
 * b / nchunk and inner chunk b % nchunk. Thread (tx, ty) reduces
 * d = ty, ty+8, ...; the 8 partials meet in shared memory in ty order.
 * MODE RED_MAX with dx: the backward (route dout to the argmax). */
template <int MODE, bool BACKWARD>
__global__ void reduce_kernel(float *out, const float *x, float *dx, const float *dout,
                              int64_t dim, int64_t inner, int64_t nchunk) {
  __shared__ double ssum[RY][RX];
  __shared__ Arg sarg[RY][RX];
  int tx = threadIdx.x, ty = threadIdx.y;
  int64_t o = blockIdx.x / nchunk, i = (blockIdx.x % nchunk) * RX + tx;
  bool live = i < inner;
  const float *xo = x + o * dim * inner + i;
  if (MODE == RED_MAX) {
    Arg best = {-INFINITY, INT64_MAX};
    if (live)
      for (int64_t d = ty; d < dim; d += RY) {
        Arg c = {xo[d * inner], d};
        if (better(c, best)) best = c;
      }
    sarg[ty][tx] = best;
  } else {
    double s = 0.0;
    if (live)
      for (int64_t d = ty; d < dim; d += RY) s += xo[d * inner];
    ssum[ty][tx] = s;
  }
  __syncthreads();
  if (ty != 0 || !live) return;
  if (MODE == RED_MAX) {
    Arg best = sarg[0][tx];
    for (int k = 1; k < RY; k++)
      if (better(sarg[k][tx], best)) best = sarg[k][tx];
    if (BACKWARD)
      dx[(o * dim + best.i) * inner + i] += dout[o * inner + i];
    else
      out[o * inner + i] = best.v; /* dim == 0: -inf, as on the CPU */
  } else {
    double s = 0.0;
    for (int k = 0; k < RY; k++) s += ssum[k][tx];
    if (MODE == RED_MEAN && dim > 0) s /= (double)dim;
    out[o * inner + i] = (float)s;
  }
}

/* inner == 1 (reducing the last dim): one block per row, lanes stride the
 * row (coalesced), fixed tree. */
template <int MODE, bool BACKWARD>
__global__ void reduce_rows_kernel(float *out, const float *x, float *dx, const float *dout,
                                   int64_t dim) {
  __shared__ double ssum[32];
  __shared__ Arg sarg[32];
  int64_t o = blockIdx.x;
  const float *xr = x + o * dim;
  int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nwarp = blockDim.x >> 5;
  if (MODE == RED_MAX) {
    Arg best = {-INFINITY, INT64_MAX};
    for (int64_t d = threadIdx.x; d < dim; d += blockDim.x) {
      Arg c = {xr[d], d};
      if (better(c, best)) best = c;
    }
    for (int off = 16; off > 0; off >>= 1) {
      Arg c = {__shfl_xor_sync(KC_FULL_MASK, best.v, off),
               (int64_t)__shfl_xor_sync(KC_FULL_MASK, (long long)best.i, off)};
      if (better(c, best)) best = c;
    }
    if (lane == 0) sarg[warp] = best;
    __syncthreads();
    if (threadIdx.x != 0) return;
    best = sarg[0];
    for (int w = 1; w < nwarp; w++)
      if (better(sarg[w], best)) best = sarg[w];
    if (BACKWARD)
      dx[o * dim + best.i] += dout[o];
    else
      out[o] = best.v;
  } else {
    double s = 0.0;
    for (int64_t d = threadIdx.x; d < dim; d += blockDim.x) s += xr[d];
    s = kc_block_sum(s, ssum);
    if (threadIdx.x == 0) out[o] = (float)(MODE == RED_MEAN && dim > 0 ? s / (double)dim : s);
  }
}

template <int MODE, bool BACKWARD>
static void reduce(float *out, const float *x, float *dx, const float *dout, int64_t outer,
                   int64_t dim, int64_t inner, cudaStream_t stream) {
  if (outer <= 0 || inner <= 0) return;
  if (inner == 1) {
    int threads = dim >= 4096 ? 256 : dim >= 512 ? 128 : 32;
    reduce_rows_kernel<MODE, BACKWARD>
        <<<(unsigned)outer, threads, 0, stream>>>(out, x, dx, dout, dim);
  } else {
    int64_t nchunk = (inner + RX - 1) / RX;
    reduce_kernel<MODE, BACKWARD>
        <<<(unsigned)(outer * nchunk), dim3(RX, RY), 0, stream>>>(out, x, dx, dout, dim, inner,
                                                                  nchunk);
  }
  KC_CHECK_LAUNCH();
}

extern "C" void kc_reduce_sum_forward(float *out, const float *x, int64_t outer, int64_t dim,
                                      int64_t inner, cudaStream_t stream) {
  reduce<RED_SUM, false>(out, x, nullptr, nullptr, outer, dim, inner, stream);
}

extern "C" void kc_reduce_mean_forward(float *out, const float *x, int64_t outer, int64_t dim,
                                       int64_t inner, cudaStream_t stream) {
  reduce<RED_MEAN, false>(out, x, nullptr, nullptr, outer, dim, inner, stream);
}

extern "C" void kc_reduce_max_forward(float *out, const float *x, int64_t outer, int64_t dim,
                                      int64_t inner, cudaStream_t stream) {
  reduce<RED_MAX, false>(out, x, nullptr, nullptr, outer, dim, inner, stream);
}

extern "C" void kc_reduce_max_backward(float *dx, const float *dout, const float *x,
                                       int64_t outer, int64_t dim, int64_t inner,
                                       cudaStream_t stream) {
  if (dim <= 0) return;
  reduce<RED_MAX, true>(nullptr, x, dx, dout, outer, dim, inner, stream);
}

/* dx (outer, dim, inner) += s * dout (outer, inner). */
__global__ void broadcast_backward_kernel(float *dx, const float *dout, int64_t dim,
                                          int64_t inner, int64_t n, float s) {
  int64_t stride = (int64_t)gridDim.x * blockDim.x;
  for (int64_t idx = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; idx < n; idx += stride) {
    int64_t i = idx % inner, o = idx / (dim * inner);
    dx[idx] += s * dout[o * inner + i];
  }
}

static void broadcast_backward(float *dx, const float *dout, int64_t outer, int64_t dim,
                               int64_t inner, float s, cudaStream_t stream) {
  int64_t n = outer * dim * inner;
  if (outer <= 0 || dim <= 0 || inner <= 0) return;
  broadcast_backward_kernel<<<kc_blocks(n, KC_THREADS), KC_THREADS, 0, stream>>>(dx, dout, dim,
                                                                                 inner, n, s);
  KC_CHECK_LAUNCH();
}

extern "C" void kc_reduce_sum_backward(float *dx, const float *dout, int64_t outer, int64_t dim,
                                       int64_t inner, cudaStream_t stream) {
  broadcast_backward(dx, dout, outer, dim, inner, 1.0f, stream);
}

extern "C" void kc_reduce_mean_backward(float *dx, const float *dout, int64_t outer, int64_t dim,
                                        int64_t inner, cudaStream_t stream) {
  if (dim > 0)
    broadcast_backward(dx, dout, outer, dim, inner, (float)(1.0 / (double)dim), stream);
}

/* ---- global norm: NORM_BLOCKS fixed ranges, then one block in order */

#define NORM_BLOCKS 1024
#define NORM_THREADS 256

__global__ void norm_partial_kernel(double *partial, const float *g, int64_t n) {
  __shared__ double shared[32];
  int64_t lo = n * blockIdx.x / NORM_BLOCKS, hi = n * (blockIdx.x + 1) / NORM_BLOCKS;
  double s = 0.0;
  for (int64_t i = lo + threadIdx.x; i < hi; i += NORM_THREADS) {
    float v = g[i];
    s += (double)(v * v);
  }
  s = kc_block_sum(s, shared);
  if (threadIdx.x == 0) partial[blockIdx.x] = s;
}

__global__ void norm_final_kernel(double *out, const double *partial, bool accumulate) {
  __shared__ double shared[32];
  double s = partial[threadIdx.x]; /* blockDim.x == NORM_BLOCKS */
  s = kc_block_sum(s, shared);
  if (threadIdx.x == 0) *out = accumulate ? *out + s : s;
}

extern "C" size_t kc_global_norm_scratch_bytes(void) { return NORM_BLOCKS * sizeof(double); }

extern "C" void kc_global_norm_sq(double *out, const float *grad, int64_t n, bool accumulate,
                                  void *scratch, cudaStream_t stream) {
  if (n <= 0) {
    if (!accumulate) KC_CHECK(cudaMemsetAsync(out, 0, sizeof *out, stream));
    return;
  }
  double *partial = (double *)scratch;
  norm_partial_kernel<<<NORM_BLOCKS, NORM_THREADS, 0, stream>>>(partial, grad, n);
  KC_CHECK_LAUNCH();
  norm_final_kernel<<<1, NORM_BLOCKS, 0, stream>>>(out, partial, accumulate);
  KC_CHECK_LAUNCH();
}

__global__ void clip_coef_kernel(float *coef, const double *norm_sq, float max_norm,
                                 float inv_loss_scale) {
  double norm = sqrt(*norm_sq) * (double)inv_loss_scale;
  double c = 1.0;
  if (max_norm > 0.0f && norm > (double)max_norm) c = (double)max_norm / norm;
  *coef = (float)(c * (double)inv_loss_scale);
}

extern "C" void kc_clip_coef(float *coef, const double *norm_sq, float max_norm,
                             float inv_loss_scale, cudaStream_t stream) {
  clip_coef_kernel<<<1, 1, 0, stream>>>(coef, norm_sq, max_norm, inv_loss_scale);
  KC_CHECK_LAUNCH();
}
