/* kc_matmul.cu: GEMMs through cuBLASLt, row-major like k_matmul.
 *
 * Invariants:
 *  - cuBLASLt is column-major; a row-major (M,N) matrix is a column-major
 *    (N,M) one with the same bytes, so out = op(a).op(b) is computed as
 *    out^T = op(b)^T . op(a)^T: cuBLASLt's "A" is our b, its "B" our a, its
 *    m = N, n = M. The bias epilogue then adds a length-m = N vector to
 *    every row of out, which is a Linear layer's bias.
 *  - One algorithm per problem: the heuristic's first choice, cached per
 *    KcBlas under a key holding every parameter the choice depends on
 *    (shapes, strides, types, epilogue, pointer alignments). With a fixed
 *    workspace the choice is fixed, so results are reproducible; every
 *    cuBLASLt reduction scheme is deterministic.
 *  - A batch with a shared output (stride_out 0) is a sum: single GEMMs
 *    in batch order, accumulating (beta once), as on the CPU.
 */
#include <stdlib.h>
#include <string.h>

#include "kc_internal.cuh"

#define CACHE_SIZE 64

/* Everything the heuristic's choice depends on. Zeroed before filling so
 * memcmp sees no padding garbage. */
typedef struct {
  int64_t m, n, k, lda, ldb, ldc, batch, sa, sb, sc;
  int32_t ta, tb, ab_type, out_type, compute, epilogue, aux;
  uint32_t align_a, align_b, align_c, align_bias, align_aux;
} Key;

typedef struct {
  Key key;
  cublasLtMatmulAlgo_t algo;
  bool used;
} Entry;

struct KcBlas {
  cublasLtHandle_t lt;
  void *workspace;
  size_t workspace_bytes;
  Entry cache[CACHE_SIZE];
  int next; /* round-robin victim */
};

extern "C" size_t kc_blas_workspace_bytes(void) { return (size_t)32 << 20; }

extern "C" KcBlas *kc_blas_create(void *workspace, size_t workspace_bytes) {
  KcBlas *h = (KcBlas *)calloc(1, sizeof(KcBlas));
  if (!h) return NULL;
  KC_CHECK(cublasLtCreate(&h->lt));
  h->workspace = workspace;
  h->workspace_bytes = workspace ? workspace_bytes : 0;
  return h;
}

extern "C" void kc_blas_destroy(KcBlas *h) {
  if (!h) return;
  KC_CHECK(cublasLtDestroy(h->lt));
  free(h);
}

static size_t dtype_bytes(KcDtype t) { return t == KC_DT_F32 ? 4 : 2; }

static cudaDataType_t cuda_type(KcDtype t) {
  return t == KC_DT_F32 ? CUDA_R_32F : t == KC_DT_BF16 ? CUDA_R_16BF : CUDA_R_16F;
}

/* Largest power of two (at most 16) dividing the address: what the
 * heuristic may assume about the pointer. */
static uint32_t alignment(const void *p) {
  uintptr_t a = (uintptr_t)p;
  uint32_t al = 16;
  while (al > 1 && (a % al) != 0) al >>= 1;
  return al;
}

/* The compute type for the operand types, or false when not offered. */
static bool compute_type(const KcMatmul *p, cublasComputeType_t *ct) {
  if (p->ab_type == KC_DT_F32) {
    if (p->out_type != KC_DT_F32) return false;
    switch (p->compute) {
    case KC_COMPUTE_F32: *ct = CUBLAS_COMPUTE_32F; return true;
    case KC_COMPUTE_TF32: *ct = CUBLAS_COMPUTE_32F_FAST_TF32; return true;
    case KC_COMPUTE_BF16: *ct = CUBLAS_COMPUTE_32F_FAST_16BF; return true;
    case KC_COMPUTE_F16: *ct = CUBLAS_COMPUTE_32F_FAST_16F; return true;
    }
    return false;
  }
  /* 16-bit operands: fp32 accumulation; out is fp32 or the same type. */
  if (p->out_type != KC_DT_F32 && p->out_type != p->ab_type) return false;
  KcCompute own = p->ab_type == KC_DT_BF16 ? KC_COMPUTE_BF16 : KC_COMPUTE_F16;
  if (p->compute != KC_COMPUTE_F32 && p->compute != own) return false;
  *ct = CUBLAS_COMPUTE_32F;
  return true;
}

