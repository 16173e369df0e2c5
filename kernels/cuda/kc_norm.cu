/* kc_norm.cu: LayerNorm and RMSNorm over the last dim, (N,C) rows.
 *
 * Invariants:
 *  - Row kernels run one warp per row (8 rows per 256-thread block): lanes
 *    stride the row (float4 when C % 4 == 0 and the pointers are aligned),
 *    partial sums meet in a shuffle tree. Mean and variance take two
 *    passes (no cancellation when |mean| >> std); the row stays in L1/L2
 *    between passes.
 *  - Weight/bias gradients sum over rows without atomics: a fixed split of
 *    the rows into R chunks (R from N alone) writes one partial per
 *    (chunk, column) into scratch, then one thread per column adds the R
 *    partials in chunk order, in double.
 */
#include "kc_internal.cuh"

#define ROWS_PER_BLOCK (KC_THREADS / 32)

/* True when the row kernels may move float4s: every row starts 16-byte
 * aligned when the base pointer is and C % 4 == 0. */
static bool rows_vec(int64_t C, const void *p0, const void *p1, const void *p2,
                     const void *p3) {
  return C % 4 == 0 && kc_aligned16(p0) && kc_aligned16(p1) && kc_aligned16(p2) &&
         kc_aligned16(p3);
}

__device__ __forceinline__ float4 ld4(const float *p, int64_t j) {
  return reinterpret_cast<const float4 *>(p)[j];
}

/* ---- forward */

/* LN: LayerNorm, else RMSNorm (no mean, no bias). */
template <bool LN, bool VEC>
__global__ void norm_forward_kernel(float *out, float *mean, float *rstd, const float *x,
                                    const float *w, const float *b, int64_t N, int64_t C,
                                    float eps) {
  int lane = threadIdx.x & 31;
  int64_t row = (int64_t)blockIdx.x * ROWS_PER_BLOCK + (threadIdx.x >> 5);
  if (row >= N) return; /* whole warps leave; no block-level sync below */
  const float *xr = x + row * C;
  float *yr = out + row * C;
  int64_t C4 = C / 4;

  float mu = 0.0f;
  if (LN) {
    float s = 0.0f;
    if (VEC) {
      for (int64_t j = lane; j < C4; j += 32) {
        float4 v = ld4(xr, j);
        s += (v.x + v.y) + (v.z + v.w);
      }
    } else {
      for (int64_t c = lane; c < C; c += 32) s += xr[c];
    }
    mu = (float)((double)kc_warp_sum(s) / (double)C);
  }
  float ss = 0.0f;
  if (VEC) {
    for (int64_t j = lane; j < C4; j += 32) {
      float4 v = ld4(xr, j);
      float a = v.x - mu, bb = v.y - mu, c = v.z - mu, d = v.w - mu;
      ss += (a * a + bb * bb) + (c * c + d * d);
    }
  } else {
    for (int64_t c = lane; c < C; c += 32) ss += (xr[c] - mu) * (xr[c] - mu);
  }
  float rs = (float)(1.0 / sqrt((double)kc_warp_sum(ss) / (double)C + (double)eps));

  if (VEC) {
    for (int64_t j = lane; j < C4; j += 32) {
      float4 v = ld4(xr, j);
      float4 wv = w ? ld4(w, j) : make_float4(1.0f, 1.0f, 1.0f, 1.0f);
      float4 bv = (LN && b) ? ld4(b, j) : make_float4(0.0f, 0.0f, 0.0f, 0.0f);
      float4 y = {(v.x - mu) * rs * wv.x + bv.x, (v.y - mu) * rs * wv.y + bv.y,
                  (v.z - mu) * rs * wv.z + bv.z, (v.w - mu) * rs * wv.w + bv.w};
      reinterpret_cast<float4 *>(yr)[j] = y;
    }
  } else {
    for (int64_t c = lane; c < C; c += 32)
      yr[c] = (xr[c] - mu) * rs * (w ? w[c] : 1.0f) + ((LN && b) ? b[c] : 0.0f);
  }
  if (lane == 0) {
    if (LN && mean) mean[row] = mu;
    if (rstd) rstd[row] = rs;
  }
}

