/* dst_device_cuda.c: the CUDA device of the training driver (dst_device.h)
 * and the entry point of programs from `dstc build --backend cuda`.
 *
 * One stream per process carries everything in order: uploads, the
 * generated forward and backward, the optimizer, norms. The driver's
 * scalar reads (the loss, the gradient norm) are downloads that wait for
 * the stream, so a step's timing covers its GPU work. Uploads go through
 * two pinned staging buffers used in turn (a buffer is refilled only after
 * the copy that last read it has finished), so the host can prepare the
 * next batch while the GPU works. Device memory comes from the stream-
 * ordered allocator (cudaMallocAsync on the compute stream, its pool kept
 * rather than returned to the driver), so the ZeRO-2/3 unit buffers the
 * driver takes and releases during every pass cost no synchronization;
 * each allocation is accounted in dst's memory categories with its
 * planned size. cuBLASLt's workspace and the global norm's scratch live in
 * the workspace slab where dstc planned them (DstModel.device_work_offset),
 * so the plan covers all device memory; the pinned staging buffers are
 * host memory.
 *
 * Communication (NCCL backend) runs on its own stream. Before a collective
 * reads or writes what kernels wrote, the communication stream waits for an
 * event recorded on the compute stream (comm_fence); kernels that need a
 * collective's result wait for its event (comm_join). Neither blocks the
 * host, so gathers and reductions overlap the passes. */
#include <stdlib.h>
#include <string.h>

#include <cuda_runtime.h>

#include "dst.h"
#include "dst_comm.h"
#include "dst_comm_nccl.h"
#include "dst_device.h"
#include "k_cuda.h"

static struct {
  cudaStream_t stream;
  KcBlas *blas;
  void *norm_scratch; /* kc_global_norm_sq's */
  double *norm_dev;
  double *norm_host; /* pinned */
  void *stage[2];    /* pinned upload buffers */
  size_t stage_bytes[2];
  cudaEvent_t stage_done[2];
  int next;
  cudaEvent_t fence; /* recorded on the compute stream for the communication stream */
  const DstModel *model; /* for its id checks (ids_offset, nids, ids_what) */
} g;

static void *cuda_alloc(size_t bytes, DstMemCat cat, const char *tag) {
  if (!dst_mem_account(cat, bytes))
    dst_fatal("out of memory: '%s' (%s) needs %zu bytes over the limit", tag, dst_mem_cat_name(cat), bytes);
  void *p = NULL;
  cudaError_t e = cudaMallocAsync(&p, bytes ? bytes : 1, g.stream);
  if (e != cudaSuccess) {
    size_t free_b = 0, total = 0;
    cudaGetLastError();
    cudaMemGetInfo(&free_b, &total);
    dst_fatal("out of GPU memory: '%s' (%s) needs %zu bytes; %zu of %zu bytes free on the device (%s)", tag,
              dst_mem_cat_name(cat), bytes, free_b, total, cudaGetErrorString(e));
  }
  KC_CHECK(cudaMemsetAsync(p, 0, bytes, g.stream));
  return p;
}

/* Stream-ordered: the memory is reused only after the work the compute
 * stream holds so far. The driver frees a buffer a collective used only
 * after waiting for that collective. */
static void cuda_free(void *p, size_t bytes, DstMemCat cat) {
  KC_CHECK(cudaFreeAsync(p, g.stream));
  dst_mem_unaccount(cat, bytes);
}

static bool on_nccl(void) { return dst_comm_initialized() && dst_comm_backend() == DST_COMM_BACKEND_NCCL; }