static cublasLtMatrixLayout_t layout(KcDtype t, int64_t rows, int64_t cols, int64_t ld,
                                     int64_t batch, int64_t stride) {
  cublasLtMatrixLayout_t l;
  KC_CHECK(cublasLtMatrixLayoutCreate(&l, cuda_type(t), (uint64_t)rows, (uint64_t)cols, ld));
  if (batch > 1) {
    int32_t count = (int32_t)batch;
    KC_CHECK(cublasLtMatrixLayoutSetAttribute(l, CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT, &count,
                                              sizeof count));
    KC_CHECK(cublasLtMatrixLayoutSetAttribute(l, CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET,
                                              &stride, sizeof stride));
  }
  return l;
}

static void desc_set(cublasLtMatmulDesc_t d, cublasLtMatmulDescAttributes_t attr, const void *v,
                     size_t size) {
  KC_CHECK(cublasLtMatmulDescSetAttribute(d, attr, v, size));
}

/* One cuBLASLt call: batch independent GEMMs (batch <= 1: one), every
 * field of p already validated. */
static int gemm(KcBlas *h, const KcMatmul *p, cublasComputeType_t ct, cudaStream_t stream) {
  int64_t M = p->M, K = p->K, N = p->N, batch = p->batch > 1 ? p->batch : 1;
  /* cuBLASLt's A = our b, its B = our a (see the file comment). */
  int64_t lda = p->trans_b ? K : N, ldb = p->trans_a ? M : K, ldc = N;
  bool gelu = p->epilogue == KC_EPI_GELU || p->epilogue == KC_EPI_BIAS_GELU;
  bool bias = p->epilogue == KC_EPI_BIAS || p->epilogue == KC_EPI_BIAS_GELU;
  bool aux = gelu && p->pre_gelu;

  Key key;
  memset(&key, 0, sizeof key);
  key.m = N;
  key.n = M;
  key.k = K;
  key.lda = lda;
  key.ldb = ldb;
  key.ldc = ldc;
  key.batch = batch;
  key.sa = batch > 1 ? p->stride_b : 0; /* strides mean nothing for one GEMM */
  key.sb = batch > 1 ? p->stride_a : 0;
  key.sc = batch > 1 ? p->stride_out : 0;
  key.ta = p->trans_b;
  key.tb = p->trans_a;
  key.ab_type = p->ab_type;
  key.out_type = p->out_type;
  key.compute = (int32_t)ct;
  key.epilogue = p->epilogue;
  key.aux = aux;
  key.align_a = alignment(p->b);
  key.align_b = alignment(p->a);
  key.align_c = alignment(p->out);
  key.align_bias = bias ? alignment(p->bias) : 0;
  key.align_aux = aux ? alignment(p->pre_gelu) : 0;

  cublasLtMatmulDesc_t op;
  KC_CHECK(cublasLtMatmulDescCreate(&op, ct, CUDA_R_32F));
  cublasOperation_t opa = p->trans_b ? CUBLAS_OP_T : CUBLAS_OP_N;
  cublasOperation_t opb = p->trans_a ? CUBLAS_OP_T : CUBLAS_OP_N;
  desc_set(op, CUBLASLT_MATMUL_DESC_TRANSA, &opa, sizeof opa);
  desc_set(op, CUBLASLT_MATMUL_DESC_TRANSB, &opb, sizeof opb);
  cublasLtEpilogue_t epi = CUBLASLT_EPILOGUE_DEFAULT;
  if (aux)
    epi = bias ? CUBLASLT_EPILOGUE_GELU_AUX_BIAS : CUBLASLT_EPILOGUE_GELU_AUX;
  else if (gelu)
    epi = bias ? CUBLASLT_EPILOGUE_GELU_BIAS : CUBLASLT_EPILOGUE_GELU;
  else if (bias)
    epi = CUBLASLT_EPILOGUE_BIAS;
  desc_set(op, CUBLASLT_MATMUL_DESC_EPILOGUE, &epi, sizeof epi);
  if (bias) {
    desc_set(op, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &p->bias, sizeof p->bias);
    int64_t zero = 0; /* the same bias for every batch entry */
    desc_set(op, CUBLASLT_MATMUL_DESC_BIAS_BATCH_STRIDE, &zero, sizeof zero);
  }
  if (aux) {
    int64_t aux_ld = ldc, aux_stride = batch > 1 ? p->stride_out : 0;
    desc_set(op, CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_POINTER, &p->pre_gelu, sizeof p->pre_gelu);
    desc_set(op, CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_LD, &aux_ld, sizeof aux_ld);
    desc_set(op, CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_BATCH_STRIDE, &aux_stride, sizeof aux_stride);
  }

  cublasLtMatrixLayout_t la = layout(p->ab_type, p->trans_b ? K : N, p->trans_b ? N : K, lda,
                                     batch, p->stride_b);
  cublasLtMatrixLayout_t lb = layout(p->ab_type, p->trans_a ? M : K, p->trans_a ? K : M, ldb,
                                     batch, p->stride_a);
  cublasLtMatrixLayout_t lc = layout(p->out_type, N, M, ldc, batch, p->stride_out);

  int status = KC_OK;
  Entry *e = NULL;
  for (int i = 0; i < CACHE_SIZE; i++)
    if (h->cache[i].used && memcmp(&h->cache[i].key, &key, sizeof key) == 0) {
      e = &h->cache[i];
      break;
    }
  if (!e) {
    cublasLtMatmulPreference_t pref;
    KC_CHECK(cublasLtMatmulPreferenceCreate(&pref));
    uint64_t ws = h->workspace_bytes;
    KC_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES,
                                                  &ws, sizeof ws));
    KC_CHECK(cublasLtMatmulPreferenceSetAttribute(
        pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, &key.align_a, sizeof key.align_a));
    KC_CHECK(cublasLtMatmulPreferenceSetAttribute(
        pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, &key.align_b, sizeof key.align_b));
    KC_CHECK(cublasLtMatmulPreferenceSetAttribute(
        pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, &key.align_c, sizeof key.align_c));
    KC_CHECK(cublasLtMatmulPreferenceSetAttribute(
        pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, &key.align_c, sizeof key.align_c));
    cublasLtMatmulHeuristicResult_t result;
    int found = 0;
    cublasStatus_t st = cublasLtMatmulAlgoGetHeuristic(h->lt, op, la, lb, lc, lc, pref, 1,
                                                       &result, &found);
    /* "Not supported" and "invalid value" are how cuBLASLt turns down a
     * type/epilogue combination: the caller gets KC_ERR_UNSUPPORTED. */
    bool declined = st == CUBLAS_STATUS_NOT_SUPPORTED || st == CUBLAS_STATUS_INVALID_VALUE;
    if (!declined) KC_CHECK(st);
    KC_CHECK(cublasLtMatmulPreferenceDestroy(pref));
    if (declined || found < 1) {
      status = KC_ERR_UNSUPPORTED;
    } else {
      e = &h->cache[h->next];
      h->next = (h->next + 1) % CACHE_SIZE;
      e->key = key;
      e->algo = result.algo;
      e->used = true;
    }
  }
  if (e) {
    KC_CHECK(cublasLtMatmul(h->lt, op, &p->alpha, p->b, la, p->a, lb, &p->beta, p->out, lc,
                            p->out, lc, &e->algo, h->workspace, h->workspace_bytes, stream));
  }
  KC_CHECK(cublasLtMatrixLayoutDestroy(lc));
  KC_CHECK(cublasLtMatrixLayoutDestroy(lb));
  KC_CHECK(cublasLtMatrixLayoutDestroy(la));
  KC_CHECK(cublasLtMatmulDescDestroy(op));
  return status;
}

