/* kc_attention.cu: scaled dot-product attention, flash style, fp32, causal
 * or not, with grouped-query heads (query head h reads kv head
 * h / (Hq/Hkv)).
 *
 * Invariants:
 *  - The T x T scores never reach device memory. The forward streams key
 *    tiles of BC = 32 keys through shared memory with an online softmax
 *    and saves only out and the row log-sum-exp.
 *  - Every output element has exactly one writer, so there are no atomics
 *    and the results are reproducible: the backward runs two kernels, one
 *    owning query tiles (dq) and one owning key tiles (dk, dv, summing the
 *    group's query heads in order), each recomputing the probabilities
 *    from lse. Cost: the score products are computed twice in the
 *    backward, the price of determinism without a T x T buffer.
 *  - Thread layout (all three kernels): 4 warps; in a warp, lane L holds
 *    key L (forward, dq) or query L (dk/dv) of a 32-wide tile for the dot
 *    products, and head dims L, L+32, ... (DPL of them) for the
 *    accumulators. Each warp carries R = 4 rows (queries, or keys for
 *    dk/dv) so every shared-memory value it loads is used R times.
 *  - Shared rows that lanes index by row are padded to an odd stride, so
 *    the 32 lanes of a warp hit 32 different banks; rows read at one
 *    address by the whole warp (broadcast) are not padded.
 */
#include "kc_internal.cuh"

#define NWARP 4
#define NTHREAD (NWARP * 32)
#define R 4               /* rows per warp */
#define BR (NWARP * R)    /* query rows per block (forward, dq); keys per block (dk/dv) */
#define BC 32             /* keys (forward, dq) or queries (dk/dv) per streamed tile */

/* Odd row stride for lane-indexed shared rows (conflict-free). */
__host__ __device__ static inline int padded(int D) { return D | 1; }

/* Copies rows [0, rows) of a (., D) row-major slice into shared memory
 * with row stride ld, zero rows from valid_rows on. Global reads are
 * contiguous across the block. */
__device__ __forceinline__ void load_rows(float *dst, int ld, const float *src, int rows,
                                          int valid_rows, int D) {
  for (int e = threadIdx.x; e < rows * D; e += blockDim.x) {
    int r = e / D, d = e - r * D;
    dst[r * ld + d] = r < valid_rows ? src[e] : 0.0f;
  }
}

/* ---- forward */

static size_t fwd_smem(int D) { return sizeof(float) * (size_t)(BR * D + BC * padded(D) + BC * D); }

/* grid: ntile * B*Hq blocks, block (bh, tile) with the heaviest (causal)
 * tiles first. */
