/* test_kernels_cpu.c: the CPU kernels against plain references.
 *
 * Every forward is compared with a naive loop written here in double
 * precision, on small odd shapes; every backward is compared with central
 * finite differences of its forward (and, where cheap, with a naive
 * backward too). Gradients are pre-filled with GRAD_PREFILL before each
 * backward so the tests also check that backwards accumulate. A last group
 * checks bitwise determinism across thread counts. The checkers report
 * mismatches by count, and one test feeds them a wrong gradient to show
 * they do fail.
 */
#include <check.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "k_cpu.h"

/* ------------------------------------------------------------- helpers */

#define GRAD_PREFILL 0.25f
#define FD_H 1e-2f /* fp32 forward: truncation ~h^2, rounding ~1e-7/h */
#define POOL_MAX 512

static void *pool[POOL_MAX];
static int npool;
static uint64_t rng;

static void setup(void) {
  npool = 0;
  rng = 0x853c49e6748fea9bULL;
}

static void teardown(void) {
  for (int i = 0; i < npool; i++) free(pool[i]);
  npool = 0;
}

static void *talloc(size_t bytes) {
  ck_assert_int_lt(npool, POOL_MAX);
  void *p = calloc(1, bytes ? bytes : 1);
  ck_assert_ptr_nonnull(p);
  pool[npool++] = p;
  return p;
}

static float *fbuf(int64_t n) { return talloc((size_t)n * sizeof(float)); }
static double *dbuf(int64_t n) { return talloc((size_t)n * sizeof(double)); }

/* xorshift64*: the test's own stream, independent of k_rng_hash. */
static double urand(void) {
  rng ^= rng >> 12;
  rng ^= rng << 25;
  rng ^= rng >> 27;
  return (double)((rng * 0x2545f4914f6cdd1dULL) >> 11) * 0x1p-53;
}

static float *frand(int64_t n, float lo, float hi) {
  float *x = fbuf(n);
  for (int64_t i = 0; i < n; i++) x[i] = lo + (hi - lo) * (float)urand();
  return x;
}

static float *fconst(int64_t n, float v) {
  float *x = fbuf(n);
  for (int64_t i = 0; i < n; i++) x[i] = v;
  return x;
}

static float *fcopy(const float *src, int64_t n) {
  float *x = fbuf(n);
  memcpy(x, src, (size_t)n * sizeof(float));
  return x;
}

/* Count of i with |got - offset - want| > atol + rtol*|want|; the first
 * mismatch is described in msg. */
static int64_t mismatches(const float *got, double offset, const double *want, int64_t n,
                          double atol, double rtol, char *msg, size_t msz) {
  int64_t bad = 0;
  for (int64_t i = 0; i < n; i++) {
    double g = (double)got[i] - offset;
    double err = fabs(g - want[i]);
    if (!(err <= atol + rtol * fabs(want[i]))) { /* NaN counts as a mismatch */
      if (!bad) snprintf(msg, msz, "[%lld] got %.9g want %.9g", (long long)i, g, want[i]);
      bad++;
    }
  }
  return bad;
}

static void expect_close_(const char *what, const float *got, double offset, const double *want,
                          int64_t n, double atol, double rtol) {
  char msg[160] = "";
  int64_t bad = mismatches(got, offset, want, n, atol, rtol, msg, sizeof msg);
  ck_assert_msg(bad == 0, "%s: %lld of %lld off, first %s", what, (long long)bad, (long long)n,
                msg);
}
#define expect_close(what, got, want, n, atol, rtol) expect_close_(what, got, 0.0, want, n, atol, rtol)
/* For gradients that started at GRAD_PREFILL. */
#define expect_grad(what, got, want, n, atol, rtol) \
  expect_close_(what, got, GRAD_PREFILL, want, n, atol, rtol)

static void expect_same_bits(const char *what, const void *a, const void *b, size_t bytes) {
  ck_assert_msg(memcmp(a, b, bytes) == 0, "%s differs across thread counts", what);
}

/* Finite differences: loss(ctx) runs the forward on the current inputs and
 * returns sum(out * r) in double for a fixed random r; grad is what the
 * backward accumulated onto GRAD_PREFILL with dout = r. */
typedef double (*LossFn)(void *ctx);

static int64_t fd_mismatches(float *x, int64_t n, const float *grad, LossFn loss, void *ctx,
                             double atol, double rtol, char *msg, size_t msz) {
  int64_t bad = 0;
  for (int64_t i = 0; i < n; i++) {
    float x0 = x[i], xp = x0 + FD_H, xm = x0 - FD_H;
    x[i] = xp;
    double lp = loss(ctx);
    x[i] = xm;
    double lm = loss(ctx);
    x[i] = x0;
    double num = (lp - lm) / ((double)xp - (double)xm);
    double ana = (double)grad[i] - GRAD_PREFILL;
    if (!(fabs(num - ana) <= atol + rtol * fabs(num))) {
      if (!bad) snprintf(msg, msz, "[%lld] analytic %.7g numeric %.7g", (long long)i, ana, num);
      bad++;
    }
  }
  return bad;
}

static void check_fd(const char *what, float *x, int64_t n, const float *grad, LossFn loss,
                     void *ctx, double atol, double rtol) {
  char msg[160] = "";
  int64_t bad = fd_mismatches(x, n, grad, loss, ctx, atol, rtol, msg, sizeof msg);
  ck_assert_msg(bad == 0, "%s: %lld of %lld gradients off, first %s", what, (long long)bad,
                (long long)n, msg);
}

static double dot_fd(const float *a, const float *b, int64_t n) {
  double s = 0.0;
  for (int64_t i = 0; i < n; i++) s += (double)a[i] * b[i];
  return s;
}

/* Default finite-difference tolerance for O(1) values in fp32. */
#define FD_ATOL 2e-3
#define FD_RTOL 1e-2

/* -------------------------------------------------------------- matmul */

static void ref_matmul(double *out, const float *a, const float *b, int64_t M, int64_t K,
                       int64_t N, bool ta, bool tb) {
  for (int64_t i = 0; i < M; i++)
    for (int64_t j = 0; j < N; j++) {
      double s = 0.0;
      for (int64_t k = 0; k < K; k++) {
        double av = ta ? a[k * M + i] : a[i * K + k];
        double bv = tb ? b[j * K + k] : b[k * N + j];
        s += av * bv;
      }
      out[i * N + j] = s;
    }
}

START_TEST(test_matmul) {
  const int64_t M = 5, K = 7, N = 3;
  for (int t = 0; t < 4; t++) {
    bool ta = t & 1, tb = t & 2;
    float *a = frand(M * K, -1, 1), *b = frand(K * N, -1, 1);
    double *want = dbuf(M * N);
    ref_matmul(want, a, b, M, K, N, ta, tb);
    float *out = fconst(M * N, NAN); /* beta 0 must ignore old contents */
    k_matmul(out, a, b, M, K, N, ta, tb, 0.0f);
    expect_close("matmul beta0", out, want, M * N, 1e-5, 1e-5);
    float *acc = frand(M * N, -1, 1);
    double *want2 = dbuf(M * N);
    for (int64_t i = 0; i < M * N; i++) want2[i] = want[i] + acc[i];
    k_matmul(acc, a, b, M, K, N, ta, tb, 1.0f);
    expect_close("matmul beta1", acc, want2, M * N, 1e-5, 1e-5);
  }
  /* Empty inner dim: the product is 0. */
  float *z = fconst(6, 3.0f);
  double zero[6] = {0};
  k_matmul(z, NULL, NULL, 2, 0, 3, false, false, 0.0f);
  expect_close("matmul K=0", z, zero, 6, 0, 0);
}
END_TEST

