/* dst_comm.c: the front end of communication (see dst_comm.h) and the local
 * backend (one process, no MPI). The NCCL backend is not referred to here:
 * dst_runtime_cuda registers it (dst_comm_register_backend) when linked.
 *
 * The front end owns everything that must behave the same on every backend:
 * argument checks, sequence numbers, the registry of communicators (ids that
 * watchdog queries refer to), and the wait loop with its watchdog. A wait
 * polls backend->test; while it polls it also answers other ranks' watchdog
 * queries, so a rank that is itself blocked can still say where it is.
 */
#include <limits.h>
#include <math.h>
#include <sched.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "dst_comm_impl.h"

static const DstCommBackend *g_be;   /* NULL until dst_comm_init */
static const DstCommBackend *g_nccl; /* registered by dst_runtime_cuda, or NULL */
static DstComm *g_world;
static DstComm *g_comms;  /* registry: every live communicator */
static int g_next_id = 1; /* world is 0 */
static double g_timeout = 300.0;
static const char *g_label;         /* label of the next operation */
static long g_pending;              /* requests issued and not yet completed */
static const DstCommReq *g_waiting; /* the request a wait is polling, if any */

/* ------------------------------------------------------------ local backend */

static void local_init_world(int *argc, char ***argv, DstComm *w) {
  w->rank = 0;
  w->size = 1;
}
static void local_finalize(void) {}
static void local_split(DstComm *parent, int color, int key, DstComm *out) {
  out->rank = 0;
  out->size = 1;
}
static int local_agree_max(DstComm *c, int v) { return v; }
static void local_free_comm(DstComm *c) {}

static void local_start(DstComm *c, const DstOpArgs *a, DstCommReq *r) {
  size_t bytes = a->count * dst_comm_dtype_size(a->dt);
  switch (a->kind) {
    case DST_OP_ALLREDUCE:
    case DST_OP_REDUCE_SCATTER:
    case DST_OP_ALLGATHER:
    case DST_OP_ALLTOALL:
      if (a->send && bytes) memmove(a->recv, a->send, bytes);
      break;
    case DST_OP_BROADCAST:
    case DST_OP_BARRIER: break;
    case DST_OP_SEND:
    case DST_OP_RECV:
    case DST_OP_NKIND:
      dst_die("%s to self on the one-rank communicator '%s' is not supported", r->op, c->name);
  }
}
static bool local_test(DstCommReq *r) { return true; }
static _Noreturn void local_abort(int status) { exit(status); }
static _Noreturn void local_exit_all(int status) { exit(status); }

static const DstCommBackend local_backend = {
    .kind = DST_COMM_BACKEND_LOCAL,
    .name = "local",
    .reduces_16bit = false,
    .init_world = local_init_world,
    .finalize = local_finalize,
    .split = local_split,
    .agree_max = local_agree_max,
    .free_comm = local_free_comm,
    .start = local_start,
    .test = local_test,
    .serve = NULL,
    .query = NULL,
    .abort = local_abort,
    .exit_all = local_exit_all,
};

/* ------------------------------------------------------------------- setup */

/* World size announced by a launcher in the environment; 0 when the process
 * was not started by one, -1 when started by one that does not say. */
static int launcher_world_size(void) {
  static const char *sizes[] = {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "MV2_COMM_WORLD_SIZE",
                                "PMIX_SIZE"};
  for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++) {
    const char *v = getenv(sizes[i]);
    if (v && *v) return atoi(v) > 0 ? atoi(v) : -1;
  }
  if (getenv("PMIX_RANK") || getenv("PMI_RANK")) return -1;
  return 0;
}

static void parse_timeout_env(void) {
  const char *v = getenv("DST_COMM_TIMEOUT");
  if (!v || !*v) return;
  char *end;
  double t = strtod(v, &end);
  if (end == v || *end != '\0' || isnan(t))
    dst_fatal("DST_COMM_TIMEOUT='%s' is not a number of seconds (0 turns the watchdog off)", v);
  /* 1e9 s is 31 years: beyond it (or overflowing to inf) the user means
   * "forever", which is 0, and saying so beats a silent clamp */
  if (t < 0 || t > 1e9)
    dst_fatal("DST_COMM_TIMEOUT='%s' is out of range: give seconds from 0 to 1e9 (0 turns the watchdog off)", v);
  g_timeout = t;
}

