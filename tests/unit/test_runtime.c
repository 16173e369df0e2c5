/* test_runtime.c: unit tests of libdst's single-process modules (alloc,
 * log, rng, json, safetensors, data, metrics).
 *
 * Files are written into a fresh mkdtemp directory per test and removed in
 * the teardown. Tests that expect the process to exit (fatal errors) run
 * the call in a forked child with stderr on a pipe and check both the exit
 * status and the exact message, so they work with or without CK_FORK.
 * Memory accounting is checked as deltas, so nothing depends on what ran
 * before in the same process. dst_internal.h is included to test the JSON
 * parser directly; programs use only dst.h.
 */
#include <check.h>
#include <dirent.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "dst.h"
#include "dst_internal.h"

/* ------------------------------------------------------------- helpers */

static char tmpdir[64];

static void setup_tmpdir(void) {
  snprintf(tmpdir, sizeof tmpdir, "/tmp/dst_rt_XXXXXX");
  ck_assert_ptr_nonnull(mkdtemp(tmpdir));
}

static void teardown_tmpdir(void) {
  DIR *d = opendir(tmpdir);
  if (!d) return;
  struct dirent *e;
  char p[512];
  while ((e = readdir(d)) != NULL) {
    if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
    snprintf(p, sizeof p, "%s/%s", tmpdir, e->d_name);
    unlink(p);
  }
  closedir(d);
  rmdir(tmpdir);
}

/* A path in the test's directory; a ring of buffers so a few can be live. */
static const char *tpath(const char *name) {
  static char bufs[8][256];
  static int next;
  char *b = bufs[next++ % 8];
  snprintf(b, sizeof bufs[0], "%s/%s", tmpdir, name);
  return b;
}

static void write_bytes(const char *path, const void *data, size_t n) {
  FILE *f = fopen(path, "wb");
  ck_assert_ptr_nonnull(f);
  if (n) ck_assert_uint_eq(fwrite(data, 1, n, f), n);
  ck_assert_int_eq(fclose(f), 0);
}

static bool file_exists(const char *path) {
  struct stat st;
  return stat(path, &st) == 0;
}

#define ck_assert_contains(hay, needle)                                                      \
  ck_assert_msg(strstr((hay), (needle)) != NULL, "expected \"%s\" in \"%s\"", (needle), (hay))

/* Runs fn(arg) in a child with stderr captured into out; returns the exit
 * status (-1 if it did not exit normally). */