template <bool LN>
static void norm_forward(float *out, float *mean, float *rstd, const float *x, const float *w,
                         const float *b, int64_t N, int64_t C, float eps, cudaStream_t stream) {
  if (N <= 0 || C <= 0) return;
  unsigned blocks = kc_blocks(N, ROWS_PER_BLOCK, INT32_MAX);
  const void *wp = w ? (const void *)w : x, *bp = b ? (const void *)b : x;
  if (rows_vec(C, out, x, wp, bp))
    norm_forward_kernel<LN, true>
        <<<blocks, KC_THREADS, 0, stream>>>(out, mean, rstd, x, w, b, N, C, eps);
  else
    norm_forward_kernel<LN, false>
        <<<blocks, KC_THREADS, 0, stream>>>(out, mean, rstd, x, w, b, N, C, eps);
  KC_CHECK_LAUNCH();
}

extern "C" void kc_layernorm_forward(float *out, float *mean, float *rstd, const float *x,
                                     const float *w, const float *b, int64_t N, int64_t C,
                                     float eps, cudaStream_t stream) {
  norm_forward<true>(out, mean, rstd, x, w, b, N, C, eps, stream);
}

extern "C" void kc_rmsnorm_forward(float *out, float *rstd, const float *x, const float *w,
                                   int64_t N, int64_t C, float eps, cudaStream_t stream) {
  norm_forward<false>(out, nullptr, rstd, x, w, nullptr, N, C, eps, stream);
}

/* ---- backward, dx: dx += rstd * (g - mean(g) - xhat * mean(g*xhat)),
 * g = dout * w (RMSNorm: no mean(g) term, xhat = x * rstd). */

template <bool LN>
__global__ void norm_backward_dx_kernel(float *dx, const float *dout, const float *x,
                                        const float *w, const float *mean, const float *rstd,
                                        int64_t N, int64_t C) {
  int lane = threadIdx.x & 31;
  int64_t row = (int64_t)blockIdx.x * ROWS_PER_BLOCK + (threadIdx.x >> 5);
  if (row >= N) return;
  const float *xr = x + row * C, *gr = dout + row * C;
  float *dr = dx + row * C;
  float mu = LN ? mean[row] : 0.0f, rs = rstd[row];
  float sg = 0.0f, sgx = 0.0f;
  for (int64_t c = lane; c < C; c += 32) {
    float g = gr[c] * (w ? w[c] : 1.0f);
    sg += g;
    sgx += g * ((xr[c] - mu) * rs);
  }
  float mg = LN ? (float)((double)kc_warp_sum(sg) / (double)C) : 0.0f;
  float mgx = (float)((double)kc_warp_sum(sgx) / (double)C);
  for (int64_t c = lane; c < C; c += 32) {
    float g = gr[c] * (w ? w[c] : 1.0f);
    float xh = (xr[c] - mu) * rs;
    dr[c] += rs * (g - mg - xh * mgx);
  }
}

/* ---- backward, dw/db */

/* The row split: chunks of at least 32 rows, at most 128 chunks. */
static int64_t chunk_rows(int64_t N) {
  int64_t r = (N + 127) / 128;
  return r < 32 ? 32 : r;
}
static int64_t num_chunks(int64_t N) { return N <= 0 ? 0 : (N + chunk_rows(N) - 1) / chunk_rows(N); }

#define COLS 32   /* columns per block (one warp-wide slice of each row) */
#define RSTEP 8   /* row lanes per block (blockDim.y) */

/* grid (ceil(C/32), R), block (32, 8). Block (cx, r) sums rows of chunk r
 * for columns cx*32 + tx: thread (tx, ty) takes rows ty, ty+8, ...; the 8
 * row lanes meet in shared memory in ty order. pw (R,C) gets
 * sum dout*xhat, pb (R,C) sum dout (LN only). */
