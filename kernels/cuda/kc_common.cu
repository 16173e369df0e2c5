/* kc_common.cu: error reporting behind KC_CHECK, bad-id bookkeeping and
 * the shared-memory opt-in.
 *
 * Invariant: a failed CUDA/cuBLAS call never goes unnoticed: it reaches the
 * handler with the call's text and location, and the handler does not
 * return (the default one exits with status 70, dst's internal-error
 * status; a handler that returns anyway gets abort()).
 */
#include <stdio.h>
#include <stdlib.h>

#include "kc_internal.cuh"

static void default_handler(const char *file, int line, const char *expr, const char *msg) {
  fprintf(stderr, "internal error: %s:%d: %s failed: %s\n", file, line, expr, msg);
  fflush(stderr);
  exit(70);
}

static KcErrorHandler handler = default_handler;

extern "C" void kc_set_error_handler(KcErrorHandler h) { handler = h ? h : default_handler; }

static void fail(const char *file, int line, const char *expr, const char *msg) {
  handler(file, line, expr, msg);
  abort(); /* the handler must not return */
}

extern "C" void kc_check_cuda(cudaError_t err, const char *file, int line, const char *expr) {
  if (err == cudaSuccess) return;
  char msg[256];
  snprintf(msg, sizeof msg, "%s (%s)", cudaGetErrorString(err), cudaGetErrorName(err));
  fail(file, line, expr, msg);
}

void kc_check_cublas(cublasStatus_t st, const char *file, int line, const char *expr) {
  if (st == CUBLAS_STATUS_SUCCESS) return;
  char msg[256];
  snprintf(msg, sizeof msg, "cuBLAS status %d (%s)", (int)st, cublasLtGetStatusString(st));
  fail(file, line, expr, msg);
}

void kc_first_bad_init(int64_t *first_bad, cudaStream_t stream) {
  /* All ones: KC_IDS_VALID as int64, the largest value as unsigned. */
  KC_CHECK(cudaMemsetAsync(first_bad, 0xff, sizeof *first_bad, stream));
}

/* One thread per id; atomicMin keeps the smallest bad position whatever
 * the order in which threads run. */
__global__ void find_bad_ids_kernel(int64_t *first_bad, const int32_t *ids, int64_t N,
                                    int64_t V) {
  int64_t stride = (int64_t)gridDim.x * blockDim.x;
  for (int64_t n = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; n < N; n += stride) {
    int32_t id = ids[n];
    if (id < 0 || id >= V) kc_note_bad(first_bad, n);
  }
}

void kc_find_bad_ids(int64_t *first_bad, const int32_t *ids, int64_t N, int64_t V,
                     cudaStream_t stream) {
  if (!first_bad) return;
  kc_first_bad_init(first_bad, stream);
  if (N <= 0) return;
  find_bad_ids_kernel<<<kc_blocks(N, KC_THREADS), KC_THREADS, 0, stream>>>(first_bad, ids, N, V);
  KC_CHECK_LAUNCH();
}

void kc_allow_smem(const void *func, size_t bytes) {
  if (bytes <= 48 * 1024) return; /* always allowed */
  KC_CHECK(cudaFuncSetAttribute(func, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)bytes));
}
