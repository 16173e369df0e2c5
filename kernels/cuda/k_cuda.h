/* k_cuda.h: the CUDA kernel library that generated dst programs call on the
 * GPU backend. Every kernel is the twin of the CPU kernel of the same name
 * in kernels/cpu/k_cpu.h (k_foo -> kc_foo) and is tested against it
 * (tests/cuda).
 *
 * Conventions (those of k_cpu.h, plus the GPU's own):
 *  - Tensors are contiguous row-major fp32 in device memory; token ids are
 *    int32_t. bf16/fp16 buffers are passed as uint16_t bit patterns so this
 *    header stays plain C. Sizes are int64_t element counts. Outputs must
 *    not alias inputs unless a comment says so.
 *  - Forward kernels OVERWRITE their outputs; backward kernels ACCUMULATE
 *    (+=) into every gradient. A gradient documented as optional may be
 *    NULL and is then skipped.
 *  - Every call is asynchronous on the given stream and never synchronizes
 *    the host. Results that the CPU twin returns (bad-id positions, the
 *    mean loss, the gradient norm) are written to device memory instead,
 *    through an optional pointer.
 *  - Deterministic: no float atomics anywhere; every output element is
 *    produced by one thread with a fixed summation order, so two runs on
 *    the same GPU model give the same bits. (Integer atomicMin is used
 *    for bad-id positions; min is order-independent.)
 *  - Kernels that need transient device memory take a `scratch` pointer
 *    whose size a *_scratch_bytes() function gives (the memory planner
 *    accounts for it); scratch must not be shared by kernels that may run
 *    concurrently on different streams.
 *  - Errors of the CUDA API (bad pointers, launch failures) go through
 *    KC_CHECK: by default "internal error: file:line: ..." on stderr and
 *    exit status 70 (dst's internal-error status). Shape errors that the
 *    CPU twin reports are returned as KC_ERR_SHAPE with nothing launched.
 *  - Sizes of zero launch nothing.
 */
#ifndef DST_K_CUDA_H
#define DST_K_CUDA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cuda_runtime_api.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Same values as k_cpu.h's K_IDS_VALID and K_OK/K_ERR_* . */
#define KC_IDS_VALID ((int64_t)-1)
enum { KC_OK = 0, KC_ERR_NOMEM = 1, KC_ERR_SHAPE = 2, KC_ERR_UNSUPPORTED = 3 };

/* ------------------------------------------------------------- errors */

/* Called when a checked CUDA/cuBLAS call fails: the call's text, its
 * location and the library's message. It should not return (exit,
 * longjmp); if it does, the process aborts. */
typedef void (*KcErrorHandler)(const char *file, int line, const char *expr, const char *msg);
/* Replaces the handler (NULL restores the default: print, exit 70). */
void kc_set_error_handler(KcErrorHandler handler);
/* The check behind KC_CHECK; does nothing when err == cudaSuccess. */
void kc_check_cuda(cudaError_t err, const char *file, int line, const char *expr);

/* KC_CHECK(call): every CUDA runtime call (and, in the library's C++
 * sources, every cuBLAS/cuBLASLt call) goes through this. */
