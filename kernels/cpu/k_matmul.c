/* k_matmul.c: GEMMs through OpenBLAS, plus the thread-count plumbing.
 *
 * Invariants: every product goes through cblas_sgemm (row-major), so the
 * summation order inside one GEMM is OpenBLAS's and does not depend on how
 * many OpenMP threads issue GEMMs. A batched call with a shared output
 * (stride_out == 0) is summed in batch order on one thread.
 */
/* cblas.h first: OpenBLAS's config header defines _GNU_SOURCE for cpu_set_t,
 * which only takes effect before any libc header has been read. */
#include <cblas.h>

#include <omp.h>
#include <string.h>

#include "k_internal.h"

void k_set_num_threads(int n) {
  if (n < 1) n = 1;
  omp_set_num_threads(n);
  openblas_set_num_threads(n);
}

int k_get_num_threads(void) { return omp_get_max_threads(); }

int k_blas_threads_single(void) {
  int saved = openblas_get_num_threads();
  if (saved != 1) openblas_set_num_threads(1);
  return saved;
}

void k_blas_threads_restore(int saved) {
  if (saved != 1) openblas_set_num_threads(saved);
}

static void gemm(float *out, const float *a, const float *b, int64_t M, int64_t K, int64_t N,
                 bool ta, bool tb, float beta) {
  if (M <= 0 || N <= 0) return;
  if (K <= 0) {
    /* Empty inner dim: the product is zero. Handled here because BLAS
     * implementations disagree on ld checks for K = 0. */
    if (beta == 0.0f) {
      memset(out, 0, (size_t)(M * N) * sizeof(float));
    } else if (beta != 1.0f) {
      for (int64_t i = 0; i < M * N; i++) out[i] *= beta;
    }
    return;
  }
  int lda = (int)(ta ? M : K);
  int ldb = (int)(tb ? K : N);
  cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans,
              (int)M, (int)N, (int)K, 1.0f, a, lda, b, ldb, beta, out, (int)N);
}

void k_matmul(float *out, const float *a, const float *b, int64_t M, int64_t K, int64_t N,
              bool trans_a, bool trans_b, float beta) {
  gemm(out, a, b, M, K, N, trans_a, trans_b, beta);
}

void k_matmul_batched(int64_t batch, float *out, const float *a, const float *b, int64_t M,
                      int64_t K, int64_t N, bool trans_a, bool trans_b, float beta,
                      int64_t stride_out, int64_t stride_a, int64_t stride_b) {
  if (batch <= 0) return;
  if (stride_out == 0) {
    /* Shared output: a sequential sum keeps the order fixed; each GEMM still
     * uses all OpenBLAS threads. */
    for (int64_t i = 0; i < batch; i++)
      gemm(out, a + i * stride_a, b + i * stride_b, M, K, N, trans_a, trans_b,
           i == 0 ? beta : 1.0f);
    return;
  }
  /* Two ways to spend the cores: threads inside each GEMM (OpenBLAS) or one
   * GEMM per thread (OpenMP over the batch). Small GEMMs, like attention's
   * per-head products, barely parallelize inside OpenBLAS, so the batch loop
   * wins there; it also wins for any size once the batch is several times
   * the thread count, because it needs no synchronization inside a GEMM.
   * Large GEMMs in a short batch keep OpenBLAS's threading, which balances
   * better than a ragged batch split. */
  int threads = omp_get_max_threads();
  double macs = (double)M * (double)N * (double)K;
  bool over_batch = threads > 1 && !omp_in_parallel() &&
                    ((batch >= threads && macs <= 2.0 * 1024 * 1024) || batch >= 4 * threads);
  if (!over_batch) {
    for (int64_t i = 0; i < batch; i++)
      gemm(out + i * stride_out, a + i * stride_a, b + i * stride_b, M, K, N, trans_a, trans_b,
           beta);
    return;
  }
  int saved = k_blas_threads_single();
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < batch; i++)
    gemm(out + i * stride_out, a + i * stride_a, b + i * stride_b, M, K, N, trans_a, trans_b,
         beta);
  k_blas_threads_restore(saved);
}

void k_matmul_backward(float *da, float *db, const float *dout, const float *a, const float *b,
                       int64_t M, int64_t K, int64_t N) {
  /* out = a.b  =>  da = dout.b^T (M,N).(N,K) and db = a^T.dout (K,M).(M,N). */
  if (da) gemm(da, dout, b, M, N, K, false, true, 1.0f);
  if (db) gemm(db, a, dout, K, M, N, true, false, 1.0f);
}
