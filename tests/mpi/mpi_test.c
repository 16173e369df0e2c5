/* mpi_test.c: the dst_comm / dst_mesh test program, run under mpirun by
 * run_mpi_tests.sh (and without mpirun for the one-process cases).
 *
 *   mpi_test collectives   every collective, exact results, any world size
 *   mpi_test nonblocking   several operations in flight with compute between
 *   mpi_test mesh          2x2 meshes (needs 4 ranks) or dp=2 (2 ranks)
 *   mpi_test mismatch      a dp=2 x tp=2 plan (run with 3 ranks: must fail)
 *   mpi_test watchdog      the last rank skips allreduce #3 on 'dp' and sleeps
 *   mpi_test watchdog_peer the last rank skips it and waits in a recv instead
 *   mpi_test kill          rank 1 dies by SIGKILL inside an allreduce
 *
 * Values are small integers, exact in float32, so results compare with ==.
 * Prints "ok <mode>" on rank 0 when everything matched; a mismatch prints
 * the rank, the line and the values and ends the job with status 1.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "dst.h"
#include "dst_comm.h"

static int g_rank, g_size;
static long g_checks;

#define EXPECT(cond, ...)                                                                        \
  do {                                                                                           \
    g_checks++;                                                                                  \
    if (!(cond)) {                                                                               \
      char m_[512];                                                                              \
      int k_ = snprintf(m_, sizeof m_, "test failed at %s:%d: %s: ", __FILE__, __LINE__, #cond); \
      snprintf(m_ + k_, sizeof m_ - (size_t)k_, __VA_ARGS__);                                    \
      dst_comm_abort(1, m_);                                                                     \
    }                                                                                            \
  } while (0)

static float *fbuf(size_t n) {
  return dst_calloc(n ? n : 1, sizeof(float), DST_MEM_WORKSPACE, "t");
}

/* Sum over ranks r of (r + 1): the "rank-dependent" part of every sum. */
static long tri(int size) { return (long)size * (size + 1) / 2; }

/* ----------------------------------------------------------- collectives */

static void test_allreduce(DstComm *c, size_t n) {
  int r = dst_comm_rank(c), p = dst_comm_size(c);
  float *x = fbuf(n), *y = fbuf(n);
  for (size_t i = 0; i < n; i++) x[i] = (float)((r + 1) * 1000 + (long)(i % 4096));
  dst_comm_allreduce(c, x, y, n, DST_COMM_F32, DST_COMM_SUM);
  for (size_t i = 0; i < n; i++) {
    float want = (float)(tri(p) * 1000 + (long)p * (long)(i % 4096));
    EXPECT(y[i] == want, "allreduce sum n=%zu y[%zu]=%g want %g", n, i, y[i], want);
  }
  /* in place, max and min */
  for (size_t i = 0; i < n; i++) y[i] = (float)(r * 3 - (long)(i % 7));
  dst_comm_allreduce(c, y, y, n, DST_COMM_F32, DST_COMM_MAX);
  for (size_t i = 0; i < n; i++)
    EXPECT(y[i] == (float)((p - 1) * 3 - (long)(i % 7)), "max y[%zu]=%g", i, y[i]);
  for (size_t i = 0; i < n; i++) y[i] = (float)(r * 3 - (long)(i % 7));
  dst_comm_allreduce(c, y, y, n, DST_COMM_F32, DST_COMM_MIN);
  for (size_t i = 0; i < n; i++) EXPECT(y[i] == (float)(-(long)(i % 7)), "min y[%zu]=%g", i, y[i]);
  dst_free(x);
  dst_free(y);
}

