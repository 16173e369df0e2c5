/* k_cpu.h: the CPU kernel library that generated dst programs call.
 *
 * Conventions that hold for every kernel below:
 *  - Tensors are contiguous row-major fp32 (`float *`); token ids are int32_t.
 *    Shapes are given in comments as (B,T,C); sizes are int64_t element
 *    counts. Output buffers must not alias inputs unless a comment says so.
 *  - Forward kernels OVERWRITE their outputs. Backward kernels ACCUMULATE
 *    (+=) into every gradient they produce, parameter and input gradients
 *    alike, so a tensor used twice (fan-out) just receives two calls; the
 *    caller zeroes gradients once per step. A gradient pointer documented as
 *    optional may be NULL, and that gradient is then skipped.
 *  - Results are deterministic and independent of the thread count: work is
 *    split so that every output element is produced by exactly one thread
 *    with a fixed summation order; there are no float atomics.
 *  - Statistics that sum many terms (norm moments, log-sum-exp, losses,
 *    reductions, the gradient norm) accumulate in double: a double running
 *    total over vectorized fp32 partial sums of at most 64 terms.
 *  - Threads: every kernel, GEMMs included, runs on the OpenMP thread count
 *    (k_set_num_threads). OpenBLAS itself is kept at one thread: a GEMM is
 *    split into panels fixed by its shape, one single-threaded sgemm each,
 *    so its result does not depend on the thread count (OpenBLAS's own
 *    threading does not promise that).
 *  - Kernels never print and never abort on data: bad token ids are reported
 *    through return values (see K_IDS_VALID).
 */
#ifndef DST_K_CPU_H
#define DST_K_CPU_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Returned by kernels that index with ids when every id was in range;
 * otherwise they return the position of the first bad id (>= 0). */
#define K_IDS_VALID ((int64_t)-1)

/* Status of the attention kernels (which need transient scratch memory). */
enum { K_OK = 0, K_ERR_NOMEM = 1, K_ERR_SHAPE = 2 };

/* ------------------------------------------------------------- threads */

/* Sets the thread count of every kernel (n >= 1), and keeps OpenBLAS on
 * one thread (GEMMs are split into panels over the OpenMP threads). */
void k_set_num_threads(int n);
int k_get_num_threads(void);

/* -------------------------------------------------------------- matmul */

/* out (M,N) = op(a) (M,K) . op(b) (K,N) + beta * out.
 * a is stored (M,K), or (K,M) when trans_a; b is stored (K,N), or (N,K)
 * when trans_b. beta = 0 overwrites out (its old contents, even NaN, are
 * ignored); beta = 1 accumulates. M, K, N must each fit in an int (the
 * CBLAS interface).
 * Backward of C = A.B is again a matmul: dA += dC.B^T, dB += A^T.dC,
 * i.e. k_matmul(da, dc, b, M, N, K, false, true, 1) and
 *      k_matmul(db, a, dc, K, M, N, true, false, 1). */
void k_matmul(float *out, const float *a, const float *b, int64_t M, int64_t K, int64_t N,
              bool trans_a, bool trans_b, float beta);

/* batch independent k_matmul calls; operand i starts at a + i*stride_a,
 * b + i*stride_b, out + i*stride_out (strides in elements). stride 0
 * broadcasts one matrix over the batch. stride_out = 0 reduces: out =
 * beta*out + sum_i op(a_i).op(b_i), summed in batch order (used for weight
 * gradients shared over the batch). */
void k_matmul_batched(int64_t batch, float *out, const float *a, const float *b, int64_t M,
                      int64_t K, int64_t N, bool trans_a, bool trans_b, float beta,
                      int64_t stride_out, int64_t stride_a, int64_t stride_b);

/* Backward of out (M,N) = a (M,K) . b (K,N) (a Linear layer with b the
 * weight stored (in,out)): da (M,K) += dout.b^T; db (K,N) += a^T.dout.
 * da and db are optional. */
void k_matmul_backward(float *da, float *db, const float *dout, const float *a, const float *b,
                       int64_t M, int64_t K, int64_t N);

/* ------------------------------------------------------ 16-bit types */

