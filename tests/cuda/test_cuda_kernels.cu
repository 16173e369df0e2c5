/* test_cuda_kernels.cu: every CUDA kernel (kernels/cuda/k_cuda.h) against
 * its CPU twin (kernels/cpu/k_cpu.h), forward and backward, on random
 * inputs with odd sizes, misaligned pointers (the scalar paths) and
 * aligned ones (the float4 paths).
 *
 * Gradients start at GRAD_PREFILL on both sides, so the tests also check
 * that backwards accumulate. Kernels the CPU lacks (the finite check, the
 * clip coefficient, the bf16 AdamW copy, GEMM epilogues) are
 * checked against small host references written here. Kernels that
 * promise bit-identical results (embedding backward, uniform fills,
 * dropout masks) are compared bit for bit, and the kernels with
 * reductions are run twice to check that they are reproducible.
 *
 * Without a CUDA device the program prints "SKIPPED: no CUDA device" and
 * exits 77, which CTest reports as skipped. Otherwise it prints one line
 * per check that fails and a summary; exit status 1 when any failed.
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <vector>

#include <cuda_fp16.h>
#include <cuda_runtime.h>

extern "C" {
#include "k_cpu.h"
}
#include "k_cuda.h"

extern "C" int kc_c_api_check(void); /* c_api_check.c: the header compiles as C */

/* ------------------------------------------------------------- helpers */

#define GRAD_PREFILL 0.25f

typedef std::vector<float> Vec;

static int g_checks, g_failures;
static cudaStream_t g_stream;
static uint64_t g_rng = 0x853c49e6748fea9bULL;
static std::vector<void *> g_dev; /* device allocations, freed per group */

static double urand(void) { /* xorshift64* */
  g_rng ^= g_rng >> 12;
  g_rng ^= g_rng << 25;
  g_rng ^= g_rng >> 27;
  return (double)((g_rng * 0x2545f4914f6cdd1dULL) >> 11) * 0x1p-53;
}

static Vec frand(int64_t n, float lo, float hi) {
  Vec v((size_t)n);
  for (auto &x : v) x = lo + (hi - lo) * (float)urand();
  return v;
}

static void *dalloc(size_t bytes) {
  void *p = nullptr;
  KC_CHECK(cudaMalloc(&p, bytes ? bytes : 16));
  g_dev.push_back(p);
  return p;
}

static void dfree_all(void) {
  KC_CHECK(cudaStreamSynchronize(g_stream));
  for (void *p : g_dev) KC_CHECK(cudaFree(p));
  g_dev.clear();
}

/* Device copy of v. pad > 0 places it pad floats past a 256-byte aligned
 * start, so float4 paths are not taken. */
static float *up(const Vec &v, int pad = 0) {
  float *d = (float *)dalloc((v.size() + (size_t)pad) * sizeof(float)) + pad;
  KC_CHECK(cudaMemcpy(d, v.data(), v.size() * sizeof(float), cudaMemcpyHostToDevice));
  return d;
}

static int32_t *up_ids(const std::vector<int32_t> &v) {
  int32_t *d = (int32_t *)dalloc(v.size() * sizeof(int32_t));
  KC_CHECK(cudaMemcpy(d, v.data(), v.size() * sizeof(int32_t), cudaMemcpyHostToDevice));
  return d;
}

static Vec down(const float *d, int64_t n) {
  KC_CHECK(cudaStreamSynchronize(g_stream));
  Vec v((size_t)n);
  KC_CHECK(cudaMemcpy(v.data(), d, (size_t)n * sizeof(float), cudaMemcpyDeviceToHost));
  return v;
}

template <typename T>
static T down1(const T *d) {
  KC_CHECK(cudaStreamSynchronize(g_stream));
  T v;
  KC_CHECK(cudaMemcpy(&v, d, sizeof v, cudaMemcpyDeviceToHost));
  return v;
}

static void report(bool ok, const char *what, const char *detail) {
  g_checks++;
  if (!ok) {
    g_failures++;
    printf("FAIL %s: %s\n", what, detail);
  }
}

/* |got - want| <= atol + rtol*|want| everywhere (NaN only matches NaN). */
static void expect_close(const char *what, const Vec &got, const Vec &want, double atol,
                         double rtol) {
  char msg[256] = "";
  int64_t bad = 0;
  if (got.size() != want.size()) {
    report(false, what, "size mismatch");
    return;
  }
  for (size_t i = 0; i < got.size(); i++) {
    double g = got[i], w = want[i];
    bool ok = (isnan(g) && isnan(w)) || fabs(g - w) <= atol + rtol * fabs(w) || g == w;
    if (!ok) {
      if (!bad)
        snprintf(msg, sizeof msg, "[%zu] got %.9g want %.9g", i, g, w);
      bad++;
    }
  }
  char detail[320];
  snprintf(detail, sizeof detail, "%lld of %zu off, first %s", (long long)bad, got.size(), msg);
  report(bad == 0, what, detail);
}

static void expect_bits(const char *what, const void *got, const void *want, size_t bytes) {
  report(memcmp(got, want, bytes) == 0, what, "bits differ");
}

static void expect_int(const char *what, int64_t got, int64_t want) {
  char msg[128];
  snprintf(msg, sizeof msg, "got %lld want %lld", (long long)got, (long long)want);
  report(got == want, what, msg);
}

/* bf16 and fp16 conversions: the CPU twins (kernels/cpu/k_cast.c). */
static uint16_t bf16_rne(float f) { return k_f32_to_bf16(f); }
static float bf16_to_f32(uint16_t h) { return k_bf16_to_f32(h); }

static Vec prefill(int64_t n) { return Vec((size_t)n, GRAD_PREFILL); }

/* ------------------------------------------------------ elementwise */

