/* dst_comm_nccl.c: the NCCL backend of dst_comm (library dst_runtime_cuda).
 *
 * One rank per GPU, started through MPI: the MPI backend's functions make
 * the world and the groups (MPI_Comm_split), run the watchdog side channel
 * and end the job; this file adds an NCCL communicator to each of them. A
 * group's rank 0 makes an ncclUniqueId and MPI_Bcast hands it to the group
 * before ncclCommInitRank, so NCCL ranks are the group's MPI ranks by
 * construction (and any NCCL version works; ncclCommSplit would need 2.18).
 *
 * Buffers: device memory; an operation whose buffers are all host memory
 * runs on MPI over the same group instead (host_start).
 *
 * Operations: one non-blocking CUDA stream carries every operation of every
 * communicator, in issue order; an event is recorded after each, and the
 * request holds it, so test is cudaEventQuery and the front end's wait loop
 * and watchdog work as on MPI. Issue order is the same on every rank (the
 * compiler guarantees it), so one stream also keeps NCCL kernels of two
 * communicators from waiting on each other across ranks. Events come from a
 * pool and go back when their request completes.
 *
 * Point to point: an ncclSend blocks the GPU until the peer's ncclRecv runs,
 * so sends and recvs that must progress together (an exchange) have to be
 * in one NCCL group. They are therefore held back and started as one group
 * by the next operation of another kind or on another communicator, by any
 * test or wait, or by dst_comm_nccl_stream/event: isend + irecv + wait_all
 * is an exchange, as on MPI. NCCL has no tags: messages between a pair
 * match in issue order. A count mismatch is not detected (NCCL cannot).
 *
 * Errors: every CUDA, NCCL and MPI call goes through a check macro that
 * names the file:line, the call and the error string, then aborts the job
 * (status 70). test also polls ncclCommGetAsyncError, so an NCCL failure
 * (network, peer gone) ends the job with a message instead of a hang.
 * Not watched: NCCL may connect peers lazily, inside the host call that
 * issues an operation; a peer that never arrives there can block the host
 * where the watchdog does not run.
 */
#include "dst_comm_nccl.h"

#include <mpi.h>
#include <nccl.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dst_comm_impl.h"

#if NCCL_VERSION_CODE < NCCL_VERSION(2, 14, 0)
#error "the NCCL backend needs NCCL 2.14 or newer (ncclCommFinalize, ncclGetLastError)"
#endif