START_TEST(test_matmul_batched) {
  const int64_t M = 4, K = 5, N = 3;
  int saved = k_get_num_threads();
  for (int threads = 1; threads <= 2; threads++) {
    k_set_num_threads(threads);
    for (int64_t batch = 3; batch <= 40; batch += 37) { /* 40 takes the OpenMP path */
      /* a per batch, b broadcast, b transposed. */
      float *a = frand(batch * M * K, -1, 1), *b = frand(K * N, -1, 1);
      float *out = fconst(batch * M * N, NAN);
      k_matmul_batched(batch, out, a, b, M, K, N, false, true, 0.0f, M * N, M * K, 0);
      double *want = dbuf(batch * M * N);
      for (int64_t i = 0; i < batch; i++)
        ref_matmul(want + i * M * N, a + i * M * K, b, M, K, N, false, true);
      expect_close("batched", out, want, batch * M * N, 1e-5, 1e-5);
      /* Shared output: sum over the batch, onto the old value (beta 1) or
       * over garbage (beta 0). */
      float *bs = frand(batch * K * N, -1, 1);
      for (int beta = 0; beta <= 1; beta++) {
        float *red = beta ? frand(M * N, -1, 1) : fconst(M * N, NAN);
        double *want2 = dbuf(M * N), *tmp = dbuf(M * N);
        for (int64_t j = 0; j < M * N; j++) want2[j] = beta ? red[j] : 0.0;
        for (int64_t i = 0; i < batch; i++) {
          ref_matmul(tmp, a + i * M * K, bs + i * K * N, M, K, N, false, false);
          for (int64_t j = 0; j < M * N; j++) want2[j] += tmp[j];
        }
        k_matmul_batched(batch, red, a, bs, M, K, N, false, false, (float)beta, 0, M * K, K * N);
        expect_close("batched reduce", red, want2, M * N, 1e-4, 1e-5);
      }
    }
  }
  k_set_num_threads(saved);
}
END_TEST

typedef struct {
  float *a, *b, *out, *r;
  int64_t M, K, N;
} MatmulCtx;

static double matmul_loss(void *p) {
  MatmulCtx *c = p;
  k_matmul(c->out, c->a, c->b, c->M, c->K, c->N, false, false, 0.0f);
  return dot_fd(c->out, c->r, c->M * c->N);
}

START_TEST(test_matmul_backward) {
  const int64_t M = 5, K = 7, N = 3;
  MatmulCtx c = {frand(M * K, -1, 1), frand(K * N, -1, 1), fbuf(M * N), frand(M * N, -1, 1),
                 M, K, N};
  float *da = fconst(M * K, GRAD_PREFILL), *db = fconst(K * N, GRAD_PREFILL);
  k_matmul_backward(da, db, c.r, c.a, c.b, M, K, N);
  /* Naive: da = r.b^T, db = a^T.r. */
  double *wa = dbuf(M * K), *wb = dbuf(K * N);
  ref_matmul(wa, c.r, c.b, M, N, K, false, true);
  ref_matmul(wb, c.a, c.r, K, M, N, true, false);
  expect_grad("matmul da", da, wa, M * K, 1e-5, 1e-5);
  expect_grad("matmul db", db, wb, K * N, 1e-5, 1e-5);
  check_fd("matmul da fd", c.a, M * K, da, matmul_loss, &c, FD_ATOL, FD_RTOL);
  check_fd("matmul db fd", c.b, K * N, db, matmul_loss, &c, FD_ATOL, FD_RTOL);
  /* NULL gradients are skipped. */
  float *db2 = fconst(K * N, GRAD_PREFILL);
  k_matmul_backward(NULL, db2, c.r, c.a, c.b, M, K, N);
  expect_grad("matmul db only", db2, wb, K * N, 1e-5, 1e-5);
}
END_TEST

/* --------------------------------------------------------- elementwise */

START_TEST(test_elementwise) {
  const int64_t n = 37;
  float *a = frand(n, -2, 2), *b = frand(n, -2, 2);
  double *want = dbuf(n);
  float *out = fbuf(n);
  k_fill(out, 1.5f, n);
  for (int64_t i = 0; i < n; i++) want[i] = 1.5;
  expect_close("fill", out, want, n, 0, 0);
  k_fill(out, 0.0f, n);
  for (int64_t i = 0; i < n; i++) want[i] = 0.0;
  expect_close("fill 0", out, want, n, 0, 0);
  /* Single fp32 ops are correctly rounded, so they match exactly. */
  k_add(out, a, b, n);
  for (int64_t i = 0; i < n; i++) want[i] = (float)((double)a[i] + b[i]);
  expect_close("add", out, want, n, 0, 0);
  float *s = fcopy(a, n);
  k_scale(s, s, -0.75f, n);
  for (int64_t i = 0; i < n; i++) want[i] = (float)(-0.75 * a[i]);
  expect_close("scale in place", s, want, n, 0, 0);
  float *y = fcopy(b, n);
  k_axpy(y, 0.5f, a, n);
  for (int64_t i = 0; i < n; i++) want[i] = (double)b[i] + 0.5 * a[i];
  expect_close("axpy", y, want, n, 1e-6, 1e-6);
}
END_TEST

/* ---------------------------------------------------------- activations */

typedef enum { ACT_GELU, ACT_SILU, ACT_RELU } Act;

static double ref_act(Act act, double x) {
  switch (act) {
  case ACT_GELU: return 0.5 * x * (1.0 + tanh(sqrt(2.0 / 3.14159265358979323846) * (x + 0.044715 * x * x * x)));
  case ACT_SILU: return x / (1.0 + exp(-x));
  case ACT_RELU: return x > 0 ? x : 0;
  }
  return 0;
}

typedef struct {
  Act act;
  float *x, *out, *r;
  int64_t n;
} ActCtx;

static void act_forward(Act act, float *out, const float *x, int64_t n) {
  if (act == ACT_GELU) k_gelu_forward(out, x, n);
  if (act == ACT_SILU) k_silu_forward(out, x, n);
  if (act == ACT_RELU) k_relu_forward(out, x, n);
}

static double act_loss(void *p) {
  ActCtx *c = p;
  act_forward(c->act, c->out, c->x, c->n);
  return dot_fd(c->out, c->r, c->n);
}

START_TEST(test_activations) {
  const int64_t n = 41;
  static const char *names[] = {"gelu", "silu", "relu"};
  for (int ai = 0; ai < 3; ai++) {
    Act act = (Act)ai;
    ActCtx c = {act, frand(n, -4, 4), fbuf(n), frand(n, -1, 1), n};
    /* ReLU has a kink at 0: keep the probes away from it. */
    for (int64_t i = 0; i < n; i++)
      if (fabsf(c.x[i]) < 0.05f) c.x[i] = 0.5f;
    c.x[0] = -30.0f; /* saturated tails must not overflow */
    c.x[1] = 30.0f;
    double *want = dbuf(n);
    for (int64_t i = 0; i < n; i++) want[i] = ref_act(act, c.x[i]);
    act_forward(act, c.out, c.x, n);
    expect_close(names[ai], c.out, want, n, 1e-6, 1e-5);
    float *dx = fconst(n, GRAD_PREFILL);
    if (act == ACT_GELU) k_gelu_backward(dx, c.x, c.r, n);
    if (act == ACT_SILU) k_silu_backward(dx, c.x, c.r, n);
    if (act == ACT_RELU) k_relu_backward(dx, c.x, c.r, n);
    check_fd(names[ai], c.x, n, dx, act_loss, &c, FD_ATOL, FD_RTOL);
  }
}
END_TEST

typedef struct {
  float *a, *b, *out, *r;
  int64_t n;
} SwigluCtx;

static double swiglu_loss(void *p) {
  SwigluCtx *c = p;
  k_swiglu_forward(c->out, c->a, c->b, c->n);
  return dot_fd(c->out, c->r, c->n);
}

START_TEST(test_swiglu) {
  const int64_t n = 29;
  SwigluCtx c = {frand(n, -4, 4), frand(n, -2, 2), fbuf(n), frand(n, -1, 1), n};
  k_swiglu_forward(c.out, c.a, c.b, n);
  double *want = dbuf(n);
  for (int64_t i = 0; i < n; i++) want[i] = c.a[i] / (1.0 + exp(-(double)c.a[i])) * c.b[i];
  expect_close("swiglu", c.out, want, n, 1e-6, 1e-5);
  float *da = fconst(n, GRAD_PREFILL), *db = fconst(n, GRAD_PREFILL);
  k_swiglu_backward(da, db, c.r, c.a, c.b, n);
  check_fd("swiglu da", c.a, n, da, swiglu_loss, &c, FD_ATOL, FD_RTOL);
  check_fd("swiglu db", c.b, n, db, swiglu_loss, &c, FD_ATOL, FD_RTOL);
}
END_TEST

/* ------------------------------------------------------- normalization */

typedef struct {
  bool rms;
  float *x, *w, *b, *out, *mean, *rstd, *r;
  int64_t N, C;
} NormCtx;

#define NORM_EPS 1e-5f

static void norm_forward(NormCtx *c) {
  if (c->rms)
    k_rmsnorm_forward(c->out, c->rstd, c->x, c->w, c->N, c->C, NORM_EPS);
  else
    k_layernorm_forward(c->out, c->mean, c->rstd, c->x, c->w, c->b, c->N, c->C, NORM_EPS);
}