static int run_child(void (*fn)(void *), void *arg, char *out, size_t cap) {
  int fds[2];
  ck_assert_int_eq(pipe(fds), 0);
  fflush(stdout);
  fflush(stderr);
  pid_t pid = fork();
  ck_assert_int_ge(pid, 0);
  if (pid == 0) {
    close(fds[0]);
    dup2(fds[1], 2);
    close(fds[1]);
    fn(arg);
    _exit(99); /* fn was expected not to return */
  }
  close(fds[1]);
  size_t n = 0;
  for (;;) {
    char sink[256];
    size_t room = cap - 1 - n;
    ssize_t k = room ? read(fds[0], out + n, room) : read(fds[0], sink, sizeof sink);
    if (k <= 0) break;
    if (room) n += (size_t)k;
  }
  out[n] = '\0';
  close(fds[0]);
  int st;
  ck_assert_int_eq(waitpid(pid, &st, 0), pid);
  return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* --------------------------------------------------------------- alloc */

START_TEST(test_alloc_accounting) {
  size_t p0 = dst_mem_live(DST_MEM_PARAMS), g0 = dst_mem_live(DST_MEM_GRADS);
  size_t a0 = dst_mem_live(DST_MEM_ACTS), t0 = dst_mem_live_total();
  dst_mem_reset_peak();
  ck_assert_uint_eq(dst_mem_peak(DST_MEM_ACTS), a0);
  ck_assert_uint_eq(dst_mem_peak_total(), t0);

  float *w = dst_malloc(1000, DST_MEM_PARAMS, "params.w");
  float *g = dst_calloc(250, 12, DST_MEM_GRADS, "grads.w");
  ck_assert_uint_eq((uintptr_t)w % DST_ALIGN, 0);
  ck_assert_uint_eq((uintptr_t)g % DST_ALIGN, 0);
  for (int i = 0; i < 750; i++) ck_assert(g[i] == 0.0f);
  ck_assert_uint_eq(dst_mem_live(DST_MEM_PARAMS), p0 + 1000);
  ck_assert_uint_eq(dst_mem_live(DST_MEM_GRADS), g0 + 3000);
  ck_assert_uint_eq(dst_mem_live_total(), t0 + 4000);

  /* Peak of acts: 100 + 200 live together, then 200 + 50 < 300. */
  void *a = dst_malloc(100, DST_MEM_ACTS, "acts.a");
  void *b = dst_malloc(200, DST_MEM_ACTS, "acts.b");
  dst_free(a);
  void *c = dst_malloc(50, DST_MEM_ACTS, "acts.c");
  ck_assert_uint_eq(dst_mem_live(DST_MEM_ACTS), a0 + 250);
  ck_assert_uint_eq(dst_mem_peak(DST_MEM_ACTS), a0 + 300);
  ck_assert_uint_eq(dst_mem_peak_total(), t0 + 4300);

  dst_free(w);
  dst_free(g);
  dst_free(b);
  dst_free(c);
  ck_assert_uint_eq(dst_mem_live(DST_MEM_PARAMS), p0);
  ck_assert_uint_eq(dst_mem_live(DST_MEM_GRADS), g0);
  ck_assert_uint_eq(dst_mem_live(DST_MEM_ACTS), a0);
  ck_assert_uint_eq(dst_mem_live_total(), t0);
  /* Peaks are high-water marks: freeing does not lower them. */
  ck_assert_uint_eq(dst_mem_peak(DST_MEM_PARAMS), p0 + 1000);
  ck_assert_uint_eq(dst_mem_peak(DST_MEM_GRADS), g0 + 3000);
  ck_assert_uint_eq(dst_mem_peak_total(), t0 + 4300);
  dst_mem_reset_peak();
  ck_assert_uint_eq(dst_mem_peak(DST_MEM_PARAMS), p0);
  ck_assert_uint_eq(dst_mem_peak_total(), t0);
  dst_free(NULL);
}
END_TEST

START_TEST(test_alloc_realloc_zero_and_names) {
  size_t o0 = dst_mem_live(DST_MEM_OTHER), w0 = dst_mem_live(DST_MEM_WORKSPACE);
  void *z1 = dst_malloc(0, DST_MEM_OTHER, "zero");
  void *z2 = dst_malloc(0, DST_MEM_OTHER, "zero");
  ck_assert_ptr_nonnull(z1);
  ck_assert_ptr_ne(z1, z2);
  ck_assert_uint_eq(dst_mem_live(DST_MEM_OTHER), o0);
  dst_free(z1);
  dst_free(z2);

  char *s = dst_realloc(NULL, 4, DST_MEM_WORKSPACE, "ws");
  memcpy(s, "abcd", 4);
  s = dst_realloc(s, 100, DST_MEM_WORKSPACE, "ws");
  ck_assert_int_eq(memcmp(s, "abcd", 4), 0);
  ck_assert_uint_eq(dst_mem_live(DST_MEM_WORKSPACE), w0 + 100);
  s = dst_realloc(s, 2, DST_MEM_WORKSPACE, "ws");
  ck_assert_int_eq(memcmp(s, "ab", 2), 0);
  ck_assert_uint_eq(dst_mem_live(DST_MEM_WORKSPACE), w0 + 2);
  dst_free(s);
  ck_assert_uint_eq(dst_mem_live(DST_MEM_WORKSPACE), w0);

  ck_assert_str_eq(dst_mem_cat_name(DST_MEM_PARAMS), "params");
  ck_assert_str_eq(dst_mem_cat_name(DST_MEM_OPTIM), "optim");
  ck_assert_str_eq(dst_mem_cat_name(DST_MEM_OTHER), "other");
  ck_assert_str_eq(dst_mem_cat_name(DST_MEM_NCAT), "?");
}
END_TEST

static void oom_under_limit(void *arg) {
  (void)arg;
  dst_mem_set_limit(dst_mem_live_total() + 1000);
  dst_malloc(2000, DST_MEM_ACTS, "acts.big");
}

static void calloc_overflow(void *arg) {
  (void)arg;
  dst_calloc(SIZE_MAX / 2, 4, DST_MEM_DATA, "data.huge");
}

static void free_foreign(void *arg) {
  dst_free((char *)arg + 1); /* misaligned: cannot be a block of the funnel */
}

START_TEST(test_alloc_limit_and_oom) {
  char out[1024];
  int st = run_child(oom_under_limit, NULL, out, sizeof out);
  ck_assert_int_eq(st, 1);
  ck_assert_contains(out, "error: out of memory: 'acts.big' (acts) needs 2000 bytes");
  ck_assert_contains(out, "limit");

  st = run_child(calloc_overflow, NULL, out, sizeof out);
  ck_assert_int_eq(st, 1);
  ck_assert_contains(out, "error: out of memory: 'data.huge' (data)");

  void *blk = dst_malloc(16, DST_MEM_OTHER, "blk");
  ck_assert_int_eq(run_child(free_foreign, blk, out, sizeof out), 70);
  ck_assert_contains(out, "dst_free of a pointer not from dst_malloc");
  dst_free(blk);

  /* The non-exiting variant fails cleanly and accounts nothing. */
  size_t t0 = dst_mem_live_total();
  dst_mem_set_limit(t0 + 64);
  ck_assert_ptr_null(dst_try_malloc(65, DST_MEM_OTHER, "x"));
  ck_assert_uint_eq(dst_mem_live_total(), t0);
  void *ok = dst_try_malloc(64, DST_MEM_OTHER, "x");
  ck_assert_ptr_nonnull(ok);
  dst_free(ok);
  dst_mem_set_limit(0);
  ck_assert_uint_eq(dst_mem_live_total(), t0);
}
END_TEST

/* ----------------------------------------------------------------- log */

static void do_fatal(void *arg) {
  int rank = *(int *)arg;
  dst_log_set_rank(rank);
  dst_fatal("bad value %d in '%s'", 3, "x.bin");
}

static void do_die(void *arg) {
  (void)arg;
  dst_die("broken invariant %d", 7);
}

static void do_check(void *arg) {
  int x = *(int *)arg;
  DST_CHECK(x == 2, "x is %d", x);
  _exit(0); /* passed: distinguishable from a failure */
}

static void do_info(void *arg) {
  (void)arg;
  dst_log_set_rank(1);
  dst_log_info("step %d", 5);
  dst_log_warn("slow");
  dst_log_set_rank(-1);
  dst_log_info("plain");
  exit(0);
}

START_TEST(test_log_exit_codes_and_text) {
  char out[1024];
  int rank = -1;
  ck_assert_int_eq(run_child(do_fatal, &rank, out, sizeof out), 1);
  ck_assert_str_eq(out, "error: bad value 3 in 'x.bin'\n");
  rank = 2;
  ck_assert_int_eq(run_child(do_fatal, &rank, out, sizeof out), 1);
  ck_assert_str_eq(out, "[rank 2] error: bad value 3 in 'x.bin'\n");

  ck_assert_int_eq(run_child(do_die, NULL, out, sizeof out), 70);
  ck_assert_contains(out, "internal error: ");
  ck_assert_contains(out, "test_runtime.c:");
  ck_assert_contains(out, ": broken invariant 7\n");

  int x = 3;
  ck_assert_int_eq(run_child(do_check, &x, out, sizeof out), 70);
  ck_assert_contains(out, "check 'x == 2' failed: x is 3\n");
  x = 2;
  ck_assert_int_eq(run_child(do_check, &x, out, sizeof out), 0);
  ck_assert_str_eq(out, "");

  ck_assert_int_eq(run_child(do_info, NULL, out, sizeof out), 0);
  ck_assert_str_eq(out, "[rank 1] step 5\n[rank 1] warning: slow\nplain\n");
}
END_TEST

/* ----------------------------------------------------------------- rng */

START_TEST(test_rng_determinism) {
  /* Golden values pin the algorithm: a change would silently change every
   * initialization and break resuming old checkpoints bit for bit. */
  DstRng r;
  dst_rng_seed(&r, 0);
  ck_assert_uint_eq(dst_rng_u64(&r), UINT64_C(0x99ec5f36cb75f2b4));
  ck_assert_uint_eq(dst_rng_u64(&r), UINT64_C(0xbf6e1f784956452a));
  dst_rng_seed(&r, 42);
  ck_assert_uint_eq(dst_rng_u64(&r), UINT64_C(0x15780b2e0c2ec716));
  ck_assert_uint_eq(dst_rng_u64(&r), UINT64_C(0x6104d9866d113a7e));
  ck_assert_uint_eq(dst_rng_u64(&r), UINT64_C(0xae17533239e499a1));
  for (int i = 3; i < 999; i++) dst_rng_u64(&r);
  ck_assert_uint_eq(dst_rng_u64(&r), UINT64_C(0x8de5848c61ab8968)); /* the 1000th */

  DstRng a, b, c;
  dst_rng_seed(&a, 1234);
  dst_rng_seed(&b, 1234);
  dst_rng_seed(&c, 1235);
  int same_c = 0;
  for (int i = 0; i < 1000; i++) {
    uint64_t x = dst_rng_u64(&a);
    ck_assert_uint_eq(x, dst_rng_u64(&b));
    same_c += x == dst_rng_u64(&c);
  }
  ck_assert_int_eq(same_c, 0);

  DstRng s0, s1, s0b;
  dst_rng_seed_stream(&s0, 7, 0);
  dst_rng_seed_stream(&s1, 7, 1);
  dst_rng_seed_stream(&s0b, 7, 0);
  uint64_t v0 = dst_rng_u64(&s0);
  ck_assert_uint_ne(v0, dst_rng_u64(&s1));
  ck_assert_uint_eq(v0, dst_rng_u64(&s0b));
}
END_TEST

START_TEST(test_rng_distributions) {
  DstRng r;
  dst_rng_seed(&r, 99);
  enum { N = 100000 };
  double sum = 0, sq = 0;
  float lo = 1, hi = 0;
  for (int i = 0; i < N; i++) {
    float u = dst_rng_uniform(&r);
    ck_assert(u >= 0.0f && u < 1.0f);
    lo = u < lo ? u : lo;
    hi = u > hi ? u : hi;
  }
  ck_assert(lo < 0.001f && hi > 0.999f);

  float *x = dst_malloc(N * sizeof *x, DST_MEM_PARAMS, "test.x");
  dst_init_normal(x, N, 0.5f, 2.0f, &r);
  for (int i = 0; i < N; i++) {
    sum += x[i];
    sq += (double)x[i] * x[i];
  }
  double mean = sum / N, sd = sqrt(sq / N - mean * mean);
  ck_assert_msg(fabs(mean - 0.5) < 0.03, "mean %g", mean);
  ck_assert_msg(fabs(sd - 2.0) < 0.03, "std %g", sd);

  sum = sq = 0;
  for (int i = 0; i < N; i++) {
    double z = dst_rng_normal(&r);
    sum += z;
    sq += z * z;
  }
  ck_assert_msg(fabs(sum / N) < 0.02 && fabs(sq / N - 1) < 0.03, "N(0,1) moments %g %g", sum / N,
                sq / N);

  /* The fill is a function of the state and n only (odd n included). */
  DstRng p, q;
  dst_rng_seed(&p, 5);
  dst_rng_seed(&q, 5);
  float y1[7], y2[7];
  dst_init_normal(y1, 7, 0, 1, &p);
  dst_init_normal(y2, 7, 0, 1, &q);
  ck_assert_int_eq(memcmp(y1, y2, sizeof y1), 0);
  ck_assert_int_eq(memcmp(&p, &q, sizeof p), 0);

  dst_init_uniform(x, 1000, -2.0f, -1.0f, &r);
  for (int i = 0; i < 1000; i++) ck_assert(x[i] >= -2.0f && x[i] < -1.0f);
  dst_init_const(x, 5, 0.25f);
  for (int i = 0; i < 5; i++) ck_assert(x[i] == 0.25f);
  dst_free(x);
}
END_TEST

START_TEST(test_rng_save_restore) {
  DstRng r;
  dst_rng_seed(&r, 2024);
  for (int i = 0; i < 37; i++) dst_rng_u64(&r);
  dst_rng_normal(&r);

  /* Save the bytes through a file, as a checkpoint would. */
  const char *path = tpath("rng.bin");
  write_bytes(path, &r, sizeof r);
  float want[50];
  for (int i = 0; i < 50; i++) want[i] = i % 2 ? dst_rng_normal(&r) : dst_rng_uniform(&r);

  DstRng back;
  memset(&back, 0xab, sizeof back);
  FILE *f = fopen(path, "rb");
  ck_assert_ptr_nonnull(f);
  ck_assert_uint_eq(fread(&back, 1, sizeof back, f), sizeof back);
  fclose(f);
  for (int i = 0; i < 50; i++) {
    float got = i % 2 ? dst_rng_normal(&back) : dst_rng_uniform(&back);
    ck_assert_int_eq(memcmp(&got, &want[i], sizeof got), 0);
  }
  ck_assert_int_eq(memcmp(&back, &r, sizeof r), 0);
}
END_TEST

/* ---------------------------------------------------------------- json */

START_TEST(test_json_accepts) {
  const char *text =
      " {\"a\": [1, -2, {\"b\": \"x\\u00e9\\ud83d\\ude00\"}],"
      " \"c\": \"q\\\"\\\\\\/\\b\\f\\n\\r\\t\","
      " \"min\": -9223372036854775808, \"max\": 9223372036854775807, \"e\": {}, \"f\": []}\n";
  DstJson j;
  char err[DST_ERR_LEN] = "";
  ck_assert_msg(dst_json_parse(&j, text, strlen(text), 100, err, sizeof err), "%s", err);
  const DstJsonNode *root = &j.nodes[0];
  ck_assert_int_eq(root->kind, DST_JSON_OBJECT);
  ck_assert_uint_eq(root->count, 6);
  const DstJsonNode *a = &j.nodes[root->first];
  ck_assert_str_eq(dst_json_key(&j, a), "a");
  ck_assert_int_eq(a->kind, DST_JSON_ARRAY);
  ck_assert_uint_eq(a->count, 3);
  const DstJsonNode *one = &j.nodes[a->first], *two = &j.nodes[one->next];
  ck_assert_int_eq(one->num, 1);
  ck_assert_int_eq(two->num, -2);
  const DstJsonNode *bo = &j.nodes[two->next];
  const DstJsonNode *bs = &j.nodes[bo->first];
  ck_assert_str_eq(dst_json_str(&j, bs), "x\xc3\xa9\xf0\x9f\x98\x80");
  ck_assert_uint_eq(bs->len, 7);
  const DstJsonNode *c = &j.nodes[a->next];
  ck_assert_str_eq(dst_json_str(&j, c), "q\"\\/\b\f\n\r\t");
  const DstJsonNode *mn = &j.nodes[c->next], *mx = &j.nodes[mn->next];
  ck_assert(mn->num == INT64_MIN);
  ck_assert(mx->num == INT64_MAX);
  const DstJsonNode *e = &j.nodes[mx->next], *f = &j.nodes[e->next];
  ck_assert_uint_eq(e->count, 0);
  ck_assert_uint_eq(f->count, 0);
  ck_assert_uint_eq(f->next, 0);
  dst_json_free(&j);
}
END_TEST

static void expect_json_error(const char *text, size_t len, uint32_t max_nodes, const char *want) {
  DstJson j;
  char err[DST_ERR_LEN] = "";
  bool ok = dst_json_parse(&j, text, len, max_nodes, err, sizeof err);
  ck_assert_msg(!ok, "accepted: %s", text);
  ck_assert_msg(strstr(err, want) != NULL, "for %s: expected \"%s\" in \"%s\"", text, want, err);
  ck_assert_ptr_null(j.nodes);
}

#define JSON_BAD(text, want) expect_json_error((text), sizeof(text) - 1, 100, (want))

START_TEST(test_json_rejects) {
  JSON_BAD("", "at byte 0: expected a value, found end of header");
  JSON_BAD("  ", "expected a value");
  JSON_BAD("{", "unterminated object");
  JSON_BAD("{\"a\":1", "unterminated object");
  JSON_BAD("[1,2", "unterminated array");
  JSON_BAD("[1,]", "at byte 3: trailing comma in array");
  JSON_BAD("{\"a\":1,}", "trailing comma in object");
  JSON_BAD("[1 2]", "expected ',' or ']' in array, found '2'");
  JSON_BAD("{\"a\" 1}", "expected ':' after object key, found '1'");
  JSON_BAD("{1:2}", "expected a string key in object, found '1'");
  JSON_BAD("01", "leading zero");
  JSON_BAD("-", "expected a digit after '-'");
  JSON_BAD("1.5", "only integers are supported");
  JSON_BAD("1e3", "only integers are supported");
  JSON_BAD("9223372036854775808", "integer out of range");
  JSON_BAD("-9223372036854775809", "integer out of range");
  JSON_BAD("true", "true, false and null are not supported");
  JSON_BAD("null", "not supported");
  JSON_BAD("\"abc", "unterminated string");
  JSON_BAD("\"a\\x\"", "invalid escape '\\x'");
  JSON_BAD("\"\\u12g4\"", "invalid hex digit");
  JSON_BAD("\"\\u12\"", "truncated \\u escape");
  JSON_BAD("\"\\u12\"}}", "invalid hex digit");
  JSON_BAD("\"\\ud800\"", "high surrogate not followed by a low surrogate");
  JSON_BAD("\"\\ud800\\u0041\"", "high surrogate not followed by a low surrogate");
  JSON_BAD("\"\\udc00\"", "unpaired low surrogate");
  JSON_BAD("\"a\x01\"", "raw control character 0x01");
  JSON_BAD("\"\xff\"", "invalid UTF-8");
  JSON_BAD("\"\xc0\xaf\"", "invalid UTF-8");         /* overlong '/' */
  JSON_BAD("\"\xed\xa0\x80\"", "invalid UTF-8");     /* encoded surrogate */
  JSON_BAD("\"\xe2\x82\"", "invalid UTF-8");         /* cut sequence */
  JSON_BAD("{} x", "at byte 3: unexpected 'x' after the top-level value");
  JSON_BAD("{}\0", "unexpected byte 0x00 after the top-level value");
  JSON_BAD("@", "expected a value, found '@'");
  expect_json_error("[1,2,3]", 7, 3, "header too complex (more than 3 values)");

  char deep[200];
  memset(deep, '[', 65);
  memset(deep + 65, ']', 65);
  expect_json_error(deep, 130, 1000, "nesting deeper than 64");
  DstJson j;
  char err[DST_ERR_LEN];
  ck_assert(dst_json_parse(&j, deep + 1, 128, 1000, err, sizeof err)); /* 64 deep is fine */
  dst_json_free(&j);
}
END_TEST

/* --------------------------------------------------------- safetensors */

START_TEST(test_st_roundtrip) {
  float f32[6] = {1.5f, -2.0f, 3.25f, 0.0f, -0.0f, 1e-30f};
  uint16_t bf16[4] = {0x3f80, 0xbf80, 0x7f80, 0x0001};
  int64_t i64[2] = {INT64_MIN, 42};
  uint16_t u16[3] = {0, 1, 65535};
  int32_t i32 = -7;
  int64_t s23[2] = {2, 3}, s4[1] = {4}, s2[1] = {2}, s3[1] = {3}, s05[2] = {0, 5};
  char err[DST_ERR_LEN] = "";

  DstStWriter *w = dst_st_writer_new();
  ck_assert(dst_st_writer_add(w, "h.0.w", DST_DT_F32, s23, 2, f32, err));
  ck_assert(dst_st_writer_add(w, "bf", DST_DT_BF16, s4, 1, bf16, err));
  ck_assert(dst_st_writer_add(w, "q\"uote\\d \xc3\xa9", DST_DT_I64, s2, 1, i64, err));
  ck_assert(dst_st_writer_add(w, "u16", DST_DT_U16, s3, 1, u16, err));
  ck_assert(dst_st_writer_add(w, "scalar", DST_DT_I32, NULL, 0, &i32, err));
  ck_assert(dst_st_writer_add(w, "empty", DST_DT_F16, s05, 2, NULL, err));
  ck_assert(!dst_st_writer_add(w, "bf", DST_DT_F32, s4, 1, f32, err));
  ck_assert_str_eq(err, "duplicate tensor name 'bf'");
  ck_assert(!dst_st_writer_add(w, "", DST_DT_F32, s4, 1, f32, err));
  ck_assert(!dst_st_writer_add(w, "__metadata__", DST_DT_F32, s4, 1, f32, err));
  ck_assert(!dst_st_writer_add(w, "bad\xff", DST_DT_F32, s4, 1, f32, err));
  ck_assert_str_eq(err, "tensor name is not valid UTF-8");
  ck_assert(dst_st_writer_set_metadata(w, "format", "pt", err));
  ck_assert(dst_st_writer_set_metadata(w, "step", "1", err));
  ck_assert(dst_st_writer_set_metadata(w, "step", "100", err)); /* replaces */
  const char *path = tpath("model.safetensors");
  ck_assert_msg(dst_st_writer_write(w, path, err), "%s", err);
  dst_st_writer_free(w);
  ck_assert(!file_exists(tpath("model.safetensors.tmp")));

  /* Layout on disk: length prefix, and the data section 8-aligned. */
  FILE *f = fopen(path, "rb");
  ck_assert_ptr_nonnull(f);
  unsigned char len8[8];
  ck_assert_uint_eq(fread(len8, 1, 8, f), 8);
  fseek(f, 0, SEEK_END);
  long fsize = ftell(f);
  fclose(f);
  uint64_t hlen = 0;
  for (int i = 7; i >= 0; i--) hlen = hlen << 8 | len8[i];
  ck_assert_uint_eq((8 + hlen) % 8, 0);
  ck_assert_uint_eq((uint64_t)fsize, 8 + hlen + 24 + 8 + 16 + 6 + 4);

  DstSafetensors *st = dst_st_open(path, err);
  ck_assert_msg(st != NULL, "%s", err);
  ck_assert_uint_eq(dst_st_count(st), 6);
  const char *names[6] = {"h.0.w", "bf", "q\"uote\\d \xc3\xa9", "u16", "scalar", "empty"};
  for (int i = 0; i < 6; i++) ck_assert_str_eq(dst_st_tensor(st, (size_t)i)->name, names[i]);
  ck_assert_ptr_null(dst_st_tensor(st, 6));

  const DstStTensor *t = dst_st_find(st, "h.0.w");
  ck_assert_ptr_nonnull(t);
  ck_assert_int_eq(t->dtype, DST_DT_F32);
  ck_assert_int_eq(t->ndim, 2);
  ck_assert_int_eq(t->shape[0], 2);
  ck_assert_int_eq(t->shape[1], 3);
  ck_assert_int_eq(memcmp(t->data, f32, sizeof f32), 0);
  t = dst_st_find(st, "bf");
  ck_assert_int_eq(t->dtype, DST_DT_BF16);
  ck_assert_int_eq(memcmp(t->data, bf16, sizeof bf16), 0);
  t = dst_st_find(st, names[2]);
  ck_assert_ptr_nonnull(t);
  ck_assert_int_eq(memcmp(t->data, i64, sizeof i64), 0);
  t = dst_st_find(st, "scalar");
  ck_assert_int_eq(t->ndim, 0);
  ck_assert_int_eq(memcmp(t->data, &i32, 4), 0);
  t = dst_st_find(st, "empty");
  ck_assert_int_eq(t->begin, t->end);
  ck_assert_ptr_null(dst_st_find(st, "nope"));
  ck_assert_str_eq(dst_st_metadata(st, "format"), "pt");
  ck_assert_str_eq(dst_st_metadata(st, "step"), "100");
  ck_assert_ptr_null(dst_st_metadata(st, "nope"));

  uint16_t u16b[3] = {9, 9, 9};
  ck_assert_msg(dst_st_load_into(st, "u16", DST_DT_U16, s3, 1, u16b, err), "%s", err);
  ck_assert_int_eq(memcmp(u16b, u16, sizeof u16), 0);
  float f32b[6];
  ck_assert(dst_st_load_into(st, "h.0.w", DST_DT_F32, s23, 2, f32b, err));
  ck_assert_int_eq(memcmp(f32b, f32, sizeof f32), 0);
  dst_st_close(st);
}
END_TEST

START_TEST(test_st_load_into_mismatch) {
  /* U8 keeps the 768x3072 example small (2.3 MB). */
  int64_t real[2] = {768, 3072}, want[2] = {768, 2304}, flat[1] = {768 * 3072};
  unsigned char *buf = dst_calloc(768, 3072, DST_MEM_DATA, "test.buf");
  char err[DST_ERR_LEN];
  DstStWriter *w = dst_st_writer_new();
  ck_assert(dst_st_writer_add(w, "h.0.mlp.w", DST_DT_U8, real, 2, buf, err));
  const char *path = tpath("m.safetensors");
  ck_assert_msg(dst_st_writer_write(w, path, err), "%s", err);
  dst_st_writer_free(w);

  DstSafetensors *st = dst_st_open(path, err);
  ck_assert_msg(st != NULL, "%s", err);
  ck_assert(!dst_st_load_into(st, "h.1.mlp.w", DST_DT_U8, real, 2, buf, err));
  ck_assert_str_eq(err, "missing tensor 'h.1.mlp.w'");
  ck_assert(!dst_st_load_into(st, "h.0.mlp.w", DST_DT_BF16, real, 2, buf, err));
  ck_assert_str_eq(err, "tensor 'h.0.mlp.w': dtype BF16 expected, U8 found");
  ck_assert(!dst_st_load_into(st, "h.0.mlp.w", DST_DT_U8, want, 2, buf, err));
  ck_assert_str_eq(err, "tensor 'h.0.mlp.w': shape [768,2304] expected, [768,3072] found");
  ck_assert(!dst_st_load_into(st, "h.0.mlp.w", DST_DT_U8, flat, 1, buf, err));
  ck_assert_str_eq(err, "tensor 'h.0.mlp.w': shape [2359296] expected, [768,3072] found");
  ck_assert(!dst_st_load_into(st, "h.0.mlp.w", DST_DT_U8, NULL, 0, buf, err));
  ck_assert_str_eq(err, "tensor 'h.0.mlp.w': shape [] expected, [768,3072] found");
  dst_st_close(st);
  dst_free(buf);
}
END_TEST

/* Writes a hand-made safetensors file: the length prefix (hlen, or the
 * JSON's length when hlen < 0), the JSON, then data_len bytes. */
static const char *write_st_raw(const char *name, const char *json, int64_t hlen,
                                size_t data_len) {
  const char *path = tpath(name);
  size_t jl = strlen(json);
  uint64_t h = hlen < 0 ? jl : (uint64_t)hlen;
  size_t total = 8 + jl + data_len;
  unsigned char *b = calloc(1, total);
  ck_assert_ptr_nonnull(b);
  for (int i = 0; i < 8; i++) b[i] = (unsigned char)(h >> (8 * i));
  memcpy(b + 8, json, jl);
  write_bytes(path, b, total);
  free(b);
  return path;
}

static void expect_st_error(const char *json, int64_t hlen, size_t data_len, const char *want) {
  const char *path = write_st_raw("bad.safetensors", json, hlen, data_len);
  char err[DST_ERR_LEN] = "";
  size_t live0 = dst_mem_live_total();
  DstSafetensors *st = dst_st_open(path, err);
  ck_assert_msg(st == NULL, "accepted: %s", json);
  ck_assert_msg(strstr(err, want) != NULL, "for %s: expected \"%s\" in \"%s\"", json, want, err);
  ck_assert_msg(strncmp(err, path, strlen(path)) == 0, "message does not name the file: %s", err);
  ck_assert_uint_eq(dst_mem_live_total(), live0); /* nothing leaked on the error path */
}

#define T1(off) "{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":" off "}"

START_TEST(test_st_rejects_bad_files) {
  char err[DST_ERR_LEN];
  /* Truncated: not even the length prefix. */
  const char *p = tpath("short.safetensors");
  write_bytes(p, "\x10\x00\x00", 3);
  ck_assert_ptr_null(dst_st_open(p, err));
  ck_assert_contains(err, "file of 3 bytes is too short for a safetensors header");
  ck_assert_ptr_null(dst_st_open(tpath("missing.safetensors"), err));
  ck_assert_contains(err, "cannot open");
  ck_assert_ptr_null(dst_st_open(tmpdir, err));
  ck_assert_contains(err, "not a regular file");

  expect_st_error("{}", 1000, 0, "header length 1000 runs past the end of the file (10 bytes)");
  expect_st_error("{}", (int64_t)200 << 20, 0, "header length 209715200 exceeds the limit");
  /* A valid file cut short in its data section. */
  expect_st_error("{\"a\":" T1("[0,4]") "}", -1, 2, "out of bounds (data section is 2 bytes)");
  expect_st_error("{\"a\":" T1("[0,4]"), -1, 4,
                  "malformed JSON header: at byte 0: unterminated object");
  expect_st_error("{\"a\":" T1("[0,4.0]") "}", -1, 4, "only integers are supported");
  expect_st_error("{\"a\":" T1("[0,4]") ",}", -1, 4, "trailing comma in object");
  expect_st_error("[]", -1, 0, "header is not a JSON object");
  expect_st_error("{\"a\":" T1("[4,12]") "}", -1, 8,
                  "tensor 'a': data_offsets [4,12] out of bounds (data section is 8 bytes)");
  expect_st_error("{\"a\":" T1("[4,0]") "}", -1, 8, "out of bounds");
  expect_st_error("{\"a\":" T1("[0,-4]") "}", -1, 8, "data_offsets must be integers >= 0");
  expect_st_error("{\"a\":" T1("[0]") "}", -1, 8, "data_offsets must be an array [begin, end]");
  expect_st_error("{\"a\":" T1("[0,8]") "}", -1, 8,
                  "tensor 'a': data_offsets [0,8] hold 8 bytes, but F32 [1] needs 4");
  expect_st_error("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                  "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}",
                  -1, 12, "tensors 'a' [0,8) and 'b' [4,12) overlap");
  expect_st_error("{\"a\":" T1("[0,4]") ",\"b\":" T1("[8,12]") "}", -1, 12,
                  "data bytes [4,8) before tensor 'b' are unused");
  expect_st_error("{\"a\":" T1("[0,4]") "}", -1, 6,
                  "the last 2 bytes of the data section belong to no tensor");
  expect_st_error("{\"a\":{\"dtype\":\"F33\",\"shape\":[1],\"data_offsets\":[0,4]}}", -1, 4,
                  "tensor 'a': unknown dtype 'F33'");
  expect_st_error("{\"a\":" T1("[0,4]") ",\"a\":" T1("[4,8]") "}", -1, 8,
                  "duplicate tensor name 'a'");
  expect_st_error("{\"a\":{\"dtype\":\"F32\",\"shape\":[1]}}", -1, 4,
                  "tensor 'a': missing field 'data_offsets'");
  expect_st_error("{\"a\":{\"dtype\":\"F32\",\"dtype\":\"F32\","
                  "\"shape\":[1],\"data_offsets\":[0,4]}}",
                  -1, 4, "tensor 'a': duplicate field 'dtype'");
  expect_st_error("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4],\"x\":1}}", -1, 4,
                  "tensor 'a': unknown field 'x'");
  expect_st_error("{\"a\":{\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,4]}}", -1, 4,
                  "shape entries must be integers >= 0");
  expect_st_error("{\"a\":{\"dtype\":\"U8\",\"shape\":[1,1,1,1,1,1,1,1,1],\"data_offsets\":[0,1]}}",
                  -1, 1, "9 dimensions, at most 8 supported");
  expect_st_error("{\"a\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296],"
                  "\"data_offsets\":[0,4]}}",
                  -1, 4, "overflows");
  expect_st_error("{\"a\":[]}", -1, 0, "tensor 'a': description is not a JSON object");
  expect_st_error("{\"a\\u0000b\":" T1("[0,4]") "}", -1, 4, "tensor name contains a NUL byte");
  expect_st_error("{\"__metadata__\":{\"k\":1}}", -1, 0,
                  "__metadata__ value of 'k' is not a string");
  expect_st_error("{\"__metadata__\":{\"k\":\"1\",\"k\":\"2\"}}", -1, 0,
                  "duplicate key 'k' in __metadata__");
  expect_st_error("{\"__metadata__\":{},\"__metadata__\":{}}", -1, 0, "duplicate '__metadata__'");

  /* Accepted edge cases: empty object, padding, empty tensors anywhere. */
  p = write_st_raw("ok.safetensors",
                   "{\"e\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[2,2]},"
                   "\"a\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[0,4]}}     ",
                   -1, 4);
  DstSafetensors *st = dst_st_open(p, err);
  ck_assert_msg(st != NULL, "%s", err);
  ck_assert_uint_eq(dst_st_count(st), 2);
  ck_assert_str_eq(dst_st_tensor(st, 0)->name, "e");
  dst_st_close(st);
  p = write_st_raw("empty.safetensors", "{}", -1, 0);
  st = dst_st_open(p, err);
  ck_assert_msg(st != NULL, "%s", err);
  ck_assert_uint_eq(dst_st_count(st), 0);
  ck_assert_ptr_null(dst_st_find(st, "a"));
  dst_st_close(st);
}
END_TEST