#define DST_CUDA_CHECK(call)                                                                 \
  do {                                                                                       \
    cudaError_t e_ = (call);                                                                 \
    if (e_ != cudaSuccess) nccl_fail(__FILE__, __LINE__, #call, cudaGetErrorString(e_), ""); \
  } while (0)
#define DST_NCCL_CHECK(call)                                                                \
  do {                                                                                      \
    ncclResult_t e_ = (call);                                                               \
    if (e_ != ncclSuccess)                                                                  \
      nccl_fail(__FILE__, __LINE__, #call, ncclGetErrorString(e_), ncclGetLastError(NULL)); \
  } while (0)
#define DST_MPI_CHECK(call)                                              \
  do {                                                                   \
    int e_ = (call);                                                     \
    if (e_ != MPI_SUCCESS) nccl_mpi_fail(__FILE__, __LINE__, #call, e_); \
  } while (0)

/* DstComm.impl: the MPI backend keeps its MPI_Comm at impl[0]. */
typedef struct {
  MPI_Comm mpi;    /* made and freed by dst_comm_mpi_backend */
  ncclComm_t nccl; /* NULL until made */
} NcclComm;

/* DstCommReq.impl. An operation on host buffers runs on MPI: host then
 * holds the MPI backend's handle, and ev is NULL. */
typedef struct {
  cudaEvent_t ev; /* recorded after the operation (p2p: when its group starts) */
  int32_t host;
  _Alignas(8) unsigned char mpi[16];
} NcclReq;

_Static_assert(sizeof(NcclComm) <= sizeof(((DstComm *)0)->impl), "NcclComm does not fit");
_Static_assert(sizeof(NcclReq) <= sizeof(((DstCommReq *)0)->impl), "NcclReq does not fit");

/* A send or recv held back until its group starts. */
typedef struct {
  DstComm *c;
  DstOpKind kind; /* DST_OP_SEND or DST_OP_RECV */
  void *buf;
  size_t count;
  DstCommDtype dt;
  int peer;
  cudaEvent_t ev;
} NcclP2p;

static int g_device = -1;
static cudaStream_t g_stream; /* every operation, in issue order */
static int32_t *g_barrier;    /* one device int, always 0: a barrier sums it */
static cudaEvent_t *g_events; /* pool of completed events */
static int g_nevents, g_events_cap;
static NcclP2p *g_p2p; /* held-back sends/recvs, all on g_p2p[0].c */
static int g_np2p, g_p2p_cap;

/* ------------------------------------------------------------------ errors */

static _Noreturn void nccl_fail(const char *file, int line, const char *call, const char *err,
                                const char *detail) {
  int rank = dst_log_rank();
  char pre[32] = "";
  if (rank >= 0) snprintf(pre, sizeof pre, "[rank %d] ", rank);
  bool more = detail && *detail && strcmp(detail, err) != 0;
  fprintf(stderr, "%sinternal error: %s:%d: %s failed: %s%s%s%s\n", pre, file, line, call, err,
          more ? " (" : "", more ? detail : "", more ? ")" : "");
  fflush(stderr);
  int inited = 0, finalized = 0;
  MPI_Initialized(&inited);
  MPI_Finalized(&finalized);
  if (inited && !finalized) MPI_Abort(MPI_COMM_WORLD, DST_EXIT_INTERNAL);
  _Exit(DST_EXIT_INTERNAL);
}

static _Noreturn void nccl_mpi_fail(const char *file, int line, const char *call, int rc) {
  char s[MPI_MAX_ERROR_STRING];
  int len = 0;
  if (MPI_Error_string(rc, s, &len) != MPI_SUCCESS) snprintf(s, sizeof s, "MPI error %d", rc);
  nccl_fail(file, line, call, s, "");
}

/* "allreduce #3 on group 'dp'", "send to rank 1 (p2p #0) on group 'pp'". */
static void req_name(const DstCommReq *r, char *buf, size_t cap) {
  if (r->peer >= 0)
    snprintf(buf, cap, "%s %s rank %d (p2p #%llu) on group '%s'", r->op,
             strcmp(r->op, "send") == 0 ? "to" : "from", r->peer, (unsigned long long)r->seq,
             r->comm->name);
  else
    snprintf(buf, cap, "%s #%llu on group '%s'", r->op, (unsigned long long)r->seq, r->comm->name);
}

/* ----------------------------------------------------------------- helpers */

static NcclComm *ncomm(DstComm *c) { return (NcclComm *)(void *)c->impl; }
static NcclReq *nreq(DstCommReq *r) { return (NcclReq *)(void *)r->impl; }

static ncclDataType_t ntype(DstCommDtype dt) {
  switch (dt) {
    case DST_COMM_F32: return ncclFloat32;
    case DST_COMM_F64: return ncclFloat64;
    case DST_COMM_I32: return ncclInt32;
    case DST_COMM_U8: return ncclUint8;
    case DST_COMM_BF16: return ncclBfloat16;
    case DST_COMM_F16: return ncclFloat16;
    case DST_COMM_NDTYPE: break;
  }
  dst_die("bad dtype %d", (int)dt);
}

static ncclRedOp_t nop(DstCommOp op) {
  switch (op) {
    case DST_COMM_SUM: return ncclSum;
    case DST_COMM_MAX: return ncclMax;
    case DST_COMM_MIN: return ncclMin;
    case DST_COMM_NOP: break;
  }
  dst_die("bad reduction op %d", (int)op);
}

static cudaEvent_t event_get(void) {
  if (g_nevents > 0) return g_events[--g_nevents];
  cudaEvent_t ev;
  DST_CUDA_CHECK(cudaEventCreateWithFlags(&ev, cudaEventDisableTiming));
  return ev;
}

static void event_put(cudaEvent_t ev) {
  if (g_nevents == g_events_cap) {
    g_events_cap = g_events_cap ? 2 * g_events_cap : 16;
    g_events = dst_realloc(g_events, sizeof *g_events * (size_t)g_events_cap, DST_MEM_OTHER,
                           "nccl events");
  }
  g_events[g_nevents++] = ev;
}

/* True when p is host memory the GPU cannot use as an NCCL buffer. */
static bool host_buf(const void *p) {
  struct cudaPointerAttributes at;
  memset(&at, 0, sizeof at);
  if (cudaPointerGetAttributes(&at, p) != cudaSuccess) {
    (void)cudaGetLastError(); /* not sticky; keep it out of later calls */
    return true;
  }
  return at.type != cudaMemoryTypeDevice && at.type != cudaMemoryTypeManaged;
}

/* Dies unless p can be read/written by the GPU of this rank. */
static void check_buf(const DstCommReq *r, const char *which, const void *p) {
  struct cudaPointerAttributes at;
  memset(&at, 0, sizeof at);
  if (cudaPointerGetAttributes(&at, p) != cudaSuccess) {
    (void)cudaGetLastError(); /* not sticky; keep it out of later calls */
    at.type = cudaMemoryTypeUnregistered;
  }
  char what[160];
  if (at.type == cudaMemoryTypeUnregistered) {
    req_name(r, what, sizeof what);
    dst_die("%s: the %s buffer %p is not device memory (the NCCL backend takes device pointers)",
            what, which, p);
  }
  if (at.type == cudaMemoryTypeDevice && at.device != g_device) {
    req_name(r, what, sizeof what);
    dst_die("%s: the %s buffer %p is on CUDA device %d, but this rank uses device %d", what, which,
            p, at.device, g_device);
  }
}

/* Makes the NCCL communicator of the MPI group mc (collective over mc). */
static ncclComm_t nccl_comm_make(MPI_Comm mc, int rank, int size) {
  ncclUniqueId id;
  memset(&id, 0, sizeof id);
  if (rank == 0) DST_NCCL_CHECK(ncclGetUniqueId(&id));
  DST_MPI_CHECK(MPI_Bcast(&id, (int)sizeof id, MPI_BYTE, 0, mc));
  ncclComm_t nc = NULL;
  DST_NCCL_CHECK(ncclCommInitRank(&nc, size, id, rank));
  return nc;
}

/* Starts the held-back sends/recvs as one group and records their events. */
static void p2p_flush(void) {
  if (g_np2p == 0) return;
  DST_NCCL_CHECK(ncclGroupStart());
  for (int i = 0; i < g_np2p; i++) {
    NcclP2p *p = &g_p2p[i];
    if (p->count == 0) continue;
    ncclComm_t nc = ncomm(p->c)->nccl;
    if (p->kind == DST_OP_SEND)
      DST_NCCL_CHECK(ncclSend(p->buf, p->count, ntype(p->dt), p->peer, nc, g_stream));
    else
      DST_NCCL_CHECK(ncclRecv(p->buf, p->count, ntype(p->dt), p->peer, nc, g_stream));
  }
  DST_NCCL_CHECK(ncclGroupEnd());
  for (int i = 0; i < g_np2p; i++) DST_CUDA_CHECK(cudaEventRecord(g_p2p[i].ev, g_stream));
  g_np2p = 0;
}

/* ---------------------------------------------------------------- backend */

static void nccl_init_world(int *argc, char ***argv, DstComm *w) {
  dst_comm_mpi_backend.init_world(argc, argv, w);
  MPI_Comm mc = ncomm(w)->mpi;
  /* The device: this rank's rank among the ranks of its node, modulo the
   * devices it sees (a launcher that gives each rank one GPU through
   * CUDA_VISIBLE_DEVICES leaves one: device 0). Two ranks on one GPU are
   * refused by ncclCommInitRank. */
  MPI_Comm node;
  int local = 0;
  DST_MPI_CHECK(MPI_Comm_split_type(mc, MPI_COMM_TYPE_SHARED, w->rank, MPI_INFO_NULL, &node));
  DST_MPI_CHECK(MPI_Comm_rank(node, &local));
  DST_MPI_CHECK(MPI_Comm_free(&node));
  /* Every rank checks its own devices; the verdict is agreed on, so that a
   * job without GPUs ends cleanly with one line (like a wrong world size). */
  int ndev = 0;
  cudaError_t e = cudaGetDeviceCount(&ndev);
  if (e != cudaSuccess) {
    (void)cudaGetLastError();
    ndev = 0;
  }
  int first = ndev > 0 ? w->size : w->rank, nmissing = ndev > 0 ? 0 : 1;
  DST_MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, &first, 1, MPI_INT, MPI_MIN, mc));
  DST_MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, &nmissing, 1, MPI_INT, MPI_SUM, mc));
  if (nmissing > 0) {
    char msg[320];
    if (nmissing == w->size)
      snprintf(msg, sizeof msg,
               "error: DST_COMM_BACKEND=nccl needs one CUDA device per rank, but no rank has one "
               "(rank 0: %s)",
               e != cudaSuccess ? cudaGetErrorString(e) : "cudaGetDeviceCount found 0");
    else
      snprintf(msg, sizeof msg,
               "error: DST_COMM_BACKEND=nccl needs one CUDA device per rank, but %d of the %d "
               "ranks have none (the first: world rank %d)",
               nmissing, w->size, first);
    dst_comm_exit_all(DST_EXIT_INPUT, msg);
  }
  g_device = local % ndev;
  DST_CUDA_CHECK(cudaSetDevice(g_device));
  DST_CUDA_CHECK(cudaStreamCreateWithFlags(&g_stream, cudaStreamNonBlocking));
  DST_CUDA_CHECK(cudaMalloc((void **)&g_barrier, sizeof *g_barrier));
  DST_CUDA_CHECK(cudaMemset(g_barrier, 0, sizeof *g_barrier));
  ncomm(w)->nccl = nccl_comm_make(mc, w->rank, w->size);
}