template <int DPL>
__global__ void __launch_bounds__(NTHREAD)
    attn_forward_kernel(float *out, float *lse, const float *q, const float *k, const float *v,
                        int64_t Hq, int64_t Hkv, int T, int D, bool causal, float scale) {
  extern __shared__ float smem[];
  const int KS = padded(D);
  float *sQ = smem;          /* (BR, D), broadcast reads */
  float *sK = sQ + BR * D;   /* (BC, KS), lane = key */
  float *sV = sK + BC * KS;  /* (BC, D), lane = dim */
  int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  int ntile = (T + BR - 1) / BR;
  int64_t bh = blockIdx.x / ntile;
  int tile = ntile - 1 - (int)(blockIdx.x % ntile);
  int64_t b = bh / Hq, h = bh % Hq, kvh = b * Hkv + h / (Hq / Hkv);
  const float *qh = q + bh * T * D, *kh = k + kvh * T * D, *vh = v + kvh * T * D;
  int i0 = tile * BR;

  load_rows(sQ, D, qh + (int64_t)i0 * D, BR, T - i0, D);
  float o[R][DPL], m[R], l[R];
#pragma unroll
  for (int r = 0; r < R; r++) {
    m[r] = -INFINITY;
    l[r] = 0.0f;
#pragma unroll
    for (int dd = 0; dd < DPL; dd++) o[r][dd] = 0.0f;
  }
  int kend = causal ? min(T, i0 + BR) : T;
  for (int j0 = 0; j0 < kend; j0 += BC) {
    __syncthreads(); /* the previous tile's readers are done */
    load_rows(sK, KS, kh + (int64_t)j0 * D, BC, T - j0, D);
    load_rows(sV, D, vh + (int64_t)j0 * D, BC, T - j0, D);
    __syncthreads(); /* tiles (and, first time, sQ) visible */

    float s[R];
#pragma unroll
    for (int r = 0; r < R; r++) s[r] = 0.0f;
    const float *kr = sK + lane * KS;
    for (int d = 0; d < D; d++) {
      float kv = kr[d];
#pragma unroll
      for (int r = 0; r < R; r++) s[r] += sQ[(warp * R + r) * D + d] * kv;
    }
    int j = j0 + lane;
    float p[R];
#pragma unroll
    for (int r = 0; r < R; r++) {
      int i = i0 + warp * R + r;
      bool valid = j < T && i < T && (!causal || j <= i);
      float sc = valid ? s[r] * scale : -INFINITY;
      float mnew = fmaxf(m[r], kc_warp_max(sc));
      /* mnew is -inf only while a row has seen no valid key (rows past T). */
      p[r] = valid ? expf(sc - mnew) : 0.0f;
      float alpha = m[r] == -INFINITY ? 0.0f : expf(m[r] - mnew);
      l[r] = l[r] * alpha + kc_warp_sum(p[r]);
      m[r] = mnew;
#pragma unroll
      for (int dd = 0; dd < DPL; dd++) o[r][dd] *= alpha;
    }
    for (int jj = 0; jj < BC; jj++) {
      float vv[DPL];
#pragma unroll
      for (int dd = 0; dd < DPL; dd++) {
        int d = lane + 32 * dd;
        vv[dd] = d < D ? sV[jj * D + d] : 0.0f;
      }
#pragma unroll
      for (int r = 0; r < R; r++) {
        float pj = __shfl_sync(KC_FULL_MASK, p[r], jj);
#pragma unroll
        for (int dd = 0; dd < DPL; dd++) o[r][dd] += pj * vv[dd];
      }
    }
  }
#pragma unroll
  for (int r = 0; r < R; r++) {
    int i = i0 + warp * R + r;
    if (i >= T) continue;
    float inv = 1.0f / l[r];
#pragma unroll
    for (int dd = 0; dd < DPL; dd++) {
      int d = lane + 32 * dd;
      if (d < D) out[(bh * T + i) * D + d] = o[r][dd] * inv;
    }
    if (lane == 0) lse[bh * T + i] = m[r] + logf(l[r]);
  }
}

/* ---- backward: D_i = dot(dout_i, out_i), one warp per row */

__global__ void attn_rowdot_kernel(float *dvec, const float *dout, const float *out, int64_t rows,
                                   int D) {
  int lane = threadIdx.x & 31;
  int64_t row = (int64_t)blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5);
  if (row >= rows) return;
  float s = 0.0f;
  for (int d = lane; d < D; d += 32) s += dout[row * D + d] * out[row * D + d];
  s = kc_warp_sum(s);
  if (lane == 0) dvec[row] = s;
}

/* ---- backward, dq: owns a query tile, streams key tiles.
 * dS = P * (dP - D_i), P = exp(scale*q.k - lse_i), dP = dout_i . v_j;
 * dq_i += scale * sum_j dS_ij k_j. */

static size_t dq_smem(int D) { return sizeof(float) * (size_t)(2 * BR * D + 2 * BC * padded(D)); }