static void test_allreduce_types(DstComm *c) {
  int r = dst_comm_rank(c), p = dst_comm_size(c);
  int32_t iv[5];
  for (int i = 0; i < 5; i++) iv[i] = (r + 1) * (i - 2) * 100000;
  dst_comm_allreduce(c, iv, iv, 5, DST_COMM_I32, DST_COMM_SUM);
  for (int i = 0; i < 5; i++)
    EXPECT(iv[i] == (int32_t)(tri(p) * (i - 2) * 100000), "i32 %d", iv[i]);
  uint8_t u[3] = {(uint8_t)r, (uint8_t)(200 + r), (uint8_t)(r == 0)};
  dst_comm_allreduce(c, u, u, 3, DST_COMM_U8, DST_COMM_MAX);
  EXPECT(u[0] == p - 1 && u[1] == 200 + p - 1 && u[2] == 1, "u8 max %d %d %d", u[0], u[1], u[2]);
  double d[2] = {0.5 * (r + 1), 1e15 * (r + 1)}, e[2];
  dst_comm_allreduce(c, d, e, 2, DST_COMM_F64, DST_COMM_SUM);
  EXPECT(e[0] == 0.5 * (double)tri(p) && e[1] == 1e15 * (double)tri(p), "f64 %g %g", e[0], e[1]);
  /* count 0 is a legal no-op */
  dst_comm_allreduce(c, NULL, NULL, 0, DST_COMM_F32, DST_COMM_SUM);
}

/* Reduce-scatter of a length L that need not divide by p: the caller pads
 * to p * ceil(L/p); rank r gets elements [r*blk, (r+1)*blk). */
static void test_reduce_scatter(DstComm *c, size_t L, bool in_place) {
  int r = dst_comm_rank(c), p = dst_comm_size(c);
  size_t blk = (L + (size_t)p - 1) / (size_t)p, padded = blk * (size_t)p;
  float *x = fbuf(padded), *y = fbuf(in_place ? padded : blk);
  for (size_t j = 0; j < L; j++) x[j] = (float)(r + 1 + (long)(j % 5000));
  if (in_place) memcpy(y, x, padded * sizeof(float));
  dst_comm_reduce_scatter(c, in_place ? y : x, y, blk, DST_COMM_F32, DST_COMM_SUM);
  for (size_t k = 0; k < blk; k++) {
    size_t j = (size_t)r * blk + k;
    float want = j < L ? (float)(tri(p) + (long)p * (long)(j % 5000)) : 0.0f;
    EXPECT(y[k] == want, "reduce_scatter L=%zu%s y[%zu]=%g want %g", L, in_place ? " in place" : "",
           k, y[k], want);
  }
  dst_free(x);
  dst_free(y);
}

/* All-gather of a vector of length L sharded in blocks of ceil(L/p); the
 * last ranks' blocks are partly or wholly padding. */
static void test_allgather(DstComm *c, size_t L, bool in_place) {
  int r = dst_comm_rank(c), p = dst_comm_size(c);
  size_t blk = (L + (size_t)p - 1) / (size_t)p;
  float *mine = fbuf(blk), *all = fbuf(blk * (size_t)p);
  for (size_t k = 0; k < blk; k++) {
    size_t j = (size_t)r * blk + k;
    mine[k] = j < L ? (float)(j * 3 + 1) : -1.0f;
  }
  for (size_t j = 0; j < blk * (size_t)p; j++) all[j] = -7.0f;
  if (in_place) {
    memcpy(all + (size_t)r * blk, mine, blk * sizeof(float));
    dst_comm_allgather(c, all + (size_t)r * blk, all, blk, DST_COMM_F32);
  } else {
    dst_comm_allgather(c, mine, all, blk, DST_COMM_F32);
  }
  for (size_t j = 0; j < blk * (size_t)p; j++) {
    float want = j < L ? (float)(j * 3 + 1) : -1.0f;
    EXPECT(all[j] == want, "allgather L=%zu all[%zu]=%g want %g", L, j, all[j], want);
  }
  /* 2-byte payloads travel unchanged */
  uint16_t h = (uint16_t)(0x3f80 + r), hs[64];
  EXPECT(p <= 64, "p=%d", p);
  dst_comm_allgather(c, &h, hs, 1, DST_COMM_BF16);
  for (int i = 0; i < p; i++) EXPECT(hs[i] == 0x3f80 + i, "bf16 %x", hs[i]);
  dst_free(mine);
  dst_free(all);
}

