/* dst_comm_mpi.c: the MPI backend of dst_comm (compiled with DST_HAVE_MPI).
 *
 * Every operation is the non-blocking MPI call (MPI_Iallreduce, ...): the
 * front end's wait polls it with MPI_Test, which is what lets the watchdog
 * run and lets mpirun's SIGTERM end a rank whose peer died. Each
 * communicator is our own (MPI_COMM_WORLD is duplicated), with
 * MPI_ERRORS_RETURN so that every failure comes back through DST_MPI_CHECK,
 * which names the call and its file:line and aborts the job (status 70).
 *
 * Watchdog side channel: one more duplicate of the world ("watch"). A rank
 * whose wait timed out sends each member a query (tag 1) naming the
 * communicator id; ranks answer (tag 2) with a DstCommState from inside
 * their own wait loops (serve). A rank that is not waiting in dst_comm does
 * not answer, which the report says.
 */
#ifdef DST_HAVE_MPI

#include <mpi.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "dst_comm_impl.h"

#define DST_MPI_CHECK(call)                                           \
  do {                                                                \
    int rc_ = (call);                                                 \
    if (rc_ != MPI_SUCCESS) mpi_fail(__FILE__, __LINE__, #call, rc_); \
  } while (0)

enum { TAG_QUERY = 1, TAG_REPLY = 2 };

typedef struct {
  MPI_Request q;
  int32_t count; /* recv: elements expected */
  int16_t dt;
  int16_t kind;
} MpiReq;

_Static_assert(sizeof(MPI_Comm) <= sizeof(((DstComm *)0)->impl), "MPI_Comm does not fit");
_Static_assert(sizeof(MpiReq) <= sizeof(((DstCommReq *)0)->impl), "MPI_Request does not fit");

static MPI_Comm g_watch = MPI_COMM_NULL;
static bool g_own_init; /* we called MPI_Init, so we call MPI_Finalize */

static _Noreturn void mpi_fail(const char *file, int line, const char *call, int rc) {
  char s[MPI_MAX_ERROR_STRING];
  int len = 0;
  if (MPI_Error_string(rc, s, &len) != MPI_SUCCESS) snprintf(s, sizeof s, "MPI error %d", rc);
  int rank = dst_log_rank();
  char pre[32] = "";
  if (rank >= 0) snprintf(pre, sizeof pre, "[rank %d] ", rank);
  fprintf(stderr, "%sinternal error: %s:%d: %s failed: %s\n", pre, file, line, call, s);
  fflush(stderr);
  MPI_Abort(MPI_COMM_WORLD, DST_EXIT_INTERNAL);
  _Exit(DST_EXIT_INTERNAL);
}

static MPI_Comm *mcomm(DstComm *c) { return (MPI_Comm *)(void *)c->impl; }
static MpiReq *mreq(DstCommReq *r) { return (MpiReq *)(void *)r->impl; }

static MPI_Datatype mtype(DstCommDtype dt) {
  switch (dt) {
    case DST_COMM_F32: return MPI_FLOAT;
    case DST_COMM_F64: return MPI_DOUBLE;
    case DST_COMM_I32: return MPI_INT32_T;
    case DST_COMM_U8: return MPI_UINT8_T;
    case DST_COMM_BF16:
    case DST_COMM_F16: return MPI_UINT16_T;
    case DST_COMM_NDTYPE: break;
  }
  dst_die("bad dtype %d", (int)dt);
}

static MPI_Op mop(DstCommOp op) {
  switch (op) {
    case DST_COMM_SUM: return MPI_SUM;
    case DST_COMM_MAX: return MPI_MAX;
    case DST_COMM_MIN: return MPI_MIN;
    case DST_COMM_NOP: break;
  }
  dst_die("bad reduction op %d", (int)op);
}

static void mpi_init_world(int *argc, char ***argv, DstComm *w) {
  int inited = 0;
  DST_MPI_CHECK(MPI_Initialized(&inited));
  if (!inited) {
    /* Open MPI's non-blocking all-reduce (libnbc) picks a binomial tree
     * (reduce, then broadcast of the whole vector) for in-place calls and
     * for fewer than 4 ranks: half the bandwidth of MPI_Allreduce from 4 KiB
     * up on 2 ranks (tests/mpi/comm_bench). Algorithm 3 (reduce-scatter +
     * all-gather, falling back to the ring when count < ranks) matches
     * MPI_Allreduce. A value set by the user (env, mpirun --mca) wins;
     * other MPI implementations ignore the variable. */
    setenv("OMPI_MCA_coll_libnbc_iallreduce_algorithm", "3", 0);
    int provided = MPI_THREAD_SINGLE;
    /* Comm runs on the main thread only (OpenMP threads never call MPI). */
    DST_MPI_CHECK(MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided));
    g_own_init = true;
    if (provided < MPI_THREAD_FUNNELED)
      dst_log_warn(
          "MPI provides thread level %d < MPI_THREAD_FUNNELED; OpenMP kernels and MPI "
          "may not mix",
          provided);
  }
  DST_MPI_CHECK(MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN));
  DST_MPI_CHECK(MPI_Comm_dup(MPI_COMM_WORLD, mcomm(w)));
  DST_MPI_CHECK(MPI_Comm_dup(MPI_COMM_WORLD, &g_watch));
  DST_MPI_CHECK(MPI_Comm_rank(*mcomm(w), &w->rank));
  DST_MPI_CHECK(MPI_Comm_size(*mcomm(w), &w->size));
}

