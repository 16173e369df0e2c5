/* comm_bench.c: latency and bandwidth of a collective (float32, sum)
 * through dst_comm (non-blocking MPI + the watchdog's polling wait) and, for
 * comparison, the plain blocking MPI call on the same ranks.
 *
 *   mpirun -np 2 dst_comm_bench [allreduce|reduce_scatter|allgather] [max_bytes]
 *
 * bytes is the size of the full vector (what each rank holds for
 * all-reduce, the input of reduce-scatter, the output of all-gather).
 * Time per operation is the max over ranks of the mean over iterations,
 * and the best of 5 repetitions that alternate the two paths (the machine
 * may be shared: the minimum is the least disturbed).
 * algbw = bytes / time; busbw = algbw * 2 (p-1) / p for all-reduce and
 * algbw * (p-1) / p for the others (the nccl-tests convention: what each
 * rank's link carries in the ring algorithm).
 */
#include <ctype.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dst.h"
#include "dst_comm.h"

enum { ALLREDUCE, REDUCE_SCATTER, ALLGATHER };
static int g_op;
static float *g_y;

/* n: elements of the full vector (a multiple of the world size). */
static double time_op(int which, float *x, size_t n, int iters) {
  DstComm *w = dst_comm_world();
  int p = dst_comm_size(w), r = dst_comm_rank(w);
  size_t blk = n / (size_t)p;
  MPI_Barrier(MPI_COMM_WORLD);
  double t0 = dst_now_sec();
  for (int i = 0; i < iters; i++) {
    switch (g_op * 2 + which) {
      case 0: dst_comm_allreduce(w, x, x, n, DST_COMM_F32, DST_COMM_SUM); break;
      case 1: MPI_Allreduce(MPI_IN_PLACE, x, (int)n, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD); break;
      case 2: dst_comm_reduce_scatter(w, x, g_y, blk, DST_COMM_F32, DST_COMM_SUM); break;
      case 3: MPI_Reduce_scatter_block(x, g_y, (int)blk, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD); break;
      case 4: dst_comm_allgather(w, x + (size_t)r * blk, x, blk, DST_COMM_F32); break;
      case 5:
        MPI_Allgather(MPI_IN_PLACE, 0, MPI_FLOAT, x, (int)blk, MPI_FLOAT, MPI_COMM_WORLD);
        break;
    }
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
  static const char *names[] = {"allreduce", "reduce_scatter", "allgather"};
  int a = 1;
  g_op = ALLREDUCE;
  if (argc > a && !isdigit((unsigned char)argv[a][0])) {
    for (g_op = 0; g_op < 3 && strcmp(argv[a], names[g_op]) != 0; g_op++) {
    }
    if (g_op == 3) {
      fprintf(stderr, "unknown op %s\n", argv[a]);
      return 1;
    }
    a++;
  }
  size_t max_bytes = argc > a ? (size_t)atoll(argv[a]) : (size_t)64 << 20;
  float *x = dst_calloc(max_bytes / 4 + (size_t)p, 4, DST_MEM_WORKSPACE, "bench");
  g_y = dst_calloc(max_bytes / 4 + (size_t)p, 4, DST_MEM_WORKSPACE, "bench");
  if (r == 0) {
    printf("%s f32%s, %d ranks\n", names[g_op], g_op == ALLGATHER ? "" : " sum", p);
    printf("%12s %12s %14s %12s %14s\n", "bytes", "dst us", "dst busbw", "MPI us", "MPI busbw");
  }
  for (size_t bytes = 4; bytes <= max_bytes; bytes *= 4) {
    size_t n = (bytes / 4 + (size_t)p - 1) / (size_t)p * (size_t)p;
    int iters = bytes <= 65536 ? 400 : bytes <= (1 << 20) ? 40 : bytes <= (16 << 20) ? 4 : 1;
    double t[2] = {1e30, 1e30};
    for (int which = 0; which < 2; which++) time_op(which, x, n, iters / 10 + 1); /* warm-up */
    for (int rep = 0; rep < 5; rep++)
      for (int which = 0; which < 2; which++) {
        double ti = time_op(which, x, n, iters);
        if (ti < t[which]) t[which] = ti;
      }
    if (r == 0) {
      /* busbw: allreduce moves 2(p-1)/p of the vector per rank, the others (p-1)/p */
      double f = (g_op == ALLREDUCE ? 2.0 : 1.0) * (p - 1) / p / 1e9;
      printf("%12zu %12.1f %9.2f GB/s %12.1f %7.2f GB/s\n", bytes, t[0] * 1e6, bytes / t[0] * f,
             t[1] * 1e6, bytes / t[1] * f);
    }
  }
  dst_free(x);
  dst_comm_finalize();
  return 0;
}