/* out_i = beta * out_i for an empty inner dim (K = 0), fp32 only unless
 * beta is 0 or 1. */
static int empty_k(const KcMatmul *p, cudaStream_t stream) {
  int64_t n_out = (p->batch > 1 && p->stride_out != 0) ? p->batch : 1;
  size_t elt = dtype_bytes(p->out_type);
  if (p->beta == 1.0f) return KC_OK;
  if (p->beta != 0.0f && p->out_type != KC_DT_F32) return KC_ERR_UNSUPPORTED;
  for (int64_t i = 0; i < n_out; i++) {
    char *o = (char *)p->out + (size_t)(i * p->stride_out) * elt;
    if (p->beta == 0.0f)
      KC_CHECK(cudaMemsetAsync(o, 0, (size_t)(p->M * p->N) * elt, stream));
    else
      kc_scale((float *)o, (const float *)o, p->beta, p->M * p->N, stream);
  }
  return KC_OK;
}

extern "C" int kc_matmul_ex(KcBlas *h, const KcMatmul *p, cudaStream_t stream) {
  if (!h || !p || p->M < 0 || p->K < 0 || p->N < 0 || p->stride_out < 0 || p->stride_a < 0 ||
      p->stride_b < 0)
    return KC_ERR_SHAPE;
  bool reduce = p->batch > 1 && p->stride_out == 0;
  bool gelu = p->epilogue == KC_EPI_GELU || p->epilogue == KC_EPI_BIAS_GELU;
  bool bias = p->epilogue == KC_EPI_BIAS || p->epilogue == KC_EPI_BIAS_GELU;
  if (p->epilogue < KC_EPI_NONE || p->epilogue > KC_EPI_BIAS_GELU) return KC_ERR_SHAPE;
  if (p->epilogue != KC_EPI_NONE && reduce) return KC_ERR_SHAPE;
  if (bias && !p->bias) return KC_ERR_SHAPE;
  if (gelu && p->pre_gelu && (p->N % 8 != 0 || (p->batch > 1 && p->stride_out % 8 != 0)))
    return KC_ERR_SHAPE;
  if (p->M > INT32_MAX || p->N > INT32_MAX || p->K > INT32_MAX || p->batch > INT32_MAX)
    return KC_ERR_SHAPE;
  cublasComputeType_t ct;
  if (!compute_type(p, &ct)) return KC_ERR_UNSUPPORTED;
  if (p->M == 0 || p->N == 0 || p->batch < 0) return KC_OK;
  if (p->K == 0) return p->epilogue == KC_EPI_NONE ? empty_k(p, stream) : KC_ERR_UNSUPPORTED;
  if (!reduce) return gemm(h, p, ct, stream);

  /* Shared output: sum the products in batch order. */
  KcMatmul one = *p;
  one.batch = 1;
  size_t eab = dtype_bytes(p->ab_type);
  for (int64_t i = 0; i < p->batch; i++) {
    one.a = (const char *)p->a + (size_t)(i * p->stride_a) * eab;
    one.b = (const char *)p->b + (size_t)(i * p->stride_b) * eab;
    one.beta = i == 0 ? p->beta : 1.0f;
    int st = gemm(h, &one, ct, stream);
    if (st != KC_OK) return st;
  }
  return KC_OK;
}