static void nccl_finalize(void) {
  p2p_flush();
  if (g_stream) DST_CUDA_CHECK(cudaStreamSynchronize(g_stream));
  for (int i = 0; i < g_nevents; i++) DST_CUDA_CHECK(cudaEventDestroy(g_events[i]));
  dst_free(g_events);
  dst_free(g_p2p);
  g_events = NULL;
  g_nevents = g_events_cap = 0;
  g_p2p = NULL;
  g_np2p = g_p2p_cap = 0;
  if (g_barrier) DST_CUDA_CHECK(cudaFree(g_barrier));
  if (g_stream) DST_CUDA_CHECK(cudaStreamDestroy(g_stream));
  g_barrier = NULL;
  g_stream = NULL;
  g_device = -1;
  dst_comm_mpi_backend.finalize();
}

static void nccl_split(DstComm *parent, int color, int key, DstComm *out) {
  p2p_flush();
  dst_comm_mpi_backend.split(parent, color, key, out);
  ncomm(out)->nccl = nccl_comm_make(ncomm(out)->mpi, out->rank, out->size);
}

static int nccl_agree_max(DstComm *c, int v) { return dst_comm_mpi_backend.agree_max(c, v); }

static void nccl_free_comm(DstComm *c) {
  ncclComm_t nc = ncomm(c)->nccl;
  if (nc) {
    p2p_flush();
    /* Finalize completes the communicator's operations (every member calls
     * it, like MPI_Comm_free); then destroy frees it without blocking. */
    DST_NCCL_CHECK(ncclCommFinalize(nc));
    ncclResult_t st = ncclInProgress;
    for (;;) {
      DST_NCCL_CHECK(ncclCommGetAsyncError(nc, &st));
      if (st != ncclInProgress) break;
      sched_yield();
    }
    if (st != ncclSuccess)
      nccl_fail(__FILE__, __LINE__, "ncclCommFinalize", ncclGetErrorString(st),
                ncclGetLastError(nc));
    DST_NCCL_CHECK(ncclCommDestroy(nc));
    ncomm(c)->nccl = NULL;
  }
  dst_comm_mpi_backend.free_comm(c);
}