template <int DPL>
__global__ void __launch_bounds__(NTHREAD)
    attn_backward_dq_kernel(float *dq, const float *dout, const float *q, const float *k,
                            const float *v, const float *lse, const float *dvec, int64_t Hq,
                            int64_t Hkv, int T, int D, bool causal, float scale) {
  extern __shared__ float smem[];
  const int KS = padded(D);
  float *sQ = smem;          /* (BR, D) broadcast */
  float *sO = sQ + BR * D;   /* dout rows (BR, D) broadcast */
  float *sK = sO + BR * D;   /* (BC, KS): lane = key for dots, lane = dim for dq */
  float *sV = sK + BC * KS;  /* (BC, KS): lane = key */
  int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  int ntile = (T + BR - 1) / BR;
  int64_t bh = blockIdx.x / ntile;
  int tile = ntile - 1 - (int)(blockIdx.x % ntile);
  int64_t b = bh / Hq, h = bh % Hq, kvh = b * Hkv + h / (Hq / Hkv);
  const float *kh = k + kvh * T * D, *vh = v + kvh * T * D;
  int i0 = tile * BR;

  load_rows(sQ, D, q + (bh * T + i0) * D, BR, T - i0, D);
  load_rows(sO, D, dout + (bh * T + i0) * D, BR, T - i0, D);
  float rl[R], rd[R], acc[R][DPL];
#pragma unroll
  for (int r = 0; r < R; r++) {
    int i = i0 + warp * R + r;
    rl[r] = i < T ? lse[bh * T + i] : 0.0f;
    rd[r] = i < T ? dvec[bh * T + i] : 0.0f;
#pragma unroll
    for (int dd = 0; dd < DPL; dd++) acc[r][dd] = 0.0f;
  }
  int kend = causal ? min(T, i0 + BR) : T;
  for (int j0 = 0; j0 < kend; j0 += BC) {
    __syncthreads();
    load_rows(sK, KS, kh + (int64_t)j0 * D, BC, T - j0, D);
    load_rows(sV, KS, vh + (int64_t)j0 * D, BC, T - j0, D);
    __syncthreads();

    float s[R], dp[R];
#pragma unroll
    for (int r = 0; r < R; r++) s[r] = dp[r] = 0.0f;
    const float *kr = sK + lane * KS, *vr = sV + lane * KS;
    for (int d = 0; d < D; d++) {
      float kv = kr[d], vv = vr[d];
#pragma unroll
      for (int r = 0; r < R; r++) {
        s[r] += sQ[(warp * R + r) * D + d] * kv;
        dp[r] += sO[(warp * R + r) * D + d] * vv;
      }
    }
    int j = j0 + lane;
    float ds[R];
#pragma unroll
    for (int r = 0; r < R; r++) {
      int i = i0 + warp * R + r;
      bool valid = j < T && i < T && (!causal || j <= i);
      float p = valid ? expf(s[r] * scale - rl[r]) : 0.0f;
      ds[r] = p * (dp[r] - rd[r]);
    }
    for (int jj = 0; jj < BC; jj++) {
      float kk[DPL];
#pragma unroll
      for (int dd = 0; dd < DPL; dd++) {
        int d = lane + 32 * dd;
        kk[dd] = d < D ? sK[jj * KS + d] : 0.0f;
      }
#pragma unroll
      for (int r = 0; r < R; r++) {
        float dsj = __shfl_sync(KC_FULL_MASK, ds[r], jj);
#pragma unroll
        for (int dd = 0; dd < DPL; dd++) acc[r][dd] += dsj * kk[dd];
      }
    }
  }
#pragma unroll
  for (int r = 0; r < R; r++) {
    int i = i0 + warp * R + r;
    if (i >= T) continue;
#pragma unroll
    for (int dd = 0; dd < DPL; dd++) {
      int d = lane + 32 * dd;
      if (d < D) dq[(bh * T + i) * D + d] += scale * acc[r][dd];
    }
  }
}

/* ---- backward, dk and dv: owns a tile of BR keys of one kv head, streams
 * query tiles of BC queries of each query head in its group, in order.
 * dv_j += sum_i P_ij dout_i; dk_j += scale * sum_i dS_ij q_i. */

static size_t dkdv_smem(int D) {
  return sizeof(float) * (size_t)(2 * BR * D + 2 * BC * padded(D) + 2 * BC);
}