static void cuda_init(DstRun *r, int local_rank) {
  int n = 0;
  cudaError_t e = cudaGetDeviceCount(&n);
  if (e != cudaSuccess || n == 0)
    dst_fatal("no CUDA device (%s): this program was built with --backend cuda",
              e != cudaSuccess ? cudaGetErrorString(e) : "none found");
  KC_CHECK(cudaSetDevice(local_rank % n));
  KC_CHECK(cudaStreamCreateWithFlags(&g.stream, cudaStreamNonBlocking));
  /* keep freed blocks in the pool: the unit buffers come back every pass */
  cudaMemPool_t pool;
  KC_CHECK(cudaDeviceGetDefaultMemPool(&pool, local_rank % n));
  uint64_t keep = UINT64_MAX;
  KC_CHECK(cudaMemPoolSetAttribute(pool, cudaMemPoolAttrReleaseThreshold, &keep));
  KC_CHECK(cudaEventCreateWithFlags(&g.fence, cudaEventDisableTiming));
  KC_CHECK(cudaMallocHost((void **)&g.norm_host, sizeof(double)));
  for (int i = 0; i < 2; i++) KC_CHECK(cudaEventCreateWithFlags(&g.stage_done[i], cudaEventDisableTiming));
  r->stream = g.stream;
}

/* cuBLASLt's workspace, then the norm's partial sums and result, where
 * dstc planned them in the workspace slab. */
static void cuda_bind(DstRun *r) {
  const DstModel *m = g.model;
  size_t ws = kc_blas_workspace_bytes(), ns = kc_global_norm_scratch_bytes();
  if (!m || m->device_work_offset < 0 || (size_t)m->device_work_bytes < ws + ns + sizeof(double))
    dst_fatal("internal error: the program plans %lld bytes of device buffers, the CUDA runtime needs %zu "
              "(rebuild the program with this dstc)",
              m ? (long long)m->device_work_bytes : 0LL, ws + ns + sizeof(double));
  char *base = r->work + m->device_work_offset;
  g.blas = kc_blas_create(base, ws);
  g.norm_scratch = base + ws;
  g.norm_dev = (double *)(base + ws + ns);
  r->blas = g.blas;
}

static void cuda_finish(DstRun *r) {
  KC_CHECK(cudaStreamSynchronize(g.stream));
  if (g.blas) kc_blas_destroy(g.blas);
  KC_CHECK(cudaFreeHost(g.norm_host));
  for (int i = 0; i < 2; i++) {
    if (g.stage[i]) KC_CHECK(cudaFreeHost(g.stage[i]));
    KC_CHECK(cudaEventDestroy(g.stage_done[i]));
  }
  KC_CHECK(cudaEventDestroy(g.fence));
  KC_CHECK(cudaStreamDestroy(g.stream));
  const DstModel *model = g.model;
  memset(&g, 0, sizeof g);
  g.model = model;
  r->stream = r->blas = NULL;
}

static void cuda_upload(DstRun *r, void *dev, const void *host, size_t n) {
  (void)r;
  if (!n) return;
  int i = g.next;
  g.next ^= 1;
  KC_CHECK(cudaEventSynchronize(g.stage_done[i])); /* its last copy has read it */
  if (g.stage_bytes[i] < n) {
    if (g.stage[i]) KC_CHECK(cudaFreeHost(g.stage[i]));
    KC_CHECK(cudaMallocHost(&g.stage[i], n));
    g.stage_bytes[i] = n;
  }
  memcpy(g.stage[i], host, n);
  KC_CHECK(cudaMemcpyAsync(dev, g.stage[i], n, cudaMemcpyHostToDevice, g.stream));
  KC_CHECK(cudaEventRecord(g.stage_done[i], g.stream));
}

static void cuda_download(DstRun *r, void *host, const void *dev, size_t n) {
  (void)r;
  if (!n) return;
  KC_CHECK(cudaMemcpyAsync(host, dev, n, cudaMemcpyDeviceToHost, g.stream));
  KC_CHECK(cudaStreamSynchronize(g.stream));
}

static void cuda_copy(DstRun *r, void *to, const void *from, size_t n) {
  (void)r;
  if (n) KC_CHECK(cudaMemcpyAsync(to, from, n, cudaMemcpyDeviceToDevice, g.stream));
}

static void cuda_adamw(DstRun *r, float *param, const float *grad, float *m, float *v, int64_t n, float lr, float b1,
                       float b2, float eps, float wd, int64_t step) {
  (void)r;
  kc_adamw_update(param, grad, m, v, n, lr, b1, b2, eps, wd, step, NULL, NULL, g.stream);
}

