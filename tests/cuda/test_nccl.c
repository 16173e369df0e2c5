/* test_nccl.c: the NCCL backend of dst_comm (runtime/cuda/dst_comm_nccl.c)
 * on device buffers: every collective (f32, f64, i32, u8, bf16, f16
 * reductions; in place and out of place), send/recv, barrier, operations in
 * flight with dst_comm_test, a split group and a mesh axis, the stream
 * and event of dst_comm_nccl.h, and operations on host buffers (on MPI).
 *
 *   dst_nccl_test            the checks, on any number of ranks (sets
 *                            DST_COMM_BACKEND=nccl itself)
 *   dst_nccl_test --devices  prints the number of CUDA devices (0 if none);
 *                            run_nccl_test.sh skips when there are too few
 *   dst_nccl_test --init     only dst_comm_init and dst_comm_finalize, also
 *                            without a device (init must then fail with its
 *                            one-line error, status 1)
 *
 * Without a CUDA device the checks print "SKIPPED: no CUDA device" and exit
 * 77 (CTest: skipped) before MPI is started. Values are small integers, exact
 * in every dtype used, so results compare with ==. Prints
 * "ok nccl (N ranks, M checks)" on rank 0 when everything matched; a
 * mismatch prints the rank, the line and the values and ends the job with
 * status 1.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dst.h"
#include "dst_comm.h"
#include "dst_comm_nccl.h"

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

#define CK(call)                                                                 \
  do {                                                                           \
    cudaError_t e_ = (call);                                                     \
    if (e_ != cudaSuccess) {                                                     \
      char m_[512];                                                              \
      snprintf(m_, sizeof m_, "%s:%d: %s failed: %s", __FILE__, __LINE__, #call, \
               cudaGetErrorString(e_));                                          \
      dst_comm_abort(DST_EXIT_INTERNAL, m_);                                     \
    }                                                                            \
  } while (0)

/* ------------------------------------------------------------- buffers */

static void *dev(size_t bytes) {
  void *p = NULL;
  CK(cudaMalloc(&p, bytes ? bytes : 1));
  return p;
}

/* Copies in and out on the communication stream, so they are ordered with
 * the operations. */
static void put(void *d, const void *h, size_t bytes) {
  CK(cudaMemcpyAsync(d, h, bytes, cudaMemcpyHostToDevice, dst_comm_nccl_stream()));
}
static void get(void *h, const void *d, size_t bytes) {
  cudaStream_t s = dst_comm_nccl_stream();
  CK(cudaMemcpyAsync(h, d, bytes, cudaMemcpyDeviceToHost, s));
  CK(cudaStreamSynchronize(s));
}

static float *hbuf(size_t n) {
  return dst_calloc(n ? n : 1, sizeof(float), DST_MEM_WORKSPACE, "t");
}

/* bf16 and f16 of the small integers used here (normal numbers, exact). */
static uint16_t to_bf16(float f) {
  uint32_t b;
  memcpy(&b, &f, 4);
  return (uint16_t)(b >> 16);
}
static float from_bf16(uint16_t h) {
  uint32_t b = (uint32_t)h << 16;
  float f;
  memcpy(&f, &b, 4);
  return f;
}
static uint16_t to_f16(float f) {
  uint32_t b;
  memcpy(&b, &f, 4);
  uint32_t sign = (b >> 16) & 0x8000u;
  if ((b & 0x7fffffffu) == 0) return (uint16_t)sign;
  uint32_t e = ((b >> 23) & 0xffu) - 127u + 15u;
  return (uint16_t)(sign | e << 10 | ((b >> 13) & 0x3ffu));
}
static float from_f16(uint16_t h) {
  uint32_t sign = (uint32_t)(h & 0x8000u) << 16, e = (h >> 10) & 0x1fu, m = h & 0x3ffu;
  uint32_t b = (e == 0 && m == 0) ? sign : sign | (e - 15u + 127u) << 23 | m << 13;
  float f;
  memcpy(&f, &b, 4);
  return f;
}

/* Sum over ranks r of (r + 1). */
static long tri(int size) { return (long)size * (size + 1) / 2; }

