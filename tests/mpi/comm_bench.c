/* comm_bench.c: latency and bandwidth of all-reduce (float32, sum) through
 * dst_comm (non-blocking MPI + the watchdog's polling wait) and, for
 * comparison, plain blocking MPI_Allreduce on the same ranks.
 *
 *   mpirun -np 2 dst_comm_bench [max_bytes]
 *
 * Time per operation is the max over ranks of the mean over iterations,
 * and the best of 5 repetitions that alternate the two paths (the machine
 * may be shared: the minimum is the least disturbed).
 * algbw = bytes / time; busbw = algbw * 2 (p-1) / p (the nccl-tests
 * convention: the bytes each rank's link carries in a ring all-reduce).
 */
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>

#include "dst.h"
#include "dst_comm.h"

static double time_op(int which, float *x, size_t n, int iters) {
  DstComm *w = dst_comm_world();
  MPI_Barrier(MPI_COMM_WORLD);
  double t0 = dst_now_sec();
  for (int i = 0; i < iters; i++) {
    if (which == 0)
      dst_comm_allreduce(w, x, x, n, DST_COMM_F32, DST_COMM_SUM);
    else
      MPI_Allreduce(MPI_IN_PLACE, x, (int)n, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
  }
  double t = (dst_now_sec() - t0) / iters, tmax;
  MPI_Allreduce(&t, &tmax, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
  return tmax;
}

int main(int argc, char **argv) {
  dst_comm_init(&argc, &argv);
  int p = dst_comm_world_size(), r = dst_comm_world_rank();
  if (dst_comm_backend() != DST_COMM_BACKEND_MPI) {
    fprintf(stderr, "run under mpirun (or DST_COMM_BACKEND=mpi)\n");
    return 1;
  }
  size_t max_bytes = argc > 1 ? (size_t)atoll(argv[1]) : (size_t)64 << 20;
  float *x = dst_calloc(max_bytes / 4 + 1, 4, DST_MEM_WORKSPACE, "bench");
  if (r == 0) {
    printf("all-reduce f32 sum, %d ranks\n", p);
    printf("%12s %12s %14s %12s %14s\n", "bytes", "dst us", "dst busbw", "MPI us",
           "MPI busbw");
  }
  for (size_t bytes = 4; bytes <= max_bytes; bytes *= 4) {
    size_t n = bytes / 4;
    int iters = bytes <= 65536 ? 400 : bytes <= (1 << 20) ? 40 : bytes <= (16 << 20) ? 4 : 1;
    double t[2] = {1e30, 1e30};
    for (int which = 0; which < 2; which++) time_op(which, x, n, iters / 10 + 1); /* warm-up */
    for (int rep = 0; rep < 5; rep++)
      for (int which = 0; which < 2; which++) {
        double ti = time_op(which, x, n, iters);
        if (ti < t[which]) t[which] = ti;
      }
    if (r == 0) {
      double f = 2.0 * (p - 1) / p / 1e9;
      printf("%12zu %12.1f %9.2f GB/s %12.1f %7.2f GB/s\n", bytes, t[0] * 1e6, bytes / t[0] * f,
             t[1] * 1e6, bytes / t[1] * f);
    }
  }
  dst_free(x);
  dst_comm_finalize();
  return 0;
}
