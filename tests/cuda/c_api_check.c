/* c_api_check.c: k_cuda.h compiles as C11 (generated programs are C) and
 * its KC_CHECK works there. Called once by dst_cuda_test. */
#include "k_cuda.h"

int kc_c_api_check(void) {
  float *x = NULL;
  KC_CHECK(cudaMalloc((void **)&x, 4 * sizeof(float)));
  kc_fill(x, 1.0f, 4, (cudaStream_t)0);
  float h[4] = {0};
  KC_CHECK(cudaMemcpy(h, x, sizeof h, cudaMemcpyDeviceToHost));
  KC_CHECK(cudaFree(x));
  return h[0] == 1.0f && h[3] == 1.0f ? 0 : 1;
}