/* ----------------------------------------------------------- collectives */

static void test_allreduce(DstComm *c, size_t n) {
  int r = dst_comm_rank(c), p = dst_comm_size(c);
  float *x = hbuf(n), *y = hbuf(n);
  float *dx = dev(n * 4), *dy = dev(n * 4);
  for (size_t i = 0; i < n; i++) x[i] = (float)((r + 1) * 1000 + (long)(i % 4096));
  put(dx, x, n * 4);
  dst_comm_allreduce(c, dx, dy, n, DST_COMM_F32, DST_COMM_SUM);
  get(y, dy, n * 4);
  for (size_t i = 0; i < n; i++) {
    float want = (float)(tri(p) * 1000 + (long)p * (long)(i % 4096));
    EXPECT(y[i] == want, "allreduce sum n=%zu y[%zu]=%g want %g", n, i, y[i], want);
  }
  /* in place, max and min */
  for (size_t i = 0; i < n; i++) y[i] = (float)(r * 3 - (long)(i % 7));
  put(dy, y, n * 4);
  dst_comm_allreduce(c, dy, dy, n, DST_COMM_F32, DST_COMM_MAX);
  get(y, dy, n * 4);
  for (size_t i = 0; i < n; i++)
    EXPECT(y[i] == (float)((p - 1) * 3 - (long)(i % 7)), "max y[%zu]=%g", i, y[i]);
  for (size_t i = 0; i < n; i++) y[i] = (float)(r * 3 - (long)(i % 7));
  put(dy, y, n * 4);
  dst_comm_allreduce(c, dy, dy, n, DST_COMM_F32, DST_COMM_MIN);
  get(y, dy, n * 4);
  for (size_t i = 0; i < n; i++) EXPECT(y[i] == (float)(-(long)(i % 7)), "min y[%zu]=%g", i, y[i]);
  CK(cudaFree(dx));
  CK(cudaFree(dy));
  dst_free(x);
  dst_free(y);
}

static void test_allreduce_types(DstComm *c) {
  int r = dst_comm_rank(c), p = dst_comm_size(c);
  enum { N = 300 };
  void *d = dev(N * 8);

  int32_t iv[5];
  for (int i = 0; i < 5; i++) iv[i] = (r + 1) * (i - 2) * 100000;
  put(d, iv, sizeof iv);
  dst_comm_allreduce(c, d, d, 5, DST_COMM_I32, DST_COMM_SUM);
  get(iv, d, sizeof iv);
  for (int i = 0; i < 5; i++)
    EXPECT(iv[i] == (int32_t)(tri(p) * (i - 2) * 100000), "i32 [%d] %d", i, iv[i]);

  uint8_t u[3] = {(uint8_t)r, (uint8_t)(200 + r), (uint8_t)(r == 0)};
  put(d, u, sizeof u);
  dst_comm_allreduce(c, d, d, 3, DST_COMM_U8, DST_COMM_MAX);
  get(u, d, sizeof u);
  EXPECT(u[0] == p - 1 && u[1] == 200 + p - 1 && u[2] == 1, "u8 max %d %d %d", u[0], u[1], u[2]);

  double dv[2] = {0.5 * (r + 1), 1e15 * (r + 1)};
  put(d, dv, sizeof dv);
  dst_comm_allreduce(c, d, d, 2, DST_COMM_F64, DST_COMM_SUM);
  get(dv, d, sizeof dv);
  EXPECT(dv[0] == 0.5 * (double)tri(p) && dv[1] == 1e15 * (double)tri(p), "f64 %g %g", dv[0],
         dv[1]);

  /* bf16 and f16: reduced by NCCL (the other backends refuse). Sums stay
   * below 256 (bf16 has 8 significant bits), so they are exact. */
  uint16_t h[N];
  for (int i = 0; i < N; i++) h[i] = to_bf16((float)((r + 1) * (i % 8)));
  put(d, h, sizeof h);
  dst_comm_allreduce(c, d, d, N, DST_COMM_BF16, DST_COMM_SUM);
  get(h, d, sizeof h);
  for (int i = 0; i < N; i++) {
    float want = (float)(tri(p) * (i % 8));
    EXPECT(want >= 256 || from_bf16(h[i]) == want, "bf16 sum [%d] %g want %g", i, from_bf16(h[i]),
           want);
  }
  for (int i = 0; i < N; i++) h[i] = to_bf16((float)(r - i % 5));
  put(d, h, sizeof h);
  dst_comm_allreduce(c, d, d, N, DST_COMM_BF16, DST_COMM_MAX);
  get(h, d, sizeof h);
  for (int i = 0; i < N; i++)
    EXPECT(from_bf16(h[i]) == (float)(p - 1 - i % 5), "bf16 max [%d] %g", i, from_bf16(h[i]));
  for (int i = 0; i < N; i++) h[i] = to_f16((float)((r + 1) * (i % 8)));
  put(d, h, sizeof h);
  dst_comm_allreduce(c, d, d, N, DST_COMM_F16, DST_COMM_SUM);
  get(h, d, sizeof h);
  for (int i = 0; i < N; i++) {
    float want = (float)(tri(p) * (i % 8));
    EXPECT(from_f16(h[i]) == want, "f16 sum [%d] %g want %g", i, from_f16(h[i]), want);
  }
  /* count 0: nothing moves, the request still completes */
  dst_comm_allreduce(c, NULL, NULL, 0, DST_COMM_F32, DST_COMM_SUM);
  CK(cudaFree(d));
}