START_TEST(test_st_write_failure_leaves_nothing) {
  char err[DST_ERR_LEN];
  float x = 1;
  int64_t s1[1] = {1};
  DstStWriter *w = dst_st_writer_new();
  ck_assert(dst_st_writer_add(w, "x", DST_DT_F32, s1, 1, &x, err));
  const char *path = tpath("no_such_dir/m.safetensors");
  ck_assert(!dst_st_writer_write(w, path, err));
  ck_assert_contains(err, "m.safetensors.tmp: cannot open");
  dst_st_writer_free(w);

  /* Overwriting an existing file replaces it whole. */
  path = tpath("m.safetensors");
  write_bytes(path, "garbage", 7);
  w = dst_st_writer_new();
  char name[32];
  float vals[300];
  for (int i = 0; i < 300; i++) { /* enough names to rehash the name set */
    vals[i] = (float)i;
    snprintf(name, sizeof name, "t%d", i);
    ck_assert(dst_st_writer_add(w, name, DST_DT_F32, s1, 1, &vals[i], err));
  }
  ck_assert(!dst_st_writer_add(w, "t123", DST_DT_F32, s1, 1, &x, err));
  ck_assert_msg(dst_st_writer_write(w, path, err), "%s", err);
  dst_st_writer_free(w);
  DstSafetensors *st = dst_st_open(path, err);
  ck_assert_msg(st != NULL, "%s", err);
  ck_assert_uint_eq(dst_st_count(st), 300);
  for (int i = 0; i < 300; i++) {
    snprintf(name, sizeof name, "t%d", i);
    float v;
    ck_assert(dst_st_load_into(st, name, DST_DT_F32, s1, 1, &v, err));
    ck_assert(v == (float)i);
  }
  dst_st_close(st);
}
END_TEST

