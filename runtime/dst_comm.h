/* dst_comm.h: communication of libdst: one collective interface over
 * interchangeable backends, the device mesh, and the watchdog.
 *
 * Backends (chosen once, in dst_comm_init):
 *  - local: a job of one process that was not started by a launcher. No MPI
 *    call is made at all (so a plain ./prog works even where MPI cannot start);
 *    every collective is a copy.
 *  - mpi:   started by mpirun/srun (detected from the launcher's environment),
 *    or forced with DST_COMM_BACKEND=mpi. Needs libdst built with
 *    DST_HAVE_MPI; all MPI calls go through one check macro that names the
 *    file:line of the failing call (exit status 70).
 *  - nccl:  forced with DST_COMM_BACKEND=nccl; one rank per GPU, started
 *    through MPI like mpi. Buffers are device pointers; operations run on
 *    one CUDA stream (runtime/cuda/dst_comm_nccl.h). Lives in the library
 *    dst_runtime_cuda, which registers it when linked; a program built
 *    without it fails with a clear error.
 *
 * Semantics common to every collective:
 *  - Every rank of the communicator issues the same collectives in the same
 *    order (the compiler guarantees this). Each collective issued on a
 *    communicator gets the next sequence number of that communicator
 *    (0, 1, 2, ...), the same on every member; messages quote it as
 *    "allreduce #12 on group 'dp'".
 *  - The i-variants start the operation and return a DstCommReq; buffers
 *    must stay untouched until dst_comm_wait (or a true dst_comm_test).
 *    The blocking variants are the i-variant followed by dst_comm_wait, so
 *    every wait in the program is watched.
 *  - Counts are elements (not bytes) and must fit in an int.
 *  - "In place" is expressed by aliasing, as documented per function.
 *
 * Watchdog: a wait polls its request; past the timeout, counted from the
 * start of the wait (DST_COMM_TIMEOUT seconds in the environment, or
 * dst_comm_set_timeout; default 300; 0 turns it off), the rank asks the
 * other members of the group what they are doing (a side channel that
 * every waiting rank serves while it polls), prints one
 * "error: comm watchdog: ..." line naming the collective, its group, its
 * sequence number and the ranks that have not arrived, and ending with how
 * to change the timeout, then aborts the whole job with status 70.
 *
 * A rank that dies (a signal, exit without dst_comm_finalize, a non-zero
 * exit status) ends the whole job under Open MPI's mpirun: mpirun sees its
 * child go and sends SIGTERM (then SIGKILL) to every other rank. Measured
 * on Open MPI 4.1.4: the survivors are gone 1.3-1.6 s after a SIGKILL,
 * mpirun exits 137 (1 for an exit(1)). Waits poll (MPI_Test, sched_yield,
 * 50 us naps), so nothing blocks that signal. Under launchers that do not
 * do this (srun without --kill-on-bad-exit) the watchdog ends the others.
 * The training driver catches SIGTERM to stop after the current step; a
 * survivor cannot finish it without the dead rank, so there it is the
 * SIGKILL that follows that ends it (about 4 s after the death).
 *
 * Threads: call dst_comm from the main thread only (MPI_THREAD_FUNNELED).
 *
 * Errors: misuse (bad count, root or peer out of range, a reduction of a
 * 2-byte type outside nccl) is an internal error (status 70, file:line); a
 * mesh that does not match the number of launched ranks is a user error
 * (status 1, printed once).
 */
#ifndef DST_COMM_H
#define DST_COMM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ----------------------------------------------------------- dst_comm.c */

typedef enum {
  DST_COMM_F32,
  DST_COMM_F64,
  DST_COMM_I32,
  DST_COMM_U8,
  DST_COMM_BF16, /* 2-byte payloads: reduced on nccl only, elsewhere moved */
  DST_COMM_F16,
  DST_COMM_NDTYPE
} DstCommDtype;

typedef enum { DST_COMM_SUM, DST_COMM_MAX, DST_COMM_MIN, DST_COMM_NOP } DstCommOp;

typedef enum {
  DST_COMM_BACKEND_LOCAL,
  DST_COMM_BACKEND_MPI,
  DST_COMM_BACKEND_NCCL
} DstCommBackendKind;

/* A communicator: the world, or a group made by dst_comm_split or the mesh.
 * Opaque; valid until dst_comm_free or dst_comm_finalize. */
typedef struct DstComm DstComm;

/* An operation in flight. A plain value (arrays of them need no allocation);
 * comm == NULL or active == 0 means "nothing pending" and waits return at
 * once. The fields are read-only for the caller. */