static void test_reduce_scatter(DstComm *c, size_t n) {
  int r = dst_comm_rank(c), p = dst_comm_size(c);
  size_t all = (size_t)p * n;
  float *x = hbuf(all), *y = hbuf(all);
  float *dx = dev(all * 4), *dy = dev(all * 4);
  for (int j = 0; j < p; j++)
    for (size_t i = 0; i < n; i++)
      x[(size_t)j * n + i] = (float)((r + 1) * (j + 1) + (long)(i % 5));
  for (int inplace = 0; inplace < 2; inplace++) {
    put(dx, x, all * 4);
    if (inplace)
      dst_comm_reduce_scatter(c, dx, dx, n, DST_COMM_F32, DST_COMM_SUM);
    else
      dst_comm_reduce_scatter(c, dx, dy, n, DST_COMM_F32, DST_COMM_SUM);
    get(y, inplace ? dx : dy, n * 4);
    for (size_t i = 0; i < n; i++) {
      float want = (float)(tri(p) * (r + 1) + (long)p * (long)(i % 5));
      EXPECT(y[i] == want, "reduce_scatter%s n=%zu y[%zu]=%g want %g", inplace ? " in place" : "",
             n, i, y[i], want);
    }
  }
  CK(cudaFree(dx));
  CK(cudaFree(dy));
  dst_free(x);
  dst_free(y);
}

static void test_allgather(DstComm *c, size_t n) {
  int r = dst_comm_rank(c), p = dst_comm_size(c);
  size_t all = (size_t)p * n;
  float *x = hbuf(n), *y = hbuf(all);
  float *dx = dev(n * 4), *dy = dev(all * 4);
  for (size_t i = 0; i < n; i++) x[i] = (float)(r * 100 + (long)(i % 50));
  for (int inplace = 0; inplace < 2; inplace++) {
    float *mine = dy + (size_t)r * n;
    CK(cudaMemsetAsync(dy, 0xff, all * 4, dst_comm_nccl_stream()));
    put(inplace ? mine : dx, x, n * 4);
    dst_comm_allgather(c, inplace ? mine : dx, dy, n, DST_COMM_F32);
    get(y, dy, all * 4);
    for (int k = 0; k < p; k++)
      for (size_t i = 0; i < n; i++) {
        float want = (float)(k * 100 + (long)(i % 50));
        EXPECT(y[(size_t)k * n + i] == want, "allgather%s rank %d [%zu]=%g want %g",
               inplace ? " in place" : "", k, i, y[(size_t)k * n + i], want);
      }
  }
  CK(cudaFree(dx));
  CK(cudaFree(dy));
  dst_free(x);
  dst_free(y);
}

