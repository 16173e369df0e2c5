/* k_matmul.c: GEMMs through OpenBLAS, plus the thread-count plumbing.
 *
 * Invariants: OpenBLAS always runs on one thread; a GEMM is split into
 * panels (rows of the output, or columns when it is wider than tall) whose
 * boundaries depend on the shape only, and OpenMP hands the panels out.
 * Each output element is therefore computed by one single-threaded
 * cblas_sgemm call on the same operands whatever the thread count, so the
 * result is bit-identical with 1 or 64 threads. OpenBLAS's own threading
 * does not give that: some of its kernels (Haswell's, which it also picks
 * on CPUs it does not know) finish the edge of a thread's part of the
 * output with a kernel that sums in another order. A batched call with a
 * shared output (stride_out == 0) is summed in batch order.
 */
/* cblas.h first: OpenBLAS's config header defines _GNU_SOURCE for cpu_set_t,
 * which only takes effect before any libc header has been read. */
#include <cblas.h>

#include <omp.h>
#include <pthread.h>
#include <string.h>

#include "k_internal.h"

/* Panels: at least this many rows (or columns), and at most this many
 * panels, so a big GEMM spreads over up to 16 threads and a panel is
 * large enough that packing the shared operand again for each costs little
 * (about 1/PANEL_MIN of the multiply-adds). */
enum { PANEL_MIN = 256, PANELS_MAX = 16 };

static pthread_once_t blas_once = PTHREAD_ONCE_INIT;
static void blas_single(void) { openblas_set_num_threads(1); }
void k_blas_single(void) { pthread_once(&blas_once, blas_single); }

void k_set_num_threads(int n) {
  if (n < 1) n = 1;
  omp_set_num_threads(n);
  k_blas_single();
}

int k_get_num_threads(void) { return omp_get_max_threads(); }

/* One cblas_sgemm on one thread: out (M,N) with row stride ldc. */
static void sgemm(float *out, int64_t ldc, const float *a, int64_t lda, const float *b, int64_t ldb,
                  int64_t M, int64_t K, int64_t N, bool ta, bool tb, float beta) {
  cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, (int)M,
              (int)N, (int)K, 1.0f, a, (int)lda, b, (int)ldb, beta, out, (int)ldc);
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
  k_blas_single();
  int64_t lda = ta ? M : K, ldb = tb ? K : N;
  bool rows = M >= N; /* split the longer side of the output */
  int64_t len = rows ? M : N;
  /* a power of two of panels, so that they spread evenly over 2, 4, 8 or
   * 16 threads */
  int64_t npanels = 1;
  while (npanels * 2 <= PANELS_MAX && len / (npanels * 2) >= PANEL_MIN) npanels *= 2;
  int64_t panel = (len + npanels - 1) / npanels;
  double macs = (double)M * (double)N * (double)K;
#pragma omp parallel for schedule(static) if (npanels > 1 && macs >= 262144.0 && !omp_in_parallel())
  for (int64_t p = 0; p < npanels; p++) {
    int64_t lo = p * panel, n = len - lo < panel ? len - lo : panel;
    if (rows) /* rows [lo, lo + n) of op(a) and of the output */
      sgemm(out + lo * N, N, a + (ta ? lo : lo * K), lda, b, ldb, n, K, N, ta, tb, beta);
    else /* columns [lo, lo + n) of op(b) and of the output */
      sgemm(out + lo, N, a, lda, b + (tb ? lo * K : lo), ldb, M, K, n, ta, tb, beta);
  }
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
    /* Shared output: a sequential sum keeps the order fixed; each GEMM
     * still spreads its panels over the threads. */
    for (int64_t i = 0; i < batch; i++)
      gemm(out, a + i * stride_a, b + i * stride_b, M, K, N, trans_a, trans_b,
           i == 0 ? beta : 1.0f);
    return;
  }
  /* Two ways to spend the cores: panels inside each GEMM, or one GEMM per
   * thread (OpenMP over the batch). Small GEMMs, like attention's per-head
   * products, barely split into panels, so the batch loop wins there; it
   * also wins for any size once the batch is several times the thread
   * count. Either way every GEMM computes the same panels, so the choice
   * (which depends on the thread count) does not change the result. */
  int threads = omp_get_max_threads();
  double macs = (double)M * (double)N * (double)K;
  bool over_batch = threads > 1 && !omp_in_parallel() &&
                    ((batch >= threads && macs <= 2.0 * 1024 * 1024) || batch >= 4 * threads);
#pragma omp parallel for schedule(static) if (over_batch)
  for (int64_t i = 0; i < batch; i++)
    gemm(out + i * stride_out, a + i * stride_a, b + i * stride_b, M, K, N, trans_a, trans_b,
         beta);
}

void k_matmul_backward(float *da, float *db, const float *dout, const float *a, const float *b,
                       int64_t M, int64_t K, int64_t N) {
  /* out = a.b  =>  da = dout.b^T (M,N).(N,K) and db = a^T.dout (K,M).(M,N). */
  if (da) gemm(da, dout, b, M, N, K, false, true, 1.0f);
  if (db) gemm(db, a, dout, K, M, N, true, false, 1.0f);
}