static DstComm *comm_new(const char *name) {
  DstComm *c = dst_calloc(1, sizeof *c, DST_MEM_OTHER, "comm");
  snprintf(c->name, sizeof c->name, "%s", name ? name : "?");
  c->be = g_be;
  c->next = g_comms;
  g_comms = c;
  return c;
}

void dst_comm_register_backend(const DstCommBackend *be) {
  DST_CHECK(be && be->kind == DST_COMM_BACKEND_NCCL, "only the NCCL backend is registered");
  DST_CHECK(!g_be, "backend '%s' registered after dst_comm_init", be->name);
  g_nccl = be;
}

void dst_comm_init(int *argc, char ***argv) {
  DST_CHECK(!g_be, "dst_comm_init called twice");
  parse_timeout_env();
  int launched = launcher_world_size();
  const char *want = getenv("DST_COMM_BACKEND");
  const DstCommBackend *be = NULL;
  if (want && *want) {
    if (strcmp(want, "local") == 0) {
      if (launched > 1)
        dst_fatal("DST_COMM_BACKEND=local, but the program was launched as %d ranks", launched);
      be = &local_backend;
    } else if (strcmp(want, "mpi") == 0) {
#ifdef DST_HAVE_MPI
      be = &dst_comm_mpi_backend;
#else
      dst_fatal("DST_COMM_BACKEND=mpi, but this libdst was built without MPI (DST_MPI=OFF)");
#endif
    } else if (strcmp(want, "nccl") == 0) {
      if (!g_nccl)
        dst_fatal(
            "DST_COMM_BACKEND=nccl, but this program was built without the NCCL backend "
            "(library dst_runtime_cuda)");
      be = g_nccl;
    } else {
      dst_fatal("DST_COMM_BACKEND='%s' is not a backend (local, mpi, nccl)", want);
    }
  } else if (launched != 0) {
#ifdef DST_HAVE_MPI
    be = &dst_comm_mpi_backend;
#else
    if (launched > 1)
      dst_fatal(
          "this libdst was built without MPI (DST_MPI=OFF), but the program was "
          "launched as %d ranks",
          launched);
    be = &local_backend;
#endif
  } else {
    be = &local_backend;
  }
  g_be = be;
  g_world = comm_new("world");
  g_world->id = 0;
  be->init_world(argc, argv, g_world);
  g_world->world_ranks = dst_malloc(sizeof(int) * (size_t)g_world->size, DST_MEM_OTHER, "comm");
  for (int i = 0; i < g_world->size; i++) g_world->world_ranks[i] = i;
  if (g_world->size > 1) dst_log_set_rank(g_world->rank);
}

void dst_comm_finalize(void) {
  DST_CHECK(g_be, "dst_comm_finalize without dst_comm_init");
  DST_CHECK(g_pending == 0, "%ld communication request(s) still pending at finalize", g_pending);
  while (g_comms) {
    DstComm *c = g_comms;
    g_comms = c->next;
    g_be->free_comm(c);
    dst_free(c->world_ranks);
    dst_free(c);
  }
  g_be->finalize();
  g_be = NULL;
  g_world = NULL;
  g_next_id = 1;
  g_label = NULL;
}

bool dst_comm_initialized(void) { return g_be != NULL; }
DstCommBackendKind dst_comm_backend(void) {
  DST_CHECK(g_be, "dst_comm_init was not called");
  return g_be->kind;
}
const char *dst_comm_backend_name(void) { return g_be ? g_be->name : "none"; }

DstComm *dst_comm_world(void) {
  DST_CHECK(g_be, "dst_comm_init was not called");
  return g_world;
}
int dst_comm_world_rank(void) { return dst_comm_world()->rank; }
int dst_comm_world_size(void) { return dst_comm_world()->size; }
int dst_comm_rank(const DstComm *c) { return c->rank; }
int dst_comm_size(const DstComm *c) { return c->size; }
const char *dst_comm_name(const DstComm *c) { return c->name; }
uint64_t dst_comm_seq(const DstComm *c) { return c->coll_seq; }
int dst_comm_world_rank_of(const DstComm *c, int r) {
  DST_CHECK(r >= 0 && r < c->size, "rank %d of group '%s' (size %d)", r, c->name, c->size);
  return c->world_ranks[r];
}