/* bf16 and fp16 values are stored as their 16-bit patterns (uint16_t) and
 * computed in fp32. Conversions from fp32 round to nearest even; NaN stays
 * NaN; fp16 overflows to infinity past 65504 and keeps subnormals. */
typedef enum { K_DT_F32 = 0, K_DT_BF16 = 1, K_DT_F16 = 2 } KDtype;
uint16_t k_f32_to_bf16(float f);
float k_bf16_to_f32(uint16_t h);
uint16_t k_f32_to_f16(float f);
float k_f16_to_f32(uint16_t h);
/* out (n) = x rounded to dt (K_DT_BF16 or K_DT_F16), and back. */
void k_cast_from_f32(KDtype dt, uint16_t *out, const float *x, int64_t n);
void k_cast_to_f32(KDtype dt, float *out, const uint16_t *x, int64_t n);

/* k_matmul_batched (k_matmul when batch <= 1) on operands of 16-bit type
 * dt with an fp32 out: a holds na elements and b nb (every element the
 * strides reach). work is fp32 scratch of na + nb elements: the operands
 * are widened there (exactly) and multiplied in fp32. */
void k_matmul_lowp(KDtype dt, int64_t batch, float *out, const uint16_t *a, int64_t na, const uint16_t *b,
                   int64_t nb, int64_t M, int64_t K, int64_t N, bool trans_a, bool trans_b, float beta,
                   int64_t stride_out, int64_t stride_a, int64_t stride_b, float *work);

/* --------------------------------------------------------- elementwise */

void k_fill(float *x, float value, int64_t n);            /* x[i] = value */
void k_add(float *out, const float *a, const float *b, int64_t n); /* may alias */
void k_scale(float *out, const float *x, float s, int64_t n);      /* out = s*x; may alias (clipping) */
void k_axpy(float *y, float alpha, const float *x, int64_t n);     /* y += alpha*x */

/* GELU, tanh approximation: 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))). */
void k_gelu_forward(float *out, const float *x, int64_t n);
void k_gelu_backward(float *dx, const float *x, const float *dout, int64_t n);
/* SiLU: x * sigmoid(x). */
void k_silu_forward(float *out, const float *x, int64_t n);
void k_silu_backward(float *dx, const float *x, const float *dout, int64_t n);
/* ReLU: max(x, 0); the derivative at 0 is taken as 0. */
void k_relu_forward(float *out, const float *x, int64_t n);
void k_relu_backward(float *dx, const float *x, const float *dout, int64_t n);
/* SwiGLU gate: out = silu(a) * b, all (n). da, db optional. */
void k_swiglu_forward(float *out, const float *a, const float *b, int64_t n);
void k_swiglu_backward(float *da, float *db, const float *dout, const float *a, const float *b,
                       int64_t n);

/* ------------------------------------------------- counter-based random */

/* A 64-bit hash of (seed, counter) with full avalanche: the random stream
 * is a pure function of the element index, so it does not depend on the
 * thread count or the order of evaluation. */
uint64_t k_rng_hash(uint64_t seed, uint64_t counter);
/* x[i] = uniform in [lo, hi) from counter offset+i. */
void k_fill_uniform(float *x, int64_t n, float lo, float hi, uint64_t seed, uint64_t offset);
/* x[i] = mean + std * N(0,1) from counters offset+i (Box-Muller). */
void k_fill_normal(float *x, int64_t n, float mean, float std, uint64_t seed, uint64_t offset);

/* Inverted dropout: element i is dropped with probability p, decided by
 * k_rng_hash(seed, offset+i); kept elements are scaled by 1/(1-p). The
 * backward recomputes the same mask from (seed, offset), so no mask is
 * stored. p <= 0 is the identity, p >= 1 drops everything. */
void k_dropout_forward(float *out, const float *x, int64_t n, float p, uint64_t seed,
                       uint64_t offset);
void k_dropout_backward(float *dx, const float *dout, int64_t n, float p, uint64_t seed,
                        uint64_t offset);

/* ------------------------------------------------------- normalization */