static void test_elementwise(int pad, int64_t n) {
  Vec a = frand(n, -3, 3), b = frand(n, -3, 3), g = frand(n, -1, 1);
  float *da = up(a, pad), *db = up(b, pad), *dg = up(g, pad);
  float *dout = up(Vec((size_t)n, 0.0f), pad);
  Vec want((size_t)n);

  kc_fill(dout, 3.5f, n, g_stream);
  k_fill(want.data(), 3.5f, n);
  expect_close("fill", down(dout, n), want, 0, 0);
  kc_fill(dout, 0.0f, n, g_stream);
  k_fill(want.data(), 0.0f, n);
  expect_close("fill 0", down(dout, n), want, 0, 0);

  kc_add(dout, da, db, n, g_stream);
  k_add(want.data(), a.data(), b.data(), n);
  expect_close("add", down(dout, n), want, 0, 0);

  Vec s = a;
  float *ds = up(s, pad);
  kc_scale(ds, ds, 0.7f, n, g_stream); /* in place */
  k_scale(s.data(), s.data(), 0.7f, n);
  expect_close("scale in place", down(ds, n), s, 0, 0);

  Vec y = b;
  float *dy = up(y, pad);
  kc_axpy(dy, -1.3f, da, n, g_stream);
  k_axpy(y.data(), -1.3f, a.data(), n);
  expect_close("axpy", down(dy, n), y, 1e-6, 1e-6);

  struct Act {
    const char *name;
    void (*kf)(float *, const float *, int64_t, cudaStream_t);
    void (*kb)(float *, const float *, const float *, int64_t, cudaStream_t);
    void (*cf)(float *, const float *, int64_t);
    void (*cb)(float *, const float *, const float *, int64_t);
  } acts[] = {
      {"gelu", kc_gelu_forward, kc_gelu_backward, k_gelu_forward, k_gelu_backward},
      {"silu", kc_silu_forward, kc_silu_backward, k_silu_forward, k_silu_backward},
      {"relu", kc_relu_forward, kc_relu_backward, k_relu_forward, k_relu_backward},
  };
  for (const Act &act : acts) {
    char name[64];
    act.kf(dout, da, n, g_stream);
    act.cf(want.data(), a.data(), n);
    snprintf(name, sizeof name, "%s forward (n=%lld pad=%d)", act.name, (long long)n, pad);
    expect_close(name, down(dout, n), want, 1e-6, 1e-5);
    Vec dx = prefill(n);
    float *ddx = up(dx, pad);
    act.kb(ddx, da, dg, n, g_stream);
    act.cb(dx.data(), a.data(), g.data(), n);
    snprintf(name, sizeof name, "%s backward (n=%lld pad=%d)", act.name, (long long)n, pad);
    expect_close(name, down(ddx, n), dx, 1e-6, 1e-5);
  }

  kc_swiglu_forward(dout, da, db, n, g_stream);
  k_swiglu_forward(want.data(), a.data(), b.data(), n);
  expect_close("swiglu forward", down(dout, n), want, 1e-6, 1e-5);
  Vec ga = prefill(n), gb = prefill(n);
  float *dga = up(ga, pad), *dgb = up(gb, pad);
  kc_swiglu_backward(dga, dgb, dg, da, db, n, g_stream);
  k_swiglu_backward(ga.data(), gb.data(), g.data(), a.data(), b.data(), n);
  expect_close("swiglu backward da", down(dga, n), ga, 1e-6, 1e-5);
  expect_close("swiglu backward db", down(dgb, n), gb, 1e-6, 1e-5);
  kc_swiglu_backward(nullptr, dgb, dg, da, db, n, g_stream); /* da optional */
  k_swiglu_backward(nullptr, gb.data(), g.data(), a.data(), b.data(), n);
  expect_close("swiglu backward db only", down(dgb, n), gb, 1e-6, 1e-5);
  dfree_all();
}

static void test_random(void) {
  const int64_t n = 10007;
  Vec want((size_t)n);
  float *d = (float *)dalloc(n * sizeof(float));
  kc_fill_uniform(d, n, -2.0f, 3.0f, 1234, 77, g_stream);
  k_fill_uniform(want.data(), n, -2.0f, 3.0f, 1234, 77);
  Vec got = down(d, n);
  expect_bits("fill_uniform bits", got.data(), want.data(), n * sizeof(float));
  kc_fill_normal(d, n, 0.5f, 2.0f, 99, 5, g_stream);
  k_fill_normal(want.data(), n, 0.5f, 2.0f, 99, 5);
  expect_close("fill_normal", down(d, n), want, 1e-6, 1e-6);

  Vec x = frand(n, -1, 1), g = frand(n, -1, 1);
  float *dx = up(x), *dg = up(g);
  for (float p : {0.0f, 0.1f, 0.5f, 1.0f}) {
    kc_dropout_forward(d, dx, n, p, 42, 1000, g_stream);
    k_dropout_forward(want.data(), x.data(), n, p, 42, 1000);
    got = down(d, n);
    expect_bits("dropout forward bits", got.data(), want.data(), n * sizeof(float));
    Vec gx = prefill(n);
    float *dgx = up(gx);
    kc_dropout_backward(dgx, dg, n, p, 42, 1000, g_stream);
    k_dropout_backward(gx.data(), g.data(), n, p, 42, 1000);
    expect_close("dropout backward", down(dgx, n), gx, 1e-6, 1e-6);
  }
  dfree_all();
}

/* ------------------------------------------------------ normalization */

static void test_layernorm(int64_t N, int64_t C, bool affine, int pad) {
  char name[96];
  Vec x = frand(N * C, -2, 3), w = frand(C, 0.5f, 1.5f), b = frand(C, -0.5f, 0.5f);
  Vec dout = frand(N * C, -1, 1);
  float *dx_ = up(x, pad), *dw_ = up(w, pad), *db_ = up(b, pad), *dd = up(dout, pad);
  float *dy = up(Vec((size_t)(N * C)), pad), *dmean = up(Vec((size_t)N)), *drstd = up(Vec((size_t)N));
  Vec y((size_t)(N * C)), mean((size_t)N), rstd((size_t)N);
  const float *wp = affine ? w.data() : nullptr, *bp = affine ? b.data() : nullptr;
  kc_layernorm_forward(dy, dmean, drstd, dx_, affine ? dw_ : nullptr, affine ? db_ : nullptr, N, C,
                       1e-5f, g_stream);
  k_layernorm_forward(y.data(), mean.data(), rstd.data(), x.data(), wp, bp, N, C, 1e-5f);
  snprintf(name, sizeof name, "layernorm forward N=%lld C=%lld affine=%d pad=%d", (long long)N,
           (long long)C, affine, pad);
  expect_close(name, down(dy, N * C), y, 1e-5, 1e-4);
  expect_close("layernorm mean", down(dmean, N), mean, 1e-6, 1e-5);
  expect_close("layernorm rstd", down(drstd, N), rstd, 1e-6, 1e-4);

  Vec gx = prefill(N * C), gw = prefill(C), gb = prefill(C);
  float *dgx = up(gx), *dgw = up(gw), *dgb = up(gb);
  void *scratch = dalloc(kc_layernorm_backward_scratch_bytes(N, C));
  /* The CPU's saved statistics on both sides: the backward alone is tested. */
  float *cmean = up(mean), *crstd = up(rstd);
  kc_layernorm_backward(dgx, dgw, dgb, dd, dx_, affine ? dw_ : nullptr, cmean, crstd, N, C,
                        scratch, g_stream);
  k_layernorm_backward(gx.data(), gw.data(), gb.data(), dout.data(), x.data(), wp, mean.data(),
                       rstd.data(), N, C);
  snprintf(name, sizeof name, "layernorm backward dx N=%lld C=%lld", (long long)N, (long long)C);
  expect_close(name, down(dgx, N * C), gx, 1e-5, 1e-4);
  expect_close("layernorm backward dw", down(dgw, C), gw, 1e-4, 1e-4);
  expect_close("layernorm backward db", down(dgb, C), gb, 1e-4, 1e-4);

  /* Reproducible: a second run from the same prefill gives the same bits. */
  Vec first = down(dgw, C);
  float *dgw2 = up(prefill(C));
  kc_layernorm_backward(nullptr, dgw2, nullptr, dd, dx_, affine ? dw_ : nullptr, cmean, crstd, N,
                        C, scratch, g_stream);
  Vec second = down(dgw2, C);
  expect_bits("layernorm dw reproducible", first.data(), second.data(), C * sizeof(float));
  dfree_all();
}