DstComm *dst_comm_split(DstComm *parent, int color, int key, const char *name) {
  DST_CHECK(g_be && parent, "dst_comm_split before dst_comm_init");
  DST_CHECK(color >= 0, "color %d must be >= 0", color);
  DstComm *c = comm_new(name);
  g_be->split(parent, color, key, c);
  if (!c->world_ranks) {
    DST_CHECK(c->size == 1, "backend gave no world ranks for a group of %d", c->size);
    c->world_ranks = dst_malloc(sizeof(int), DST_MEM_OTHER, "comm");
    c->world_ranks[0] = g_world->rank;
  }
  /* An id every member agrees on and no earlier communicator of any member
   * has: the max of the members' next ids. */
  c->id = g_be->agree_max(c, g_next_id);
  g_next_id = c->id + 1;
  return c;
}

void dst_comm_free(DstComm *c) {
  if (!c) return;
  DST_CHECK(c != g_world, "the world communicator is freed by dst_comm_finalize");
  DstComm **p = &g_comms;
  while (*p && *p != c) p = &(*p)->next;
  DST_CHECK(*p, "communicator '%s' freed twice or unknown", c->name);
  *p = c->next;
  g_be->free_comm(c);
  dst_free(c->world_ranks);
  dst_free(c);
}

void dst_comm_set_timeout(double seconds) {
  DST_CHECK(seconds >= 0, "timeout %g", seconds);
  g_timeout = seconds;
}
double dst_comm_timeout(void) { return g_timeout; }
void dst_comm_set_label(const char *label) { g_label = label; }

size_t dst_comm_dtype_size(DstCommDtype dt) {
  switch (dt) {
    case DST_COMM_F32: return 4;
    case DST_COMM_F64: return 8;
    case DST_COMM_I32: return 4;
    case DST_COMM_U8: return 1;
    case DST_COMM_BF16: return 2;
    case DST_COMM_F16: return 2;
    case DST_COMM_NDTYPE: break;
  }
  return 0;
}

/* --------------------------------------------------------------- issuing */

static const char *op_names[DST_OP_NKIND] = {
    "allreduce", "reduce_scatter", "allgather", "broadcast", "alltoall", "barrier", "send", "recv",
};

static DstCommReq issue(DstComm *c, DstOpArgs a) {
  DST_CHECK(g_be, "dst_comm_init was not called");
  DST_CHECK(c, "NULL communicator");
  const char *name = op_names[a.kind];
  DST_CHECK(dst_comm_dtype_size(a.dt) > 0, "%s: bad dtype %d", name, (int)a.dt);
  DST_CHECK(a.count <= (size_t)INT_MAX, "%s: count %zu exceeds INT_MAX elements", name, a.count);
  bool reduces = a.kind == DST_OP_ALLREDUCE || a.kind == DST_OP_REDUCE_SCATTER;
  if (reduces) {
    bool any_backend =
        a.dt == DST_COMM_F32 || a.dt == DST_COMM_F64 || a.dt == DST_COMM_I32 || a.dt == DST_COMM_U8;
    DST_CHECK(any_backend || g_be->reduces_16bit,
              "%s: dtype %d cannot be reduced on the %s backend", name, (int)a.dt, g_be->name);
    DST_CHECK(a.op == DST_COMM_SUM || a.op == DST_COMM_MAX || a.op == DST_COMM_MIN,
              "%s: bad reduction op %d", name, (int)a.op);
  }
  if (a.kind == DST_OP_BROADCAST || a.kind == DST_OP_SEND || a.kind == DST_OP_RECV)
    DST_CHECK(a.root >= 0 && a.root < c->size, "%s: rank %d out of range for group '%s' of %d",
              name, a.root, c->name, c->size);
  if (a.kind == DST_OP_SEND || a.kind == DST_OP_RECV)
    DST_CHECK(a.tag >= 0 && a.tag <= 32767, "%s: tag %d out of [0, 32767]", name, a.tag);
  DstCommReq r;
  memset(&r, 0, sizeof r);
  r.comm = c;
  r.op = name;
  r.label = g_label;
  g_label = NULL;
  if (a.kind == DST_OP_SEND || a.kind == DST_OP_RECV) {
    r.seq = c->p2p_seq++;
    r.peer = a.root;
  } else {
    r.seq = c->coll_seq++;
    r.peer = -1;
  }
  r.active = 1;
  r.t_start = dst_now_sec();
  g_be->start(c, &a, &r);
  g_pending++;
  return r;
}