static void mpi_finalize(void) {
  if (g_watch != MPI_COMM_NULL) DST_MPI_CHECK(MPI_Comm_free(&g_watch));
  if (g_own_init) DST_MPI_CHECK(MPI_Finalize());
  g_own_init = false;
}

static void mpi_split(DstComm *parent, int color, int key, DstComm *out) {
  MPI_Comm *nc = mcomm(out);
  DST_MPI_CHECK(MPI_Comm_split(*mcomm(parent), color, key, nc));
  DST_MPI_CHECK(MPI_Comm_rank(*nc, &out->rank));
  DST_MPI_CHECK(MPI_Comm_size(*nc, &out->size));
  MPI_Group g, wg;
  DST_MPI_CHECK(MPI_Comm_group(*nc, &g));
  DST_MPI_CHECK(MPI_Comm_group(MPI_COMM_WORLD, &wg));
  int *mine = dst_malloc(sizeof(int) * (size_t)out->size, DST_MEM_OTHER, "comm");
  out->world_ranks = dst_malloc(sizeof(int) * (size_t)out->size, DST_MEM_OTHER, "comm");
  for (int i = 0; i < out->size; i++) mine[i] = i;
  DST_MPI_CHECK(MPI_Group_translate_ranks(g, out->size, mine, wg, out->world_ranks));
  dst_free(mine);
  DST_MPI_CHECK(MPI_Group_free(&g));
  DST_MPI_CHECK(MPI_Group_free(&wg));
}

static int mpi_agree_max(DstComm *c, int v) {
  int out = v;
  DST_MPI_CHECK(MPI_Allreduce(&v, &out, 1, MPI_INT, MPI_MAX, *mcomm(c)));
  return out;
}

static void mpi_free_comm(DstComm *c) {
  if (*mcomm(c) != MPI_COMM_NULL) DST_MPI_CHECK(MPI_Comm_free(mcomm(c)));
}

static void mpi_start(DstComm *c, const DstOpArgs *a, DstCommReq *r) {
  MpiReq *q = mreq(r);
  MPI_Comm comm = *mcomm(c);
  MPI_Datatype t = mtype(a->dt);
  int n = (int)a->count;
  const void *send = a->send ? a->send : MPI_IN_PLACE;
  q->kind = (int16_t)a->kind;
  q->dt = (int16_t)a->dt;
  q->count = n;
  switch (a->kind) {
    case DST_OP_ALLREDUCE:
      DST_MPI_CHECK(MPI_Iallreduce(send, a->recv, n, t, mop(a->op), comm, &q->q));
      break;
    case DST_OP_REDUCE_SCATTER:
      DST_MPI_CHECK(MPI_Ireduce_scatter_block(send, a->recv, n, t, mop(a->op), comm, &q->q));
      break;
    case DST_OP_ALLGATHER:
      DST_MPI_CHECK(MPI_Iallgather(send, n, t, a->recv, n, t, comm, &q->q));
      break;
    case DST_OP_BROADCAST: DST_MPI_CHECK(MPI_Ibcast(a->recv, n, t, a->root, comm, &q->q)); break;
    case DST_OP_ALLTOALL:
      DST_MPI_CHECK(MPI_Ialltoall(a->send, n, t, a->recv, n, t, comm, &q->q));
      break;
    case DST_OP_BARRIER: DST_MPI_CHECK(MPI_Ibarrier(comm, &q->q)); break;
    case DST_OP_SEND: DST_MPI_CHECK(MPI_Isend(a->send, n, t, a->root, a->tag, comm, &q->q)); break;
    case DST_OP_RECV: DST_MPI_CHECK(MPI_Irecv(a->recv, n, t, a->root, a->tag, comm, &q->q)); break;
    case DST_OP_NKIND: dst_die("bad op kind");
  }
}