template <bool LN>
__global__ void norm_backward_dw_partial(float *pw, float *pb, const float *dout, const float *x,
                                         const float *mean, const float *rstd, int64_t N,
                                         int64_t C, int64_t rows) {
  __shared__ float sw[RSTEP][COLS], sb[RSTEP][COLS];
  int tx = threadIdx.x, ty = threadIdx.y;
  int64_t c = (int64_t)blockIdx.x * COLS + tx;
  int64_t r0 = (int64_t)blockIdx.y * rows, r1 = r0 + rows < N ? r0 + rows : N;
  float aw = 0.0f, ab = 0.0f;
  if (c < C) {
    for (int64_t n = r0 + ty; n < r1; n += RSTEP) {
      float g = dout[n * C + c];
      float mu = LN ? mean[n] : 0.0f;
      aw += g * ((x[n * C + c] - mu) * rstd[n]);
      ab += g;
    }
  }
  sw[ty][tx] = aw;
  sb[ty][tx] = ab;
  __syncthreads();
  if (ty == 0 && c < C) {
    float tw = 0.0f, tb = 0.0f;
    for (int i = 0; i < RSTEP; i++) {
      tw += sw[i][tx];
      tb += sb[i][tx];
    }
    pw[blockIdx.y * C + c] = tw;
    if (LN) pb[blockIdx.y * C + c] = tb;
  }
}

/* One thread per column: dw[c] += sum over chunks in order (double). */
__global__ void norm_backward_dw_final(float *dw, float *db, const float *pw, const float *pb,
                                       int64_t R, int64_t C) {
  int64_t c = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
  if (c >= C) return;
  double tw = 0.0, tb = 0.0;
  for (int64_t r = 0; r < R; r++) {
    tw += pw[r * C + c];
    if (db) tb += pb[r * C + c];
  }
  if (dw) dw[c] += (float)tw;
  if (db) db[c] += (float)tb;
}

static size_t dw_scratch_bytes(int64_t N, int64_t C, int narrays) {
  if (N <= 0 || C <= 0) return 0;
  return (size_t)narrays * (size_t)num_chunks(N) * (size_t)C * sizeof(float);
}

template <bool LN>
static void norm_backward(float *dx, float *dw, float *db, const float *dout, const float *x,
                          const float *w, const float *mean, const float *rstd, int64_t N,
                          int64_t C, void *scratch, cudaStream_t stream) {
  if (N <= 0 || C <= 0) return;
  if (dx) {
    norm_backward_dx_kernel<LN><<<kc_blocks(N, ROWS_PER_BLOCK, INT32_MAX), KC_THREADS, 0, stream>>>(
        dx, dout, x, w, mean, rstd, N, C);
    KC_CHECK_LAUNCH();
  }
  if (!dw && !db) return;
  int64_t R = num_chunks(N);
  float *pw = (float *)scratch, *pb = LN ? pw + R * C : nullptr;
  dim3 grid((unsigned)((C + COLS - 1) / COLS), (unsigned)R), block(COLS, RSTEP);
  norm_backward_dw_partial<LN>
      <<<grid, block, 0, stream>>>(pw, pb, dout, x, mean, rstd, N, C, chunk_rows(N));
  KC_CHECK_LAUNCH();
  norm_backward_dw_final<<<kc_blocks(C, KC_THREADS, INT32_MAX), KC_THREADS, 0, stream>>>(
      dw, LN ? db : nullptr, pw, pb, R, C);
  KC_CHECK_LAUNCH();
}

extern "C" size_t kc_layernorm_backward_scratch_bytes(int64_t N, int64_t C) {
  return dw_scratch_bytes(N, C, 2);
}

extern "C" void kc_layernorm_backward(float *dx, float *dw, float *db, const float *dout,
                                      const float *x, const float *w, const float *mean,
                                      const float *rstd, int64_t N, int64_t C, void *scratch,
                                      cudaStream_t stream) {
  norm_backward<true>(dx, dw, db, dout, x, w, mean, rstd, N, C, scratch, stream);
}

extern "C" size_t kc_rmsnorm_backward_scratch_bytes(int64_t N, int64_t C) {
  return dw_scratch_bytes(N, C, 1);
}

extern "C" void kc_rmsnorm_backward(float *dx, float *dw, const float *dout, const float *x,
                                    const float *w, const float *rstd, int64_t N, int64_t C,
                                    void *scratch, cudaStream_t stream) {
  norm_backward<false>(dx, dw, nullptr, dout, x, w, nullptr, rstd, N, C, scratch, stream);
}
