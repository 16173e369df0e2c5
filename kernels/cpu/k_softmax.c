/* k_softmax.c: softmax over the last dim and fused softmax + cross-entropy.
 *
 * Invariants: every row is handled by one thread with the max subtracted
 * before exponentiating and the normalizer summed in double, so no
 * intermediate overflows for finite inputs. Cross-entropy never stores
 * probabilities for its backward; it recomputes them from the logits.
 */
#include <math.h>

#include "k_internal.h"

/* Row log-sum-exp, the sum of exponentials accumulated in double. */
static double row_lse(const float *xr, int64_t C) {
  float m = k_max_row(xr, C);
  return (double)m + log(k_sum_exp(NULL, xr, m, C));
}

void k_softmax_forward(float *out, const float *x, int64_t N, int64_t C) {
  if (C <= 0) return;
#pragma omp parallel for if (N * C >= K_PAR_ROWS_MIN) schedule(static)
  for (int64_t n = 0; n < N; n++) {
    const float *xr = x + n * C;
    float *yr = out + n * C;
    double s = k_sum_exp(yr, xr, k_max_row(xr, C), C);
    float inv = (float)(1.0 / s);
    for (int64_t c = 0; c < C; c++) yr[c] *= inv;
  }
}

void k_softmax_backward(float *dx, const float *dout, const float *out, int64_t N, int64_t C) {
#pragma omp parallel for if (N * C >= K_PAR_ROWS_MIN) schedule(static)
  for (int64_t n = 0; n < N; n++) {
    const float *yr = out + n * C, *gr = dout + n * C;
    float *dr = dx + n * C;
    double dot = 0.0;
    for (int64_t c0 = 0; c0 < C; c0 += K_SUM_BLOCK) {
      int64_t c1 = k_min64(C, c0 + K_SUM_BLOCK);
      float part = 0.0f;
#pragma omp simd reduction(+ : part)
      for (int64_t c = c0; c < c1; c++) part += gr[c] * yr[c];
      dot += part;
    }
    float d = (float)dot;
    for (int64_t c = 0; c < C; c++) dr[c] += yr[c] * (gr[c] - d);
  }
}

int64_t k_crossentropy_forward(double *mean_loss, float *losses, float *probs,
                               const float *logits, const int32_t *targets, int64_t N, int64_t V) {
  int64_t first_bad = INT64_MAX;
#pragma omp parallel for reduction(min : first_bad) if (N * V >= K_PAR_ROWS_MIN) \
    schedule(static)
  for (int64_t n = 0; n < N; n++) {
    const float *xr = logits + n * V;
    int64_t t = targets[n];
    bool ok = t >= 0 && t < V;
    if (!ok && n < first_bad) first_bad = n;
    if (V <= 0) {
      losses[n] = 0.0f;
      continue;
    }
    double lse = row_lse(xr, V);
    losses[n] = ok ? (float)(lse - (double)xr[t]) : 0.0f;
    if (probs) {
      float *pr = probs + n * V;
      float lf = (float)lse;
      for (int64_t v = 0; v < V; v++) pr[v] = k_expf(xr[v] - lf);
    }
  }
  if (mean_loss) {
    double s = 0.0; /* fixed order, so the mean is thread-count independent */
    for (int64_t n = 0; n < N; n++) s += losses[n];
    *mean_loss = N > 0 ? s / (double)N : 0.0;
  }
  return first_bad == INT64_MAX ? K_IDS_VALID : first_bad;
}

int64_t k_crossentropy_backward(float *dlogits, const float *logits, const int32_t *targets,
                                const float *dloss, int64_t N, int64_t V) {
  int64_t first_bad = INT64_MAX;
#pragma omp parallel for reduction(min : first_bad) if (N * V >= K_PAR_ROWS_MIN) \
    schedule(static)
  for (int64_t n = 0; n < N; n++) {
    int64_t t = targets[n];
    if (t < 0 || t >= V) {
      if (n < first_bad) first_bad = n;
      continue;
    }
    const float *xr = logits + n * V;
    float *dr = dlogits + n * V;
    float lse = (float)row_lse(xr, V);
    float g = dloss[n];
    for (int64_t v = 0; v < V; v++) dr[v] += g * k_expf(xr[v] - lse);
    dr[t] -= g;
  }
  return first_bad == INT64_MAX ? K_IDS_VALID : first_bad;
}