DstCommReq dst_comm_iallreduce(DstComm *c, const void *send, void *recv, size_t count,
                               DstCommDtype dt, DstCommOp op) {
  return issue(
      c, (DstOpArgs){DST_OP_ALLREDUCE, send == recv ? NULL : send, recv, count, dt, op, -1, 0});
}
DstCommReq dst_comm_ireduce_scatter(DstComm *c, const void *send, void *recv, size_t count,
                                    DstCommDtype dt, DstCommOp op) {
  return issue(c, (DstOpArgs){DST_OP_REDUCE_SCATTER, send == recv ? NULL : send, recv, count, dt,
                              op, -1, 0});
}
DstCommReq dst_comm_iallgather(DstComm *c, const void *send, void *recv, size_t count,
                               DstCommDtype dt) {
  DST_CHECK(c, "NULL communicator");
  const char *mine = (const char *)recv + (size_t)c->rank * count * dst_comm_dtype_size(dt);
  return issue(c, (DstOpArgs){DST_OP_ALLGATHER, (const char *)send == mine ? NULL : send, recv,
                              count, dt, DST_COMM_NOP, -1, 0});
}
DstCommReq dst_comm_ibroadcast(DstComm *c, void *buf, size_t count, DstCommDtype dt, int root) {
  return issue(c, (DstOpArgs){DST_OP_BROADCAST, NULL, buf, count, dt, DST_COMM_NOP, root, 0});
}
DstCommReq dst_comm_ialltoall(DstComm *c, const void *send, void *recv, size_t count,
                              DstCommDtype dt) {
  DST_CHECK(c, "NULL communicator");
  size_t bytes = (size_t)c->size * count * dst_comm_dtype_size(dt);
  const char *s = send, *d = recv;
  DST_CHECK(bytes == 0 || s + bytes <= d || d + bytes <= s, "alltoall: send and recv overlap");
  return issue(c, (DstOpArgs){DST_OP_ALLTOALL, send, recv, count, dt, DST_COMM_NOP, -1, 0});
}
DstCommReq dst_comm_ibarrier(DstComm *c) {
  return issue(c, (DstOpArgs){DST_OP_BARRIER, NULL, NULL, 0, DST_COMM_U8, DST_COMM_NOP, -1, 0});
}
DstCommReq dst_comm_isend(DstComm *c, const void *buf, size_t count, DstCommDtype dt, int peer,
                          int tag) {
  return issue(c, (DstOpArgs){DST_OP_SEND, buf, NULL, count, dt, DST_COMM_NOP, peer, tag});
}
DstCommReq dst_comm_irecv(DstComm *c, void *buf, size_t count, DstCommDtype dt, int peer, int tag) {
  return issue(c, (DstOpArgs){DST_OP_RECV, NULL, buf, count, dt, DST_COMM_NOP, peer, tag});
}

void dst_comm_allreduce(DstComm *c, const void *send, void *recv, size_t count, DstCommDtype dt,
                        DstCommOp op) {
  DstCommReq r = dst_comm_iallreduce(c, send, recv, count, dt, op);
  dst_comm_wait(&r);
}
void dst_comm_reduce_scatter(DstComm *c, const void *send, void *recv, size_t count,
                             DstCommDtype dt, DstCommOp op) {
  DstCommReq r = dst_comm_ireduce_scatter(c, send, recv, count, dt, op);
  dst_comm_wait(&r);
}
void dst_comm_allgather(DstComm *c, const void *send, void *recv, size_t count, DstCommDtype dt) {
  DstCommReq r = dst_comm_iallgather(c, send, recv, count, dt);
  dst_comm_wait(&r);
}
void dst_comm_broadcast(DstComm *c, void *buf, size_t count, DstCommDtype dt, int root) {
  DstCommReq r = dst_comm_ibroadcast(c, buf, count, dt, root);
  dst_comm_wait(&r);
}
void dst_comm_alltoall(DstComm *c, const void *send, void *recv, size_t count, DstCommDtype dt) {
  DstCommReq r = dst_comm_ialltoall(c, send, recv, count, dt);
  dst_comm_wait(&r);
}
void dst_comm_barrier(DstComm *c) {
  DstCommReq r = dst_comm_ibarrier(c);
  dst_comm_wait(&r);
}
void dst_comm_send(DstComm *c, const void *buf, size_t count, DstCommDtype dt, int peer, int tag) {
  DstCommReq r = dst_comm_isend(c, buf, count, dt, peer, tag);
  dst_comm_wait(&r);
}
void dst_comm_recv(DstComm *c, void *buf, size_t count, DstCommDtype dt, int peer, int tag) {
  DstCommReq r = dst_comm_irecv(c, buf, count, dt, peer, tag);
  dst_comm_wait(&r);
}