static void test_broadcast(DstComm *c, size_t n) {
  int r = dst_comm_rank(c), p = dst_comm_size(c), root = p - 1;
  float *x = hbuf(n);
  float *dx = dev(n * 4);
  for (size_t i = 0; i < n; i++) x[i] = r == root ? (float)(7 + (long)(i % 9)) : -1.0f;
  put(dx, x, n * 4);
  dst_comm_broadcast(c, dx, n, DST_COMM_F32, root);
  get(x, dx, n * 4);
  for (size_t i = 0; i < n; i++)
    EXPECT(x[i] == (float)(7 + (long)(i % 9)), "broadcast [%zu]=%g", i, x[i]);
  CK(cudaFree(dx));
  dst_free(x);
}

static void test_alltoall(DstComm *c, size_t n) {
  int r = dst_comm_rank(c), p = dst_comm_size(c);
  size_t all = (size_t)p * n;
  float *x = hbuf(all), *y = hbuf(all);
  float *dx = dev(all * 4), *dy = dev(all * 4);
  for (int j = 0; j < p; j++)
    for (size_t i = 0; i < n; i++)
      x[(size_t)j * n + i] = (float)(r * 1000 + j * 10 + (long)(i % 7));
  put(dx, x, all * 4);
  dst_comm_alltoall(c, dx, dy, n, DST_COMM_F32);
  get(y, dy, all * 4);
  for (int k = 0; k < p; k++)
    for (size_t i = 0; i < n; i++) {
      float want = (float)(k * 1000 + r * 10 + (long)(i % 7));
      EXPECT(y[(size_t)k * n + i] == want, "alltoall from %d [%zu]=%g want %g", k, i,
             y[(size_t)k * n + i], want);
    }
  CK(cudaFree(dx));
  CK(cudaFree(dy));
  dst_free(x);
  dst_free(y);
}

/* A ring exchange (isend + irecv, then wait_all: one NCCL group), two
 * messages in a row to the same peer, and a blocking send/recv pair. */
static void test_p2p(DstComm *c) {
  int r = dst_comm_rank(c), p = dst_comm_size(c);
  int next = (r + 1) % p, prev = (r + p - 1) % p;
  enum { N = 1000 };
  float *x = hbuf(N), *y = hbuf(N);
  float *dx = dev(N * 4), *dx2 = dev(N * 4), *dy = dev(N * 4), *dz = dev(N * 4);
  for (int i = 0; i < N; i++) x[i] = (float)(r * 100 + i % 50);
  put(dx, x, N * 4);
  for (int i = 0; i < N; i++) x[i] = (float)(r * 100 + 7 + i % 50);
  put(dx2, x, N * 4);
  DstCommReq q[2];
  q[0] = dst_comm_isend(c, dx, N, DST_COMM_F32, next, 5);
  q[1] = dst_comm_irecv(c, dy, N, DST_COMM_F32, prev, 5);
  dst_comm_wait_all(q, 2);
  get(y, dy, N * 4);
  for (int i = 0; i < N; i++)
    EXPECT(y[i] == (float)(prev * 100 + i % 50), "ring recv [%d]=%g", i, y[i]);

  /* two messages to the same peer arrive in issue order */
  DstCommReq g[2];
  q[0] = dst_comm_isend(c, dx, N, DST_COMM_F32, next, 1);
  q[1] = dst_comm_isend(c, dx2, N, DST_COMM_F32, next, 2);
  g[0] = dst_comm_irecv(c, dz, N, DST_COMM_F32, prev, 1);
  g[1] = dst_comm_irecv(c, dy, N, DST_COMM_F32, prev, 2);
  dst_comm_wait_all(q, 2);
  dst_comm_wait_all(g, 2);
  get(y, dz, N * 4);
  for (int i = 0; i < N; i++)
    EXPECT(y[i] == (float)(prev * 100 + i % 50), "first message [%d]=%g", i, y[i]);
  get(y, dy, N * 4);
  for (int i = 0; i < N; i++)
    EXPECT(y[i] == (float)(prev * 100 + 7 + i % 50), "second message [%d]=%g", i, y[i]);

  if (p >= 2) {
    if (r == 0) dst_comm_send(c, dx, N, DST_COMM_F32, 1, 0);
    if (r == 1) {
      dst_comm_recv(c, dy, N, DST_COMM_F32, 0, 0);
      get(y, dy, N * 4);
      for (int i = 0; i < N; i++) EXPECT(y[i] == (float)(i % 50), "blocking recv [%d]=%g", i, y[i]);
    }
  }
  CK(cudaFree(dx));
  CK(cudaFree(dx2));
  CK(cudaFree(dy));
  CK(cudaFree(dz));
  dst_free(x);
  dst_free(y);
}