static void test_rmsnorm(int64_t N, int64_t C, bool affine, int pad) {
  char name[96];
  Vec x = frand(N * C, -2, 3), w = frand(C, 0.5f, 1.5f), dout = frand(N * C, -1, 1);
  float *dx_ = up(x, pad), *dw_ = up(w, pad), *dd = up(dout, pad);
  float *dy = up(Vec((size_t)(N * C)), pad), *drstd = up(Vec((size_t)N));
  Vec y((size_t)(N * C)), rstd((size_t)N);
  const float *wp = affine ? w.data() : nullptr;
  kc_rmsnorm_forward(dy, drstd, dx_, affine ? dw_ : nullptr, N, C, 1e-6f, g_stream);
  k_rmsnorm_forward(y.data(), rstd.data(), x.data(), wp, N, C, 1e-6f);
  snprintf(name, sizeof name, "rmsnorm forward N=%lld C=%lld affine=%d pad=%d", (long long)N,
           (long long)C, affine, pad);
  expect_close(name, down(dy, N * C), y, 1e-5, 1e-4);
  expect_close("rmsnorm rstd", down(drstd, N), rstd, 1e-6, 1e-4);

  Vec gx = prefill(N * C), gw = prefill(C);
  float *dgx = up(gx), *dgw = up(gw), *crstd = up(rstd);
  void *scratch = dalloc(kc_rmsnorm_backward_scratch_bytes(N, C));
  kc_rmsnorm_backward(dgx, dgw, dd, dx_, affine ? dw_ : nullptr, crstd, N, C, scratch, g_stream);
  k_rmsnorm_backward(gx.data(), gw.data(), dout.data(), x.data(), wp, rstd.data(), N, C);
  expect_close("rmsnorm backward dx", down(dgx, N * C), gx, 1e-5, 1e-4);
  expect_close("rmsnorm backward dw", down(dgw, C), gw, 1e-4, 1e-4);
  dfree_all();
}

/* ---------------------------------------------------------- softmax, CE */

static void test_softmax(int64_t N, int64_t C) {
  char name[96];
  Vec x = frand(N * C, -5, 5), g = frand(N * C, -1, 1), y((size_t)(N * C));
  float *dx = up(x), *dg = up(g), *dy = up(y);
  kc_softmax_forward(dy, dx, N, C, g_stream);
  k_softmax_forward(y.data(), x.data(), N, C);
  snprintf(name, sizeof name, "softmax forward N=%lld C=%lld", (long long)N, (long long)C);
  expect_close(name, down(dy, N * C), y, 1e-6, 1e-4);
  Vec gx = prefill(N * C);
  float *dgx = up(gx), *cy = up(y);
  kc_softmax_backward(dgx, dg, cy, N, C, g_stream);
  k_softmax_backward(gx.data(), g.data(), y.data(), N, C);
  snprintf(name, sizeof name, "softmax backward N=%lld C=%lld", (long long)N, (long long)C);
  expect_close(name, down(dgx, N * C), gx, 1e-6, 1e-4);
  dfree_all();
}

static void test_crossentropy(int64_t N, int64_t V, int64_t bad_row) {
  char name[96];
  Vec logits = frand(N * V, -4, 4), dloss = frand(N, 0.1f, 1.0f);
  std::vector<int32_t> t((size_t)N);
  for (int64_t n = 0; n < N; n++) t[n] = (int32_t)(urand() * (double)V);
  if (bad_row >= 0) t[bad_row] = (int32_t)V; /* out of range */
  float *dl = up(logits), *dd = up(dloss);
  int32_t *dt = up_ids(t);
  float *dlosses = up(Vec((size_t)N)), *dprobs = up(Vec((size_t)(N * V)));
  double *dmean = (double *)dalloc(sizeof(double));
  int64_t *dbad = (int64_t *)dalloc(sizeof(int64_t));
  Vec losses((size_t)N), probs((size_t)(N * V));
  double mean = 0.0;
  kc_crossentropy_forward(dmean, dlosses, dprobs, dl, dt, N, V, dbad, g_stream);
  int64_t bad = k_crossentropy_forward(&mean, losses.data(), probs.data(), logits.data(), t.data(),
                                       N, V);
  snprintf(name, sizeof name, "crossentropy losses N=%lld V=%lld", (long long)N, (long long)V);
  expect_close(name, down(dlosses, N), losses, 1e-5, 1e-5);
  expect_close("crossentropy probs", down(dprobs, N * V), probs, 1e-7, 1e-4);
  double gmean = down1(dmean);
  report(fabs(gmean - mean) <= 1e-5 * (1 + fabs(mean)), "crossentropy mean", "mean differs");
  expect_int("crossentropy forward first bad", down1(dbad), bad);

  Vec gl = prefill(N * V);
  float *dgl = up(gl);
  kc_crossentropy_backward(dgl, dl, dt, dd, N, V, dbad, g_stream);
  bad = k_crossentropy_backward(gl.data(), logits.data(), t.data(), dloss.data(), N, V);
  expect_close("crossentropy backward", down(dgl, N * V), gl, 1e-6, 1e-4);
  expect_int("crossentropy backward first bad", down1(dbad), bad);
  dfree_all();
}