static double norm_loss(void *p) {
  NormCtx *c = p;
  norm_forward(c);
  return dot_fd(c->out, c->r, c->N * c->C);
}

static void ref_norm(double *out, double *mean, double *rstd, const NormCtx *c) {
  for (int64_t n = 0; n < c->N; n++) {
    const float *xr = c->x + n * c->C;
    double mu = 0, ss = 0;
    if (!c->rms) {
      for (int64_t i = 0; i < c->C; i++) mu += xr[i];
      mu /= (double)c->C;
    }
    for (int64_t i = 0; i < c->C; i++) ss += (xr[i] - mu) * (xr[i] - mu);
    double rs = 1.0 / sqrt(ss / (double)c->C + NORM_EPS);
    for (int64_t i = 0; i < c->C; i++)
      out[n * c->C + i] =
          (xr[i] - mu) * rs * (c->w ? c->w[i] : 1.0) + (c->b ? c->b[i] : 0.0);
    mean[n] = mu;
    rstd[n] = rs;
  }
}

static void run_norm_case(bool rms, bool affine, int64_t N, int64_t C, float shift) {
  NormCtx c = {rms, frand(N * C, -1 + shift, 1 + shift), affine ? frand(C, 0.5f, 1.5f) : NULL,
               (affine && !rms) ? frand(C, -0.5f, 0.5f) : NULL, fbuf(N * C), fbuf(N), fbuf(N),
               frand(N * C, -1, 1), N, C};
  const char *name = rms ? "rmsnorm" : "layernorm";
  norm_forward(&c);
  double *want = dbuf(N * C), *wmean = dbuf(N), *wrstd = dbuf(N);
  ref_norm(want, wmean, wrstd, &c);
  expect_close(name, c.out, want, N * C, 1e-5, 1e-5);
  expect_close("rstd", c.rstd, wrstd, N, 0, 1e-5);
  if (!rms) expect_close("mean", c.mean, wmean, N, 1e-6, 1e-6);

  float *dx = fconst(N * C, GRAD_PREFILL);
  float *dw = affine ? fconst(C, GRAD_PREFILL) : NULL;
  float *db = c.b ? fconst(C, GRAD_PREFILL) : NULL;
  if (rms)
    k_rmsnorm_backward(dx, dw, c.r, c.x, c.w, c.rstd, N, C);
  else
    k_layernorm_backward(dx, dw, db, c.r, c.x, c.w, c.mean, c.rstd, N, C);
  check_fd(name, c.x, N * C, dx, norm_loss, &c, FD_ATOL, FD_RTOL);
  if (dw) check_fd("norm dw", c.w, C, dw, norm_loss, &c, FD_ATOL, FD_RTOL);
  if (db) check_fd("norm db", c.b, C, db, norm_loss, &c, FD_ATOL, FD_RTOL);
}

START_TEST(test_layernorm) {
  run_norm_case(false, true, 5, 7, 3.0f); /* mean far from 0: two-pass variance */
  run_norm_case(false, false, 3, 6, 0.0f);
  run_norm_case(false, true, 2, 70, 0.0f); /* more than one column block */
  run_norm_case(false, true, 37, 9, 0.0f); /* more than one row block */
}
END_TEST

START_TEST(test_rmsnorm) {
  run_norm_case(true, true, 5, 7, 0.5f);
  run_norm_case(true, false, 3, 6, 0.0f);
  run_norm_case(true, true, 2, 70, 0.0f);
  run_norm_case(true, true, 37, 9, 0.0f);
}
END_TEST

/* ------------------------------------------------------------ softmax */

typedef struct {
  float *x, *out, *r;
  int64_t N, C;
} SoftmaxCtx;

static double softmax_loss(void *p) {
  SoftmaxCtx *c = p;
  k_softmax_forward(c->out, c->x, c->N, c->C);
  return dot_fd(c->out, c->r, c->N * c->C);
}

START_TEST(test_softmax) {
  const int64_t N = 4, C = 7;
  SoftmaxCtx c = {frand(N * C, -3, 3), fbuf(N * C), frand(N * C, -1, 1), N, C};
  for (int64_t i = 0; i < C; i++) c.x[i] += 500.0f; /* would overflow without the max shift */
  k_softmax_forward(c.out, c.x, N, C);
  double *want = dbuf(N * C);
  for (int64_t n = 0; n < N; n++) {
    double m = -INFINITY, s = 0;
    for (int64_t i = 0; i < C; i++) m = fmax(m, c.x[n * C + i]);
    for (int64_t i = 0; i < C; i++) s += exp(c.x[n * C + i] - m);
    for (int64_t i = 0; i < C; i++) want[n * C + i] = exp(c.x[n * C + i] - m) / s;
  }
  expect_close("softmax", c.out, want, N * C, 1e-7, 1e-5);
  /* Two-way softmax [0, -d] = [1, e^-d] / (1 + e^-d) over the whole range
   * of exponents that matter, at fp32 relative accuracy. */
  float pair[2 * 120], sm[2 * 120];
  double wpair[2 * 120];
  for (int i = 0; i < 120; i++) {
    float d = (float)i * 0.73f;
    pair[2 * i] = 0.0f;
    pair[2 * i + 1] = -d;
    wpair[2 * i] = 1.0 / (1.0 + exp(-(double)d));
    wpair[2 * i + 1] = exp(-(double)d) / (1.0 + exp(-(double)d));
  }
  k_softmax_forward(sm, pair, 120, 2);
  expect_close("softmax exp range", sm, wpair, 2 * 120, 1e-37, 1e-6);
  float *dx = fconst(N * C, GRAD_PREFILL);
  k_softmax_backward(dx, c.r, c.out, N, C);
  for (int64_t i = 0; i < C; i++) c.x[i] -= 500.0f; /* fp32 spacing at 500 is too coarse for FD */
  k_softmax_forward(c.out, c.x, N, C);
  float *dx2 = fconst(N * C, GRAD_PREFILL);
  k_softmax_backward(dx2, c.r, c.out, N, C);
  /* Softmax is shift invariant per row, so both gradients agree. */
  double *wd = dbuf(N * C);
  for (int64_t i = 0; i < N * C; i++) wd[i] = dx2[i] - GRAD_PREFILL;
  expect_grad("softmax shift", dx, wd, N * C, 1e-6, 1e-4);
  check_fd("softmax fd", c.x, N * C, dx2, softmax_loss, &c, FD_ATOL, FD_RTOL);
}
END_TEST

/* ------------------------------------------------------ cross-entropy */

typedef struct {
  float *logits, *losses, *dloss;
  int32_t *targets;
  int64_t N, V;
} CeCtx;

static double ce_loss(void *p) {
  CeCtx *c = p;
  k_crossentropy_forward(NULL, c->losses, NULL, c->logits, c->targets, c->N, c->V);
  return dot_fd(c->losses, c->dloss, c->N);
}

START_TEST(test_crossentropy) {
  const int64_t N = 6, V = 11;
  CeCtx c = {frand(N * V, -3, 3), fbuf(N), frand(N, 0.1f, 1), talloc(N * sizeof(int32_t)), N, V};
  for (int64_t n = 0; n < N; n++) c.targets[n] = (int32_t)((n * 5 + 2) % V);
  for (int64_t v = 0; v < V; v++) c.logits[V + v] += 80.0f; /* large logits: stable lse */
  float *probs = fbuf(N * V);
  double mean = -1;
  int64_t rc = k_crossentropy_forward(&mean, c.losses, probs, c.logits, c.targets, N, V);
  ck_assert_int_eq(rc, K_IDS_VALID);
  double *wl = dbuf(N), *wp = dbuf(N * V), wmean = 0;
  for (int64_t n = 0; n < N; n++) {
    const float *x = c.logits + n * V;
    double m = -INFINITY, s = 0;
    for (int64_t v = 0; v < V; v++) m = fmax(m, x[v]);
    for (int64_t v = 0; v < V; v++) s += exp(x[v] - m);
    double lse = m + log(s);
    wl[n] = lse - x[c.targets[n]];
    wmean += wl[n] / (double)N;
    for (int64_t v = 0; v < V; v++) wp[n * V + v] = exp(x[v] - lse);
  }
  expect_close("ce losses", c.losses, wl, N, 1e-5, 1e-5);
  expect_close("ce probs", probs, wp, N * V, 1e-7, 1e-5);
  ck_assert_msg(fabs(mean - wmean) < 1e-5, "ce mean %g want %g", mean, wmean);

  for (int64_t v = 0; v < V; v++) c.logits[V + v] -= 80.0f; /* FD needs fine fp32 spacing */
  float *dl = fconst(N * V, GRAD_PREFILL);
  rc = k_crossentropy_backward(dl, c.logits, c.targets, c.dloss, N, V);
  ck_assert_int_eq(rc, K_IDS_VALID);
  check_fd("ce fd", c.logits, N * V, dl, ce_loss, &c, FD_ATOL, FD_RTOL);
}
END_TEST