/* Operations on host buffers (a loss, a norm, checksums: values the host
 * computed) run on the MPI backend over the same group, so callers need not
 * stage them through device memory; the front end's numbering, waits and
 * watchdog are the same. */
static void host_start(DstComm *c, const DstOpArgs *a, DstCommReq *r) {
  NcclReq *q = nreq(r);
  DstCommReq m = *r;
  dst_comm_mpi_backend.start(c, a, &m);
  _Static_assert(sizeof q->mpi <= sizeof m.impl, "MPI handle size");
  memcpy(q->mpi, m.impl, sizeof q->mpi);
  q->ev = NULL;
  q->host = 1;
}

static bool host_test(DstCommReq *r) {
  NcclReq *q = nreq(r);
  DstCommReq m = *r;
  memcpy(m.impl, q->mpi, sizeof q->mpi);
  bool done = dst_comm_mpi_backend.test(&m);
  memcpy(q->mpi, m.impl, sizeof q->mpi);
  return done;
}

static void nccl_start(DstComm *c, const DstOpArgs *a, DstCommReq *r) {
  size_t n = a->count, es = dst_comm_dtype_size(a->dt);
  bool hs = a->send && host_buf(a->send), hr = a->recv && host_buf(a->recv);
  if (n > 0 && (a->send || a->recv) && (!a->send || hs) && (!a->recv || hr)) {
    p2p_flush();
    host_start(c, a, r);
    return;
  }
  if (n > 0 && a->send) check_buf(r, "send", a->send);
  if (n > 0 && a->recv) check_buf(r, "recv", a->recv);
  NcclReq *q = nreq(r);
  q->host = 0;
  q->ev = event_get();
  if (a->kind == DST_OP_SEND || a->kind == DST_OP_RECV) {
    if (g_np2p > 0 && g_p2p[0].c != c) p2p_flush();
    if (g_np2p == g_p2p_cap) {
      g_p2p_cap = g_p2p_cap ? 2 * g_p2p_cap : 16;
      g_p2p = dst_realloc(g_p2p, sizeof *g_p2p * (size_t)g_p2p_cap, DST_MEM_OTHER, "nccl p2p");
    }
    void *buf = a->kind == DST_OP_SEND ? (void *)a->send : a->recv;
    g_p2p[g_np2p++] = (NcclP2p){c, a->kind, buf, n, a->dt, a->root, q->ev};
    return;
  }
  p2p_flush();
  ncclComm_t nc = ncomm(c)->nccl;
  ncclDataType_t t = ntype(a->dt);
  char *recv = a->recv;
  size_t blk = n * es; /* bytes of one rank's block */
  char *mine = recv ? recv + (size_t)c->rank * blk : NULL;
  cudaStream_t s = g_stream;
  switch (a->kind) {
    case DST_OP_ALLREDUCE:
      if (n == 0) break;
      DST_NCCL_CHECK(ncclAllReduce(a->send ? a->send : recv, recv, n, t, nop(a->op), nc, s));
      break;
    case DST_OP_REDUCE_SCATTER:
      if (n == 0) break;
      if (a->send) {
        DST_NCCL_CHECK(ncclReduceScatter(a->send, recv, n, t, nop(a->op), nc, s));
      } else {
        /* NCCL's in-place form leaves the result in this rank's block;
         * dst_comm.h wants it at the front. */
        DST_NCCL_CHECK(ncclReduceScatter(recv, mine, n, t, nop(a->op), nc, s));
        if (c->rank > 0)
          DST_CUDA_CHECK(cudaMemcpyAsync(recv, mine, blk, cudaMemcpyDeviceToDevice, s));
      }
      break;
    case DST_OP_ALLGATHER:
      if (n == 0) break;
      DST_NCCL_CHECK(ncclAllGather(a->send ? a->send : mine, recv, n, t, nc, s));
      break;
    case DST_OP_BROADCAST:
      if (n == 0) break;
      DST_NCCL_CHECK(ncclBroadcast(recv, recv, n, t, a->root, nc, s));
      break;
    case DST_OP_ALLTOALL: {
      if (n == 0) break;
      const char *send = a->send;
      DST_CUDA_CHECK(
          cudaMemcpyAsync(mine, send + (size_t)c->rank * blk, blk, cudaMemcpyDeviceToDevice, s));
      DST_NCCL_CHECK(ncclGroupStart());
      for (int j = 0; j < c->size; j++) {
        if (j == c->rank) continue;
        DST_NCCL_CHECK(ncclSend(send + (size_t)j * blk, n, t, j, nc, s));
        DST_NCCL_CHECK(ncclRecv(recv + (size_t)j * blk, n, t, j, nc, s));
      }
      DST_NCCL_CHECK(ncclGroupEnd());
      break;
    }
    case DST_OP_BARRIER:
      DST_NCCL_CHECK(ncclAllReduce(g_barrier, g_barrier, 1, ncclInt32, ncclSum, nc, s));
      break;
    case DST_OP_SEND:
    case DST_OP_RECV:
    case DST_OP_NKIND: dst_die("bad op kind %d", (int)a->kind);
  }
  DST_CUDA_CHECK(cudaEventRecord(q->ev, s));
}