/* ---------------------------------------------------------------- data */

/* Writes an llm.c shard with the given header fields and n tokens. */
static const char *write_shard(const char *name, int32_t magic, int32_t version, int32_t claimed,
                               const uint16_t *tok, size_t n) {
  const char *path = tpath(name);
  size_t total = DST_SHARD_HEADER_BYTES + 2 * n;
  unsigned char *b = calloc(1, total);
  ck_assert_ptr_nonnull(b);
  int32_t head[3] = {magic, version, claimed};
  memcpy(b, head, sizeof head); /* the host is little-endian (checked in dst_data.c) */
  if (n) memcpy(b + DST_SHARD_HEADER_BYTES, tok, 2 * n);
  write_bytes(path, b, total);
  free(b);
  return path;
}

/* A shard of n tokens whose value is their index: each window's first
 * input token names where it starts. */
static const char *index_shard(const char *name, size_t n) {
  uint16_t *tok = malloc(n * sizeof *tok);
  ck_assert_ptr_nonnull(tok);
  for (size_t i = 0; i < n; i++) tok[i] = (uint16_t)i;
  const char *p = write_shard(name, DST_SHARD_MAGIC, 1, (int32_t)n, tok, n);
  free(tok);
  return p;
}

/* The next batch, which must read. */
static void next_ok(DstDataLoader *dl, int32_t *in, int32_t *tg) {
  char err[DST_ERR_LEN] = "";
  ck_assert_msg(dst_data_next(dl, in, tg, err), "%s", err);
}

