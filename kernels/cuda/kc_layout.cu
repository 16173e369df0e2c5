/* kc_layout.cu: data movement kernels: RoPE, the (0,2,1,3) permute of the
 * attention reshapes, and embedding lookup with its deterministic
 * backward.
 *
 * Invariants: forwards write every output element once; backwards
 * accumulate with each destination element owned by one thread. The
 * embedding backward has no atomics: a block owns a range of table rows
 * and walks all ids in increasing n, so each row sums its contributions in
 * increasing n exactly as the CPU twin does (same bits). Ids are checked
 * before any access; a bad id never reads or writes outside the table.
 */
#include "kc_internal.cuh"

/* ---- RoPE */

/* Rows (of B*H) one thread rotates with one cos/sin pair; grid.y covers
 * the rows in such groups. */
#define ROPE_ROWS 8

/* Thread (t, pair) computes the angle once (double, as the CPU twin:
 * t * freq loses ~t ulps in fp32) and applies it to ROPE_ROWS rows. pairs
 * = D/2, plus one pass-through slot when D is odd. sign -1 rotates back. */
template <bool ACC>
__global__ void rope_kernel(float *y, const float *x, int64_t rows, int64_t rows_per_y,
                            int64_t T, int64_t D, float theta, float sign) {
  int64_t half = D / 2, slots = half + (D & 1);
  int64_t idx = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
  if (idx >= T * slots) return;
  int64_t t = idx / slots, p = idx % slots;
  int64_t r0 = (int64_t)blockIdx.y * rows_per_y;
  int64_t r1 = r0 + rows_per_y < rows ? r0 + rows_per_y : rows;
  if (p == half) { /* odd D: the last element passes through */
    for (int64_t r = r0; r < r1; r++) {
      int64_t i = (r * T + t) * D + D - 1;
      y[i] = ACC ? y[i] + x[i] : x[i];
    }
    return;
  }
  double freq = pow((double)theta, -2.0 * (double)p / (double)D);
  double ang = (double)t * freq;
  float cs = (float)cos(ang), sn = sign * (float)sin(ang);
  for (int64_t r = r0; r < r1; r++) {
    int64_t i = (r * T + t) * D + 2 * p;
    float x0 = x[i], x1 = x[i + 1]; /* both read first: y may alias x */
    float y0 = x0 * cs - x1 * sn, y1 = x0 * sn + x1 * cs;
    if (ACC) {
      y[i] += y0;
      y[i + 1] += y1;
    } else {
      y[i] = y0;
      y[i + 1] = y1;
    }
  }
}

template <bool ACC>
static void rope(float *y, const float *x, int64_t B, int64_t H, int64_t T, int64_t D,
                 float theta, float sign, cudaStream_t stream) {
  int64_t rows = B * H, slots = D / 2 + (D & 1);
  if (rows <= 0 || T <= 0 || D <= 0) return;
  int64_t rows_per_y = ROPE_ROWS;
  if ((rows + rows_per_y - 1) / rows_per_y > 65535) rows_per_y = (rows + 65534) / 65535;
  dim3 grid(kc_blocks(T * slots, KC_THREADS, INT32_MAX),
            (unsigned)((rows + rows_per_y - 1) / rows_per_y));
  rope_kernel<ACC><<<grid, KC_THREADS, 0, stream>>>(y, x, rows, rows_per_y, T, D, theta, sign);
  KC_CHECK_LAUNCH();
}

extern "C" void kc_rope_forward(float *out, const float *x, int64_t B, int64_t H, int64_t T,
                                int64_t D, float theta, cudaStream_t stream) {
  rope<false>(out, x, B, H, T, D, theta, 1.0f, stream);
}

extern "C" void kc_rope_backward(float *dx, const float *dout, int64_t B, int64_t H, int64_t T,
                                 int64_t D, float theta, cudaStream_t stream) {
  rope<true>(dx, dout, B, H, T, D, theta, -1.0f, stream);
}