/* ----------------------------------------------------------- attention */

static void test_attention(int64_t B, int64_t Hq, int64_t Hkv, int64_t T, int64_t D, bool causal) {
  char name[128];
  int64_t nq = B * Hq * T * D, nk = B * Hkv * T * D, nl = B * Hq * T;
  Vec q = frand(nq, -1.5f, 1.5f), k = frand(nk, -1.5f, 1.5f), v = frand(nk, -1, 1);
  Vec dout = frand(nq, -1, 1), out((size_t)nq), lse((size_t)nl);
  float *dq_ = up(q), *dk_ = up(k), *dv_ = up(v), *ddo = up(dout);
  float *dout_ = up(out), *dlse = up(lse);
  int rc = kc_attention_forward(dout_, dlse, dq_, dk_, dv_, B, Hq, Hkv, T, D, causal, g_stream);
  expect_int("attention forward status", rc, KC_OK);
  rc = k_attention_forward(out.data(), lse.data(), q.data(), k.data(), v.data(), B, Hq, Hkv, T, D,
                           causal);
  snprintf(name, sizeof name, "attention out B=%lld Hq=%lld Hkv=%lld T=%lld D=%lld causal=%d",
           (long long)B, (long long)Hq, (long long)Hkv, (long long)T, (long long)D, causal);
  expect_close(name, down(dout_, nq), out, 2e-5, 2e-4);
  snprintf(name, sizeof name, "attention lse T=%lld D=%lld", (long long)T, (long long)D);
  expect_close(name, down(dlse, nl), lse, 2e-5, 2e-5);

  /* Backward from the CPU's out and lse, so only the backward is tested. */
  float *cout_ = up(out), *clse = up(lse);
  Vec gq = prefill(nq), gk = prefill(nk), gv = prefill(nk);
  float *dgq = up(gq), *dgk = up(gk), *dgv = up(gv);
  void *scratch = dalloc(kc_attention_backward_scratch_bytes(B, Hq, T));
  rc = kc_attention_backward(dgq, dgk, dgv, ddo, dq_, dk_, dv_, cout_, clse, B, Hq, Hkv, T, D,
                             causal, scratch, g_stream);
  expect_int("attention backward status", rc, KC_OK);
  k_attention_backward(gq.data(), gk.data(), gv.data(), dout.data(), q.data(), k.data(), v.data(),
                       out.data(), lse.data(), B, Hq, Hkv, T, D, causal);
  snprintf(name, sizeof name, "attention dq T=%lld D=%lld causal=%d", (long long)T, (long long)D,
           causal);
  expect_close(name, down(dgq, nq), gq, 5e-5, 5e-4);
  snprintf(name, sizeof name, "attention dk T=%lld D=%lld causal=%d", (long long)T, (long long)D,
           causal);
  expect_close(name, down(dgk, nk), gk, 5e-5, 5e-4);
  snprintf(name, sizeof name, "attention dv T=%lld D=%lld causal=%d", (long long)T, (long long)D,
           causal);
  expect_close(name, down(dgv, nk), gv, 5e-5, 5e-4);

  /* Reproducible bits. */
  Vec k1 = down(dgk, nk);
  float *dgq2 = up(prefill(nq)), *dgk2 = up(prefill(nk)), *dgv2 = up(prefill(nk));
  kc_attention_backward(dgq2, dgk2, dgv2, ddo, dq_, dk_, dv_, cout_, clse, B, Hq, Hkv, T, D,
                        causal, scratch, g_stream);
  Vec k2 = down(dgk2, nk);
  expect_bits("attention dk reproducible", k1.data(), k2.data(), nk * sizeof(float));
  dfree_all();
}

static void test_attention_shapes(void) {
  float *d = (float *)dalloc(64 * sizeof(float));
  expect_int("attention Hq % Hkv", kc_attention_forward(d, d, d, d, d, 1, 3, 2, 2, 2, true,
                                                        g_stream),
             KC_ERR_SHAPE);
  expect_int("attention D too large",
             kc_attention_forward(d, d, d, d, d, 1, 1, 1, 1, KC_ATTENTION_MAX_D + 1, true,
                                  g_stream),
             KC_ERR_SHAPE);
  expect_int("attention backward Hq % Hkv",
             kc_attention_backward(d, d, d, d, d, d, d, d, d, 1, 3, 2, 2, 2, true, d, g_stream),
             KC_ERR_SHAPE);
  dfree_all();
}

/* --------------------------------------------------------- RoPE, layout */

static void test_rope(int64_t B, int64_t H, int64_t T, int64_t D) {
  int64_t n = B * H * T * D;
  Vec x = frand(n, -1, 1), y((size_t)n), g = frand(n, -1, 1), gx = prefill(n);
  float *dx = up(x), *dg = up(g), *dgx = up(gx);
  kc_rope_forward(dx, dx, B, H, T, D, 10000.0f, g_stream); /* in place */
  k_rope_forward(y.data(), x.data(), B, H, T, D, 10000.0f);
  char name[96];
  snprintf(name, sizeof name, "rope forward in place T=%lld D=%lld", (long long)T, (long long)D);
  expect_close(name, down(dx, n), y, 1e-6, 1e-5);
  kc_rope_backward(dgx, dg, B, H, T, D, 10000.0f, g_stream);
  k_rope_backward(gx.data(), g.data(), B, H, T, D, 10000.0f);
  snprintf(name, sizeof name, "rope backward T=%lld D=%lld", (long long)T, (long long)D);
  expect_close(name, down(dgx, n), gx, 1e-6, 1e-5);
  dfree_all();
}

static void test_permute(int64_t A, int64_t B, int64_t C, int64_t D) {
  int64_t n = A * B * C * D;
  Vec x = frand(n, -1, 1), y((size_t)n), gx = prefill(n);
  float *dx = up(x), *dy = up(y), *dgx = up(gx);
  kc_permute_0213(dy, dx, A, B, C, D, g_stream);
  k_permute_0213(y.data(), x.data(), A, B, C, D);
  expect_close("permute_0213", down(dy, n), y, 0, 0);
  kc_permute_0213_backward(dgx, dy, A, B, C, D, g_stream);
  k_permute_0213_backward(gx.data(), y.data(), A, B, C, D);
  expect_close("permute_0213 backward", down(dgx, n), gx, 0, 0);
  dfree_all();
}