static void expect_row(const int32_t *row, const char *want, int T) {
  for (int t = 0; t < T; t++)
    ck_assert_msg(row[t] == (unsigned char)want[t], "token %d: %d, expected '%c'", t, row[t],
                  want[t]);
}

START_TEST(test_data_text) {
  const char *text = "The quick brown fox jumps over the lazy dog.";
  const char *path = tpath("tiny.txt");
  write_bytes(path, text, strlen(text));
  char err[DST_ERR_LEN];
  DstDataLoader *dl = dst_data_open(path, 2, 4, 0, 1, err);
  ck_assert_msg(dl != NULL, "%s", err);
  ck_assert_int_eq(dl->format, DST_DATA_TEXT);
  ck_assert_uint_eq(dl->ntokens, 44);
  ck_assert_uint_eq(dl->vocab, 256);
  ck_assert_uint_eq(dl->max_token, 'z');
  int32_t in[8], tg[8];
  next_ok(dl, in, tg);
  expect_row(in, "The ", 4);
  expect_row(tg, "he q", 4);
  expect_row(in + 4, "quic", 4);
  expect_row(tg + 4, "uick", 4);
  ck_assert_uint_eq(dl->pos, 8);
  next_ok(dl, in, tg);
  expect_row(in, "k br", 4);
  expect_row(in + 4, "own ", 4);
  expect_row(tg + 4, "wn f", 4);
  ck_assert_uint_eq(dst_data_batches_per_epoch(dl), 5); /* 10 windows of 4 */
  dst_data_reset(dl);
  next_ok(dl, in, tg);
  expect_row(in, "The ", 4);
  dst_data_close(dl);
}
END_TEST