/* ---- permute (A,B,C,D) -> (A,C,B,D) */

/* One thread per destination element, destination order (coalesced
 * stores; loads are coalesced along d). */
__global__ void permute_kernel(float *out, const float *x, int64_t A, int64_t B, int64_t C,
                               int64_t D) {
  int64_t n = A * B * C * D, stride = (int64_t)gridDim.x * blockDim.x;
  for (int64_t idx = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; idx < n; idx += stride) {
    int64_t d = idx % D, rest = idx / D;
    int64_t b = rest % B;
    rest /= B;
    int64_t c = rest % C, a = rest / C; /* out index (a, c, b, d) */
    out[idx] = x[((a * B + b) * C + c) * D + d];
  }
}

__global__ void permute_backward_kernel(float *dx, const float *dout, int64_t A, int64_t B,
                                        int64_t C, int64_t D) {
  int64_t n = A * B * C * D, stride = (int64_t)gridDim.x * blockDim.x;
  for (int64_t idx = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; idx < n; idx += stride) {
    int64_t d = idx % D, rest = idx / D;
    int64_t c = rest % C;
    rest /= C;
    int64_t b = rest % B, a = rest / B; /* dx index (a, b, c, d) */
    dx[idx] += dout[((a * C + c) * B + b) * D + d];
  }
}

extern "C" void kc_permute_0213(float *out, const float *x, int64_t A, int64_t B, int64_t C,
                                int64_t D, cudaStream_t stream) {
  if (A <= 0 || B <= 0 || C <= 0 || D <= 0) return;
  permute_kernel<<<kc_blocks(A * B * C * D, KC_THREADS), KC_THREADS, 0, stream>>>(out, x, A, B, C,
                                                                                  D);
  KC_CHECK_LAUNCH();
}

extern "C" void kc_permute_0213_backward(float *dx, const float *dout, int64_t A, int64_t B,
                                         int64_t C, int64_t D, cudaStream_t stream) {
  if (A <= 0 || B <= 0 || C <= 0 || D <= 0) return;
  permute_backward_kernel<<<kc_blocks(A * B * C * D, KC_THREADS), KC_THREADS, 0, stream>>>(
      dx, dout, A, B, C, D);
  KC_CHECK_LAUNCH();
}

/* ---- embedding */

/* One thread per output element (float4 of them when C % 4 == 0 and the
 * pointers are aligned). */
template <bool VEC>
__global__ void embedding_forward_kernel(float *out, const int32_t *ids, const float *table,
                                         int64_t N, int64_t V, int64_t C) {
  int64_t W = VEC ? C / 4 : C; /* items per row */
  int64_t n_items = N * W, stride = (int64_t)gridDim.x * blockDim.x;
  for (int64_t idx = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; idx < n_items;
       idx += stride) {
    int64_t n = idx / W, c = idx % W;
    int64_t id = ids[n];
    bool ok = id >= 0 && id < V;
    if (VEC) {
      float4 v = ok ? reinterpret_cast<const float4 *>(table + id * C)[c]
                    : make_float4(0.0f, 0.0f, 0.0f, 0.0f);
      reinterpret_cast<float4 *>(out + n * C)[c] = v;
    } else {
      out[n * C + c] = ok ? table[id * C + c] : 0.0f;
    }
  }
}

extern "C" void kc_embedding_forward(float *out, const int32_t *ids, const float *table,
                                     int64_t N, int64_t V, int64_t C, int64_t *first_bad,
                                     cudaStream_t stream) {
  kc_find_bad_ids(first_bad, ids, N, V, stream);
  if (N <= 0 || C <= 0) return;
  if (C % 4 == 0 && kc_aligned16(out) && kc_aligned16(table))
    embedding_forward_kernel<true>
        <<<kc_blocks(N * C / 4, KC_THREADS), KC_THREADS, 0, stream>>>(out, ids, table, N, V, C);
  else
    embedding_forward_kernel<false>
        <<<kc_blocks(N * C, KC_THREADS), KC_THREADS, 0, stream>>>(out, ids, table, N, V, C);
  KC_CHECK_LAUNCH();
}