static void test_broadcast(DstComm *c, size_t n) {
  int r = dst_comm_rank(c), p = dst_comm_size(c);
  float *x = fbuf(n);
  for (int root = 0; root < p; root++) {
    for (size_t i = 0; i < n; i++) x[i] = r == root ? (float)(root * 100 + (long)(i % 777)) : -1.0f;
    dst_comm_broadcast(c, x, n, DST_COMM_F32, root);
    for (size_t i = 0; i < n; i++)
      EXPECT(x[i] == (float)(root * 100 + (long)(i % 777)), "bcast root %d x[%zu]=%g", root, i,
             x[i]);
  }
  dst_free(x);
}

static void test_alltoall(DstComm *c, size_t n) {
  int r = dst_comm_rank(c), p = dst_comm_size(c);
  float *s = fbuf(n * (size_t)p), *d = fbuf(n * (size_t)p);
  for (int j = 0; j < p; j++)
    for (size_t k = 0; k < n; k++)
      s[(size_t)j * n + k] = (float)(r * 10000 + j * 100 + (long)(k % 100));
  dst_comm_alltoall(c, s, d, n, DST_COMM_F32);
  for (int j = 0; j < p; j++)
    for (size_t k = 0; k < n; k++) {
      float want = (float)(j * 10000 + r * 100 + (long)(k % 100));
      EXPECT(d[(size_t)j * n + k] == want, "alltoall from %d [%zu]=%g want %g", j, k,
             d[(size_t)j * n + k], want);
    }
  dst_free(s);
  dst_free(d);
}

static void test_sendrecv(DstComm *c, size_t n) {
  int r = dst_comm_rank(c), p = dst_comm_size(c);
  if (p == 1) return; /* no self messages on one rank */
  float *s = fbuf(n), *d = fbuf(n);
  for (size_t i = 0; i < n; i++) s[i] = (float)(r * 1000 + (long)(i % 1000));
  int to = (r + 1) % p, from = (r + p - 1) % p;
  DstCommReq q[2];
  q[0] = dst_comm_irecv(c, d, n, DST_COMM_F32, from, 7);
  q[1] = dst_comm_isend(c, s, n, DST_COMM_F32, to, 7);
  dst_comm_wait_all(q, 2);
  for (size_t i = 0; i < n; i++)
    EXPECT(d[i] == (float)(from * 1000 + (long)(i % 1000)), "recv [%zu]=%g", i, d[i]);
  /* blocking pair: even ranks send first */
  int32_t v = r * 7, w = -1;
  if (r % 2 == 0) {
    if (r + 1 < p) dst_comm_send(c, &v, 1, DST_COMM_I32, r + 1, 3);
  } else {
    dst_comm_recv(c, &w, 1, DST_COMM_I32, r - 1, 3);
    EXPECT(w == (r - 1) * 7, "blocking recv %d", w);
  }
  dst_free(s);
  dst_free(d);
}

static void run_collectives(DstComm *c) {
  static const size_t sizes[] = {1, 7, 1000, 100003, 1u << 20};
  uint64_t seq0 = dst_comm_seq(c);
  uint64_t issued = 0;
  for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++) {
    test_allreduce(c, sizes[i]);
    issued += 3;
  }
  test_allreduce_types(c);
  issued += 4;
  static const size_t lens[] = {1, 3, 10, 1001, 65537};
  for (size_t i = 0; i < sizeof lens / sizeof *lens; i++)
    for (int ip = 0; ip < 2; ip++) {
      test_reduce_scatter(c, lens[i], ip);
      test_allgather(c, lens[i], ip);
      issued += 3;
    }
  test_broadcast(c, 1);
  test_broadcast(c, 300001);
  issued += 2 * (uint64_t)dst_comm_size(c);
  test_alltoall(c, 1);
  test_alltoall(c, 4099);
  issued += 2;
  dst_comm_barrier(c);
  issued += 1;
  test_sendrecv(c, 5);
  test_sendrecv(c, 200000);
  EXPECT(dst_comm_seq(c) - seq0 == issued, "sequence %llu, %llu issued",
         (unsigned long long)(dst_comm_seq(c) - seq0), (unsigned long long)issued);
}