static void test_embedding(int64_t N, int64_t V, int64_t C, bool with_bad) {
  char name[96];
  Vec table = frand(V * C, -1, 1), dout = frand(N * C, -1, 1);
  std::vector<int32_t> ids((size_t)N);
  /* Skewed ids: many repeats of a few rows, so rows sum many terms. */
  for (int64_t n = 0; n < N; n++)
    ids[n] = (int32_t)(urand() < 0.5 ? urand() * 4 : urand() * (double)V);
  if (with_bad) {
    ids[N / 3] = -1;
    ids[N / 2] = (int32_t)V;
  }
  float *dtab = up(table), *dd = up(dout), *dy = up(Vec((size_t)(N * C)));
  int32_t *di = up_ids(ids);
  int64_t *dbad = (int64_t *)dalloc(sizeof(int64_t));
  Vec y((size_t)(N * C));
  kc_embedding_forward(dy, di, dtab, N, V, C, dbad, g_stream);
  int64_t bad = k_embedding_forward(y.data(), ids.data(), table.data(), N, V, C);
  snprintf(name, sizeof name, "embedding forward N=%lld V=%lld C=%lld", (long long)N,
           (long long)V, (long long)C);
  expect_close(name, down(dy, N * C), y, 0, 0);
  expect_int("embedding forward first bad", down1(dbad), bad);

  Vec gt = frand(V * C, -1, 1);
  float *dgt = up(gt);
  kc_embedding_backward(dgt, dd, di, N, V, C, dbad, g_stream);
  bad = k_embedding_backward(gt.data(), dout.data(), ids.data(), N, V, C);
  Vec got = down(dgt, V * C);
  snprintf(name, sizeof name, "embedding backward bits N=%lld V=%lld C=%lld", (long long)N,
           (long long)V, (long long)C);
  expect_bits(name, got.data(), gt.data(), (size_t)(V * C) * sizeof(float));
  expect_int("embedding backward first bad", down1(dbad), bad);
  dfree_all();
}

/* ---------------------------------------------------------- reductions */

static void test_reduce(int64_t outer, int64_t dim, int64_t inner, bool specials) {
  char name[96];
  int64_t n = outer * dim * inner, m = outer * inner;
  Vec x = frand(n, -2, 2), g = frand(m, -1, 1), y((size_t)m);
  if (specials && n > 8) { /* ties and NaN for max */
    for (int64_t i = 0; i < n; i += 3) x[i] = 1.5f;
    x[n / 2] = NAN;
    x[n - 1] = NAN;
  }
  float *dx = up(x), *dg = up(g), *dy = up(y);
  struct {
    const char *what;
    void (*kf)(float *, const float *, int64_t, int64_t, int64_t, cudaStream_t);
    void (*cf)(float *, const float *, int64_t, int64_t, int64_t);
  } fw[] = {{"sum", kc_reduce_sum_forward, k_reduce_sum_forward},
            {"mean", kc_reduce_mean_forward, k_reduce_mean_forward},
            {"max", kc_reduce_max_forward, k_reduce_max_forward}};
  for (auto &f : fw) {
    f.kf(dy, dx, outer, dim, inner, g_stream);
    f.cf(y.data(), x.data(), outer, dim, inner);
    snprintf(name, sizeof name, "reduce %s (%lld,%lld,%lld)", f.what, (long long)outer,
             (long long)dim, (long long)inner);
    expect_close(name, down(dy, m), y, 1e-6, 1e-6);
  }
  Vec gx = prefill(n);
  float *dgx = up(gx);
  kc_reduce_sum_backward(dgx, dg, outer, dim, inner, g_stream);
  k_reduce_sum_backward(gx.data(), g.data(), outer, dim, inner);
  kc_reduce_mean_backward(dgx, dg, outer, dim, inner, g_stream);
  k_reduce_mean_backward(gx.data(), g.data(), outer, dim, inner);
  kc_reduce_max_backward(dgx, dg, dx, outer, dim, inner, g_stream);
  k_reduce_max_backward(gx.data(), g.data(), x.data(), outer, dim, inner);
  snprintf(name, sizeof name, "reduce backward (%lld,%lld,%lld)", (long long)outer,
           (long long)dim, (long long)inner);
  expect_close(name, down(dgx, n), gx, 1e-6, 1e-6);
  dfree_all();
}

static void test_global_norm(int64_t n) {
  Vec g = frand(n, -1, 1);
  float *dg = up(g, 1);
  double *dout = (double *)dalloc(sizeof(double));
  void *scratch = dalloc(kc_global_norm_scratch_bytes());
  kc_global_norm_sq(dout, dg, n, false, scratch, g_stream);
  double want = k_global_norm_sq(g.data(), n);
  double got = down1(dout);
  char msg[128];
  snprintf(msg, sizeof msg, "n=%lld got %.17g want %.17g", (long long)n, got, want);
  report(fabs(got - want) <= 1e-6 * want + 1e-12, "global_norm_sq", msg);
  kc_global_norm_sq(dout, dg, n, true, scratch, g_stream); /* accumulate: 2x */
  double got2 = down1(dout);
  report(got2 == got + got, "global_norm_sq accumulate", "not reproducible / not added");

  /* clip: coef = inv_scale * min(1, max_norm / (sqrt(normsq) * inv_scale)) */
  float *dcoef = (float *)dalloc(sizeof(float));
  float inv_scale = 0.5f, max_norm = 0.1f;
  kc_clip_coef(dcoef, dout, max_norm, inv_scale, g_stream);
  double norm = sqrt(got2) * inv_scale;
  double c = norm > max_norm ? max_norm / norm : 1.0;
  float coef = down1(dcoef);
  report(fabs(coef - c * inv_scale) <= 1e-6 * c, "clip_coef", "coefficient differs");
  dfree_all();
}

static void test_check_finite(void) {
  const int64_t n = 5003;
  Vec x = frand(n, -1, 1);
  float *dx = up(x);
  int *flag = (int *)dalloc(sizeof(int));
  KC_CHECK(cudaMemsetAsync(flag, 0, sizeof(int), g_stream));
  kc_check_finite(flag, dx, n, g_stream);
  expect_int("check_finite clean", down1(flag), 0);
  float inf = INFINITY, nan = NAN;
  KC_CHECK(cudaMemcpy(dx + 4321, &inf, sizeof inf, cudaMemcpyHostToDevice));
  kc_check_finite(flag, dx, n, g_stream);
  expect_int("check_finite inf", down1(flag), 1);
  KC_CHECK(cudaMemsetAsync(flag, 0, sizeof(int), g_stream));
  KC_CHECK(cudaMemcpy(dx + 4321, &nan, sizeof nan, cudaMemcpyHostToDevice));
  kc_check_finite(flag, dx, n, g_stream);
  expect_int("check_finite nan", down1(flag), 1);
  dfree_all();
}

