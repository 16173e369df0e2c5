/* dst_comm_nccl.h: what the NCCL backend of dst_comm adds to dst_comm.h
 * (library dst_runtime_cuda).
 *
 * Linking dst_runtime_cuda makes the backend available; DST_COMM_BACKEND=nccl
 * selects it in dst_comm_init, which then also picks this rank's CUDA device
 * (its rank on the node modulo the node's device count) and makes it
 * current. Buffers passed to dst_comm are device pointers, or for an
 * operation all of whose buffers are host memory, host pointers (it runs on
 * MPI over the same group). Every operation on device memory
 * runs on one CUDA stream, in issue order, and completes when the event
 * recorded after it does; dst_comm_wait/test poll that event.
 */
#ifndef DST_COMM_NCCL_H
#define DST_COMM_NCCL_H

#include <cuda_runtime_api.h>

#include "dst_comm.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The communication stream. Work enqueued on it after this call runs after
 * every operation issued so far (held-back sends/recvs are started first).
 * Needs the NCCL backend running (after dst_comm_init). */
cudaStream_t dst_comm_nccl_stream(void);

/* The event recorded after r's operation, for cudaStreamWaitEvent on a
 * compute stream. r must be active (issued on the NCCL backend, not yet
 * completed by a wait or test); the event is reused once r completes. */
cudaEvent_t dst_comm_nccl_event(const DstCommReq *r);

/* The CUDA device of this rank. */
int dst_comm_nccl_device(void);

#ifdef __cplusplus
}
#endif
#endif /* DST_COMM_NCCL_H */