/* LayerNorm over the last dim of x (N,C): out (N,C) = (x-mean)*rstd*w + b,
 * with w, b (C) (either may be NULL: weight 1, bias 0). Saves mean and
 * rstd = 1/sqrt(var + eps) (N) for the backward (either may be NULL when no
 * backward follows). Variance is the biased one, as in PyTorch. */
void k_layernorm_forward(float *out, float *mean, float *rstd, const float *x, const float *w,
                         const float *b, int64_t N, int64_t C, float eps);
/* dx (N,C), dw (C), db (C) += gradients; all three optional. w may be NULL
 * exactly when it was NULL in the forward. */
void k_layernorm_backward(float *dx, float *dw, float *db, const float *dout, const float *x,
                          const float *w, const float *mean, const float *rstd, int64_t N,
                          int64_t C);

/* RMSNorm over the last dim of x (N,C): out = x * rstd * w, with
 * rstd = 1/sqrt(mean(x^2) + eps) saved (N, may be NULL); w (C) may be NULL. */
void k_rmsnorm_forward(float *out, float *rstd, const float *x, const float *w, int64_t N,
                       int64_t C, float eps);
/* dx (N,C), dw (C) += gradients; both optional. */
void k_rmsnorm_backward(float *dx, float *dw, const float *dout, const float *x, const float *w,
                        const float *rstd, int64_t N, int64_t C);

/* ---------------------------------------------------------- softmax, CE */

/* Softmax over the last dim: out (N,C) from x (N,C). */
void k_softmax_forward(float *out, const float *x, int64_t N, int64_t C);
/* dx (N,C) += out * (dout - sum_c dout*out), from the forward's out. */
void k_softmax_backward(float *dx, const float *dout, const float *out, int64_t N, int64_t C);

/* Fused softmax + cross-entropy: logits (N,V), targets (N) in [0,V).
 * losses (N) = logsumexp(logits[n]) - logits[n, targets[n]]; *mean_loss (may
 * be NULL) = mean of losses over all N rows. probs (N,V) is optional: the
 * softmax, only when the caller wants it (the backward does not need it).
 * A row with a bad target gets loss 0. Returns K_IDS_VALID, or the first row
 * whose target is outside [0,V). */
int64_t k_crossentropy_forward(double *mean_loss, float *losses, float *probs,
                               const float *logits, const int32_t *targets, int64_t N, int64_t V);
/* dlogits (N,V) += dloss[n] * (softmax(logits[n]) - onehot(targets[n])),
 * with dloss (N) the gradient of each row's loss (1/N each for the mean).
 * Recomputes the softmax. Rows with bad targets are skipped; same return
 * value as the forward. */
int64_t k_crossentropy_backward(float *dlogits, const float *logits, const int32_t *targets,
                                const float *dloss, int64_t N, int64_t V);

/* ----------------------------------------------------------- attention */

/* Scaled dot-product attention with grouped-query heads.
 * q (B,Hq,T,D); k, v (B,Hkv,T,D); out (B,Hq,T,D); lse (B,Hq,T).
 * Hq % Hkv == 0 and query head h reads kv head h / (Hq/Hkv). Scores are
 * q.k^T / sqrt(D); causal masks key j > query i. Only the row log-sum-exp
 * of the scaled scores is saved; the T x T probabilities are never stored.
 * Scratch: k_attention_scratch_bytes(T) per thread, allocated per call.
 * Returns K_OK; K_ERR_SHAPE when Hq % Hkv != 0 (nothing written);
 * K_ERR_NOMEM (outputs then undefined). */
int k_attention_forward(float *out, float *lse, const float *q, const float *k, const float *v,
                        int64_t B, int64_t Hq, int64_t Hkv, int64_t T, int64_t D, bool causal);
/* dq (B,Hq,T,D), dk, dv (B,Hkv,T,D) += gradients (all required), given
 * dout, the forward's inputs, out and lse. Recomputes the probabilities
 * tile by tile. Parallel over (b, kv head) so each dk/dv is owned by one
 * thread. Same return values as the forward. */