static void cuda_sgd(DstRun *r, float *param, const float *grad, float *mom, int64_t n, float lr, float momentum,
                     float wd, bool nesterov) {
  (void)r;
  kc_sgd_update(param, grad, mom, n, lr, momentum, wd, nesterov, g.stream);
}

static double cuda_norm_sq(DstRun *r, const float *x, int64_t n) {
  (void)r;
  kc_global_norm_sq(g.norm_dev, x, n, false, g.norm_scratch, g.stream);
  KC_CHECK(cudaMemcpyAsync(g.norm_host, g.norm_dev, sizeof(double), cudaMemcpyDeviceToHost, g.stream));
  KC_CHECK(cudaStreamSynchronize(g.stream));
  return *g.norm_host;
}

static void cuda_scale(DstRun *r, float *x, float s, int64_t n) {
  (void)r;
  kc_scale(x, x, s, n, g.stream);
}

static void cuda_add(DstRun *r, float *y, const float *x, int64_t n) {
  (void)r;
  kc_add(y, y, x, n, g.stream);
}

/* Collectives run on the NCCL backend's own stream: it waits for what the
 * compute stream holds so far. Another backend (MPI over device memory,
 * chosen by the user) reads the buffers from the host: the compute stream
 * is finished first. */
static void cuda_comm_fence(DstRun *r) {
  (void)r;
  if (!on_nccl()) {
    KC_CHECK(cudaStreamSynchronize(g.stream));
    return;
  }
  KC_CHECK(cudaEventRecord(g.fence, g.stream));
  KC_CHECK(cudaStreamWaitEvent(dst_comm_nccl_stream(), g.fence, 0));
}

/* The compute stream waits for collective q's event (NCCL); otherwise the
 * host waits for q. */
static void cuda_comm_join(DstRun *r, DstCommReq *q) {
  (void)r;
  if (!q->active) return;
  if (!on_nccl()) {
    dst_comm_wait(q);
    return;
  }
  KC_CHECK(cudaStreamWaitEvent(g.stream, dst_comm_nccl_event(q), 0));
}

/* The generated forward records, per id-checking kernel, -1 or the first
 * out-of-range position in the workspace; one read after the pass. */
static void cuda_poll_error(DstRun *r) {
  const DstModel *m = g.model;
  if (!m || m->nids <= 0 || m->ids_offset < 0 || r->error) return;
  int64_t *flags = dst_malloc(sizeof(int64_t) * (size_t)m->nids, DST_MEM_OTHER, "id checks");
  cuda_download(r, flags, r->work + m->ids_offset, sizeof(int64_t) * (size_t)m->nids);
  for (int k = 0; k < m->nids; k++)
    if (flags[k] != -1) {
      r->error = m->ids_what[k];
      r->error_pos = flags[k];
      break;
    }
  dst_free(flags);
}

static const DstDevice cuda_device = {
    .name = "cuda",
    .host = false,
    .init = cuda_init,
    .bind = cuda_bind,
    .finish = cuda_finish,
    .alloc = cuda_alloc,
    .free = cuda_free,
    .upload = cuda_upload,
    .download = cuda_download,
    .copy = cuda_copy,
    .adamw = cuda_adamw,
    .sgd = cuda_sgd,
    .norm_sq = cuda_norm_sq,
    .scale = cuda_scale,
    .add = cuda_add,
    .comm_fence = cuda_comm_fence,
    .comm_join = cuda_comm_join,
    .poll_error = cuda_poll_error,
};

const DstDevice *dst_device_cuda(void) { return &cuda_device; }

int dst_cuda_main(const DstModel *m, int argc, char **argv) {
  /* several ranks exchange device buffers: NCCL, unless the user chose */
  const char *ws = getenv("OMPI_COMM_WORLD_SIZE");
  if (!ws) ws = getenv("PMI_SIZE");
  if (ws && atoi(ws) > 1) setenv("DST_COMM_BACKEND", "nccl", 0);
  g.model = m;
  dst_set_device(&cuda_device);
  return dst_train_main(m, argc, argv);
}