/* Ends the job if NCCL reported an asynchronous error on r's communicator. */
static void check_async(const DstCommReq *r) {
  ncclComm_t nc = ncomm(r->comm)->nccl;
  ncclResult_t st = ncclSuccess;
  DST_NCCL_CHECK(ncclCommGetAsyncError(nc, &st));
  if (st == ncclSuccess || st == ncclInProgress) return;
  char what[160], msg[700];
  req_name(r, what, sizeof what);
  const char *last = ncclGetLastError(nc);
  bool more = last && *last;
  snprintf(msg, sizeof msg, "nccl: %s failed: %s%s%s%s", what, ncclGetErrorString(st),
           more ? " (" : "", more ? last : "", more ? ")" : "");
  dst_comm_abort(DST_EXIT_INTERNAL, msg);
}

static bool nccl_test(DstCommReq *r) {
  p2p_flush();
  NcclReq *q = nreq(r);
  if (q->host) return host_test(r);
  check_async(r);
  cudaError_t e = cudaEventQuery(q->ev);
  if (e == cudaErrorNotReady) return false;
  if (e != cudaSuccess) nccl_fail(__FILE__, __LINE__, "cudaEventQuery", cudaGetErrorString(e), "");
  event_put(q->ev);
  q->ev = NULL;
  return true;
}