/* ------------------------------------------------------------ nonblocking */

static volatile double g_sink;

static void compute(int ms, DstCommReq *q, int nq) {
  double t0 = dst_now_sec(), acc = 0;
  long it = 0;
  while ((dst_now_sec() - t0) * 1000 < ms) {
    for (int i = 0; i < 10000; i++) acc += (double)i * 1e-9;
    /* Poking the requests now and then lets MPI progress in the background. */
    if (++it % 8 == 0)
      for (int i = 0; i < nq; i++) dst_comm_test(&q[i]);
  }
  g_sink = acc;
}

static void run_nonblocking(DstComm *c) {
  int r = dst_comm_rank(c), p = dst_comm_size(c);
  enum { N = 1 << 18, K = 4 };
  float *x[K];
  for (int k = 0; k < K; k++) {
    x[k] = fbuf(N);
    for (size_t i = 0; i < N; i++) x[k][i] = (float)(k * 10 + r + (long)(i % 3));
  }
  float *s = fbuf((size_t)p * 64), *d = fbuf((size_t)p * 64);
  for (int i = 0; i < p * 64; i++) s[i] = (float)(r * 1000 + i);
  DstCommReq q[K + 2];
  for (int k = 0; k < K; k++) {
    dst_comm_set_label(k == 0 ? "bucket0" : NULL);
    q[k] = dst_comm_iallreduce(c, x[k], x[k], N, DST_COMM_F32, DST_COMM_SUM);
  }
  EXPECT(q[0].label && strcmp(q[0].label, "bucket0") == 0 && q[1].label == NULL, "labels");
  EXPECT(q[1].seq == q[0].seq + 1 && q[0].active, "seq %llu %llu", (unsigned long long)q[0].seq,
         (unsigned long long)q[1].seq);
  q[K] = dst_comm_ialltoall(c, s, d, 64, DST_COMM_F32);
  q[K + 1] = dst_comm_ibarrier(c);
  compute(30, q, K + 2);
  /* Wait in reverse order of issue: completion order must not matter. */
  for (int k = K + 1; k >= 0; k--) dst_comm_wait(&q[k]);
  for (int k = 0; k < K + 2; k++) EXPECT(!q[k].active, "request %d still active", k);
  dst_comm_wait(&q[0]); /* waiting again is a no-op */
  for (int k = 0; k < K; k++)
    for (size_t i = 0; i < N; i++) {
      float want = (float)((long)p * (k * 10 + (long)(i % 3)) + tri(p) - p);
      EXPECT(x[k][i] == want, "overlapped allreduce %d [%zu]=%g want %g", k, i, x[k][i], want);
    }
  for (int j = 0; j < p; j++)
    for (int i = 0; i < 64; i++)
      EXPECT(d[j * 64 + i] == (float)(j * 1000 + r * 64 + i), "overlapped alltoall");
  /* dst_comm_test until done */
  float v = (float)r;
  DstCommReq t = dst_comm_iallreduce(c, &v, &v, 1, DST_COMM_F32, DST_COMM_MAX);
  long spins = 0;
  while (!dst_comm_test(&t)) spins++;
  EXPECT(v == (float)(p - 1), "test loop %g", v);
  for (int k = 0; k < K; k++) dst_free(x[k]);
  dst_free(s);
  dst_free(d);
}