START_TEST(test_data_shard_exact_tokens) {
  uint16_t tok[12] = {50256, 15496, 11, 995, 0, 65535, 7, 7, 1, 2, 3, 4};
  const char *path = write_shard("tok.bin", DST_SHARD_MAGIC, 1, 12, tok, 12);
  char err[DST_ERR_LEN];
  DstDataLoader *dl = dst_data_open(path, 1, 5, 0, 1, err);
  ck_assert_msg(dl != NULL, "%s", err);
  ck_assert_int_eq(dl->format, DST_DATA_SHARD);
  ck_assert_uint_eq(dl->ntokens, 12);
  ck_assert_uint_eq(dl->max_token, 65535);
  int32_t in[5], tg[5];
  next_ok(dl, in, tg);
  int32_t want_in[5] = {50256, 15496, 11, 995, 0}, want_tg[5] = {15496, 11, 995, 0, 65535};
  ck_assert_int_eq(memcmp(in, want_in, sizeof in), 0);
  ck_assert_int_eq(memcmp(tg, want_tg, sizeof tg), 0);
  next_ok(dl, in, tg);
  int32_t want_in2[5] = {65535, 7, 7, 1, 2}, want_tg2[5] = {7, 7, 1, 2, 3};
  ck_assert_int_eq(memcmp(in, want_in2, sizeof in), 0);
  ck_assert_int_eq(memcmp(tg, want_tg2, sizeof tg), 0);
  next_ok(dl, in, tg); /* 10 + 6 > 12: wraps */
  ck_assert_int_eq(memcmp(in, want_in, sizeof in), 0);
  dst_data_close(dl);
}
END_TEST