typedef struct DstCommReq {
  DstComm *comm;     /* communicator it runs on */
  const char *op;    /* "allreduce", "send", ... (static string) */
  const char *label; /* the caller's label (dst_comm_set_label) or NULL */
  uint64_t seq;      /* collectives: sequence number on comm; p2p: this rank's p2p count */
  int peer;          /* send/recv: peer rank in comm; otherwise -1 */
  int active;        /* 1 while pending */
  double t_start;    /* dst_now_sec() when issued */
  _Alignas(8) unsigned char impl[32]; /* the backend's handle (MPI_Request, ...) */
} DstCommReq;

/* Starts communication. Reads the launcher's environment (argc/argv are
 * passed on to MPI_Init and may be NULL). Sets the log prefix to the world
 * rank when the world has more than one rank. Reads DST_COMM_TIMEOUT and
 * DST_COMM_BACKEND ("local", "mpi" or "nccl"). Once per process: MPI cannot
 * be started again after dst_comm_finalize. Under Open MPI it also selects
 * libnbc's all-reduce algorithm 3 unless the user set one (see
 * dst_comm_mpi.c: the default is 2x slower for in-place or < 4 ranks). */
void dst_comm_init(int *argc, char ***argv);
/* Frees every communicator and shuts the backend down (MPI_Finalize).
 * Requests still pending are an internal error. */
void dst_comm_finalize(void);
bool dst_comm_initialized(void);
DstCommBackendKind dst_comm_backend(void);
const char *dst_comm_backend_name(void);

/* The world communicator (name "world"), and shorthands for its rank/size. */
DstComm *dst_comm_world(void);
int dst_comm_world_rank(void);
int dst_comm_world_size(void);

int dst_comm_rank(const DstComm *c);
int dst_comm_size(const DstComm *c);
/* The group's name as given at creation ("world", "dp", ...). */
const char *dst_comm_name(const DstComm *c);
/* World rank of rank r of c. */
int dst_comm_world_rank_of(const DstComm *c, int r);
/* Collectives issued so far on c (the next sequence number). */
uint64_t dst_comm_seq(const DstComm *c);

/* Collective over parent: ranks passing the same color form a new group,
 * ordered by key (ties by parent rank); name (<= 31 chars) is used in
 * messages. Every rank of parent must call it. */
DstComm *dst_comm_split(DstComm *parent, int color, int key, const char *name);
/* Frees a communicator from dst_comm_split (not the world). Collective in
 * MPI terms: every member must call it. NULL is a no-op. */
void dst_comm_free(DstComm *c);

/* Watchdog timeout in seconds for every wait (0 = none). */
void dst_comm_set_timeout(double seconds);
double dst_comm_timeout(void);
/* A label attached to the next operation issued (then cleared), shown by
 * the watchdog, e.g. "grads.h.3". The string must outlive the operation. */
void dst_comm_set_label(const char *label);

/* Waits for r (no-op if not active), polling under the watchdog. */
void dst_comm_wait(DstCommReq *r);
/* Waits for all n requests. */
void dst_comm_wait_all(DstCommReq *r, int n);
/* True when r has completed (it is then inactive); never blocks. */
bool dst_comm_test(DstCommReq *r);

/* Bytes of one element of dt. */
size_t dst_comm_dtype_size(DstCommDtype dt);

/* recv[i] = op over ranks of send[i], i < count. In place when
 * send == recv. Reductions need F32, F64, I32 or U8 (nccl: BF16, F16 too). */
DstCommReq dst_comm_iallreduce(DstComm *c, const void *send, void *recv, size_t count,
                               DstCommDtype dt, DstCommOp op);
void dst_comm_allreduce(DstComm *c, const void *send, void *recv, size_t count, DstCommDtype dt,
                        DstCommOp op);

/* send holds size*count elements; rank r receives into recv[0..count) the
 * reduction of block r (send[r*count .. (r+1)*count)) over ranks. Blocks are
 * equal: a length that does not divide is padded by the caller. In place
 * when send == recv (recv must then hold size*count; the result is in its
 * first count elements). */
DstCommReq dst_comm_ireduce_scatter(DstComm *c, const void *send, void *recv, size_t count,
                                    DstCommDtype dt, DstCommOp op);
void dst_comm_reduce_scatter(DstComm *c, const void *send, void *recv, size_t count,
                             DstCommDtype dt, DstCommOp op);

/* recv (size*count elements) receives the count elements of send of every
 * rank, rank r's at recv[r*count]. In place when send == recv + rank*count
 * (in elements). */
DstCommReq dst_comm_iallgather(DstComm *c, const void *send, void *recv, size_t count,
                               DstCommDtype dt);
void dst_comm_allgather(DstComm *c, const void *send, void *recv, size_t count, DstCommDtype dt);