static bool mpi_test(DstCommReq *r) {
  MpiReq *q = mreq(r);
  int flag = 0;
  MPI_Status st;
  DST_MPI_CHECK(MPI_Test(&q->q, &flag, &st));
  if (!flag) return false;
  if (q->kind == DST_OP_RECV) {
    int got = 0;
    DST_MPI_CHECK(MPI_Get_count(&st, mtype((DstCommDtype)q->dt), &got));
    DST_CHECK(got == q->count, "recv from rank %d of '%s' (tag %d): %d elements expected, %d sent",
              r->peer, r->comm->name, st.MPI_TAG, q->count, got);
  }
  return true;
}

static void mpi_serve(void) {
  for (;;) {
    int flag = 0;
    MPI_Status st;
    DST_MPI_CHECK(MPI_Iprobe(MPI_ANY_SOURCE, TAG_QUERY, g_watch, &flag, &st));
    if (!flag) return;
    int comm_id = 0;
    DST_MPI_CHECK(
        MPI_Recv(&comm_id, 1, MPI_INT, st.MPI_SOURCE, TAG_QUERY, g_watch, MPI_STATUS_IGNORE));
    DstCommState s;
    dst_comm_self_state(comm_id, &s);
    /* Small enough to go eagerly: returns without the querier's help. */
    DST_MPI_CHECK(MPI_Send(&s, (int)sizeof s, MPI_BYTE, st.MPI_SOURCE, TAG_REPLY, g_watch));
  }
}

static void mpi_query(const int *who, int n, int comm_id, double grace, DstCommState *st,
                      bool *got) {
  MPI_Request *rq = dst_malloc(sizeof(MPI_Request) * 2 * (size_t)n, DST_MEM_OTHER, "watchdog");
  MPI_Request *sq = rq + n;
  for (int i = 0; i < n; i++) {
    got[i] = false;
    DST_MPI_CHECK(
        MPI_Irecv(&st[i], (int)sizeof st[i], MPI_BYTE, who[i], TAG_REPLY, g_watch, &rq[i]));
    DST_MPI_CHECK(MPI_Isend(&comm_id, 1, MPI_INT, who[i], TAG_QUERY, g_watch, &sq[i]));
  }
  double t0 = dst_now_sec();
  int left = n;
  while (left > 0 && dst_now_sec() - t0 < grace) {
    for (int i = 0; i < n; i++) {
      if (got[i]) continue;
      int flag = 0;
      DST_MPI_CHECK(MPI_Test(&rq[i], &flag, MPI_STATUS_IGNORE));
      if (flag) {
        got[i] = true;
        left--;
      }
    }
    mpi_serve();
    struct timespec ts = {0, 200000};
    nanosleep(&ts, NULL);
  }
  /* Unanswered requests stay posted: the job is about to be aborted. */
}

static _Noreturn void mpi_abort(int status) {
  /* A moment for the launcher to forward the line just written. */
  struct timespec ts = {0, 50 * 1000 * 1000};
  nanosleep(&ts, NULL);
  MPI_Abort(MPI_COMM_WORLD, status);
  _Exit(status);
}

static _Noreturn void mpi_exit_all(int status) {
  /* MPI_Finalize synchronizes every rank, so rank 0's message is written
   * before any rank exits (and mpirun tears the job down). */
  if (g_watch != MPI_COMM_NULL) DST_MPI_CHECK(MPI_Comm_free(&g_watch));
  /* Even when the program initialized MPI itself: we exit right here. */
  DST_MPI_CHECK(MPI_Finalize());
  exit(status);
}

const DstCommBackend dst_comm_mpi_backend = {
    .kind = DST_COMM_BACKEND_MPI,
    .name = "mpi",
    .reduces_16bit = false,
    .init_world = mpi_init_world,
    .finalize = mpi_finalize,
    .split = mpi_split,
    .agree_max = mpi_agree_max,
    .free_comm = mpi_free_comm,
    .start = mpi_start,
    .test = mpi_test,
    .serve = mpi_serve,
    .query = mpi_query,
    .abort = mpi_abort,
    .exit_all = mpi_exit_all,
};

#else
/* Built without MPI: the local backend in dst_comm.c is the only one. */
typedef int dst_comm_mpi_unused;
#endif /* DST_HAVE_MPI */