#define EMB_THREADS 256
#define EMB_WARPS (EMB_THREADS / 32)
/* Table-row ranges: about this many blocks (fewer for a small V); each
 * block reads all N ids, so more blocks cost more id traffic. */
#define EMB_BLOCKS 1024

/* Block owns table rows [v0, v1). Ids are read in chunks of EMB_THREADS;
 * the matches of a chunk are compacted in n order (warp ballots, then a
 * prefix over warps), and then each thread adds its columns of every
 * matched dout row into the table, in list order. A (row, column) element
 * is only ever touched by one thread, in increasing n. */
template <bool VEC>
__global__ void __launch_bounds__(EMB_THREADS)
    embedding_backward_kernel(float *dtable, const float *dout, const int32_t *ids, int64_t N,
                              int64_t V, int64_t C, int64_t rows_per_block) {
  __shared__ int list[EMB_THREADS];
  __shared__ int warp_count[EMB_WARPS];
  int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  int64_t v0 = (int64_t)blockIdx.x * rows_per_block;
  int64_t v1 = v0 + rows_per_block < V ? v0 + rows_per_block : V;
  for (int64_t n0 = 0; n0 < N; n0 += EMB_THREADS) {
    int64_t n = n0 + threadIdx.x;
    bool match = false;
    if (n < N) {
      int64_t id = ids[n];
      match = id >= v0 && id < v1;
    }
    unsigned ballot = __ballot_sync(KC_FULL_MASK, match);
    if (lane == 0) warp_count[warp] = __popc(ballot);
    __syncthreads();
    int offset = 0, count = 0;
    for (int w = 0; w < EMB_WARPS; w++) {
      offset += w < warp ? warp_count[w] : 0;
      count += warp_count[w];
    }
    if (match) list[offset + __popc(ballot & ((1u << lane) - 1u))] = threadIdx.x;
    __syncthreads();
    for (int m = 0; m < count; m++) {
      int64_t nn = n0 + list[m];
      int64_t id = ids[nn];
      float *g = dtable + id * C;
      const float *d = dout + nn * C;
      if (VEC) {
        for (int64_t c = threadIdx.x; c < C / 4; c += EMB_THREADS) {
          float4 a = reinterpret_cast<float4 *>(g)[c];
          float4 b = reinterpret_cast<const float4 *>(d)[c];
          a.x += b.x;
          a.y += b.y;
          a.z += b.z;
          a.w += b.w;
          reinterpret_cast<float4 *>(g)[c] = a;
        }
      } else {
        for (int64_t c = threadIdx.x; c < C; c += EMB_THREADS) g[c] += d[c];
      }
    }
    __syncthreads(); /* list and warp_count are rewritten next chunk */
  }
}

extern "C" void kc_embedding_backward(float *dtable, const float *dout, const int32_t *ids,
                                      int64_t N, int64_t V, int64_t C, int64_t *first_bad,
                                      cudaStream_t stream) {
  kc_find_bad_ids(first_bad, ids, N, V, stream);
  if (N <= 0 || V <= 0 || C <= 0) return;
  int64_t rows_per_block = (V + EMB_BLOCKS - 1) / EMB_BLOCKS;
  unsigned blocks = (unsigned)((V + rows_per_block - 1) / rows_per_block);
  if (C % 4 == 0 && kc_aligned16(dtable) && kc_aligned16(dout))
    embedding_backward_kernel<true>
        <<<blocks, EMB_THREADS, 0, stream>>>(dtable, dout, ids, N, V, C, rows_per_block);
  else
    embedding_backward_kernel<false>
        <<<blocks, EMB_THREADS, 0, stream>>>(dtable, dout, ids, N, V, C, rows_per_block);
  KC_CHECK_LAUNCH();
}
