/* sgemm.c: OpenBLAS single-precision GEMM throughput on this machine, the
 * bound the training benchmarks compare against. Prints GFLOP/s (median of
 * repeats) for square and transformer-shaped problems.
 * Build: cc -O2 bench/sgemm.c -o sgemm -lopenblas (see bench/train_speed.sh) */
#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static int cmp(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

static double gflops(int M, int N, int K) {
  float *a = malloc(sizeof(float) * (size_t)M * K), *b = malloc(sizeof(float) * (size_t)K * N),
        *c = malloc(sizeof(float) * (size_t)M * N);
  for (size_t i = 0; i < (size_t)M * K; i++) a[i] = (float)(i % 7) * 0.1f;
  for (size_t i = 0; i < (size_t)K * N; i++) b[i] = (float)(i % 5) * 0.1f;
  double r[9];
  for (int k = 0; k < 9; k++) {
    double t = now();
    int reps = 0;
    do {
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, M, N, K, 1.0f, a, K, b, N, 0.0f, c, N);
      reps++;
    } while (now() - t < 0.1);
    r[k] = 2.0 * M * N * K * reps / (now() - t) / 1e9;
  }
  qsort(r, 9, sizeof r[0], cmp);
  free(a);
  free(b);
  free(c);
  return r[4];
}

int main(int argc, char **argv) {
  int threads = argc > 1 ? atoi(argv[1]) : 0;
  if (threads > 0) openblas_set_num_threads(threads);
  printf("sgemm 1024x1024x1024 %.1f GFLOP/s\n", gflops(1024, 1024, 1024));
  printf("sgemm 2048x384x1536  %.1f GFLOP/s\n", gflops(2048, 1536, 384));
  printf("sgemm 256x768x3072   %.1f GFLOP/s\n", gflops(256, 3072, 768));
  return 0;
}