template <int DPL>
__global__ void __launch_bounds__(NTHREAD)
    attn_backward_dkdv_kernel(float *dk, float *dv, const float *dout, const float *q,
                              const float *k, const float *v, const float *lse,
                              const float *dvec, int64_t Hq, int64_t Hkv, int T, int D,
                              bool causal, float scale) {
  extern __shared__ float smem[];
  const int KS = padded(D);
  float *sK = smem;           /* own keys (BR, D) broadcast */
  float *sV = sK + BR * D;    /* own values (BR, D) broadcast */
  float *sQ = sV + BR * D;    /* (BC, KS): lane = query for dots, lane = dim for dk */
  float *sO = sQ + BC * KS;   /* dout (BC, KS) likewise */
  float *sL = sO + BC * KS;   /* lse (BC) */
  float *sD = sL + BC;        /* D_i (BC) */
  int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  int ntile = (T + BR - 1) / BR;
  int64_t bkv = blockIdx.x / ntile; /* b * Hkv + kv head */
  int tile = (int)(blockIdx.x % ntile); /* causal: early key tiles see most queries; first */
  int64_t group = Hq / Hkv, b = bkv / Hkv, hk = bkv % Hkv;
  int j0 = tile * BR;

  load_rows(sK, D, k + (bkv * T + j0) * D, BR, T - j0, D);
  load_rows(sV, D, v + (bkv * T + j0) * D, BR, T - j0, D);
  float ak[R][DPL], av[R][DPL];
#pragma unroll
  for (int r = 0; r < R; r++)
#pragma unroll
    for (int dd = 0; dd < DPL; dd++) ak[r][dd] = av[r][dd] = 0.0f;

  int istart = causal ? j0 / BC * BC : 0; /* queries before j0 see none of these keys */
  for (int64_t g = 0; g < group; g++) {
    int64_t bh = b * Hq + hk * group + g;
    const float *qh = q + bh * T * D, *oh = dout + bh * T * D;
    for (int i0 = istart; i0 < T; i0 += BC) {
      __syncthreads();
      load_rows(sQ, KS, qh + (int64_t)i0 * D, BC, T - i0, D);
      load_rows(sO, KS, oh + (int64_t)i0 * D, BC, T - i0, D);
      if (threadIdx.x < BC) {
        int i = i0 + threadIdx.x;
        sL[threadIdx.x] = i < T ? lse[bh * T + i] : 0.0f;
        sD[threadIdx.x] = i < T ? dvec[bh * T + i] : 0.0f;
      }
      __syncthreads();

      float s[R], dp[R];
#pragma unroll
      for (int r = 0; r < R; r++) s[r] = dp[r] = 0.0f;
      const float *qr = sQ + lane * KS, *orow = sO + lane * KS;
      for (int d = 0; d < D; d++) {
        float qv = qr[d], ov = orow[d];
#pragma unroll
        for (int r = 0; r < R; r++) {
          s[r] += qv * sK[(warp * R + r) * D + d];
          dp[r] += ov * sV[(warp * R + r) * D + d];
        }
      }
      int i = i0 + lane;
      float p[R], ds[R];
#pragma unroll
      for (int r = 0; r < R; r++) {
        int j = j0 + warp * R + r;
        bool valid = i < T && j < T && (!causal || j <= i);
        p[r] = valid ? expf(s[r] * scale - sL[lane]) : 0.0f;
        ds[r] = p[r] * (dp[r] - sD[lane]);
      }
      for (int ii = 0; ii < BC; ii++) {
        float qq[DPL], oo[DPL];
#pragma unroll
        for (int dd = 0; dd < DPL; dd++) {
          int d = lane + 32 * dd;
          qq[dd] = d < D ? sQ[ii * KS + d] : 0.0f;
          oo[dd] = d < D ? sO[ii * KS + d] : 0.0f;
        }
#pragma unroll
        for (int r = 0; r < R; r++) {
          float pi = __shfl_sync(KC_FULL_MASK, p[r], ii);
          float dsi = __shfl_sync(KC_FULL_MASK, ds[r], ii);
#pragma unroll
          for (int dd = 0; dd < DPL; dd++) {
            av[r][dd] += pi * oo[dd];
            ak[r][dd] += dsi * qq[dd];
          }
        }
      }
    }
  }
#pragma unroll
  for (int r = 0; r < R; r++) {
    int j = j0 + warp * R + r;
    if (j >= T) continue;
#pragma unroll
    for (int dd = 0; dd < DPL; dd++) {
      int d = lane + 32 * dd;
      if (d < D) {
        dk[(bkv * T + j) * D + d] += scale * ak[r][dd];
        dv[(bkv * T + j) * D + d] += av[r][dd];
      }
    }
  }
}

/* ---- host side */

/* Accumulator width: the smallest of 1, 2, 4, 8 dims per lane covering D. */
static int dims_per_lane(int64_t D) { return D <= 32 ? 1 : D <= 64 ? 2 : D <= 128 ? 4 : 8; }

static bool bad_shape(int64_t Hq, int64_t Hkv, int64_t T, int64_t D) {
  return Hkv <= 0 || Hq % Hkv != 0 || D > KC_ATTENTION_MAX_D || T > INT32_MAX / BR;
}

