/* k_layout.c: data movement kernels: RoPE, the (0,2,1,3) permute used by
 * attention reshapes, and embedding lookup.
 *
 * Invariants: forwards write every output element exactly once; backwards
 * accumulate, with each destination element owned by one thread. Token ids
 * are checked before any access, so a bad id never reads or writes outside
 * the table.
 */
#include <math.h>
#include <omp.h>
#include <string.h>

#include "k_internal.h"

/* ---- RoPE */

/* Pairs handled per batch of cos/sin: the angles depend on (t, pair) only,
 * so they are computed once per position and reused for all B*H rows. */
#define ROPE_CHUNK 64

/* y = R(sign * angle) x on every pair; accumulate adds into y instead of
 * storing. sign = -1 gives the inverse (transpose) rotation. */
static void rope_apply(float *y, const float *x, int64_t B, int64_t H, int64_t T, int64_t D,
                       float theta, float sign, bool accumulate) {
  int64_t half = D / 2, rows = B * H;
#pragma omp parallel for if (rows * T * D >= K_PAR_ROWS_MIN) schedule(static)
  for (int64_t t = 0; t < T; t++) {
    for (int64_t p0 = 0; p0 < half; p0 += ROPE_CHUNK) {
      int64_t np = k_min64(ROPE_CHUNK, half - p0);
      float cs[ROPE_CHUNK], sn[ROPE_CHUNK];
      for (int64_t p = 0; p < np; p++) {
        /* Angles in double: t * freq loses ~t ulps in fp32 at long context. */
        double freq = pow((double)theta, -2.0 * (double)(p0 + p) / (double)D);
        double ang = (double)t * freq;
        cs[p] = (float)cos(ang);
        sn[p] = sign * (float)sin(ang);
      }
      for (int64_t r = 0; r < rows; r++) {
        const float *xr = x + (r * T + t) * D + 2 * p0;
        float *yr = y + (r * T + t) * D + 2 * p0;
        for (int64_t p = 0; p < np; p++) {
          float x0 = xr[2 * p], x1 = xr[2 * p + 1]; /* read both first: y may alias x */
          float y0 = x0 * cs[p] - x1 * sn[p], y1 = x0 * sn[p] + x1 * cs[p];
          if (accumulate) {
            yr[2 * p] += y0;
            yr[2 * p + 1] += y1;
          } else {
            yr[2 * p] = y0;
            yr[2 * p + 1] = y1;
          }
        }
      }
    }
    if (D % 2) {
      for (int64_t r = 0; r < rows; r++) {
        int64_t i = (r * T + t) * D + D - 1;
        y[i] = accumulate ? y[i] + x[i] : x[i];
      }
    }
  }
}

void k_rope_forward(float *out, const float *x, int64_t B, int64_t H, int64_t T, int64_t D,
                    float theta) {
  rope_apply(out, x, B, H, T, D, theta, 1.0f, false);
}

void k_rope_backward(float *dx, const float *dout, int64_t B, int64_t H, int64_t T, int64_t D,
                     float theta) {
  rope_apply(dx, dout, B, H, T, D, theta, -1.0f, true);
}

/* ---- permute (A,B,C,D) -> (A,C,B,D) */

void k_permute_0213(float *out, const float *x, int64_t A, int64_t B, int64_t C, int64_t D) {
#pragma omp parallel for collapse(2) if (A * B * C * D >= K_PAR_MIN) schedule(static)
  for (int64_t a = 0; a < A; a++)
    for (int64_t c = 0; c < C; c++) {
      float *o = out + (a * C + c) * B * D; /* contiguous (B,D) block */
      const float *xs = x + (a * B * C + c) * D;
      for (int64_t b = 0; b < B; b++)
        for (int64_t d = 0; d < D; d++) o[b * D + d] = xs[b * C * D + d];
    }
}

void k_permute_0213_backward(float *dx, const float *dout, int64_t A, int64_t B, int64_t C,
                             int64_t D) {
#pragma omp parallel for collapse(2) if (A * B * C * D >= K_PAR_MIN) schedule(static)
  for (int64_t a = 0; a < A; a++)
    for (int64_t b = 0; b < B; b++) {
      float *g = dx + (a * B + b) * C * D; /* contiguous (C,D) block, owned here */
      const float *ds = dout + (a * C * B + b) * D;
      for (int64_t c = 0; c < C; c++)
        for (int64_t d = 0; d < D; d++) g[c * D + d] += ds[c * B * D + d];
    }
}

/* ---- embedding */

static int64_t first_bad_id(const int32_t *ids, int64_t N, int64_t V) {
  for (int64_t n = 0; n < N; n++)
    if (ids[n] < 0 || ids[n] >= V) return n;
  return K_IDS_VALID;
}

int64_t k_embedding_forward(float *out, const int32_t *ids, const float *table, int64_t N,
                            int64_t V, int64_t C) {
#pragma omp parallel for if (N * C >= K_PAR_MIN) schedule(static)
  for (int64_t n = 0; n < N; n++) {
    int64_t id = ids[n];
    if (id >= 0 && id < V)
      memcpy(out + n * C, table + id * C, (size_t)C * sizeof(float));
    else
      memset(out + n * C, 0, (size_t)C * sizeof(float));
  }
  return first_bad_id(ids, N, V);
}

int64_t k_embedding_backward(float *dtable, const float *dout, const int32_t *ids, int64_t N,
                             int64_t V, int64_t C) {
  /* Threads own contiguous vocabulary ranges and each scans all ids in
   * order; a table row's sum is therefore in increasing n however the
   * vocabulary is split. */
#pragma omp parallel if (N * C >= K_PAR_MIN)
  {
    int64_t nth = omp_get_num_threads(), tid = omp_get_thread_num();
    int64_t v0 = V * tid / nth, v1 = V * (tid + 1) / nth;
    for (int64_t n = 0; n < N; n++) {
      int64_t id = ids[n];
      if (id < v0 || id >= v1) continue;
      float *g = dtable + id * C;
      const float *d = dout + n * C;
      for (int64_t c = 0; c < C; c++) g[c] += d[c];
    }
  }
  return first_bad_id(ids, N, V);
}
