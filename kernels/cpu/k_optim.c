/* k_optim.c: in-place optimizer updates (AdamW, SGD with momentum).
 *
 * Invariants: purely elementwise, so any split over threads gives the same
 * bits; hyper-parameter arithmetic (bias corrections) is done once in
 * double. Semantics follow torch.optim so trajectories can be compared with
 * PyTorch fixtures.
 */
#include <math.h>

#include "k_internal.h"

void k_adamw_update(float *param, const float *grad, float *m, float *v, int64_t n, float lr,
                    float beta1, float beta2, float eps, float weight_decay, int64_t step) {
  if (step < 1) step = 1; /* bias correction is undefined at step 0 */
  float inv_bc1 = (float)(1.0 / (1.0 - pow((double)beta1, (double)step)));
  float inv_sqrt_bc2 = (float)(1.0 / sqrt(1.0 - pow((double)beta2, (double)step)));
  float decay = 1.0f - lr * weight_decay; /* decoupled: applied to the old param */
#pragma omp parallel for simd if (n >= K_PAR_MIN) schedule(static)
  for (int64_t i = 0; i < n; i++) {
    float g = grad[i];
    float mi = beta1 * m[i] + (1.0f - beta1) * g;
    float vi = beta2 * v[i] + (1.0f - beta2) * g * g;
    m[i] = mi;
    v[i] = vi;
    /* torch's form: lr/bc1 * m / (sqrt(v)/sqrt(bc2) + eps) */
    float denom = sqrtf(vi) * inv_sqrt_bc2 + eps;
    param[i] = param[i] * decay - lr * (mi * inv_bc1) / denom;
  }
}

void k_sgd_update(float *param, const float *grad, float *mom, int64_t n, float lr,
                  float momentum, float weight_decay, bool nesterov) {
  bool use_mom = momentum != 0.0f && mom;
#pragma omp parallel for simd if (n >= K_PAR_MIN) schedule(static)
  for (int64_t i = 0; i < n; i++) {
    float g = grad[i] + weight_decay * param[i];
    if (use_mom) {
      float b = momentum * mom[i] + g;
      mom[i] = b;
      g = nesterov ? g + momentum * b : b;
    }
    param[i] -= lr * g;
  }
}