/* buf on every rank receives buf of rank root. */
DstCommReq dst_comm_ibroadcast(DstComm *c, void *buf, size_t count, DstCommDtype dt, int root);
void dst_comm_broadcast(DstComm *c, void *buf, size_t count, DstCommDtype dt, int root);

/* Block j of send (count elements at send[j*count]) goes to rank j, which
 * stores it at recv[rank*count]. send and recv (size*count each) must not
 * overlap. */
DstCommReq dst_comm_ialltoall(DstComm *c, const void *send, void *recv, size_t count,
                              DstCommDtype dt);
void dst_comm_alltoall(DstComm *c, const void *send, void *recv, size_t count, DstCommDtype dt);

DstCommReq dst_comm_ibarrier(DstComm *c);
void dst_comm_barrier(DstComm *c);

/* Point to point with rank `peer` of c; tag in [0, 32767]. Messages between
 * a pair with the same tag arrive in order. Not counted as collectives.
 * nccl ignores tags: messages between a pair match in issue order. */
DstCommReq dst_comm_isend(DstComm *c, const void *buf, size_t count, DstCommDtype dt, int peer,
                          int tag);
DstCommReq dst_comm_irecv(DstComm *c, void *buf, size_t count, DstCommDtype dt, int peer, int tag);
void dst_comm_send(DstComm *c, const void *buf, size_t count, DstCommDtype dt, int peer, int tag);
void dst_comm_recv(DstComm *c, void *buf, size_t count, DstCommDtype dt, int peer, int tag);

/* Ends the whole job with `status`: rank 0 of the world prints msg (one
 * line, no rank prefix, a newline is added) to stderr, every rank calls it
 * (collective: for errors every rank detects by itself, like a wrong world
 * size), the backend shuts down cleanly so the line is never lost, and every
 * rank exits with status. */
_Noreturn void dst_comm_exit_all(int status, const char *msg);
/* Ends the whole job at once from one rank (MPI_Abort), after printing msg
 * as an "error: " line with the rank prefix. */
_Noreturn void dst_comm_abort(int status, const char *msg);

/* ----------------------------------------------------------- dst_mesh.c */

/* Mesh axes. The order in arrays is dp, tp, pp, ep; the rank layout is
 * different (below). */
typedef enum { DST_AXIS_DP, DST_AXIS_TP, DST_AXIS_PP, DST_AXIS_EP, DST_AXIS_COUNT } DstAxis;

/* Rank layout (Megatron-LM's order): tp varies fastest, then ep, then dp,
 * and pp slowest:
 *   rank = tp + TP * (ep + EP * (dp + DP * pp))
 * so tensor-parallel groups are consecutive ranks (one node, the fastest
 * links), expert groups next, and pipeline stages are farthest apart (they
 * exchange the least). */
typedef struct {
  int degree[DST_AXIS_COUNT]; /* each >= 1; product = world size */
  int coord[DST_AXIS_COUNT];  /* this rank's coordinates */
  int rank, size;             /* world */
  DstComm *world;
  /* Per axis: the ranks that share every other coordinate, ordered by the
   * coordinate on this axis (so dst_comm_rank(axis[a]) == coord[a]). */
  DstComm *axis[DST_AXIS_COUNT];
} DstMesh;

/* "dp", "tp", "pp", "ep". */
const char *dst_axis_name(DstAxis a);
/* Pure layout functions (no communication; usable by the planner). */
int dst_mesh_rank_from_coords(const int degree[DST_AXIS_COUNT], const int coord[DST_AXIS_COUNT]);
void dst_mesh_coords_from_rank(const int degree[DST_AXIS_COUNT], int rank,
                               int coord[DST_AXIS_COUNT]);

/* Builds the mesh over the world (dst_comm_init first); collective over the
 * world. Degrees below 1 are a user error. When the world size differs from
 * the product of the degrees, every rank exits at once with status 1 and
 * rank 0 prints e.g.
 *   error: the plan needs 4 ranks (dp=2 x tp=2) but 3 were launched (mpirun -np 3)
 */
DstMesh *dst_mesh_init(const int degree[DST_AXIS_COUNT]);
/* Frees the axis communicators (collective) and the mesh. */
void dst_mesh_free(DstMesh *m);
DstComm *dst_mesh_comm(const DstMesh *m, DstAxis a);
/* A group over several axes (bit 1<<axis set in mask): the ranks sharing
 * every coordinate outside mask, e.g. dp x ep for ZeRO over non-expert
 * weights. Collective over the world; the caller frees it. */
DstComm *dst_mesh_group(DstMesh *m, unsigned mask, const char *name);

#ifdef __cplusplus
}
#endif
#endif /* DST_COMM_H */