/* ------------------------------------------------------------------ mesh */

static void check_layout(void) {
  int deg[DST_AXIS_COUNT] = {
      [DST_AXIS_DP] = 3, [DST_AXIS_TP] = 2, [DST_AXIS_PP] = 4, [DST_AXIS_EP] = 5};
  int total = 3 * 2 * 4 * 5;
  for (int rank = 0; rank < total; rank++) {
    int c[DST_AXIS_COUNT];
    dst_mesh_coords_from_rank(deg, rank, c);
    int want = c[DST_AXIS_TP] + 2 * (c[DST_AXIS_EP] + 5 * (c[DST_AXIS_DP] + 3 * c[DST_AXIS_PP]));
    EXPECT(want == rank, "layout rank %d -> %d", rank, want);
    EXPECT(dst_mesh_rank_from_coords(deg, c) == rank, "round trip %d", rank);
  }
}

static void check_mesh(const int deg[DST_AXIS_COUNT]) {
  DstMesh *m = dst_mesh_init(deg);
  EXPECT(m->rank == g_rank && m->size == g_size, "mesh rank");
  int c[DST_AXIS_COUNT];
  dst_mesh_coords_from_rank(deg, g_rank, c);
  for (int a = 0; a < DST_AXIS_COUNT; a++) {
    DstComm *ac = dst_mesh_comm(m, (DstAxis)a);
    EXPECT(m->coord[a] == c[a], "coord %d", a);
    EXPECT(dst_comm_size(ac) == deg[a] && dst_comm_rank(ac) == c[a], "axis %s: %d of %d",
           dst_axis_name((DstAxis)a), dst_comm_rank(ac), dst_comm_size(ac));
    EXPECT(strcmp(dst_comm_name(ac), dst_axis_name((DstAxis)a)) == 0, "name %s", dst_comm_name(ac));
    /* members: the world ranks with my coordinates except on axis a */
    for (int j = 0; j < deg[a]; j++) {
      int cj[DST_AXIS_COUNT];
      memcpy(cj, c, sizeof cj);
      cj[a] = j;
      EXPECT(dst_comm_world_rank_of(ac, j) == dst_mesh_rank_from_coords(deg, cj), "member");
    }
    /* the sum of world ranks over the group, computed by all-reduce */
    int32_t v = g_rank, sum = 0;
    dst_comm_allreduce(ac, &v, &v, 1, DST_COMM_I32, DST_COMM_SUM);
    for (int j = 0; j < deg[a]; j++) sum += dst_comm_world_rank_of(ac, j);
    EXPECT(v == sum, "axis %s sum %d want %d", dst_axis_name((DstAxis)a), v, sum);
    run_collectives(ac);
  }
  /* a group over every axis is the world, in world order */
  DstComm *all = dst_mesh_group(m, (1u << DST_AXIS_COUNT) - 1, "all");
  EXPECT(dst_comm_size(all) == g_size && dst_comm_rank(all) == g_rank, "all-axes group");
  dst_comm_free(all);
  dst_mesh_free(m);
}

static void run_mesh(void) {
  check_layout();
  int deg[DST_AXIS_COUNT] = {1, 1, 1, 1};
  if (g_size == 4) {
    int a[DST_AXIS_COUNT] = {
        [DST_AXIS_DP] = 2, [DST_AXIS_TP] = 2, [DST_AXIS_PP] = 1, [DST_AXIS_EP] = 1};
    check_mesh(a);
    /* Megatron order: tp groups are consecutive ranks */
    EXPECT(g_rank == (g_rank % 2) + 2 * (g_rank / 2), "layout");
    int b[DST_AXIS_COUNT] = {
        [DST_AXIS_DP] = 1, [DST_AXIS_TP] = 1, [DST_AXIS_PP] = 2, [DST_AXIS_EP] = 2};
    check_mesh(b);
  } else {
    deg[DST_AXIS_DP] = g_size;
    check_mesh(deg);
  }
}