START_TEST(test_data_rank_slices) {
  enum { B = 2, T = 5, W = 3, STEPS = 12 };
  const char *path = index_shard("idx.bin", 200);
  char err[DST_ERR_LEN];
  DstDataLoader *global = dst_data_open(path, B * W, T, 0, 1, err);
  ck_assert_msg(global != NULL, "%s", err);
  DstDataLoader *rank[W];
  for (int r = 0; r < W; r++) {
    rank[r] = dst_data_open(path, B, T, r, W, err);
    ck_assert_msg(rank[r] != NULL, "%s", err);
  }
  int32_t gin[B * W * T], gtg[B * W * T], in[B * T], tg[B * T];
  bool wrapped = false;
  for (int s = 0; s < STEPS; s++) {
    next_ok(global, gin, gtg);
    bool seen[200] = {false};
    for (int r = 0; r < W; r++) {
      next_ok(rank[r], in, tg);
      ck_assert_uint_eq(rank[r]->pos, global->pos);
      /* Rank r holds sequences r*B .. r*B+B-1 of the global batch. */
      ck_assert_int_eq(memcmp(in, gin + r * B * T, sizeof in), 0);
      ck_assert_int_eq(memcmp(tg, gtg + r * B * T, sizeof tg), 0);
      for (int b = 0; b < B; b++) {
        int32_t start = in[b * T];
        ck_assert_msg(!seen[start], "window at %d given twice in step %d", start, s);
        seen[start] = true;
        for (int t = 0; t < T; t++) {
          ck_assert_int_eq(in[b * T + t], start + t);
          ck_assert_int_eq(tg[b * T + t], start + t + 1); /* shifted by one */
        }
        ck_assert_int_le(start + T, 199); /* the target of the last input exists */
        wrapped |= start == 0 && s > 0;
      }
    }
    /* The global batch is B*W consecutive windows (until a wrap). */
    for (int k = 1; k < B * W; k++) {
      int32_t prev = gin[(k - 1) * T], cur = gin[k * T];
      ck_assert_msg(cur == prev + T || cur == 0, "window %d starts at %d after %d", k, cur, prev);
    }
  }
  ck_assert(wrapped); /* 12 steps x 30 tokens ran past 200 */
  for (int r = 0; r < W; r++) dst_data_close(rank[r]);
  dst_data_close(global);
}
END_TEST

START_TEST(test_data_wrap_and_restore) {
  const char *path = tpath("digits.txt");
  write_bytes(path, "0123456789A", 11);
  char err[DST_ERR_LEN];
  DstDataLoader *dl = dst_data_open(path, 1, 4, 0, 1, err);
  ck_assert_msg(dl != NULL, "%s", err);
  ck_assert_uint_eq(dst_data_batches_per_epoch(dl), 2);
  int32_t in[12], tg[12];
  next_ok(dl, in, tg);
  expect_row(in, "0123", 4);
  expect_row(tg, "1234", 4);
  next_ok(dl, in, tg);
  expect_row(in, "4567", 4);
  expect_row(tg, "5678", 4);
  next_ok(dl, in, tg); /* a window at 8 needs tokens 8..12: wraps */
  expect_row(in, "0123", 4);
  dst_data_close(dl);

  /* A wrap inside one batch: windows at 0, 4, then 0 again. */
  dl = dst_data_open(path, 3, 4, 0, 1, err);
  ck_assert_msg(dl != NULL, "%s", err);
  next_ok(dl, in, tg);
  expect_row(in, "0123", 4);
  expect_row(in + 4, "4567", 4);
  expect_row(in + 8, "0123", 4);
  expect_row(tg + 8, "1234", 4);
  ck_assert_uint_eq(dl->pos, 4);
  ck_assert_uint_eq(dst_data_batches_per_epoch(dl), 1);
  dst_data_close(dl);

  /* Resume: a fresh loader given the saved pos continues identically. */
  const char *shard = index_shard("idx.bin", 97);
  DstDataLoader *a = dst_data_open(shard, 2, 7, 1, 2, err);
  ck_assert_msg(a != NULL, "%s", err);
  int32_t ain[14], atg[14], bin[14], btg[14];
  for (int s = 0; s < 5; s++) next_ok(a, ain, atg);
  uint64_t saved = a->pos;
  DstDataLoader *b = dst_data_open(shard, 2, 7, 1, 2, err);
  ck_assert_msg(b != NULL, "%s", err);
  b->pos = saved;
  for (int s = 0; s < 6; s++) {
    next_ok(a, ain, atg);
    next_ok(b, bin, btg);
    ck_assert_int_eq(memcmp(ain, bin, sizeof ain), 0);
    ck_assert_int_eq(memcmp(atg, btg, sizeof atg), 0);
    ck_assert_uint_eq(a->pos, b->pos);
  }
  dst_data_close(a);
  dst_data_close(b);
}
END_TEST

/* A file truncated after open: the next batch that reaches past the new
 * end is an error naming both sizes (a mapping would have raised SIGBUS),
 * and the position does not move. */
START_TEST(test_data_truncated_while_reading) {
  char text[200];
  for (int i = 0; i < 200; i++) text[i] = (char)('a' + i % 26);
  const char *path = tpath("shrinks.txt");
  write_bytes(path, text, sizeof text);
  char err[DST_ERR_LEN] = "";
  DstDataLoader *dl = dst_data_open(path, 2, 8, 0, 1, err);
  ck_assert_msg(dl != NULL, "%s", err);
  int32_t in[16], tg[16];
  next_ok(dl, in, tg);
  ck_assert_int_eq(truncate(path, 20), 0);
  ck_assert(!dst_data_next(dl, in, tg, err)); /* windows at 16 and 24 */
  ck_assert_contains(err, "shrinks.txt: the file is now 20 bytes, it had 200 when training started: it was "
                          "truncated or replaced while training");
  ck_assert_uint_eq(dl->pos, 16);
  dst_data_reset(dl);
  next_ok(dl, in, tg); /* windows at 0 and 8 (tokens 0..16) are still there */
  expect_row(in + 8, "ijklmnop", 8);
  dst_data_close(dl);
}
END_TEST

/* Token ids against a limit: the first token at or above it, with its
 * value and offset; also across the streaming pass's buffer boundary. */
START_TEST(test_data_check_ids) {
  char err[DST_ERR_LEN] = "";
  const char *text = tpath("ids.txt");
  write_bytes(text, "The quick brown fox", 19);
  DstDataLoader *dl = dst_data_open(text, 1, 4, 0, 1, err);
  ck_assert_msg(dl != NULL, "%s", err);
  ck_assert(dst_data_check_ids(dl, 256, "input 'x'", err));
  ck_assert(dst_data_check_ids(dl, 'x' + 1, "input 'x'", err));
  ck_assert(!dst_data_check_ids(dl, 100, "input 'x'", err));
  ck_assert_contains(err, "ids.txt: token 104 at token offset 1 is outside the model's vocabulary: input 'x' "
                          "takes ids below 100");
  dst_data_close(dl);

  enum { N = 700000 }; /* 1.4 MB of tokens: more than one read of the scan */
  uint16_t *tok = calloc(N, sizeof *tok);
  ck_assert_ptr_nonnull(tok);
  for (int i = 0; i < N; i++) tok[i] = (uint16_t)(i % 1000);
  tok[650001] = 50257;
  const char *shard = write_shard("ids.bin", DST_SHARD_MAGIC, 1, N, tok, N);
  free(tok);
  size_t live0 = dst_mem_live_total();
  dl = dst_data_open(shard, 4, 64, 0, 1, err);
  ck_assert_msg(dl != NULL, "%s", err);
  ck_assert_uint_eq(dl->max_token, 50257);
  ck_assert(!dst_data_check_ids(dl, 50257, "input 'idx'", err));
  ck_assert_contains(err, "ids.bin: token 50257 at token offset 650001 is outside the model's vocabulary: input "
                          "'idx' takes ids below 50257");
  ck_assert(dst_data_check_ids(dl, 50258, "input 'idx'", err));
  /* the loader holds one window, not the file */
  ck_assert_uint_lt(dst_mem_live_total() - live0, 4096);
  dst_data_close(dl);
}
END_TEST

/* The unigram entropy computed at open: ln 2 for two equally frequent
 * tokens, 0 for one. */