static KcMatmul f32_problem(float *out, const float *a, const float *b, int64_t M, int64_t K,
                            int64_t N, bool trans_a, bool trans_b, float beta, KcCompute compute) {
  KcMatmul p;
  memset(&p, 0, sizeof p);
  p.out = out;
  p.a = a;
  p.b = b;
  p.out_type = KC_DT_F32;
  p.ab_type = KC_DT_F32;
  p.M = M;
  p.K = K;
  p.N = N;
  p.trans_a = trans_a;
  p.trans_b = trans_b;
  p.alpha = 1.0f;
  p.beta = beta;
  p.batch = 1;
  p.compute = compute;
  p.epilogue = KC_EPI_NONE;
  return p;
}

extern "C" int kc_matmul(KcBlas *h, float *out, const float *a, const float *b, int64_t M,
                         int64_t K, int64_t N, bool trans_a, bool trans_b, float beta,
                         KcCompute compute, cudaStream_t stream) {
  KcMatmul p = f32_problem(out, a, b, M, K, N, trans_a, trans_b, beta, compute);
  return kc_matmul_ex(h, &p, stream);
}

extern "C" int kc_matmul_batched(KcBlas *h, int64_t batch, float *out, const float *a,
                                 const float *b, int64_t M, int64_t K, int64_t N, bool trans_a,
                                 bool trans_b, float beta, int64_t stride_out, int64_t stride_a,
                                 int64_t stride_b, KcCompute compute, cudaStream_t stream) {
  if (batch <= 0) return KC_OK;
  KcMatmul p = f32_problem(out, a, b, M, K, N, trans_a, trans_b, beta, compute);
  p.batch = batch;
  p.stride_out = stride_out;
  p.stride_a = stride_a;
  p.stride_b = stride_b;
  return kc_matmul_ex(h, &p, stream);
}

extern "C" int kc_matmul_backward(KcBlas *h, float *da, float *db, const float *dout,
                                  const float *a, const float *b, int64_t M, int64_t K,
                                  int64_t N, KcCompute compute, cudaStream_t stream) {
  /* out = a.b => da = dout.b^T (M,N).(N,K), db = a^T.dout (K,M).(M,N). */
  int st = KC_OK;
  if (da) st = kc_matmul(h, da, dout, b, M, N, K, false, true, 1.0f, compute, stream);
  if (st == KC_OK && db) st = kc_matmul(h, db, a, dout, K, M, N, true, false, 1.0f, compute, stream);
  return st;
}