static void test_barrier(DstComm *c) {
  dst_comm_barrier(c);
  DstCommReq b = dst_comm_ibarrier(c);
  dst_comm_wait(&b);
  EXPECT(!b.active, "barrier still active");
}

/* Several operations in flight; dst_comm_test polls one; the event of a
 * request orders a second stream after it. */
static void test_nonblocking(DstComm *c) {
  int r = dst_comm_rank(c), p = dst_comm_size(c);
  enum { K = 4, N = 4096 };
  float *x = hbuf(N), *y = hbuf(N);
  float *d[K];
  DstCommReq q[K];
  uint64_t seq0 = dst_comm_seq(c);
  for (int k = 0; k < K; k++) {
    d[k] = dev(N * 4);
    for (int i = 0; i < N; i++) x[i] = (float)((r + 1) * (k + 1) + i % 3);
    put(d[k], x, N * 4);
    q[k] = dst_comm_iallreduce(c, d[k], d[k], N, DST_COMM_F32, DST_COMM_SUM);
    EXPECT(q[k].seq == seq0 + (uint64_t)k, "seq %llu", (unsigned long long)q[k].seq);
  }
  /* a second stream waits on the last all-reduce through its event */
  cudaStream_t side;
  CK(cudaStreamCreateWithFlags(&side, cudaStreamNonBlocking));
  float *dcopy = dev(N * 4);
  CK(cudaStreamWaitEvent(side, dst_comm_nccl_event(&q[K - 1]), 0));
  CK(cudaMemcpyAsync(dcopy, d[K - 1], N * 4, cudaMemcpyDeviceToDevice, side));
  CK(cudaStreamSynchronize(side));
  CK(cudaMemcpy(y, dcopy, N * 4, cudaMemcpyDeviceToHost));
  for (int i = 0; i < N; i++) {
    float want = (float)(tri(p) * K + (long)p * (i % 3));
    EXPECT(y[i] == want, "after event [%d]=%g want %g", i, y[i], want);
  }
  while (!dst_comm_test(&q[0])) {
  }
  EXPECT(!q[0].active, "tested request still active");
  dst_comm_wait_all(q, K);
  for (int k = 0; k < K; k++) {
    get(y, d[k], N * 4);
    for (int i = 0; i < N; i++) {
      float want = (float)(tri(p) * (k + 1) + (long)p * (i % 3));
      EXPECT(y[i] == want, "in flight %d [%d]=%g want %g", k, i, y[i], want);
    }
    CK(cudaFree(d[k]));
  }
  CK(cudaStreamDestroy(side));
  CK(cudaFree(dcopy));
  dst_free(x);
  dst_free(y);
}

/* Host buffers (a loss, a norm, checksums) run on MPI over the same group,
 * interleaved with device operations; a mix of host and device buffers in
 * one operation is an error (not checked here: it ends the job). */
static void test_host_buffers(DstComm *c) {
  int r = dst_comm_rank(c), p = dst_comm_size(c);
  double x = r + 1;
  dst_comm_allreduce(c, &x, &x, 1, DST_COMM_F64, DST_COMM_SUM);
  EXPECT(x == (double)tri(p), "host all-reduce %g want %ld", x, tri(p));
  float *d = dev(4 * 64);
  float h[64];
  for (int i = 0; i < 64; i++) h[i] = (float)(r + i);
  put(d, h, sizeof h);
  DstCommReq q = dst_comm_iallreduce(c, d, d, 64, DST_COMM_F32, DST_COMM_SUM);
  uint64_t mine = 0x0101010101010101ull * (uint64_t)(r + 1), *all = calloc((size_t)p, 8);
  DstCommReq hq = dst_comm_iallgather(c, &mine, all, 8, DST_COMM_U8);
  dst_comm_wait(&hq);
  dst_comm_wait(&q);
  for (int k = 0; k < p; k++)
    EXPECT(all[k] == 0x0101010101010101ull * (uint64_t)(k + 1), "host all-gather [%d]=%llx", k,
           (unsigned long long)all[k]);
  get(h, d, sizeof h);
  for (int i = 0; i < 64; i++) EXPECT(h[i] == (float)(tri(p) - p + (long)p * i), "device [%d]=%g", i, h[i]);
  free(all);
  CK(cudaFree(d));
}