START_TEST(test_data_entropy) {
  char err[DST_ERR_LEN] = "";
  const char *p = tpath("ab.txt");
  write_bytes(p, "abababab", 8);
  DstDataLoader *dl = dst_data_open(p, 1, 2, 0, 1, err);
  ck_assert_msg(dl != NULL, "%s", err);
  ck_assert(fabs(dl->entropy - log(2.0)) < 1e-12);
  dst_data_close(dl);
  write_bytes(p, "aaaa", 4);
  dl = dst_data_open(p, 1, 2, 0, 1, err);
  ck_assert_msg(dl != NULL, "%s", err);
  ck_assert(dl->entropy == 0.0);
  dst_data_close(dl);
}
END_TEST

static void expect_data_error(const char *path, int B, int T, int rank, int world,
                              const char *want) {
  char err[DST_ERR_LEN] = "";
  size_t live0 = dst_mem_live_total();
  DstDataLoader *dl = dst_data_open(path, B, T, rank, world, err);
  ck_assert_msg(dl == NULL, "accepted %s", path);
  ck_assert_msg(strstr(err, want) != NULL, "expected \"%s\" in \"%s\"", want, err);
  ck_assert_msg(strncmp(err, path, strlen(path)) == 0, "message does not name the file: %s", err);
  ck_assert_uint_eq(dst_mem_live_total(), live0);
}

START_TEST(test_data_rejects) {
  uint16_t tok[100] = {0};
  /* Header claims 100 tokens, only 50 are there. */
  const char *p = tpath("trunc.bin");
  write_shard("trunc.bin", DST_SHARD_MAGIC, 1, 100, tok, 50);
  expect_data_error(p, 1, 4, 0, 1,
                    "truncated token shard: header says 100 tokens (1224 bytes), "
                    "file has 1124 bytes");
  /* Cut inside the header. */
  p = tpath("head.bin");
  int32_t head[3] = {DST_SHARD_MAGIC, 1, 10};
  write_bytes(p, head, sizeof head);
  expect_data_error(p, 1, 4, 0, 1,
                    "truncated token shard: 12 bytes, less than the 1024-byte header");
  p = write_shard("extra.bin", DST_SHARD_MAGIC, 1, 40, tok, 50);
  expect_data_error(p, 1, 4, 0, 1, "token shard has 1124 bytes, but its header says 40 tokens");
  p = write_shard("magic.bin", 20240519, 1, 50, tok, 50);
  expect_data_error(p, 1, 4, 0, 1,
                    "bad magic 20240519 (expected 20240520): not an llm.c token shard");
  /* llm.c names its shards *.bin: such a file without the magic is not text. */
  p = tpath("notes.bin");
  write_bytes(p, "hello world", 11);
  expect_data_error(p, 1, 4, 0, 1, "bad magic 1819043176 (expected 20240520)");
  /* A shard-shaped file with another name is not read as text either. */
  p = write_shard("magic.dat", 12345, 1, 50, tok, 50);
  expect_data_error(p, 1, 4, 0, 1, "bad magic 12345");
  p = write_shard("swapped.dat", (int32_t)0x88d83401, 1, 50, tok, 50);
  expect_data_error(p, 1, 4, 0, 1, "big-endian");
  p = write_shard("v2.bin", DST_SHARD_MAGIC, 2, 50, tok, 50);
  expect_data_error(p, 1, 4, 0, 1, "token shard version 2, expected 1");
  p = write_shard("neg.bin", DST_SHARD_MAGIC, 1, -5, tok, 0);
  expect_data_error(p, 1, 4, 0, 1, "negative token count");
  p = write_shard("few.bin", DST_SHARD_MAGIC, 1, 4, tok, 4);
  expect_data_error(p, 1, 4, 0, 1, "4 tokens, but one sequence needs T+1 = 5");
  p = tpath("abc.txt");
  write_bytes(p, "abc", 3);
  expect_data_error(p, 1, 3, 0, 1, "3 tokens, but one sequence needs T+1 = 4");
  p = tpath("empty.txt");
  write_bytes(p, "", 0);
  expect_data_error(p, 1, 1, 0, 1, "0 tokens");
  expect_data_error(tpath("none.bin"), 1, 4, 0, 1, "cannot open");
  expect_data_error(tmpdir, 1, 4, 0, 1, "not a regular file");
  p = tpath("abc.txt");
  expect_data_error(p, 1, 1, 2, 2, "invalid loader shape B=1 T=1 rank=2 world=2");
  expect_data_error(p, 0, 1, 0, 1, "invalid loader shape");

  char err[DST_ERR_LEN];
  DstDataLoader *dl = dst_data_open(p, 1, 2, 0, 1, err); /* exactly T+1 tokens */
  ck_assert_msg(dl != NULL, "%s", err);
  dst_data_close(dl);
}
END_TEST

/* ------------------------------------------------------------- metrics */

START_TEST(test_metrics) {
  DstStepTimer t;
  dst_timer_init(&t, 1000, 1);
  ck_assert(dst_timer_avg_ms(&t) == 0.0);
  ck_assert(dst_timer_avg_tok_per_sec(&t) == 0.0);
  dst_timer_record(&t, 1.0); /* warm-up: excluded */
  ck_assert(dst_timer_avg_ms(&t) == 0.0);
  ck_assert(dst_timer_last_ms(&t) == 1000.0);
  dst_timer_record(&t, 0.5);
  dst_timer_record(&t, 0.25);
  ck_assert(dst_timer_last_ms(&t) == 250.0);
  ck_assert(dst_timer_last_tok_per_sec(&t) == 4000.0);
  ck_assert(dst_timer_avg_ms(&t) == 375.0);
  ck_assert(fabs(dst_timer_avg_tok_per_sec(&t) - 2000.0 / 0.75) < 1e-9);
  ck_assert_uint_eq(t.steps, 3);

  double a = dst_now_sec();
  dst_timer_start(&t);
  double ms = dst_timer_stop(&t);
  double b = dst_now_sec();
  ck_assert(ms >= 0.0 && ms <= (b - a) * 1e3);
  ck_assert(b >= a);
  ck_assert_uint_eq(t.steps, 4);
}
END_TEST

Suite *runtime_suite(void) {
  Suite *s = suite_create("runtime");
  TCase *tc = tcase_create("alloc_log_rng_json");
  tcase_add_test(tc, test_alloc_accounting);
  tcase_add_test(tc, test_alloc_realloc_zero_and_names);
  tcase_add_test(tc, test_alloc_limit_and_oom);
  tcase_add_test(tc, test_log_exit_codes_and_text);
  tcase_add_test(tc, test_rng_determinism);
  tcase_add_test(tc, test_rng_distributions);
  tcase_add_test(tc, test_json_accepts);
  tcase_add_test(tc, test_json_rejects);
  tcase_add_test(tc, test_metrics);
  suite_add_tcase(s, tc);

  TCase *files = tcase_create("files");
  tcase_add_checked_fixture(files, setup_tmpdir, teardown_tmpdir);
  tcase_add_test(files, test_rng_save_restore);
  tcase_add_test(files, test_st_roundtrip);
  tcase_add_test(files, test_st_load_into_mismatch);
  tcase_add_test(files, test_st_rejects_bad_files);
  tcase_add_test(files, test_st_write_failure_leaves_nothing);
  tcase_add_test(files, test_data_text);
  tcase_add_test(files, test_data_shard_exact_tokens);
  tcase_add_test(files, test_data_rank_slices);
  tcase_add_test(files, test_data_wrap_and_restore);
  tcase_add_test(files, test_data_rejects);
  tcase_add_test(files, test_data_truncated_while_reading);
  tcase_add_test(files, test_data_check_ids);
  tcase_add_test(files, test_data_entropy);
  suite_add_tcase(s, files);
  return s;
}
