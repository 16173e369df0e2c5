/* dst_comm_impl.h: the backend interface behind dst_comm.h (internal).
 *
 * The front end (dst_comm.c) validates arguments, numbers operations, and
 * runs the watchdog loop of every wait; a backend only starts operations,
 * tests them, and (optionally) answers watchdog queries. Each backend fills
 * one DstCommBackend, chosen in dst_comm_init. local and mpi live in
 * libdst; nccl lives in dst_runtime_cuda (runtime/cuda), which registers it
 * with dst_comm_register_backend when linked, so libdst itself never
 * refers to CUDA or NCCL.
 */
#ifndef DST_COMM_IMPL_H
#define DST_COMM_IMPL_H

#include "dst.h"
#include "dst_comm.h"

#define DST_COMM_NAME_LEN 32

typedef enum {
  DST_OP_ALLREDUCE,
  DST_OP_REDUCE_SCATTER,
  DST_OP_ALLGATHER,
  DST_OP_BROADCAST,
  DST_OP_ALLTOALL,
  DST_OP_BARRIER,
  DST_OP_SEND,
  DST_OP_RECV,
  DST_OP_NKIND
} DstOpKind;

/* One operation as the front end hands it to a backend. */
typedef struct {
  DstOpKind kind;
  const void *send; /* NULL for in place (see dst_comm.h per op) */
  void *recv;       /* broadcast/recv: the buffer; send: NULL */
  size_t count;
  DstCommDtype dt;
  DstCommOp op;
  int root; /* broadcast root, send/recv peer; else -1 */
  int tag;  /* send/recv */
} DstOpArgs;

struct DstComm {
  const struct DstCommBackend *be;
  char name[DST_COMM_NAME_LEN];
  int rank, size;
  int id;                             /* same on every member, unique among a rank's comms */
  uint64_t coll_seq;                  /* collectives issued */
  uint64_t p2p_seq;                   /* sends/recvs issued by this rank */
  int *world_ranks;                   /* [size] */
  struct DstComm *next;               /* registry of live communicators */
  _Alignas(8) unsigned char impl[16]; /* mpi: MPI_Comm; nccl: MPI_Comm, ncclComm_t */
};

/* What one rank reports about itself to a watchdog query. */
typedef struct {
  int64_t issued; /* collectives issued on the asked comm (-1: unknown comm) */
  int64_t p2p_issued;
  int32_t waiting; /* 1 if inside a dst_comm wait */
  int32_t wait_comm_id;
  int64_t wait_seq;
  char wait_op[16];
  char wait_group[DST_COMM_NAME_LEN];
  char wait_label[48];
} DstCommState;

typedef struct DstCommBackend {
  DstCommBackendKind kind;
  const char *name;
  bool reduces_16bit; /* BF16/F16 may be reduced (not only moved) */
  /* Creates the world communicator (rank, size, world_ranks, impl). */
  void (*init_world)(int *argc, char ***argv, DstComm *world);
  void (*finalize)(void);
  /* Fills out (rank, size, world_ranks, impl) for the group of this rank;
   * out->id must become the same on every member (see dst_comm.c). */
  void (*split)(DstComm *parent, int color, int key, DstComm *out);
  /* Max of v over the members of c (blocking; used at creation only). */
  int (*agree_max)(DstComm *c, int v);
  void (*free_comm)(DstComm *c);
  /* Starts a; fills r->impl. */
  void (*start)(DstComm *c, const DstOpArgs *a, DstCommReq *r);
  /* True when r is complete (frees the backend handle). */
  bool (*test)(DstCommReq *r);
  /* Answers pending watchdog queries of other ranks (may be NULL). */
  void (*serve)(void);
  /* Asks the ranks in world_ranks[0..n) about comm_id; waits up to grace
   * seconds while serving; got[i] tells whether st[i] was filled. */
  void (*query)(const int *world_ranks, int n, int comm_id, double grace, DstCommState *st,
                bool *got);
  /* Ends the whole job at once (MPI_Abort). Does not return. */
  void (*abort)(int status);
  /* Shuts down so that every rank's output is flushed (all ranks call it),
   * then exits with status. Does not return. */
  void (*exit_all)(int status);
} DstCommBackend;

/* For backends: what this rank would answer to a query about comm_id. */
void dst_comm_self_state(int comm_id, DstCommState *st);

/* Makes a backend that lives outside libdst selectable by dst_comm_init
 * (only DST_COMM_BACKEND_NCCL for now). Before dst_comm_init; dst_comm_nccl.c
 * calls it from a constructor. */
void dst_comm_register_backend(const DstCommBackend *be);

#ifdef DST_HAVE_MPI
/* The NCCL backend reuses its world, groups, watchdog channel and exits. */
extern const DstCommBackend dst_comm_mpi_backend;
#endif

#endif /* DST_COMM_IMPL_H */