int k_attention_backward(float *dq, float *dk, float *dv, const float *dout, const float *q,
                         const float *k, const float *v, const float *out, const float *lse,
                         int64_t B, int64_t Hq, int64_t Hkv, int64_t T, int64_t D, bool causal);
/* Bytes of transient scratch each thread allocates in the attention calls. */
size_t k_attention_scratch_bytes(int64_t T);

/* RoPE on x (B,H,T,D): the pair (2i, 2i+1) at position t (0..T-1) rotates
 * by angle t * theta^(-2i/D). D must be even (an odd last element is passed
 * through unchanged). out may alias x. */
void k_rope_forward(float *out, const float *x, int64_t B, int64_t H, int64_t T, int64_t D,
                    float theta);
/* dx (B,H,T,D) += inverse rotation of dout. */
void k_rope_backward(float *dx, const float *dout, int64_t B, int64_t H, int64_t T, int64_t D,
                     float theta);

/* --------------------------------------------------- layout, embedding */

/* out (A,C,B,D) = x (A,B,C,D) with dims 1 and 2 swapped; covers
 * (B,T,H,D) <-> (B,H,T,D) and, with A = D = 1, a plain 2-D transpose. */
void k_permute_0213(float *out, const float *x, int64_t A, int64_t B, int64_t C, int64_t D);
/* Backward of the above: dx (A,B,C,D) += dout (A,C,B,D) swapped back. */
void k_permute_0213_backward(float *dx, const float *dout, int64_t A, int64_t B, int64_t C,
                             int64_t D);

/* out (N,C) = table (V,C) rows at ids (N). A row whose id is outside [0,V)
 * is filled with zeros; returns K_IDS_VALID or the first bad position. */
int64_t k_embedding_forward(float *out, const int32_t *ids, const float *table, int64_t N,
                            int64_t V, int64_t C);
/* dtable (V,C) += dout (N,C) scattered by ids. Each table row sums its
 * contributions in increasing n, whatever the thread count. Bad ids are
 * skipped; same return value as the forward. */
int64_t k_embedding_backward(float *dtable, const float *dout, const int32_t *ids, int64_t N,
                             int64_t V, int64_t C);

/* ---------------------------------------------------------- reductions */

/* x is viewed as (outer, dim, inner) and reduced over dim into
 * out (outer, inner). */
void k_reduce_sum_forward(float *out, const float *x, int64_t outer, int64_t dim, int64_t inner);
void k_reduce_sum_backward(float *dx, const float *dout, int64_t outer, int64_t dim,
                           int64_t inner);
void k_reduce_mean_forward(float *out, const float *x, int64_t outer, int64_t dim, int64_t inner);
void k_reduce_mean_backward(float *dx, const float *dout, int64_t outer, int64_t dim,
                            int64_t inner);
/* Max propagates NaN (the first NaN wins). The backward recomputes the
 * argmax from x and routes the whole gradient to the first maximum. */
void k_reduce_max_forward(float *out, const float *x, int64_t outer, int64_t dim, int64_t inner);
void k_reduce_max_backward(float *dx, const float *dout, const float *x, int64_t outer,
                           int64_t dim, int64_t inner);

/* Sum of squares of grad (n) in double, summed in a fixed blocking (the
 * gradient-norm clip then scales by min(1, max_norm/sqrt(total)) with
 * k_scale). */
double k_global_norm_sq(const float *grad, int64_t n);

/* ---------------------------------------------------------- optimizers */

/* AdamW (decoupled weight decay, as torch.optim.AdamW), in place on
 * param, m, v (n). step is the 1-based count of updates including this one
 * (bias correction 1 - beta^step). */
void k_adamw_update(float *param, const float *grad, float *m, float *v, int64_t n, float lr,
                    float beta1, float beta2, float eps, float weight_decay, int64_t step);
/* SGD as torch.optim.SGD (dampening 0): g = grad + wd*param; with momentum,
 * mom = momentum*mom + g (mom starts at zero) and g = nesterov ?
 * g + momentum*mom : mom; param -= lr*g. mom may be NULL when momentum == 0. */
void k_sgd_update(float *param, const float *grad, float *mom, int64_t n, float lr,
                  float momentum, float weight_decay, bool nesterov);

#endif