#ifdef __cplusplus
}
static inline void kc_check_(cudaError_t err, const char *file, int line, const char *expr) {
  kc_check_cuda(err, file, line, expr);
}
#define KC_CHECK(call) kc_check_((call), __FILE__, __LINE__, #call)
extern "C" {
#else
#define KC_CHECK(call) kc_check_cuda((call), __FILE__, __LINE__, #call)
#endif

/* -------------------------------------------------------------- matmul */

/* A cuBLASLt handle with its workspace and a cache of chosen algorithms.
 * A KcBlas must not be used by two streams at once (the workspace is
 * shared); create one per concurrent stream. */
typedef struct KcBlas KcBlas;

/* Workspace size to give kc_blas_create: 32 MiB, what cuBLAS recommends
 * for Hopper (and enough for Ampere). */
size_t kc_blas_workspace_bytes(void);
/* workspace: device memory owned by the caller (so the memory plan sees
 * it), or NULL with bytes 0 (fewer algorithms). Uses the current device. */
KcBlas *kc_blas_create(void *workspace, size_t workspace_bytes);
void kc_blas_destroy(KcBlas *blas);

typedef enum { KC_DT_F32 = 0, KC_DT_BF16 = 1, KC_DT_F16 = 2 } KcDtype;

/* Arithmetic of a GEMM. With fp32 operands: F32 is full fp32 (CUDA cores),
 * TF32 / BF16 / F16 let the tensor cores round the inputs to that type
 * (fp32 accumulate). With 16-bit operands the inputs are already 16-bit and
 * F32 or the operands' own type mean the same thing (fp32 accumulate). */
typedef enum {
  KC_COMPUTE_F32 = 0,
  KC_COMPUTE_TF32 = 1,
  KC_COMPUTE_BF16 = 2,
  KC_COMPUTE_F16 = 3
} KcCompute;

/* Epilogue applied to alpha*op(a).op(b) + beta*out: bias (N) added to every
 * row, then optionally GELU (tanh approximation). */
typedef enum {
  KC_EPI_NONE = 0,
  KC_EPI_BIAS = 1,
  KC_EPI_GELU = 2,
  KC_EPI_BIAS_GELU = 3
} KcEpilogue;

/* out (M,N) = op(a) (M,K) . op(b) (K,N) + beta * out, as k_matmul: a is
 * stored (M,K), or (K,M) when trans_a; b (K,N), or (N,K) when trans_b.
 * beta = 0 ignores out's old contents. Returns KC_OK, or
 * KC_ERR_UNSUPPORTED when cuBLASLt has no algorithm for the case. */
int kc_matmul(KcBlas *blas, float *out, const float *a, const float *b, int64_t M, int64_t K,
              int64_t N, bool trans_a, bool trans_b, float beta, KcCompute compute,
              cudaStream_t stream);

/* As k_matmul_batched: operand i at a + i*stride_a etc.; stride 0
 * broadcasts an input; stride_out = 0 sums all products into one out
 * (beta applied once), in batch order. */
int kc_matmul_batched(KcBlas *blas, int64_t batch, float *out, const float *a, const float *b,
                      int64_t M, int64_t K, int64_t N, bool trans_a, bool trans_b, float beta,
                      int64_t stride_out, int64_t stride_a, int64_t stride_b, KcCompute compute,
                      cudaStream_t stream);

/* As k_matmul_backward: da (M,K) += dout.b^T, db (K,N) += a^T.dout; both
 * optional. */
int kc_matmul_backward(KcBlas *blas, float *da, float *db, const float *dout, const float *a,
                       const float *b, int64_t M, int64_t K, int64_t N, KcCompute compute,
                       cudaStream_t stream);

/* The general form, for 16-bit operands and epilogues. */
typedef struct {
  void *out;           /* (M,N) of out_type; also read when beta != 0 */
  const void *a, *b;   /* both of ab_type, stored as in kc_matmul */
  KcDtype out_type;    /* F32, or the operands' 16-bit type */
  KcDtype ab_type;     /* F32, BF16 or F16 */
  int64_t M, K, N;
  bool trans_a, trans_b;
  float alpha, beta;   /* out = alpha*op(a).op(b) + beta*out, then epilogue */
  int64_t batch;       /* <= 1: a single GEMM */
  int64_t stride_out, stride_a, stride_b; /* elements; see kc_matmul_batched */
  KcCompute compute;
  KcEpilogue epilogue; /* not with a reducing batch (stride_out 0) */
  const void *bias;    /* (N) of out_type, for the BIAS epilogues */
  void *pre_gelu;      /* optional, GELU epilogues: (M,N) of out_type (batched
                          with stride_out) receiving the value before GELU;
                          needs N % 8 == 0 (and stride_out % 8 == 0) */
} KcMatmul;
/* Returns KC_OK, KC_ERR_SHAPE (negative sizes, misuse of the fields) or
 * KC_ERR_UNSUPPORTED (a type combination cuBLASLt does not offer). */
int kc_matmul_ex(KcBlas *blas, const KcMatmul *p, cudaStream_t stream);

/* --------------------------------------------------------- elementwise */

void kc_fill(float *x, float value, int64_t n, cudaStream_t stream);
void kc_add(float *out, const float *a, const float *b, int64_t n, cudaStream_t stream); /* may alias */
void kc_scale(float *out, const float *x, float s, int64_t n, cudaStream_t stream); /* may alias */
void kc_axpy(float *y, float alpha, const float *x, int64_t n, cudaStream_t stream);

/* GELU, tanh approximation; SiLU; ReLU (derivative 0 at 0); SwiGLU
 * out = silu(a)*b with da, db optional. */
void kc_gelu_forward(float *out, const float *x, int64_t n, cudaStream_t stream);
void kc_gelu_backward(float *dx, const float *x, const float *dout, int64_t n, cudaStream_t stream);
void kc_silu_forward(float *out, const float *x, int64_t n, cudaStream_t stream);
void kc_silu_backward(float *dx, const float *x, const float *dout, int64_t n, cudaStream_t stream);
void kc_relu_forward(float *out, const float *x, int64_t n, cudaStream_t stream);
void kc_relu_backward(float *dx, const float *x, const float *dout, int64_t n, cudaStream_t stream);
void kc_swiglu_forward(float *out, const float *a, const float *b, int64_t n, cudaStream_t stream);
void kc_swiglu_backward(float *da, float *db, const float *dout, const float *a, const float *b,
                        int64_t n, cudaStream_t stream);

/* ------------------------------------------------- counter-based random */

/* Same streams as the CPU twins (k_rng_hash of (seed, offset+i)): uniform
 * fills and dropout masks are bit-identical to the CPU's; normal fills
 * agree to the last float bit or so (device log/cos). */
void kc_fill_uniform(float *x, int64_t n, float lo, float hi, uint64_t seed, uint64_t offset,
                     cudaStream_t stream);
void kc_fill_normal(float *x, int64_t n, float mean, float std, uint64_t seed, uint64_t offset,
                    cudaStream_t stream);
void kc_dropout_forward(float *out, const float *x, int64_t n, float p, uint64_t seed,
                        uint64_t offset, cudaStream_t stream);
void kc_dropout_backward(float *dx, const float *dout, int64_t n, float p, uint64_t seed,
                         uint64_t offset, cudaStream_t stream);

/* ------------------------------------------------------- normalization */

/* LayerNorm over the last dim of x (N,C): out = (x-mean)*rstd*w + b; w, b
 * (C) may be NULL; mean, rstd (N) may be NULL. Biased variance. */
void kc_layernorm_forward(float *out, float *mean, float *rstd, const float *x, const float *w,
                          const float *b, int64_t N, int64_t C, float eps, cudaStream_t stream);
/* Scratch for dw/db: a fixed row split, then a fixed-order sum. */
size_t kc_layernorm_backward_scratch_bytes(int64_t N, int64_t C);
/* dx (N,C), dw (C), db (C) += gradients, all optional; scratch is needed
 * when dw or db is given. */
void kc_layernorm_backward(float *dx, float *dw, float *db, const float *dout, const float *x,
                           const float *w, const float *mean, const float *rstd, int64_t N,
                           int64_t C, void *scratch, cudaStream_t stream);

/* RMSNorm: out = x * rstd * w, rstd = 1/sqrt(mean(x^2) + eps). */
void kc_rmsnorm_forward(float *out, float *rstd, const float *x, const float *w, int64_t N,
                        int64_t C, float eps, cudaStream_t stream);
size_t kc_rmsnorm_backward_scratch_bytes(int64_t N, int64_t C);
void kc_rmsnorm_backward(float *dx, float *dw, const float *dout, const float *x, const float *w,
                         const float *rstd, int64_t N, int64_t C, void *scratch,
                         cudaStream_t stream);

/* ---------------------------------------------------------- softmax, CE */

void kc_softmax_forward(float *out, const float *x, int64_t N, int64_t C, cudaStream_t stream);
void kc_softmax_backward(float *dx, const float *dout, const float *out, int64_t N, int64_t C,
                         cudaStream_t stream);

/* Fused softmax + cross-entropy over logits (N,V), targets (N). losses (N)
 * required; mean_loss (one double, optional) = mean of losses; probs (N,V)
 * optional. A bad target gives loss 0. first_bad (one int64, optional)
 * receives KC_IDS_VALID or the first row with a bad target. */
void kc_crossentropy_forward(double *mean_loss, float *losses, float *probs, const float *logits,
                             const int32_t *targets, int64_t N, int64_t V, int64_t *first_bad,
                             cudaStream_t stream);
/* dlogits (N,V) += dloss[n] * (softmax - onehot), recomputing the softmax;
 * bad rows skipped. */
void kc_crossentropy_backward(float *dlogits, const float *logits, const int32_t *targets,
                              const float *dloss, int64_t N, int64_t V, int64_t *first_bad,
                              cudaStream_t stream);

/* ----------------------------------------------------------- attention */

/* Flash-style attention, as k_attention_forward: q (B,Hq,T,D), k, v
 * (B,Hkv,T,D), out (B,Hq,T,D), lse (B,Hq,T). Tiled with an online softmax;
 * the T x T scores are never stored. Returns KC_ERR_SHAPE (nothing
 * launched) when Hq % Hkv != 0 or D > KC_ATTENTION_MAX_D. */
#define KC_ATTENTION_MAX_D 256
int kc_attention_forward(float *out, float *lse, const float *q, const float *k, const float *v,
                         int64_t B, int64_t Hq, int64_t Hkv, int64_t T, int64_t D, bool causal,
                         cudaStream_t stream);
/* Scratch: the row dot(dout, out) (B,Hq,T). */
size_t kc_attention_backward_scratch_bytes(int64_t B, int64_t Hq, int64_t T);
/* dq, dk, dv += gradients (all required). dq is owned per query tile and
 * dk/dv per key tile (summing the group's query heads in order), so no
 * atomics: the probabilities are recomputed once for each. */
int kc_attention_backward(float *dq, float *dk, float *dv, const float *dout, const float *q,
                          const float *k, const float *v, const float *out, const float *lse,
                          int64_t B, int64_t Hq, int64_t Hkv, int64_t T, int64_t D, bool causal,
                          void *scratch, cudaStream_t stream);

/* RoPE on x (B,H,T,D), pair (2i,2i+1) at position t rotated by
 * t*theta^(-2i/D); an odd last element passes through. out may alias x. */
void kc_rope_forward(float *out, const float *x, int64_t B, int64_t H, int64_t T, int64_t D,
                     float theta, cudaStream_t stream);
void kc_rope_backward(float *dx, const float *dout, int64_t B, int64_t H, int64_t T, int64_t D,
                      float theta, cudaStream_t stream);

/* --------------------------------------------------- layout, embedding */

/* out (A,C,B,D) = x (A,B,C,D) with dims 1, 2 swapped; backward += . */
void kc_permute_0213(float *out, const float *x, int64_t A, int64_t B, int64_t C, int64_t D,
                     cudaStream_t stream);
void kc_permute_0213_backward(float *dx, const float *dout, int64_t A, int64_t B, int64_t C,
                              int64_t D, cudaStream_t stream);

/* out (N,C) = table (V,C) rows at ids (N); bad ids give zero rows. */
void kc_embedding_forward(float *out, const int32_t *ids, const float *table, int64_t N,
                          int64_t V, int64_t C, int64_t *first_bad, cudaStream_t stream);
/* dtable (V,C) += dout scattered by ids. Deterministic without atomics:
 * each block owns a range of table rows and walks all ids in increasing n,
 * so every row sums its contributions in increasing n (bit-identical to
 * the CPU twin). Bad ids skipped. */
void kc_embedding_backward(float *dtable, const float *dout, const int32_t *ids, int64_t N,
                           int64_t V, int64_t C, int64_t *first_bad, cudaStream_t stream);

/* ---------------------------------------------------------- reductions */

/* x viewed as (outer, dim, inner), reduced over dim into out (outer,
 * inner), summed in double; max propagates NaN, its backward routes the
 * gradient to the first maximum. */
void kc_reduce_sum_forward(float *out, const float *x, int64_t outer, int64_t dim, int64_t inner,
                           cudaStream_t stream);
void kc_reduce_sum_backward(float *dx, const float *dout, int64_t outer, int64_t dim,
                            int64_t inner, cudaStream_t stream);
void kc_reduce_mean_forward(float *out, const float *x, int64_t outer, int64_t dim, int64_t inner,
                            cudaStream_t stream);
void kc_reduce_mean_backward(float *dx, const float *dout, int64_t outer, int64_t dim,
                             int64_t inner, cudaStream_t stream);
void kc_reduce_max_forward(float *out, const float *x, int64_t outer, int64_t dim, int64_t inner,
                           cudaStream_t stream);
void kc_reduce_max_backward(float *dx, const float *dout, const float *x, int64_t outer,
                            int64_t dim, int64_t inner, cudaStream_t stream);

/* Sum of squares of grad (n) in double, written to *out (device), or added
 * to it when accumulate (to sum several tensors in a fixed order). Two
 * passes: fixed blocks into scratch, then one block in order. */
size_t kc_global_norm_scratch_bytes(void);
void kc_global_norm_sq(double *out, const float *grad, int64_t n, bool accumulate, void *scratch,
                       cudaStream_t stream);
/* *coef = inv_loss_scale * min(1, max_norm / norm), with norm =
 * sqrt(*norm_sq) * inv_loss_scale the unscaled gradient norm (coef =
 * inv_loss_scale when norm is 0 or max_norm <= 0: no clipping). Feeds
 * kc_adamw_update's grad_scale without a trip to the host. */
void kc_clip_coef(float *coef, const double *norm_sq, float max_norm, float inv_loss_scale,
                  cudaStream_t stream);

/* *flag = 1 (device int) when some element of x (n) is Inf or NaN; left
 * alone otherwise, so one zeroed flag can collect several tensors (dynamic
 * loss scaling skips the step when it is set). */
void kc_check_finite(int *flag, const float *x, int64_t n, cudaStream_t stream);

/* ------------------------------------------------------------- casts */

/* Round to nearest even; NaN stays NaN. */
void kc_cast_f32_to_bf16(uint16_t *out, const float *x, int64_t n, cudaStream_t stream);
void kc_cast_bf16_to_f32(float *out, const uint16_t *x, int64_t n, cudaStream_t stream);
void kc_cast_f32_to_f16(uint16_t *out, const float *x, int64_t n, cudaStream_t stream);
void kc_cast_f16_to_f32(float *out, const uint16_t *x, int64_t n, cudaStream_t stream);

/* ---------------------------------------------------------- optimizers */

/* AdamW as k_adamw_update over a flat buffer of n fp32 master params, in
 * place on param, m, v. grad_scale (one device float, optional) multiplies
 * every gradient first (loss unscaling and clipping, see kc_clip_coef).
 * param_bf16 (n, optional) receives the updated params rounded to bf16. */
void kc_adamw_update(float *param, const float *grad, float *m, float *v, int64_t n, float lr,
                     float beta1, float beta2, float eps, float weight_decay, int64_t step,
                     const float *grad_scale, uint16_t *param_bf16, cudaStream_t stream);
/* SGD as k_sgd_update; mom may be NULL when momentum == 0. */
void kc_sgd_update(float *param, const float *grad, float *mom, int64_t n, float lr,
                   float momentum, float weight_decay, bool nesterov, cudaStream_t stream);

#ifdef __cplusplus
}
#endif

#endif