START_TEST(test_crossentropy_bad_target) {
  const int64_t N = 5, V = 4;
  float *logits = frand(N * V, -1, 1), *losses = fconst(N, 9.0f);
  int32_t targets[5] = {0, 3, 4, -1, 2}; /* rows 2 and 3 are bad; 2 is first */
  double mean = 0;
  ck_assert_int_eq(k_crossentropy_forward(&mean, losses, NULL, logits, targets, N, V), 2);
  ck_assert(losses[2] == 0.0f && losses[3] == 0.0f);
  ck_assert(losses[0] > 0.0f && losses[4] > 0.0f);
  float *dl = fconst(N * V, GRAD_PREFILL), *dloss = fconst(N, 1.0f);
  ck_assert_int_eq(k_crossentropy_backward(dl, logits, targets, dloss, N, V), 2);
  for (int64_t v = 0; v < V; v++) ck_assert(dl[2 * V + v] == GRAD_PREFILL);
  ck_assert(dl[0] != GRAD_PREFILL);
}
END_TEST

/* ----------------------------------------------------------- attention */

static void ref_attention(double *out, double *lse, const float *q, const float *k,
                          const float *v, int64_t B, int64_t Hq, int64_t Hkv, int64_t T,
                          int64_t D, bool causal, double *scratch) {
  double scale = 1.0 / sqrt((double)D);
  for (int64_t b = 0; b < B; b++)
    for (int64_t h = 0; h < Hq; h++) {
      int64_t hk = h / (Hq / Hkv);
      const float *qh = q + (b * Hq + h) * T * D;
      const float *kh = k + (b * Hkv + hk) * T * D, *vh = v + (b * Hkv + hk) * T * D;
      for (int64_t i = 0; i < T; i++) {
        int64_t lim = causal ? i + 1 : T;
        double m = -INFINITY, s = 0;
        for (int64_t j = 0; j < lim; j++) {
          double dot = 0;
          for (int64_t d = 0; d < D; d++) dot += (double)qh[i * D + d] * kh[j * D + d];
          scratch[j] = dot * scale;
          m = fmax(m, scratch[j]);
        }
        for (int64_t j = 0; j < lim; j++) s += exp(scratch[j] - m);
        lse[(b * Hq + h) * T + i] = m + log(s);
        for (int64_t d = 0; d < D; d++) {
          double o = 0;
          for (int64_t j = 0; j < lim; j++) o += exp(scratch[j] - m) / s * vh[j * D + d];
          out[((b * Hq + h) * T + i) * D + d] = o;
        }
      }
    }
}

/* Naive backward: P, dP = dO V^T, dS = P (dP - rowsum(P dP)). */
static void ref_attention_backward(double *dq, double *dk, double *dv, const float *dout,
                                   const float *q, const float *k, const float *v, int64_t B,
                                   int64_t Hq, int64_t Hkv, int64_t T, int64_t D, bool causal,
                                   double *p, double *dp) {
  double scale = 1.0 / sqrt((double)D);
  for (int64_t b = 0; b < B; b++)
    for (int64_t h = 0; h < Hq; h++) {
      int64_t hk = h / (Hq / Hkv), qo = (b * Hq + h) * T * D, ko = (b * Hkv + hk) * T * D;
      for (int64_t i = 0; i < T; i++) {
        int64_t lim = causal ? i + 1 : T;
        double m = -INFINITY, s = 0, di = 0;
        for (int64_t j = 0; j < lim; j++) {
          double dot = 0, dpo = 0;
          for (int64_t d = 0; d < D; d++) {
            dot += (double)q[qo + i * D + d] * k[ko + j * D + d];
            dpo += (double)dout[qo + i * D + d] * v[ko + j * D + d];
          }
          p[j] = dot * scale;
          dp[j] = dpo;
          m = fmax(m, p[j]);
        }
        for (int64_t j = 0; j < lim; j++) s += exp(p[j] - m);
        for (int64_t j = 0; j < lim; j++) {
          p[j] = exp(p[j] - m) / s;
          di += p[j] * dp[j];
        }
        for (int64_t j = 0; j < lim; j++) {
          double ds = p[j] * (dp[j] - di) * scale;
          for (int64_t d = 0; d < D; d++) {
            dq[qo + i * D + d] += ds * k[ko + j * D + d];
            dk[ko + j * D + d] += ds * q[qo + i * D + d];
            dv[ko + j * D + d] += p[j] * dout[qo + i * D + d];
          }
        }
      }
    }
}

typedef struct {
  float *q, *k, *v, *out, *lse, *r;
  int64_t B, Hq, Hkv, T, D;
  bool causal;
} AttnCtx;

static double attn_loss(void *p) {
  AttnCtx *c = p;
  int rc = k_attention_forward(c->out, c->lse, c->q, c->k, c->v, c->B, c->Hq, c->Hkv, c->T, c->D,
                               c->causal);
  ck_assert_int_eq(rc, K_OK);
  return dot_fd(c->out, c->r, c->B * c->Hq * c->T * c->D);
}

static void run_attention_case(int64_t B, int64_t Hq, int64_t Hkv, int64_t T, int64_t D,
                               bool causal, bool fd) {
  int64_t nq = B * Hq * T * D, nk = B * Hkv * T * D;
  AttnCtx c = {frand(nq, -1.5f, 1.5f), frand(nk, -1.5f, 1.5f), frand(nk, -1, 1), fbuf(nq),
               fbuf(B * Hq * T), frand(nq, -1, 1), B, Hq, Hkv, T, D, causal};
  ck_assert_int_eq(k_attention_forward(c.out, c.lse, c.q, c.k, c.v, B, Hq, Hkv, T, D, causal),
                   K_OK);
  double *wo = dbuf(nq), *wl = dbuf(B * Hq * T), *s1 = dbuf(T), *s2 = dbuf(T);
  ref_attention(wo, wl, c.q, c.k, c.v, B, Hq, Hkv, T, D, causal, s1);
  expect_close("attention out", c.out, wo, nq, 1e-5, 1e-4);
  expect_close("attention lse", c.lse, wl, B * Hq * T, 1e-5, 1e-5);

  float *dq = fconst(nq, GRAD_PREFILL), *dk = fconst(nk, GRAD_PREFILL);
  float *dv = fconst(nk, GRAD_PREFILL);
  ck_assert_int_eq(k_attention_backward(dq, dk, dv, c.r, c.q, c.k, c.v, c.out, c.lse, B, Hq, Hkv,
                                        T, D, causal),
                   K_OK);
  double *wq = dbuf(nq), *wk = dbuf(nk), *wv = dbuf(nk);
  ref_attention_backward(wq, wk, wv, c.r, c.q, c.k, c.v, B, Hq, Hkv, T, D, causal, s1, s2);
  expect_grad("attention dq", dq, wq, nq, 1e-5, 1e-4);
  expect_grad("attention dk", dk, wk, nk, 1e-5, 1e-4);
  expect_grad("attention dv", dv, wv, nk, 1e-5, 1e-4);
  if (fd) {
    check_fd("attention dq fd", c.q, nq, dq, attn_loss, &c, FD_ATOL, FD_RTOL);
    check_fd("attention dk fd", c.k, nk, dk, attn_loss, &c, FD_ATOL, FD_RTOL);
    check_fd("attention dv fd", c.v, nk, dv, attn_loss, &c, FD_ATOL, FD_RTOL);
  }
}

START_TEST(test_attention_small) {
  run_attention_case(2, 4, 2, 5, 6, true, true); /* grouped-query, causal */
  run_attention_case(1, 3, 3, 5, 6, false, true);
  run_attention_case(1, 2, 1, 1, 3, true, true); /* T = 1 */
  float buf[64] = {0};
  ck_assert_int_eq(k_attention_forward(buf, buf, buf, buf, buf, 1, 3, 2, 2, 2, true), K_ERR_SHAPE);
  ck_assert_int_eq(
      k_attention_backward(buf, buf, buf, buf, buf, buf, buf, buf, buf, 1, 3, 2, 2, 2, true),
      K_ERR_SHAPE);
}
END_TEST