/* ----------------------------------------------------------------- faults */

static void run_watchdog(bool peer_waits) {
  int deg[DST_AXIS_COUNT] = {g_size, 1, 1, 1};
  DstMesh *m = dst_mesh_init(deg);
  DstComm *dp = dst_mesh_comm(m, DST_AXIS_DP);
  float x[4] = {1, 2, 3, 4};
  for (int i = 0; i < 3; i++) dst_comm_allreduce(dp, x, x, 4, DST_COMM_F32, DST_COMM_SUM);
  if (g_rank == g_size - 1) {
    /* skips allreduce #3 */
    if (peer_waits) {
      dst_comm_set_timeout(30); /* the others must fire first */
      float y;
      dst_comm_recv(dst_comm_world(), &y, 1, DST_COMM_F32, 0, 99);
    } else {
      sleep(30);
    }
    return;
  }
  dst_comm_set_label("grads.test");
  dst_comm_allreduce(dp, x, x, 4, DST_COMM_F32, DST_COMM_SUM);
  fprintf(stderr, "rank %d: allreduce #3 completed without the last rank\n", g_rank);
}

static void run_kill(void) {
  dst_comm_set_timeout(60); /* the job must end by mpirun, not the watchdog */
  size_t n = 1 << 20;
  float *x = fbuf(n);
  for (int it = 0; it < 1000000; it++) {
    DstCommReq q = dst_comm_iallreduce(dst_comm_world(), x, x, n, DST_COMM_F32, DST_COMM_SUM);
    if (it == 3 && g_rank == 1) {
      fprintf(stderr, "rank 1: SIGKILL inside allreduce #%d\n", it);
      raise(SIGKILL);
    }
    dst_comm_wait(&q);
  }
}

int main(int argc, char **argv) {
  dst_comm_init(&argc, &argv);
  g_rank = dst_comm_world_rank();
  g_size = dst_comm_world_size();
  const char *mode = argc > 1 ? argv[1] : "collectives";
  if (strcmp(mode, "collectives") == 0) {
    run_collectives(dst_comm_world());
    /* and on a split: even / odd world ranks, reversed order */
    DstComm *half = dst_comm_split(dst_comm_world(), g_rank % 2, -g_rank, "half");
    EXPECT(dst_comm_size(half) == (g_size + 1 - g_rank % 2) / 2, "split size %d",
           dst_comm_size(half));
    run_collectives(half);
    dst_comm_free(half);
  } else if (strcmp(mode, "nonblocking") == 0) {
    run_nonblocking(dst_comm_world());
  } else if (strcmp(mode, "mesh") == 0) {
    run_mesh();
  } else if (strcmp(mode, "mismatch") == 0) {
    int deg[DST_AXIS_COUNT] = {
        [DST_AXIS_DP] = 2, [DST_AXIS_TP] = 2, [DST_AXIS_PP] = 1, [DST_AXIS_EP] = 1};
    dst_mesh_init(deg);
    fprintf(stderr, "rank %d: mesh_init returned on a mismatched world\n", g_rank);
    return 3;
  } else if (strcmp(mode, "watchdog") == 0 || strcmp(mode, "watchdog_peer") == 0) {
    run_watchdog(strcmp(mode, "watchdog_peer") == 0);
  } else if (strcmp(mode, "kill") == 0) {
    run_kill();
  } else {
    fprintf(stderr, "unknown mode %s\n", mode);
    return 2;
  }
  long checks = g_checks;
  if (g_rank == 0)
    printf("ok %s (%d rank%s, backend %s, %ld checks on rank 0)\n", mode, g_size,
           g_size == 1 ? "" : "s", dst_comm_backend_name(), checks);
  fflush(stdout);
  dst_comm_finalize();
  return 0;
}
