/* kc_optim.cu: in-place optimizer updates over flat fp32 buffers (AdamW
 * with an optional bf16 copy of the result, SGD with momentum).
 *
 * Invariants: purely elementwise, so any launch shape gives the same bits;
 * the bias corrections are computed once on the host in double, exactly
 * as the CPU twin does, so the float arithmetic per element is the same
 * sequence of operations.
 */
#include <math.h>

#include <cuda_bf16.h>

#include "kc_internal.cuh"

__global__ void adamw_kernel(float *param, const float *grad, float *m, float *v, int64_t n,
                             float lr, float beta1, float beta2, float eps, float decay,
                             float inv_bc1, float inv_sqrt_bc2, const float *grad_scale,
                             uint16_t *param_bf16) {
  float gs = grad_scale ? *grad_scale : 1.0f;
  int64_t stride = (int64_t)gridDim.x * blockDim.x;
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += stride) {
    float g = grad_scale ? grad[i] * gs : grad[i];
    float mi = beta1 * m[i] + (1.0f - beta1) * g;
    float vi = beta2 * v[i] + (1.0f - beta2) * g * g;
    m[i] = mi;
    v[i] = vi;
    /* torch's form: lr/bc1 * m / (sqrt(v)/sqrt(bc2) + eps) */
    float denom = sqrtf(vi) * inv_sqrt_bc2 + eps;
    float p = param[i] * decay - lr * (mi * inv_bc1) / denom;
    param[i] = p;
    if (param_bf16) param_bf16[i] = __bfloat16_as_ushort(__float2bfloat16_rn(p));
  }
}

extern "C" void kc_adamw_update(float *param, const float *grad, float *m, float *v, int64_t n,
                                float lr, float beta1, float beta2, float eps, float weight_decay,
                                int64_t step, const float *grad_scale, uint16_t *param_bf16,
                                cudaStream_t stream) {
  if (n <= 0) return;
  if (step < 1) step = 1; /* bias correction is undefined at step 0 */
  float inv_bc1 = (float)(1.0 / (1.0 - pow((double)beta1, (double)step)));
  float inv_sqrt_bc2 = (float)(1.0 / sqrt(1.0 - pow((double)beta2, (double)step)));
  float decay = 1.0f - lr * weight_decay; /* decoupled: applied to the old param */
  adamw_kernel<<<kc_blocks(n, KC_THREADS), KC_THREADS, 0, stream>>>(
      param, grad, m, v, n, lr, beta1, beta2, eps, decay, inv_bc1, inv_sqrt_bc2, grad_scale,
      param_bf16);
  KC_CHECK_LAUNCH();
}

__global__ void sgd_kernel(float *param, const float *grad, float *mom, int64_t n, float lr,
                           float momentum, float weight_decay, bool use_mom, bool nesterov) {
  int64_t stride = (int64_t)gridDim.x * blockDim.x;
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += stride) {
    float g = grad[i] + weight_decay * param[i];
    if (use_mom) {
      float b = momentum * mom[i] + g;
      mom[i] = b;
      g = nesterov ? g + momentum * b : b;
    }
    param[i] -= lr * g;
  }
}

extern "C" void kc_sgd_update(float *param, const float *grad, float *mom, int64_t n, float lr,
                              float momentum, float weight_decay, bool nesterov,
                              cudaStream_t stream) {
  if (n <= 0) return;
  bool use_mom = momentum != 0.0f && mom;
  sgd_kernel<<<kc_blocks(n, KC_THREADS), KC_THREADS, 0, stream>>>(
      param, grad, mom, n, lr, momentum, weight_decay, use_mom, nesterov);
  KC_CHECK_LAUNCH();
}