START_TEST(test_attention_tiles) {
  /* T crosses the 64-row tile twice, with a ragged last tile. */
  run_attention_case(1, 4, 2, 130, 8, true, false);
  run_attention_case(2, 2, 1, 67, 5, false, false);
}
END_TEST

/* ---------------------------------------------------------------- RoPE */

static void ref_rope(double *out, const float *x, int64_t B, int64_t H, int64_t T, int64_t D,
                     double theta) {
  for (int64_t r = 0; r < B * H; r++)
    for (int64_t t = 0; t < T; t++) {
      const float *xr = x + (r * T + t) * D;
      double *yr = out + (r * T + t) * D;
      for (int64_t i = 0; i + 1 < D; i += 2) {
        double ang = (double)t * pow(theta, -(double)i / (double)D);
        yr[i] = xr[i] * cos(ang) - xr[i + 1] * sin(ang);
        yr[i + 1] = xr[i] * sin(ang) + xr[i + 1] * cos(ang);
      }
      if (D % 2) yr[D - 1] = xr[D - 1];
    }
}

typedef struct {
  float *x, *out, *r;
  int64_t B, H, T, D;
  float theta;
} RopeCtx;

static double rope_loss(void *p) {
  RopeCtx *c = p;
  k_rope_forward(c->out, c->x, c->B, c->H, c->T, c->D, c->theta);
  return dot_fd(c->out, c->r, c->B * c->H * c->T * c->D);
}

START_TEST(test_rope) {
  const float thetas[2] = {10000.0f, 10.0f};
  const int64_t Ds[2] = {6, 7}; /* odd D: last element passes through */
  for (int i = 0; i < 2; i++) {
    const int64_t B = 2, H = 3, T = 5, D = Ds[i], n = B * H * T * D;
    RopeCtx c = {frand(n, -1, 1), fbuf(n), frand(n, -1, 1), B, H, T, D, thetas[i]};
    k_rope_forward(c.out, c.x, B, H, T, D, c.theta);
    double *want = dbuf(n);
    ref_rope(want, c.x, B, H, T, D, c.theta);
    expect_close("rope", c.out, want, n, 1e-6, 1e-5);
    float *inplace = fcopy(c.x, n);
    k_rope_forward(inplace, inplace, B, H, T, D, c.theta);
    expect_close("rope in place", inplace, want, n, 1e-6, 1e-5);
    /* The backward is the inverse rotation: it maps out back to x. */
    float *back = fconst(n, GRAD_PREFILL);
    k_rope_backward(back, c.out, B, H, T, D, c.theta);
    double *wx = dbuf(n);
    for (int64_t j = 0; j < n; j++) wx[j] = c.x[j];
    expect_grad("rope inverse", back, wx, n, 1e-6, 1e-5);
    float *dx = fconst(n, GRAD_PREFILL);
    k_rope_backward(dx, c.r, B, H, T, D, c.theta);
    check_fd("rope fd", c.x, n, dx, rope_loss, &c, FD_ATOL, FD_RTOL);
  }
}
END_TEST

/* ------------------------------------------------------------- permute */

START_TEST(test_permute) {
  const int64_t A = 2, B = 3, C = 5, D = 4, n = A * B * C * D;
  float *x = frand(n, -1, 1), *out = fbuf(n);
  k_permute_0213(out, x, A, B, C, D);
  double *want = dbuf(n);
  for (int64_t a = 0; a < A; a++)
    for (int64_t b = 0; b < B; b++)
      for (int64_t c = 0; c < C; c++)
        for (int64_t d = 0; d < D; d++)
          want[((a * C + c) * B + b) * D + d] = x[((a * B + b) * C + c) * D + d];
  expect_close("permute", out, want, n, 0, 0);
  /* Backward: the permutation's transpose, i.e. it maps out back to x. */
  float *dx = fconst(n, GRAD_PREFILL);
  k_permute_0213_backward(dx, out, A, B, C, D);
  double *wx = dbuf(n);
  for (int64_t i = 0; i < n; i++) wx[i] = x[i];
  expect_grad("permute backward", dx, wx, n, 0, 0);
  /* A = D = 1: a plain 2-D transpose of (3,5). */
  float *t = fbuf(15);
  k_permute_0213(t, x, 1, 3, 5, 1);
  for (int64_t i = 0; i < 3; i++)
    for (int64_t j = 0; j < 5; j++) want[j * 3 + i] = x[i * 5 + j];
  expect_close("transpose", t, want, 15, 0, 0);
}
END_TEST

/* ----------------------------------------------------------- embedding */

START_TEST(test_embedding) {
  const int64_t N = 9, V = 7, C = 5;
  int32_t ids[9] = {3, 0, 6, 3, 3, 1, 6, 0, 2}; /* repeats: summed in n order */
  float *table = frand(V * C, -1, 1), *out = fconst(N * C, NAN);
  ck_assert_int_eq(k_embedding_forward(out, ids, table, N, V, C), K_IDS_VALID);
  double *want = dbuf(N * C);
  for (int64_t n = 0; n < N; n++)
    for (int64_t c = 0; c < C; c++) want[n * C + c] = table[ids[n] * C + c];
  expect_close("embedding", out, want, N * C, 0, 0);
  float *dout = frand(N * C, -1, 1), *dt = fconst(V * C, GRAD_PREFILL);
  ck_assert_int_eq(k_embedding_backward(dt, dout, ids, N, V, C), K_IDS_VALID);
  double *wt = dbuf(V * C);
  for (int64_t n = 0; n < N; n++)
    for (int64_t c = 0; c < C; c++) wt[ids[n] * C + c] += dout[n * C + c];
  expect_grad("embedding backward", dt, wt, V * C, 1e-6, 1e-6);
  /* The lookup is linear in the table, so FD holds exactly; check a row. */
  for (int64_t c = 0; c < C; c++) {
    double g = 0;
    for (int64_t n = 0; n < N; n++)
      if (ids[n] == 3) g += dout[n * C + c];
    ck_assert_msg(fabs(dt[3 * C + c] - GRAD_PREFILL - g) < 1e-6, "embedding row 3");
  }
}
END_TEST

START_TEST(test_embedding_bad_ids) {
  const int64_t N = 6, V = 4, C = 3;
  int32_t ids[6] = {1, 2, 4, 0, -7, 2147483647};
  /* Table padded with sentinels on both sides: any stray access shows. */
  float *mem = fconst(V * C + 2 * C, 1e30f), *table = mem + C;
  for (int64_t i = 0; i < V * C; i++) table[i] = (float)i;
  float *out = fconst(N * C, NAN);
  ck_assert_int_eq(k_embedding_forward(out, ids, table, N, V, C), 2);
  for (int64_t c = 0; c < C; c++) {
    ck_assert(out[2 * C + c] == 0.0f && out[4 * C + c] == 0.0f && out[5 * C + c] == 0.0f);
    ck_assert(out[3 * C + c] == table[c]);
  }
  float *dmem = fconst(V * C + 2 * C, 0.0f), *dt = dmem + C;
  float *dout = fconst(N * C, 1.0f);
  ck_assert_int_eq(k_embedding_backward(dt, dout, ids, N, V, C), 2);
  for (int64_t c = 0; c < C; c++) {
    ck_assert(dmem[c] == 0.0f && dmem[(V + 1) * C + c] == 0.0f); /* sentinels untouched */
    ck_assert(dt[c] == 1.0f && dt[C + c] == 1.0f && dt[2 * C + c] == 1.0f);
    ck_assert(dt[3 * C + c] == 0.0f);
  }
}
END_TEST

/* ---------------------------------------------------------- reductions */

typedef struct {
  int op; /* 0 sum, 1 mean, 2 max */
  float *x, *out, *r;
  int64_t outer, dim, inner;
} RedCtx;

static void red_forward(RedCtx *c) {
  if (c->op == 0) k_reduce_sum_forward(c->out, c->x, c->outer, c->dim, c->inner);
  if (c->op == 1) k_reduce_mean_forward(c->out, c->x, c->outer, c->dim, c->inner);
  if (c->op == 2) k_reduce_max_forward(c->out, c->x, c->outer, c->dim, c->inner);
}

static double red_loss(void *p) {
  RedCtx *c = p;
  red_forward(c);
  return dot_fd(c->out, c->r, c->outer * c->inner);
}