static void nccl_serve(void) { dst_comm_mpi_backend.serve(); }

static void nccl_query(const int *who, int n, int comm_id, double grace, DstCommState *st,
                       bool *got) {
  dst_comm_mpi_backend.query(who, n, comm_id, grace, st, got);
}

static _Noreturn void nccl_abort(int status) {
  dst_comm_mpi_backend.abort(status);
  _Exit(status);
}

static _Noreturn void nccl_exit_all(int status) {
  dst_comm_mpi_backend.exit_all(status);
  exit(status);
}

/* Not static: dst_runtime_cuda's link option --undefined names it, which
 * pulls this file out of the archive (and with it the constructor below)
 * into every program that links the library. */
extern const DstCommBackend dst_comm_nccl_backend;
const DstCommBackend dst_comm_nccl_backend = {
    .kind = DST_COMM_BACKEND_NCCL,
    .name = "nccl",
    .reduces_16bit = true,
    .init_world = nccl_init_world,
    .finalize = nccl_finalize,
    .split = nccl_split,
    .agree_max = nccl_agree_max,
    .free_comm = nccl_free_comm,
    .start = nccl_start,
    .test = nccl_test,
    .serve = nccl_serve,
    .query = nccl_query,
    .abort = nccl_abort,
    .exit_all = nccl_exit_all,
};

__attribute__((constructor)) static void nccl_register(void) {
  dst_comm_register_backend(&dst_comm_nccl_backend);
}

/* ------------------------------------------------------ dst_comm_nccl.h */

static void need_nccl(const char *fn) {
  DST_CHECK(dst_comm_initialized() && dst_comm_backend() == DST_COMM_BACKEND_NCCL,
            "%s: the NCCL backend is not running (DST_COMM_BACKEND=nccl, then dst_comm_init)", fn);
}

cudaStream_t dst_comm_nccl_stream(void) {
  need_nccl("dst_comm_nccl_stream");
  p2p_flush();
  return g_stream;
}

cudaEvent_t dst_comm_nccl_event(const DstCommReq *r) {
  need_nccl("dst_comm_nccl_event");
  DST_CHECK(r && r->active && r->comm && r->comm->be == &dst_comm_nccl_backend,
            "dst_comm_nccl_event: the request is not an active NCCL operation");
  const NcclReq *q = (const NcclReq *)(const void *)r->impl;
  DST_CHECK(!q->host, "dst_comm_nccl_event: the request's buffers are host memory (it runs on MPI)");
  p2p_flush();
  return q->ev;
}

int dst_comm_nccl_device(void) {
  need_nccl("dst_comm_nccl_device");
  return g_device;
}