/* A group of the even and one of the odd world ranks, and the dp axis of a
 * mesh over the whole world: communicators made after the world's. */
static void test_groups(DstComm *world) {
  int r = dst_comm_rank(world), p = dst_comm_size(world);
  DstComm *half = dst_comm_split(world, r % 2, r, "half");
  int members = (p - r % 2 + 1) / 2;
  EXPECT(dst_comm_size(half) == members, "half has %d ranks, want %d", dst_comm_size(half),
         members);
  int32_t v = r + 1, *dv = dev(4);
  put(dv, &v, 4);
  dst_comm_allreduce(half, dv, dv, 1, DST_COMM_I32, DST_COMM_SUM);
  get(&v, dv, 4);
  int32_t want = 0;
  for (int k = r % 2; k < p; k += 2) want += k + 1;
  EXPECT(v == want, "split sum %d want %d", v, want);
  dst_comm_free(half);

  int degree[DST_AXIS_COUNT] = {p, 1, 1, 1};
  DstMesh *m = dst_mesh_init(degree);
  v = 1;
  put(dv, &v, 4);
  dst_comm_allreduce(dst_mesh_comm(m, DST_AXIS_DP), dv, dv, 1, DST_COMM_I32, DST_COMM_SUM);
  get(&v, dv, 4);
  EXPECT(v == p, "dp sum %d want %d", v, p);
  dst_mesh_free(m);
  CK(cudaFree(dv));
}

int main(int argc, char **argv) {
  int ndev = 0;
  if (cudaGetDeviceCount(&ndev) != cudaSuccess) ndev = 0;
  if (argc > 1 && strcmp(argv[1], "--devices") == 0) {
    printf("%d\n", ndev);
    return 0;
  }
  bool init_only = argc > 1 && strcmp(argv[1], "--init") == 0;
  if (ndev == 0 && !init_only) {
    printf("SKIPPED: no CUDA device\n");
    return 77;
  }
  setenv("DST_COMM_BACKEND", "nccl", 1);
  dst_comm_init(&argc, &argv);
  if (init_only) {
    printf("ok init (backend %s, device %d)\n", dst_comm_backend_name(), dst_comm_nccl_device());
    dst_comm_finalize();
    return 0;
  }
  DstComm *w = dst_comm_world();
  EXPECT(dst_comm_backend() == DST_COMM_BACKEND_NCCL, "backend %s", dst_comm_backend_name());
  int cur = -1;
  CK(cudaGetDevice(&cur));
  EXPECT(cur == dst_comm_nccl_device(), "current device %d, backend's %d", cur,
         dst_comm_nccl_device());

  size_t sizes[] = {1, 1000, (1u << 20) + 3};
  for (size_t k = 0; k < sizeof sizes / sizeof *sizes; k++) test_allreduce(w, sizes[k]);
  test_allreduce_types(w);
  for (size_t k = 0; k < 2; k++) {
    test_reduce_scatter(w, sizes[k + 1]);
    test_allgather(w, sizes[k + 1]);
    test_broadcast(w, sizes[k + 1]);
    test_alltoall(w, sizes[k + 1]);
  }
  test_p2p(w);
  test_barrier(w);
  test_nonblocking(w);
  test_host_buffers(w);
  test_groups(w);

  int p = dst_comm_world_size();
  long checks = g_checks;
  if (dst_comm_world_rank() == 0)
    printf("ok nccl (%d rank%s, %ld checks)\n", p, p == 1 ? "" : "s", checks);
  dst_comm_finalize();
  return 0;
}