START_TEST(test_reductions) {
  static const int64_t shapes[][3] = {{3, 5, 7}, {1, 9, 1}, {4, 1, 3}, {2, 3, 130}};
  static const char *names[] = {"sum", "mean", "max"};
  for (int si = 0; si < 4; si++)
    for (int op = 0; op < 3; op++) {
      int64_t O = shapes[si][0], Dm = shapes[si][1], I = shapes[si][2], n = O * Dm * I;
      RedCtx c = {op, fbuf(n), fbuf(O * I), frand(O * I, -1, 1), O, Dm, I};
      /* Distinct values at least 0.1 apart, so max's FD probes never swap
       * the argmax. */
      for (int64_t i = 0; i < n; i++) c.x[i] = (float)((i * 37) % n) * 0.1f - 1.0f;
      red_forward(&c);
      double *want = dbuf(O * I);
      for (int64_t o = 0; o < O; o++)
        for (int64_t i = 0; i < I; i++) {
          double s = 0, m = -INFINITY;
          for (int64_t d = 0; d < Dm; d++) {
            s += c.x[(o * Dm + d) * I + i];
            m = fmax(m, c.x[(o * Dm + d) * I + i]);
          }
          want[o * I + i] = op == 0 ? s : op == 1 ? s / (double)Dm : m;
        }
      expect_close(names[op], c.out, want, O * I, 1e-5, 1e-6);
      float *dx = fconst(n, GRAD_PREFILL);
      if (op == 0) k_reduce_sum_backward(dx, c.r, O, Dm, I);
      if (op == 1) k_reduce_mean_backward(dx, c.r, O, Dm, I);
      if (op == 2) k_reduce_max_backward(dx, c.r, c.x, O, Dm, I);
      check_fd(names[op], c.x, n, dx, red_loss, &c, FD_ATOL, FD_RTOL);
    }
}
END_TEST

START_TEST(test_reduce_max_ties_nan) {
  float x[8] = {1, 5, 5, 2, /* row 2: */ 0, NAN, 3, NAN};
  float out[2], dx[8] = {0}, dout[2] = {2.0f, 3.0f};
  k_reduce_max_forward(out, x, 2, 4, 1);
  ck_assert(out[0] == 5.0f && isnan(out[1]));
  k_reduce_max_backward(dx, dout, x, 2, 4, 1);
  float want[8] = {0, 2, 0, 0, 0, 3, 0, 0}; /* first maximum, first NaN */
  for (int i = 0; i < 8; i++) ck_assert_msg(dx[i] == want[i], "max backward [%d] = %g", i, dx[i]);
}
END_TEST

START_TEST(test_global_norm) {
  const int64_t sizes[3] = {5, 63, 100003};
  for (int s = 0; s < 3; s++) {
    float *g = frand(sizes[s], -2, 2);
    double want = 0;
    for (int64_t i = 0; i < sizes[s]; i++) want += (double)g[i] * g[i];
    double got = k_global_norm_sq(g, sizes[s]);
    /* fp32 partials over 64 terms, double across them: ~1e-7 relative. */
    ck_assert_msg(fabs(got - want) <= 1e-6 * want, "norm %.17g want %.17g", got, want);
  }
  ck_assert(k_global_norm_sq(NULL, 0) == 0.0);
}
END_TEST

/* ---------------------------------------------------------- optimizers */

START_TEST(test_adamw) {
  const int64_t n = 13;
  const float lr = 1e-2f, b1 = 0.9f, b2 = 0.95f, eps = 1e-8f, wd = 0.1f;
  float *p = frand(n, -1, 1), *m = fconst(n, 0), *v = fconst(n, 0);
  double *rp = dbuf(n), *rm = dbuf(n), *rv = dbuf(n);
  for (int64_t i = 0; i < n; i++) rp[i] = p[i];
  for (int step = 1; step <= 4; step++) {
    float *g = frand(n, -1, 1);
    k_adamw_update(p, g, m, v, n, lr, b1, b2, eps, wd, step);
    for (int64_t i = 0; i < n; i++) {
      rm[i] = b1 * rm[i] + (1 - b1) * (double)g[i];
      rv[i] = b2 * rv[i] + (1 - b2) * (double)g[i] * g[i];
      double mh = rm[i] / (1 - pow(b1, step)), vh = rv[i] / (1 - pow(b2, step));
      rp[i] = rp[i] - lr * wd * rp[i] - lr * mh / (sqrt(vh) + eps);
    }
  }
  expect_close("adamw param", p, rp, n, 1e-6, 1e-5);
  expect_close("adamw m", m, rm, n, 1e-7, 1e-5);
  expect_close("adamw v", v, rv, n, 1e-8, 1e-5);
}
END_TEST

START_TEST(test_sgd) {
  const int64_t n = 11;
  const float lr = 0.1f, mom = 0.9f, wd = 0.01f;
  for (int variant = 0; variant < 3; variant++) { /* plain, momentum, nesterov */
    float *p = frand(n, -1, 1), *buf = variant ? fconst(n, 0) : NULL;
    double *rp = dbuf(n), *rb = dbuf(n);
    for (int64_t i = 0; i < n; i++) rp[i] = p[i];
    for (int step = 0; step < 3; step++) {
      float *g = frand(n, -1, 1);
      k_sgd_update(p, g, buf, n, lr, variant ? mom : 0.0f, wd, variant == 2);
      for (int64_t i = 0; i < n; i++) {
        double d = g[i] + wd * rp[i];
        if (variant) {
          rb[i] = mom * rb[i] + d;
          d = variant == 2 ? d + mom * rb[i] : rb[i];
        }
        rp[i] -= lr * d;
      }
    }
    expect_close("sgd", p, rp, n, 1e-6, 1e-5);
  }
}
END_TEST

/* ------------------------------------------------------ random, dropout */

START_TEST(test_rng_fill) {
  const int64_t n = 20000;
  float *u = fbuf(n), *z = fbuf(n);
  k_fill_uniform(u, n, -2.0f, 3.0f, 42, 0);
  double su = 0, sz = 0, sz2 = 0;
  for (int64_t i = 0; i < n; i++) {
    ck_assert(u[i] >= -2.0f && u[i] < 3.0f);
    su += u[i];
  }
  ck_assert_msg(fabs(su / n - 0.5) < 0.05, "uniform mean %g", su / n);
  k_fill_normal(z, n, 1.0f, 2.0f, 42, 0);
  for (int64_t i = 0; i < n; i++) {
    ck_assert(isfinite(z[i]));
    sz += z[i];
    sz2 += (double)(z[i] - 1.0f) * (z[i] - 1.0f);
  }
  ck_assert_msg(fabs(sz / n - 1.0) < 0.05, "normal mean %g", sz / n);
  ck_assert_msg(fabs(sqrt(sz2 / n) - 2.0) < 0.05, "normal std %g", sqrt(sz2 / n));
  /* Counter-based: a slice at offset k equals the tail of the full fill. */
  float *tail = fbuf(n - 100);
  k_fill_normal(tail, n - 100, 1.0f, 2.0f, 42, 100);
  ck_assert(memcmp(tail, z + 100, (size_t)(n - 100) * sizeof(float)) == 0);
  ck_assert(k_rng_hash(1, 0) != k_rng_hash(2, 0) && k_rng_hash(1, 0) != k_rng_hash(1, 1));
}
END_TEST

typedef struct {
  float *x, *out, *r;
  int64_t n;
} DropCtx;

static double drop_loss(void *p) {
  DropCtx *c = p;
  k_dropout_forward(c->out, c->x, c->n, 0.4f, 7, 3);
  return dot_fd(c->out, c->r, c->n);
}