/* ------------------------------------------------------ waiting, watchdog */

void dst_comm_self_state(int comm_id, DstCommState *st) {
  memset(st, 0, sizeof *st);
  st->issued = -1;
  st->p2p_issued = -1;
  for (DstComm *c = g_comms; c; c = c->next)
    if (c->id == comm_id) {
      st->issued = (int64_t)c->coll_seq;
      st->p2p_issued = (int64_t)c->p2p_seq;
    }
  const DstCommReq *w = g_waiting;
  if (w && w->active) {
    st->waiting = 1;
    st->wait_comm_id = w->comm->id;
    st->wait_seq = (int64_t)w->seq;
    snprintf(st->wait_op, sizeof st->wait_op, "%s", w->op);
    snprintf(st->wait_group, sizeof st->wait_group, "%s", w->comm->name);
    snprintf(st->wait_label, sizeof st->wait_label, "%s", w->label ? w->label : "");
  }
}

/* Appends to buf[*n..cap) like snprintf, never past the end. */
static void append(char *buf, size_t cap, size_t *n, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void append(char *buf, size_t cap, size_t *n, const char *fmt, ...) {
  if (*n >= cap - 1) return;
  va_list ap;
  va_start(ap, fmt);
  int k = vsnprintf(buf + *n, cap - *n, fmt, ap);
  va_end(ap);
  if (k > 0) *n = *n + (size_t)k < cap - 1 ? *n + (size_t)k : cap - 1;
}

static void describe_state(char *buf, size_t cap, size_t *n, const DstCommState *st) {
  if (!st->waiting) {
    append(buf, cap, n, "not waiting in dst_comm");
    return;
  }
  append(buf, cap, n, "waiting in %s #%lld on group '%.*s'", st->wait_op, (long long)st->wait_seq,
         (int)sizeof st->wait_group, st->wait_group);
  if (st->wait_label[0])
    append(buf, cap, n, " ['%.*s']", (int)sizeof st->wait_label, st->wait_label);
}

/* Prints why r did not complete and ends the job. */
static _Noreturn void watchdog_fire(const DstCommReq *r, double waited) {
  DstComm *c = r->comm;
  /* The way out ends every watchdog message, however long the rest. */
  static const char hint[] = "; set DST_COMM_TIMEOUT=SECONDS to wait longer, 0 to wait forever";
  char msg[4096 + sizeof hint];
  const size_t body = 4096;
  size_t n = 0;
  bool p2p = r->peer >= 0;
  if (p2p)
    append(msg, body, &n, "comm watchdog: %s %s rank %d (p2p #%llu)", r->op,
           strcmp(r->op, "send") == 0 ? "to" : "from", r->peer, (unsigned long long)r->seq);
  else
    append(msg, body, &n, "comm watchdog: %s #%llu", r->op, (unsigned long long)r->seq);
  if (r->label) append(msg, body, &n, " ['%s']", r->label);
  append(msg, body, &n,
         " on group '%s' (%d ranks, this is rank %d) did not complete in %.1f s", c->name, c->size,
         c->rank, waited);
  /* Ask the members (or the peer) where they are. */
  int nq = p2p ? 1 : c->size - 1;
  if (g_be->query && nq > 0) {
    int *who = dst_malloc(sizeof(int) * (size_t)nq, DST_MEM_OTHER, "watchdog");
    int *grank = dst_malloc(sizeof(int) * (size_t)nq, DST_MEM_OTHER, "watchdog");
    DstCommState *st = dst_calloc((size_t)nq, sizeof *st, DST_MEM_OTHER, "watchdog");
    bool *got = dst_calloc((size_t)nq, sizeof *got, DST_MEM_OTHER, "watchdog");
    int k = 0;
    for (int i = 0; i < c->size && k < nq; i++) {
      if (i == c->rank || (p2p && i != r->peer)) continue;
      grank[k] = i;
      who[k++] = c->world_ranks[i];
    }
    double grace = g_timeout * 0.25;
    grace = grace < 0.3 ? 0.3 : grace > 2.0 ? 2.0 : grace;
    g_be->query(who, nq, c->id, grace, st, got);
    int late = 0, shown = 0;
    for (int i = 0; i < nq; i++) {
      bool arrived = got[i] && (p2p ? false : st[i].issued > (int64_t)r->seq);
      if (arrived) continue;
      late++;
      if (shown == 8) continue;
      const char *lead = late > 1 ? "," : p2p ? "; peer" : "; not arrived:";
      append(msg, body, &n, "%s rank %d (world %d): ", lead, grank[i], who[i]);
      shown++;
      if (!got[i]) {
        append(msg, body, &n, "no reply (computing outside dst_comm, hung, or dead)");
        continue;
      }
      if (!p2p)
        append(msg, body, &n, "issued %lld collectives on '%s', ", (long long)st[i].issued,
               c->name);
      describe_state(msg, body, &n, &st[i]);
    }
    if (late > shown) append(msg, body, &n, ", and %d more", late - shown);
    if (!p2p && late == 0)
      append(msg, body, &n, "; every rank has issued it (stuck inside the backend)");
  }
  append(msg, sizeof msg, &n, "%s", hint);
  dst_comm_abort(DST_EXIT_INTERNAL, msg);
}

static void sleep_us(long us) {
  struct timespec ts = {0, us * 1000L};
  nanosleep(&ts, NULL);
}

static bool test_one(DstCommReq *r) {
  if (!r->active) return true;
  DST_CHECK(g_be, "a %s request is still pending after dst_comm_finalize", r->op);
  if (!g_be->test(r)) return false;
  r->active = 0;
  g_pending--;
  return true;
}

bool dst_comm_test(DstCommReq *r) {
  if (!r->active) return true;
  bool done = test_one(r);
  if (!done && g_be->serve) g_be->serve();
  return done;
}

/* Polls until r[0..n) are complete: spins first (latency), then yields the
 * core (oversubscribed ranks), then naps 50 us per round once the wait is
 * long (a peer still computing). Every 16 rounds it serves watchdog
 * queries and checks the clock. */
void dst_comm_wait_all(DstCommReq *r, int n) {
  int i = 0;
  while (i < n && test_one(&r[i])) i++;
  if (i == n) return;
  const DstCommReq *outer = g_waiting;
  double t0 = dst_now_sec();
  unsigned long it = 0;
  for (;;) {
    while (i < n && test_one(&r[i])) i++;
    if (i == n) break;
    g_waiting = &r[i];
    it++;
    if ((it & 15) == 0) {
      if (g_be->serve) g_be->serve();
      double waited = dst_now_sec() - t0;
      if (g_timeout > 0 && waited > g_timeout) watchdog_fire(&r[i], waited);
      if (waited > 0.5) sleep_us(50);
    }
    if (it > 32) sched_yield();
  }
  g_waiting = outer;
}

void dst_comm_wait(DstCommReq *r) { dst_comm_wait_all(r, 1); }

/* ------------------------------------------------------------- job exits */

void dst_comm_exit_all(int status, const char *msg) {
  int rank = g_be ? g_world->rank : 0;
  dst_log_end_progress();
  if (rank == 0 && msg) {
    fprintf(stderr, "%s\n", msg);
  }
  fflush(stdout);
  fflush(stderr);
  if (g_be) g_be->exit_all(status);
  exit(status);
}

void dst_comm_abort(int status, const char *msg) {
  char line[4400];
  int rank = dst_log_rank();
  if (rank >= 0)
    snprintf(line, sizeof line, "[rank %d] error: %s\n", rank, msg);
  else
    snprintf(line, sizeof line, "error: %s\n", msg);
  dst_log_end_progress();
  fputs(line, stderr);
  fflush(stdout);
  fflush(stderr);
  if (g_be) g_be->abort(status);
  exit(status);
}