/* ---------------------------------------------------------------- casts */

static void test_casts(void) {
  Vec x = frand(4099, -100, 100);
  float specials[] = {0.0f, -0.0f, INFINITY, -INFINITY, 1e-40f, -3e-39f, 65504.0f, 70000.0f,
                      1.00390625f /* bf16 halfway, even */, 1.01171875f /* halfway, odd */,
                      3.4e38f};
  for (float s : specials) x.push_back(s);
  int64_t n = (int64_t)x.size();
  float *dx = up(x);
  uint16_t *dh = (uint16_t *)dalloc(n * sizeof(uint16_t));
  std::vector<uint16_t> h((size_t)n), want((size_t)n);
  kc_cast_f32_to_bf16(dh, dx, n, g_stream);
  KC_CHECK(cudaStreamSynchronize(g_stream));
  KC_CHECK(cudaMemcpy(h.data(), dh, n * sizeof(uint16_t), cudaMemcpyDeviceToHost));
  for (int64_t i = 0; i < n; i++) want[i] = bf16_rne(x[i]);
  expect_bits("cast f32->bf16", h.data(), want.data(), n * sizeof(uint16_t));
  float *dy = up(Vec((size_t)n));
  kc_cast_bf16_to_f32(dy, dh, n, g_stream);
  Vec back((size_t)n);
  for (int64_t i = 0; i < n; i++) back[i] = bf16_to_f32(want[i]);
  expect_close("cast bf16->f32", down(dy, n), back, 0, 0);

  kc_cast_f32_to_f16(dh, dx, n, g_stream);
  KC_CHECK(cudaStreamSynchronize(g_stream));
  KC_CHECK(cudaMemcpy(h.data(), dh, n * sizeof(uint16_t), cudaMemcpyDeviceToHost));
  for (int64_t i = 0; i < n; i++) want[i] = k_f32_to_f16(x[i]);
  expect_bits("cast f32->f16", h.data(), want.data(), n * sizeof(uint16_t));
  kc_cast_f16_to_f32(dy, dh, n, g_stream);
  for (int64_t i = 0; i < n; i++) back[i] = k_f16_to_f32(want[i]);
  expect_close("cast f16->f32", down(dy, n), back, 0, 0);
  dfree_all();
}

/* ---------------------------------------------------------- optimizers */

static void test_optim(int64_t n) {
  Vec p = frand(n, -1, 1), m((size_t)n, 0.0f), v((size_t)n, 0.0f);
  float *dp = up(p), *dm = up(m), *dv = up(v);
  float *dscale = up(Vec(1, 0.5f));
  uint16_t *dbf = (uint16_t *)dalloc(n * sizeof(uint16_t));
  for (int step = 1; step <= 3; step++) {
    Vec g = frand(n, -1, 1);
    float *dg = up(g);
    bool scaled = step == 2;
    kc_adamw_update(dp, dg, dm, dv, n, 1e-2f, 0.9f, 0.95f, 1e-8f, 0.1f, step,
                    scaled ? dscale : nullptr, dbf, g_stream);
    if (scaled) k_scale(g.data(), g.data(), 0.5f, n);
    k_adamw_update(p.data(), g.data(), m.data(), v.data(), n, 1e-2f, 0.9f, 0.95f, 1e-8f, 0.1f,
                   step);
  }
  expect_close("adamw param", down(dp, n), p, 1e-6, 1e-5);
  expect_close("adamw m", down(dm, n), m, 1e-7, 1e-5);
  expect_close("adamw v", down(dv, n), v, 1e-8, 1e-5);
  std::vector<uint16_t> bf((size_t)n);
  KC_CHECK(cudaMemcpy(bf.data(), dbf, n * sizeof(uint16_t), cudaMemcpyDeviceToHost));
  Vec bff((size_t)n);
  for (int64_t i = 0; i < n; i++) bff[i] = bf16_to_f32(bf[i]);
  expect_close("adamw bf16 copy", bff, p, 0, 1.0 / 128); /* within a bf16 ulp */

  for (float momentum : {0.0f, 0.9f})
    for (bool nesterov : {false, true}) {
      Vec q = frand(n, -1, 1), mom((size_t)n, 0.0f);
      float *dq = up(q), *dmom = up(mom);
      for (int step = 0; step < 2; step++) {
        Vec g = frand(n, -1, 1);
        float *dg = up(g);
        kc_sgd_update(dq, dg, dmom, n, 0.1f, momentum, 0.01f, nesterov, g_stream);
        k_sgd_update(q.data(), g.data(), mom.data(), n, 0.1f, momentum, 0.01f, nesterov);
      }
      expect_close("sgd param", down(dq, n), q, 1e-6, 1e-5);
    }
  dfree_all();
}

/* -------------------------------------------------------------- matmul */

static const char *compute_name(KcCompute c) {
  return c == KC_COMPUTE_F32 ? "f32" : c == KC_COMPUTE_TF32 ? "tf32" : c == KC_COMPUTE_BF16 ? "bf16" : "f16";
}

/* Tolerance for inputs in [-1,1] and inner size K: fp32 keeps ~1e-6
 * relative per term; tf32/bf16/fp16 round each input to 10/7/10 bits. */
static double gemm_atol(KcCompute c, int64_t K) {
  double per = c == KC_COMPUTE_F32 ? 1e-6 : c == KC_COMPUTE_BF16 ? 3e-3 : 1e-3;
  return per * sqrt((double)K) * 4 + 1e-5;
}

static void test_matmul(KcBlas *blas, int64_t M, int64_t K, int64_t N, KcCompute comp) {
  char name[128];
  Vec a = frand(M * K, -1, 1), b = frand(K * N, -1, 1);
  float *da = up(a), *db = up(b);
  for (int ta = 0; ta < 2; ta++)
    for (int tb = 0; tb < 2; tb++)
      for (float beta : {0.0f, 1.0f, 0.5f}) {
        Vec out = frand(M * N, -1, 1);
        Vec init = out;
        if (beta == 0.0f) init.assign((size_t)(M * N), NAN); /* must be ignored */
        float *dout = up(init);
        int rc = kc_matmul(blas, dout, da, db, M, K, N, ta, tb, beta, comp, g_stream);
        snprintf(name, sizeof name, "matmul %s M=%lld K=%lld N=%lld ta=%d tb=%d beta=%g",
                 compute_name(comp), (long long)M, (long long)K, (long long)N, ta, tb, beta);
        if (rc != KC_OK) {
          report(false, name, "status not KC_OK");
          continue;
        }
        if (beta == 0.0f) out.assign((size_t)(M * N), 0.0f);
        /* a, b hold the same numbers whatever the flags: only the layout
         * they are read in changes. */
        k_matmul(out.data(), a.data(), b.data(), M, K, N, ta, tb, beta);
        expect_close(name, down(dout, M * N), out, gemm_atol(comp, K), 1e-3);
      }
  dfree_all();
}

