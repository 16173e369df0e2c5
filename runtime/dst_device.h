/* dst_device.h: where a generated program's slabs live, and the few
 * operations the training driver (dst_train.c) runs on them itself: the
 * optimizer, gradient norms and scaling, copies to and from the host.
 *
 * The CPU device is the default. A CUDA program (dstc build --backend cuda)
 * installs the CUDA device of libdst_runtime_cuda with dst_set_device
 * before dst_train_main; its slabs are device memory, its operations run on
 * the stream the generated code launches on, and download synchronizes.
 * Allocations are accounted in the memory categories of dst.h either way,
 * so a run's measured peak is compared with the plan on both. */
#ifndef DST_DEVICE_H
#define DST_DEVICE_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "dst.h"
#include "dst_comm.h"
#include "dst_model.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct DstDevice {
  const char *name;
  bool host; /* slabs are host memory (the driver may read them directly) */
  /* Sets up the device for r (streams, library handles); NULL: nothing. */
  void (*init)(DstRun *r, int local_rank);
  /* After the slabs are allocated (r->work holds the device's planned
   * buffers, DstModel.device_work_offset); NULL: nothing. */
  void (*bind)(DstRun *r);
  void (*finish)(DstRun *r);
  void *(*alloc)(size_t bytes, DstMemCat cat, const char *tag); /* zeroed */
  void (*free)(void *p, size_t bytes, DstMemCat cat);
  void (*upload)(DstRun *r, void *dev, const void *host, size_t n);
  void (*download)(DstRun *r, void *host, const void *dev, size_t n); /* complete on return */
  void (*copy)(DstRun *r, void *to, const void *from, size_t n);       /* device to device, in order */
  void (*adamw)(DstRun *r, float *param, const float *grad, float *m, float *v, int64_t n, float lr,
                float beta1, float beta2, float eps, float wd, int64_t step);
  void (*sgd)(DstRun *r, float *param, const float *grad, float *mom, int64_t n, float lr, float momentum,
              float wd, bool nesterov);
  double (*norm_sq)(DstRun *r, const float *x, int64_t n); /* sum of squares, in double */
  void (*scale)(DstRun *r, float *x, float s, int64_t n);
  void (*add)(DstRun *r, float *y, const float *x, int64_t n); /* y += x */
  /* Before a collective reads or writes buffers the generated code
   * writes: the communication must see that work done. NULL: nothing. */
  void (*comm_fence)(DstRun *r);
  /* The device's later work uses the result of the collective q (which
   * stays pending: the caller still waits for it before reusing its
   * buffers). NULL: the host waits for q. */
  void (*comm_join)(DstRun *r, DstCommReq *q);
  /* After a step: an error the device recorded (a bad token id), as
   * r->error and r->error_pos. NULL: none to poll. */
  void (*poll_error)(DstRun *r);
} DstDevice;

/* The CUDA device (libdst_runtime_cuda; dst_cuda_main in dst_model.h
 * installs it). */
const DstDevice *dst_device_cuda(void);

/* Chooses the device of dst_train_main (call before it). */
void dst_set_device(const DstDevice *dev);
const DstDevice *dst_device(void);

#ifdef __cplusplus
}
#endif

#endif