START_TEST(test_dropout) {
  const int64_t n = 10000;
  const float p = 0.3f;
  float *x = frand(n, 0.5f, 1.5f), *y = fbuf(n);
  k_dropout_forward(y, x, n, p, 1234, 0);
  int64_t dropped = 0;
  for (int64_t i = 0; i < n; i++) {
    if (y[i] == 0.0f) {
      dropped++;
      continue;
    }
    ck_assert_msg(fabsf(y[i] - x[i] / (1 - p)) <= 1e-6f * fabsf(y[i]), "dropout scale");
  }
  ck_assert_msg(dropped > 2700 && dropped < 3300, "dropped %lld of %lld", (long long)dropped,
                (long long)n);
  /* Same mask in the backward: dx = prefill + (y != 0) / (1-p) for dout = 1. */
  float *dx = fconst(n, GRAD_PREFILL), *ones = fconst(n, 1.0f);
  k_dropout_backward(dx, ones, n, p, 1234, 0);
  for (int64_t i = 0; i < n; i++) {
    float want = GRAD_PREFILL + (y[i] != 0.0f ? 1.0f / (1 - p) : 0.0f);
    ck_assert_msg(dx[i] == want, "dropout mask mismatch at %lld", (long long)i);
  }
  /* Offsets address the same stream. */
  float *y2 = fbuf(n - 10);
  k_dropout_forward(y2, x + 10, n - 10, p, 1234, 10);
  ck_assert(memcmp(y2, y + 10, (size_t)(n - 10) * sizeof(float)) == 0);
  k_dropout_forward(y2, x, n - 10, p, 1235, 0); /* another seed, another mask */
  ck_assert(memcmp(y2, y, (size_t)(n - 10) * sizeof(float)) != 0);
  /* p = 0 is the identity, p = 1 drops everything. */
  k_dropout_forward(y, x, n, 0.0f, 1, 0);
  ck_assert(memcmp(y, x, (size_t)n * sizeof(float)) == 0);
  k_dropout_forward(y, x, n, 1.0f, 1, 0);
  for (int64_t i = 0; i < n; i++) ck_assert(y[i] == 0.0f);
  /* FD on a small piece. */
  DropCtx c = {frand(40, -1, 1), fbuf(40), frand(40, -1, 1), 40};
  float *g = fconst(40, GRAD_PREFILL);
  k_dropout_backward(g, c.r, 40, 0.4f, 7, 3);
  check_fd("dropout fd", c.x, 40, g, drop_loss, &c, FD_ATOL, FD_RTOL);
}
END_TEST

/* ------------------------------------------------- checkers can fail */

START_TEST(test_checkers_detect_errors) {
  /* A gradient off by 1% of its size in one element must be caught. */
  const int64_t n = 12;
  ActCtx c = {ACT_GELU, frand(n, -2, 2), fbuf(n), frand(n, -1, 1), n};
  float *dx = fconst(n, GRAD_PREFILL);
  k_gelu_backward(dx, c.x, c.r, n);
  char msg[160];
  ck_assert_int_eq(fd_mismatches(c.x, n, dx, act_loss, &c, FD_ATOL, FD_RTOL, msg, sizeof msg), 0);
  dx[5] += 0.02f * fmaxf(1.0f, fabsf(dx[5] - GRAD_PREFILL));
  ck_assert_int_eq(fd_mismatches(c.x, n, dx, act_loss, &c, FD_ATOL, FD_RTOL, msg, sizeof msg), 1);
  /* Forgetting to accumulate (overwriting the prefill) is caught too. */
  float *dx2 = fconst(n, 0.0f);
  k_gelu_backward(dx2, c.x, c.r, n);
  ck_assert_int_gt(fd_mismatches(c.x, n, dx2, act_loss, &c, FD_ATOL, FD_RTOL, msg, sizeof msg),
                   0);
  double want[3] = {1.0, 2.0, 3.0};
  float got[3] = {1.0f, 2.0f, 3.001f};
  ck_assert_int_eq(mismatches(got, 0.0, want, 3, 1e-5, 1e-5, msg, sizeof msg), 1);
  got[2] = NAN;
  ck_assert_int_eq(mismatches(got, 0.0, want, 3, 1e-5, 1e-5, msg, sizeof msg), 1);
}
END_TEST

/* ------------------------------------------- determinism across threads */

typedef struct {
  float *ln_dx, *ln_dw, *ln_db, *rms_dw, *att_out, *att_dq, *att_dk, *att_dv, *emb_dt, *ce_dl,
      *red, *bat;
  double norm, ce_mean;
} DetOut;

enum { DN = 300, DC = 70, DV = 50, DB = 2, DHQ = 4, DHKV = 2, DT = 70, DD = 8, DEN = 5000 };

static void det_run(DetOut *o, const float *x, const float *w, const float *dout,
                    const int32_t *ids, const float *qkv, const float *big) {
  int64_t nq = DB * DHQ * DT * DD, nk = DB * DHKV * DT * DD;
  float *mean = fbuf(DN), *rstd = fbuf(DN), *y = fbuf(DN * DC);
  k_layernorm_forward(y, mean, rstd, x, w, w, DN, DC, 1e-5f);
  o->ln_dx = fconst(DN * DC, 0), o->ln_dw = fconst(DC, 0), o->ln_db = fconst(DC, 0);
  k_layernorm_backward(o->ln_dx, o->ln_dw, o->ln_db, dout, x, w, mean, rstd, DN, DC);
  k_rmsnorm_forward(y, rstd, x, w, DN, DC, 1e-5f);
  o->rms_dw = fconst(DC, 0);
  k_rmsnorm_backward(NULL, o->rms_dw, dout, x, w, rstd, DN, DC);
  const float *q = qkv, *k = qkv + nq, *v = qkv + nq + nk;
  float *lse = fbuf(DB * DHQ * DT);
  o->att_out = fbuf(nq);
  ck_assert_int_eq(k_attention_forward(o->att_out, lse, q, k, v, DB, DHQ, DHKV, DT, DD, true),
                   K_OK);
  o->att_dq = fconst(nq, 0), o->att_dk = fconst(nk, 0), o->att_dv = fconst(nk, 0);
  ck_assert_int_eq(k_attention_backward(o->att_dq, o->att_dk, o->att_dv, dout, q, k, v,
                                        o->att_out, lse, DB, DHQ, DHKV, DT, DD, true),
                   K_OK);
  o->emb_dt = fconst(DV * 16, 0);
  k_embedding_backward(o->emb_dt, big, ids, DEN, DV, 16);
  float *losses = fbuf(DN);
  o->ce_dl = fconst(DN * DV, 0);
  k_crossentropy_forward(&o->ce_mean, losses, NULL, big, ids, DN, DV);
  k_crossentropy_backward(o->ce_dl, big, ids, dout, DN, DV);
  o->red = fbuf(DC);
  k_reduce_sum_forward(o->red, x, 1, DN, DC);
  o->norm = k_global_norm_sq(big, DEN * 16);
  o->bat = fbuf(64 * 8 * 8);
  k_matmul_batched(64, o->bat, big, big + 4096, 8, 8, 8, false, true, 0.0f, 64, 64, 64);
}

START_TEST(test_determinism_threads) {
  float *x = frand(DN * DC, -2, 2), *w = frand(DC, 0.5f, 1.5f), *dout = frand(DN * DC, -1, 1);
  float *qkv = frand(DB * (DHQ + 2 * DHKV) * DT * DD, -1, 1), *big = frand(DEN * 16, -1, 1);
  int32_t *ids = talloc(DEN * sizeof(int32_t));
  for (int64_t i = 0; i < DEN; i++) ids[i] = (int32_t)(urand() * DV);
  int saved = k_get_num_threads();
  DetOut ref, got;
  k_set_num_threads(1);
  det_run(&ref, x, w, dout, ids, qkv, big);
  for (int threads = 2; threads <= 3; threads++) {
    k_set_num_threads(threads);
    det_run(&got, x, w, dout, ids, qkv, big);
    int64_t nq = DB * DHQ * DT * DD, nk = DB * DHKV * DT * DD;
    expect_same_bits("layernorm dx", ref.ln_dx, got.ln_dx, DN * DC * sizeof(float));
    expect_same_bits("layernorm dw", ref.ln_dw, got.ln_dw, DC * sizeof(float));
    expect_same_bits("layernorm db", ref.ln_db, got.ln_db, DC * sizeof(float));
    expect_same_bits("rmsnorm dw", ref.rms_dw, got.rms_dw, DC * sizeof(float));
    expect_same_bits("attention out", ref.att_out, got.att_out, (size_t)nq * sizeof(float));
    expect_same_bits("attention dq", ref.att_dq, got.att_dq, (size_t)nq * sizeof(float));
    expect_same_bits("attention dk", ref.att_dk, got.att_dk, (size_t)nk * sizeof(float));
    expect_same_bits("attention dv", ref.att_dv, got.att_dv, (size_t)nk * sizeof(float));
    expect_same_bits("embedding dtable", ref.emb_dt, got.emb_dt, DV * 16 * sizeof(float));
    expect_same_bits("ce dlogits", ref.ce_dl, got.ce_dl, DN * DV * sizeof(float));
    expect_same_bits("ce mean", &ref.ce_mean, &got.ce_mean, sizeof(double));
    expect_same_bits("reduce sum", ref.red, got.red, DC * sizeof(float));
    expect_same_bits("global norm", &ref.norm, &got.norm, sizeof(double));
    expect_same_bits("batched matmul", ref.bat, got.bat, 64 * 64 * sizeof(float));
  }
  k_set_num_threads(saved);
}
END_TEST