static void test_matmul_batched(KcBlas *blas) {
  const int64_t batch = 5, M = 7, K = 13, N = 9;
  Vec a = frand(batch * M * K, -1, 1), b = frand(batch * K * N, -1, 1);
  float *da = up(a), *db = up(b);
  struct {
    int64_t so, sa, sb;
    bool ta, tb;
  } cases[] = {{M * N, M * K, K * N, false, false},
               {M * N, M * K, 0, false, true}, /* b broadcast */
               {M * N, 0, K * N, true, false}, /* a broadcast */
               {0, M * K, K * N, false, false}, /* reduce over the batch */
               {M * N + 3, M * K, K * N, true, true}};
  for (auto &c : cases) {
    int64_t nout = c.so ? (batch - 1) * c.so + M * N : M * N;
    Vec out = frand(nout, -1, 1);
    float *dout = up(out);
    int rc = kc_matmul_batched(blas, batch, dout, da, db, M, K, N, c.ta, c.tb, 1.0f, c.so, c.sa,
                               c.sb, KC_COMPUTE_F32, g_stream);
    expect_int("matmul_batched status", rc, KC_OK);
    k_matmul_batched(batch, out.data(), a.data(), b.data(), M, K, N, c.ta, c.tb, 1.0f, c.so, c.sa,
                     c.sb);
    char name[96];
    snprintf(name, sizeof name, "matmul_batched so=%lld sa=%lld sb=%lld", (long long)c.so,
             (long long)c.sa, (long long)c.sb);
    expect_close(name, down(dout, nout), out, 1e-5, 1e-4);
  }

  /* backward */
  Vec dout = frand(M * N, -1, 1), ga = prefill(M * K), gb = prefill(K * N);
  float *ddo = up(dout), *dga = up(ga), *dgb = up(gb);
  int rc = kc_matmul_backward(blas, dga, dgb, ddo, da, db, M, K, N, KC_COMPUTE_F32, g_stream);
  expect_int("matmul_backward status", rc, KC_OK);
  k_matmul_backward(ga.data(), gb.data(), dout.data(), a.data(), b.data(), M, K, N);
  expect_close("matmul_backward da", down(dga, M * K), ga, 1e-5, 1e-4);
  expect_close("matmul_backward db", down(dgb, K * N), gb, 1e-5, 1e-4);

  /* K = 0: out = beta * out */
  Vec o = frand(M * N, -1, 1);
  float *dob = up(o);
  rc = kc_matmul(blas, dob, da, db, M, 0, N, false, false, 0.5f, KC_COMPUTE_F32, g_stream);
  expect_int("matmul K=0 status", rc, KC_OK);
  k_matmul(o.data(), a.data(), b.data(), M, 0, N, false, false, 0.5f);
  expect_close("matmul K=0", down(dob, M * N), o, 0, 0);
  dfree_all();
}

static float gelu_ref(float x) {
  Vec in(1, x), out(1);
  k_gelu_forward(out.data(), in.data(), 1);
  return out[0];
}

/* Epilogues and 16-bit operands through kc_matmul_ex. */
static void test_matmul_ex(KcBlas *blas) {
  const int64_t M = 19, K = 40, N = 32;
  Vec a = frand(M * K, -1, 1), b = frand(K * N, -1, 1), bias = frand(N, -1, 1);
  float *da = up(a), *db = up(b), *dbias = up(bias);
  Vec ref((size_t)(M * N));
  k_matmul(ref.data(), a.data(), b.data(), M, K, N, false, false, 0.0f);
  Vec pre = ref, post = ref;
  for (int64_t i = 0; i < M; i++)
    for (int64_t j = 0; j < N; j++) {
      pre[i * N + j] = ref[i * N + j] + bias[j];
      post[i * N + j] = gelu_ref(pre[i * N + j]);
    }
  KcMatmul p;
  memset(&p, 0, sizeof p);
  float *dout = up(Vec((size_t)(M * N))), *dpre = up(Vec((size_t)(M * N)));
  p.out = dout;
  p.a = da;
  p.b = db;
  p.out_type = p.ab_type = KC_DT_F32;
  p.M = M;
  p.K = K;
  p.N = N;
  p.alpha = 1.0f;
  p.beta = 0.0f;
  p.batch = 1;
  p.compute = KC_COMPUTE_F32;
  p.epilogue = KC_EPI_BIAS;
  p.bias = dbias;
  expect_int("matmul_ex bias status", kc_matmul_ex(blas, &p, g_stream), KC_OK);
  expect_close("matmul_ex bias", down(dout, M * N), pre, 1e-5, 1e-4);
  p.epilogue = KC_EPI_BIAS_GELU;
  p.pre_gelu = dpre;
  expect_int("matmul_ex bias+gelu status", kc_matmul_ex(blas, &p, g_stream), KC_OK);
  expect_close("matmul_ex bias+gelu", down(dout, M * N), post, 1e-4, 1e-3);
  expect_close("matmul_ex pre_gelu", down(dpre, M * N), pre, 1e-5, 1e-4);

  /* bf16 operands, fp32 and bf16 outputs. */
  std::vector<uint16_t> ah((size_t)(M * K)), bh((size_t)(K * N));
  Vec ar((size_t)(M * K)), br((size_t)(K * N));
  for (size_t i = 0; i < ah.size(); i++) ar[i] = bf16_to_f32(ah[i] = bf16_rne(a[i]));
  for (size_t i = 0; i < bh.size(); i++) br[i] = bf16_to_f32(bh[i] = bf16_rne(b[i]));
  uint16_t *dah = (uint16_t *)dalloc(ah.size() * 2), *dbh = (uint16_t *)dalloc(bh.size() * 2);
  KC_CHECK(cudaMemcpy(dah, ah.data(), ah.size() * 2, cudaMemcpyHostToDevice));
  KC_CHECK(cudaMemcpy(dbh, bh.data(), bh.size() * 2, cudaMemcpyHostToDevice));
  k_matmul(ref.data(), ar.data(), br.data(), M, K, N, false, false, 0.0f);
  memset(&p, 0, sizeof p);
  p.out = dout;
  p.a = dah;
  p.b = dbh;
  p.out_type = KC_DT_F32;
  p.ab_type = KC_DT_BF16;
  p.M = M;
  p.K = K;
  p.N = N;
  p.alpha = 1.0f;
  p.batch = 1;
  p.compute = KC_COMPUTE_BF16;
  expect_int("matmul_ex bf16->f32 status", kc_matmul_ex(blas, &p, g_stream), KC_OK);
  expect_close("matmul_ex bf16->f32", down(dout, M * N), ref, 1e-4, 1e-3);
  uint16_t *doh = (uint16_t *)dalloc((size_t)(M * N) * 2);
  p.out = doh;
  p.out_type = KC_DT_BF16;
  expect_int("matmul_ex bf16->bf16 status", kc_matmul_ex(blas, &p, g_stream), KC_OK);
  KC_CHECK(cudaStreamSynchronize(g_stream));
  std::vector<uint16_t> oh((size_t)(M * N));
  KC_CHECK(cudaMemcpy(oh.data(), doh, oh.size() * 2, cudaMemcpyDeviceToHost));
  Vec of((size_t)(M * N));
  for (size_t i = 0; i < oh.size(); i++) of[i] = bf16_to_f32(oh[i]);
  expect_close("matmul_ex bf16->bf16", of, ref, 1e-3, 1.0 / 128);

  /* Rejected combinations. */
  p.out_type = KC_DT_F16; /* bf16 operands, fp16 out */
  expect_int("matmul_ex bf16->f16 rejected", kc_matmul_ex(blas, &p, g_stream), KC_ERR_UNSUPPORTED);
  p.out_type = KC_DT_F32;
  p.epilogue = KC_EPI_GELU;
  p.pre_gelu = dpre;
  p.N = 30; /* pre_gelu needs N % 8 == 0 */
  expect_int("matmul_ex pre_gelu N%8", kc_matmul_ex(blas, &p, g_stream), KC_ERR_SHAPE);
  dfree_all();
}