/* Launches KERNEL<DPL> for the D at hand with its dynamic shared memory. */
#define KC_DISPATCH_DPL(D, KERNEL, grid, smem, stream, ...)                      \
  do {                                                                           \
    switch (dims_per_lane(D)) {                                                  \
    case 1:                                                                      \
      kc_allow_smem((const void *)KERNEL<1>, smem);                              \
      KERNEL<1><<<grid, NTHREAD, smem, stream>>>(__VA_ARGS__);                   \
      break;                                                                     \
    case 2:                                                                      \
      kc_allow_smem((const void *)KERNEL<2>, smem);                              \
      KERNEL<2><<<grid, NTHREAD, smem, stream>>>(__VA_ARGS__);                   \
      break;                                                                     \
    case 4:                                                                      \
      kc_allow_smem((const void *)KERNEL<4>, smem);                              \
      KERNEL<4><<<grid, NTHREAD, smem, stream>>>(__VA_ARGS__);                   \
      break;                                                                     \
    default:                                                                     \
      kc_allow_smem((const void *)KERNEL<8>, smem);                              \
      KERNEL<8><<<grid, NTHREAD, smem, stream>>>(__VA_ARGS__);                   \
      break;                                                                     \
    }                                                                            \
    KC_CHECK_LAUNCH();                                                           \
  } while (0)

extern "C" int kc_attention_forward(float *out, float *lse, const float *q, const float *k,
                                    const float *v, int64_t B, int64_t Hq, int64_t Hkv,
                                    int64_t T, int64_t D, bool causal, cudaStream_t stream) {
  if (bad_shape(Hq, Hkv, T, D)) return KC_ERR_SHAPE;
  if (B <= 0 || Hq <= 0 || T <= 0 || D <= 0) return KC_OK;
  int64_t blocks = B * Hq * ((T + BR - 1) / BR);
  if (blocks > INT32_MAX) return KC_ERR_SHAPE;
  float scale = (float)(1.0 / sqrt((double)D));
  KC_DISPATCH_DPL(D, attn_forward_kernel, (unsigned)blocks, fwd_smem((int)D), stream, out, lse, q,
                  k, v, Hq, Hkv, (int)T, (int)D, causal, scale);
  return KC_OK;
}

extern "C" size_t kc_attention_backward_scratch_bytes(int64_t B, int64_t Hq, int64_t T) {
  if (B <= 0 || Hq <= 0 || T <= 0) return 0;
  return (size_t)B * (size_t)Hq * (size_t)T * sizeof(float);
}

extern "C" int kc_attention_backward(float *dq, float *dk, float *dv, const float *dout,
                                     const float *q, const float *k, const float *v,
                                     const float *out, const float *lse, int64_t B, int64_t Hq,
                                     int64_t Hkv, int64_t T, int64_t D, bool causal,
                                     void *scratch, cudaStream_t stream) {
  if (bad_shape(Hq, Hkv, T, D)) return KC_ERR_SHAPE;
  if (B <= 0 || Hq <= 0 || T <= 0 || D <= 0) return KC_OK;
  int64_t ntile = (T + BR - 1) / BR;
  if (B * Hq * ntile > INT32_MAX) return KC_ERR_SHAPE;
  float scale = (float)(1.0 / sqrt((double)D));
  float *dvec = (float *)scratch;
  int64_t rows = B * Hq * T;
  attn_rowdot_kernel<<<kc_blocks(rows, KC_THREADS / 32, INT32_MAX), KC_THREADS, 0, stream>>>(
      dvec, dout, out, rows, (int)D);
  KC_CHECK_LAUNCH();
  KC_DISPATCH_DPL(D, attn_backward_dq_kernel, (unsigned)(B * Hq * ntile), dq_smem((int)D), stream,
                  dq, dout, q, k, v, lse, dvec, Hq, Hkv, (int)T, (int)D, causal, scale);
  KC_DISPATCH_DPL(D, attn_backward_dkdv_kernel, (unsigned)(B * Hkv * ntile), dkdv_smem((int)D),
                  stream, dk, dv, dout, q, k, v, lse, dvec, Hq, Hkv, (int)T, (int)D, causal,
                  scale);
  return KC_OK;
}