/* --------------------------------------------------------------- casts */

/* bf16 is the top half of an fp32: the reference rounds in double. */
static uint16_t ref_bf16(float f) {
  if (isnan(f)) return 0; /* checked separately */
  double lo, hi, x = f;
  uint32_t u;
  memcpy(&u, &f, 4);
  uint32_t t = u & 0xffff0000u, t2 = t + 0x10000u;
  float flo, fhi;
  memcpy(&flo, &t, 4);
  memcpy(&fhi, &t2, 4);
  lo = flo, hi = fhi; /* |lo| <= |x| < |hi| (same sign) */
  if (isinf(fhi)) hi = copysign(0x1p128, x); /* rounding up past the largest: infinity */
  double dl = fabs(x - lo), dh = fabs(hi - x);
  if (dl < dh || (dl == dh && !((t >> 16) & 1))) return (uint16_t)(t >> 16);
  return (uint16_t)(t2 >> 16);
}

START_TEST(test_casts) {
  /* Every fp16 and bf16 pattern reads back to itself, through fp32. */
  for (uint32_t h = 0; h < 65536; h++) {
    float f = k_f16_to_f32((uint16_t)h);
    if (isnan(f)) continue;
    ck_assert_msg(k_f32_to_f16(f) == h, "fp16 %04x -> %a -> %04x", h, f, k_f32_to_f16(f));
    uint16_t h16 = (uint16_t)h;
    _Float16 hf;
    memcpy(&hf, &h16, 2);
    ck_assert_msg((float)hf == f, "fp16 %04x widens to %a", h, f);
    float b = k_bf16_to_f32((uint16_t)h);
    if (!isnan(b)) ck_assert_msg(k_f32_to_bf16(b) == h, "bf16 %04x", h);
  }
  /* Random floats over the whole exponent range, both types, against
   * rounding references: the compiler's _Float16 and a double-rounding bf16. */
  for (int i = 0; i < 200000; i++) {
    uint32_t u = (uint32_t)(urand() * 4294967296.0);
    float f;
    memcpy(&f, &u, 4);
    if (i % 2) f = (float)((urand() - 0.5) * 140000.0); /* around fp16's range */
    if (isnan(f)) continue;
    _Float16 want = (_Float16)f;
    uint16_t wbits;
    memcpy(&wbits, &want, 2);
    ck_assert_msg(k_f32_to_f16(f) == wbits, "fp16 of %a: %04x, want %04x", f, k_f32_to_f16(f), wbits);
    ck_assert_msg(k_f32_to_bf16(f) == ref_bf16(f), "bf16 of %a: %04x, want %04x", f, k_f32_to_bf16(f),
                  ref_bf16(f));
  }
  /* Ties go to even; overflow and NaN. */
  ck_assert_uint_eq(k_f32_to_bf16(1.00390625f), 0x3f80);    /* halfway, even below */
  ck_assert_uint_eq(k_f32_to_bf16(1.01171875f), 0x3f82);    /* halfway, odd below: up */
  ck_assert_uint_eq(k_f32_to_f16(65504.0f), 0x7bff);
  ck_assert_uint_eq(k_f32_to_f16(65520.0f), 0x7c00);        /* halfway to 2^16: infinity */
  ck_assert_uint_eq(k_f32_to_f16(-1e10f), 0xfc00);
  ck_assert_uint_eq(k_f32_to_f16(0x1p-25f), 0x0000);        /* halfway to the least subnormal */
  ck_assert_uint_eq(k_f32_to_f16(0x1.8p-25f), 0x0001);
  ck_assert(isnan(k_bf16_to_f32(k_f32_to_bf16(NAN))));
  ck_assert(isnan(k_f16_to_f32(k_f32_to_f16(-NAN))));
  ck_assert(isinf(k_bf16_to_f32(k_f32_to_bf16(INFINITY))));
  /* The array forms agree with the scalars, on the parallel path too. */
  int64_t n = 70000;
  float *x = frand(n, -3e4f, 3e4f), *back = fbuf(n);
  uint16_t *h = talloc((size_t)n * 2);
  for (int dt = K_DT_BF16; dt <= K_DT_F16; dt++) {
    k_cast_from_f32((KDtype)dt, h, x, n);
    k_cast_to_f32((KDtype)dt, back, h, n);
    for (int64_t i = 0; i < n; i++) {
      uint16_t want = dt == K_DT_BF16 ? k_f32_to_bf16(x[i]) : k_f32_to_f16(x[i]);
      ck_assert_uint_eq(h[i], want);
      ck_assert(back[i] == (dt == K_DT_BF16 ? k_bf16_to_f32(want) : k_f16_to_f32(want)));
    }
  }
}
END_TEST

/* A 16-bit GEMM equals the fp32 GEMM of the rounded operands. */
START_TEST(test_matmul_lowp) {
  const int64_t M = 6, K = 9, N = 5, batch = 3;
  for (int dt = K_DT_BF16; dt <= K_DT_F16; dt++)
    for (int t = 0; t < 4; t++) {
      bool ta = t & 1, tb = t & 2;
      int64_t na = batch * M * K, nb = K * N; /* b broadcast */
      float *a = frand(na, -2, 2), *b = frand(nb, -2, 2), *ar = fbuf(na), *br = fbuf(nb);
      uint16_t *ah = talloc((size_t)na * 2), *bh = talloc((size_t)nb * 2);
      k_cast_from_f32((KDtype)dt, ah, a, na);
      k_cast_from_f32((KDtype)dt, bh, b, nb);
      k_cast_to_f32((KDtype)dt, ar, ah, na);
      k_cast_to_f32((KDtype)dt, br, bh, nb);
      float *work = fconst(na + nb, NAN);
      float *out = fconst(batch * M * N, NAN);
      k_matmul_lowp((KDtype)dt, batch, out, ah, na, bh, nb, M, K, N, ta, tb, 0.0f, M * N, M * K, 0, work);
      double *want = dbuf(batch * M * N);
      for (int64_t i = 0; i < batch; i++) ref_matmul(want + i * M * N, ar + i * M * K, br, M, K, N, ta, tb);
      expect_close("matmul lowp batched", out, want, batch * M * N, 1e-5, 1e-5);
      /* one GEMM, accumulating */
      float *acc = frand(M * N, -1, 1);
      double *want1 = dbuf(M * N);
      ref_matmul(want1, ar, br, M, K, N, ta, tb);
      for (int64_t j = 0; j < M * N; j++) want1[j] += acc[j];
      k_matmul_lowp((KDtype)dt, 1, acc, ah, M * K, bh, nb, M, K, N, ta, tb, 1.0f, 0, 0, 0, work);
      expect_close("matmul lowp beta1", acc, want1, M * N, 1e-5, 1e-5);
    }
}
END_TEST

/* --------------------------------------------------------------- suite */

Suite *kernels_cpu_suite(void) {
  Suite *s = suite_create("kernels_cpu");
  struct {
    const char *name;
    const TTest *tests[8];
  } groups[] = {
      {"matmul", {test_matmul, test_matmul_batched, test_matmul_backward, test_matmul_lowp}},
      {"casts", {test_casts}},
      {"pointwise", {test_elementwise, test_activations, test_swiglu, test_rng_fill, test_dropout}},
      {"norm", {test_layernorm, test_rmsnorm, test_softmax}},
      {"loss", {test_crossentropy, test_crossentropy_bad_target}},
      {"attention", {test_attention_small, test_attention_tiles, test_rope, test_permute}},
      {"embedding", {test_embedding, test_embedding_bad_ids}},
      {"reduce", {test_reductions, test_reduce_max_ties_nan, test_global_norm}},
      {"optim", {test_adamw, test_sgd}},
      {"meta", {test_checkers_detect_errors, test_determinism_threads}},
  };
  for (size_t g = 0; g < sizeof groups / sizeof groups[0]; g++) {
    TCase *tc = tcase_create(groups[g].name);
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 60);
    for (int t = 0; t < 8 && groups[g].tests[t]; t++) tcase_add_test(tc, groups[g].tests[t]);
    suite_add_tcase(s, tc);
  }
  return s;
}