/* ----------------------------------------------------------------- main */

int main(void) {
  int ndev = 0;
  cudaError_t err = cudaGetDeviceCount(&ndev);
  if (err != cudaSuccess || ndev == 0) {
    printf("SKIPPED: no CUDA device\n");
    return 77;
  }
  KC_CHECK(cudaStreamCreateWithFlags(&g_stream, cudaStreamNonBlocking));
  k_set_num_threads(4);
  if (kc_c_api_check() != 0) report(false, "C API", "kc_c_api_check failed");

  for (int pad : {0, 1}) {
    test_elementwise(pad, 1);
    test_elementwise(pad, 1000);
    test_elementwise(pad, 4099);
  }
  test_random();

  for (int pad : {0, 1})
    for (bool affine : {true, false}) {
      test_layernorm(37, 1, affine, pad);
      test_layernorm(37, 7, affine, pad);
      test_layernorm(33, 768, affine, pad);
      test_rmsnorm(37, 7, affine, pad);
      test_rmsnorm(33, 768, affine, pad);
    }
  test_layernorm(5000, 96, true, 0); /* many row chunks in dw/db */
  test_rmsnorm(5000, 96, true, 0);
  test_layernorm(3, 5000, true, 0); /* long rows */

  for (int64_t C : {1, 5, 300, 2500}) test_softmax(33, C);
  test_crossentropy(17, 1, -1);
  test_crossentropy(29, 1000, 11);
  test_crossentropy(5, 50257, -1);

  test_attention_shapes();
  test_attention(2, 4, 2, 5, 6, true); /* grouped-query, causal */
  test_attention(1, 3, 3, 5, 6, false);
  test_attention(1, 2, 1, 1, 3, true); /* T = 1 */
  test_attention(1, 4, 2, 130, 8, true); /* ragged last tile */
  test_attention(2, 2, 1, 67, 5, false);
  test_attention(1, 2, 1, 100, 64, true);
  test_attention(1, 2, 1, 77, 33, true); /* 2 dims per lane, masked lanes */
  test_attention(1, 4, 1, 77, 128, true);
  test_attention(1, 2, 2, 40, 100, false);
  test_attention(1, 2, 1, 45, 256, true); /* > 48 KiB shared memory */

  test_rope(2, 3, 17, 8);
  test_rope(1, 2, 9, 7); /* odd D: last element passes through */
  test_rope(1, 1, 300, 128);
  test_permute(2, 3, 5, 7);
  test_permute(1, 33, 17, 1); /* plain transpose */

  test_embedding(700, 3000, 8, true); /* float4 path, several id chunks */
  test_embedding(300, 50, 7, false);  /* scalar path */
  test_embedding(1, 1, 1, false);

  test_reduce(3, 17, 1, false);
  test_reduce(2, 5000, 1, true);
  test_reduce(4, 9, 37, true);
  test_reduce(1, 3000, 40, false);
  test_reduce(2, 1, 5, false);

  test_global_norm(1);
  test_global_norm(1000);
  test_global_norm(1234567);
  test_check_finite();
  test_casts();
  test_optim(1001);

  KcBlas *blas = kc_blas_create(nullptr, 0);
  void *ws = nullptr;
  KC_CHECK(cudaMalloc(&ws, kc_blas_workspace_bytes()));
  KcBlas *blas_ws = kc_blas_create(ws, kc_blas_workspace_bytes());
  test_matmul(blas, 1, 1, 1, KC_COMPUTE_F32);
  test_matmul(blas_ws, 33, 17, 29, KC_COMPUTE_F32);
  test_matmul(blas_ws, 64, 256, 48, KC_COMPUTE_TF32);
  test_matmul(blas_ws, 64, 256, 48, KC_COMPUTE_BF16);
  test_matmul(blas_ws, 64, 256, 48, KC_COMPUTE_F16);
  test_matmul(blas, 130, 70, 90, KC_COMPUTE_F32);
  test_matmul_batched(blas_ws);
  test_matmul_ex(blas_ws);
  kc_blas_destroy(blas);
  kc_blas_destroy(blas_ws);
  KC_CHECK(cudaFree(ws));

  KC_CHECK(cudaStreamDestroy(g_stream));
  printf("%d checks, %d failed\n", g_checks, g_failures);
  return g_failures ? 1 : 0;
}
