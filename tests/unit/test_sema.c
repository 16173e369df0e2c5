/* test_sema.c: declarations, constants, -D/-f settings and the train and
 * parallel blocks, through sema_program on an in-memory main file.
 *
 * Imports still resolve on disk, against the real stdlib. Every error test
 * checks both how many errors there are and what they say, so a message that
 * disappears, doubles or loses its suggestion fails. */
#include <check.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "dstc.h"

#ifndef DST_SOURCE_DIR
#error "the test build defines DST_SOURCE_DIR (the source tree)"
#endif

typedef struct {
  Arena arena;
  DiagSink diag;
  Program *p;
  CliSetting defines[8], flags[8];
} SemaFx;

/* Checks text as the main file "t.dst". defs and flags are NULL-terminated
 * lists of "NAME=VALUE" / "key=value" (the -D and -f arguments). */
static SemaFx *check_src(const char *text, const char *const *defs, const char *const *flags) {
  SemaFx *x = calloc(1, sizeof *x);
  ck_assert_ptr_nonnull(x);
  arena_init(&x->arena);
  diag_init(&x->diag, &x->arena);
  CompileOptions o;
  memset(&o, 0, sizeof o);
  o.search.stdlib_dir = DST_SOURCE_DIR "/stdlib";
  o.main_text = text;
  o.main_len = strlen(text);
  const char *const *lists[2] = {defs, flags};
  CliSetting *outs[2] = {x->defines, x->flags};
  int *counts[2] = {&o.ndefines, &o.nflags};
  for (int k = 0; k < 2; k++)
    for (int i = 0; lists[k] && lists[k][i]; i++) {
      ck_assert_int_lt(i, 8);
      const char *eq = strchr(lists[k][i], '=');
      ck_assert_ptr_nonnull(eq);
      outs[k][i].key = arena_strndup(&x->arena, lists[k][i], (size_t)(eq - lists[k][i]));
      outs[k][i].value = eq + 1;
      *counts[k] = i + 1;
    }
  o.defines = x->defines;
  o.flags = x->flags;
  x->p = sema_program(&x->arena, &x->diag, "t.dst", &o);
  ck_assert_ptr_nonnull(x->p);
  return x;
}

static SemaFx *check_text(const char *text) { return check_src(text, NULL, NULL); }

static void fx_free(SemaFx *x) {
  arena_free(&x->arena);
  free(x);
}

static int count_sev(SemaFx *x, Severity sev, const char *sub) {
  int n = 0;
  for (Diag *g = x->diag.head; g; g = g->next)
    if (g->sev == sev && strstr(g->msg, sub)) n++;
  return n;
}

static int count_errors(SemaFx *x, const char *sub) { return count_sev(x, SEV_ERROR, sub); }

static int count_notes(SemaFx *x, const char *sub) {
  int n = 0;
  for (Diag *g = x->diag.head; g; g = g->next)
    for (DiagNote *d = g->notes; d; d = d->next)
      if (strstr(d->msg, sub)) n++;
  return n;
}

static Diag *find_error(SemaFx *x, const char *sub) {
  for (Diag *g = x->diag.head; g; g = g->next)
    if (g->sev == SEV_ERROR && strstr(g->msg, sub)) return g;
  return NULL;
}

static void dump_diags(SemaFx *x) {
  for (Diag *g = x->diag.head; g; g = g->next) fprintf(stderr, "  diag: %s\n", g->msg);
}

static void expect_errors(SemaFx *x, int n) {
  if (x->diag.nerrors != n) dump_diags(x);
  ck_assert_int_eq(x->diag.nerrors, n);
}

/* The one error containing sub exists, on the given 1-based line of t.dst. */
static void expect_error_at(SemaFx *x, const char *sub, int line) {
  Diag *g = find_error(x, sub);
  if (!g) dump_diags(x);
  ck_assert_msg(g != NULL, "no error containing '%s'", sub);
  ck_assert_int_eq(count_errors(x, sub), 1);
  if (line > 0) {
    ck_assert_uint_eq(g->loc.file, 1); /* the main file is the first loaded */
    int l, c;
    diag_linecol(&x->diag, g->loc.file, g->loc.begin, &l, &c);
    ck_assert_int_eq(l, line);
  } else {
    ck_assert_uint_eq(g->loc.file, 0); /* command-line settings have no location */
  }
}

static ConstVal cval(SemaFx *x, const char *name) {
  ConstVal v;
  ck_assert_msg(sema_const_lookup(x->p, name, &v), "no constant %s", name);
  return v;
}

#define EXPECT_INT(x, name, want)                         \
  do {                                                    \
    ConstVal v_ = cval(x, name);                          \
    ck_assert_msg(v_.kind == CV_INT, "%s is a %s", name, const_kind_name(v_.kind)); \
    ck_assert_int_eq(v_.i, (want));                       \
  } while (0)
#define EXPECT_FLOAT(x, name, want)                       \
  do {                                                    \
    ConstVal v_ = cval(x, name);                          \
    ck_assert_msg(v_.kind == CV_FLOAT, "%s is a %s", name, const_kind_name(v_.kind)); \
    ck_assert_double_eq_tol(v_.f, (want), 1e-12);         \
  } while (0)
#define EXPECT_BOOL(x, name, want)                        \
  do {                                                    \
    ConstVal v_ = cval(x, name);                          \
    ck_assert_msg(v_.kind == CV_BOOL, "%s is a %s", name, const_kind_name(v_.kind)); \
    ck_assert_int_eq(v_.i, (want));                       \
  } while (0)

/* ------------------------------------------------------------ constants */

START_TEST(test_const_arithmetic) {
  SemaFx *x = check_text("config {\n"
                         "  a = 2 + 3 * 4;  b = (2 + 3) * 4;  c = 20 - 4 - 3;\n"
                         "  d = 2 ** 10;  e = 2 ** 3 ** 2;  f = -2 ** 2;  g = 10 % 3;\n"
                         "  h = 1_000 / 8;  i = dim / heads;  dim = 768;  heads = 12;\n"
                         "  j = 0 ** 0;  k = (-1) ** 7;  l = 1 ** 100000000000;\n"
                         "}\n");
  expect_errors(x, 0);
  EXPECT_INT(x, "a", 14);
  EXPECT_INT(x, "b", 20);
  EXPECT_INT(x, "c", 13);
  EXPECT_INT(x, "d", 1024);
  EXPECT_INT(x, "e", 512); /* right-associative */
  EXPECT_INT(x, "f", -4);  /* -(2 ** 2) */
  EXPECT_INT(x, "g", 1);
  EXPECT_INT(x, "h", 125);
  EXPECT_INT(x, "i", 64); /* forward references are fine */
  EXPECT_INT(x, "j", 1);
  EXPECT_INT(x, "k", -1);
  EXPECT_INT(x, "l", 1);
  fx_free(x);
}
END_TEST

START_TEST(test_const_promotion) {
  SemaFx *x = check_text("config {\n"
                         "  a = 1 + 2.5;  b = 7 / 2.0;  c = 2 * 3;  d = 2 ** -1;  e = 2.0 ** 3;\n"
                         "  f = 3 * 0.5;  g = -1.5;  h = 1e-3 * 1000;  i = 0.02 / sqrt(2 * 12);\n"
                         "}\n");
  expect_errors(x, 0);
  EXPECT_FLOAT(x, "a", 3.5);
  EXPECT_FLOAT(x, "b", 3.5);
  EXPECT_INT(x, "c", 6);
  EXPECT_FLOAT(x, "d", 0.5); /* a negative exponent gives a float */
  EXPECT_FLOAT(x, "e", 8.0);
  EXPECT_FLOAT(x, "f", 1.5);
  EXPECT_FLOAT(x, "g", -1.5);
  EXPECT_FLOAT(x, "h", 1.0);
  EXPECT_FLOAT(x, "i", 0.02 / sqrt(24.0));
  fx_free(x);
}
END_TEST

START_TEST(test_const_comparisons_and_logic) {
  SemaFx *x = check_text("config {\n"
                         "  a = 1 < 2.5;  b = 3 == 3.0;  c = \"fp32\" == \"fp32\";  d = true != false;\n"
                         "  e = 2 > 3;  f = 1 <= 1 && 2 >= 3;  g = 1 < 2 && !(2 < 1);  h = false || 4 % 2 == 0;\n"
                         "  i = \"a\" != \"b\";  j = 9007199254740993 > 9007199254740992;\n"
                         "}\n");
  expect_errors(x, 0);
  EXPECT_BOOL(x, "a", 1);
  EXPECT_BOOL(x, "b", 1);
  EXPECT_BOOL(x, "c", 1);
  EXPECT_BOOL(x, "d", 1);
  EXPECT_BOOL(x, "e", 0);
  EXPECT_BOOL(x, "f", 0);
  EXPECT_BOOL(x, "g", 1);
  EXPECT_BOOL(x, "h", 1);
  EXPECT_BOOL(x, "i", 1);
  EXPECT_BOOL(x, "j", 1); /* integers compare exactly, not through double */
  fx_free(x);
}
END_TEST

START_TEST(test_const_functions) {
  SemaFx *x = check_text("config {\n"
                         "  a = min(3, 7);  b = max(2, 7);  c = min(3, 4.5);  d = sqrt(16);\n"
                         "  e = int(3.7);  f = abs(-5);  g = float(2);  h = exp(0);  i = log(1);\n"
                         "  j = max(-1.5, -2);  k = int(8 / 2);  l = abs(-2.5);\n"
                         "}\n");
  expect_errors(x, 0);
  EXPECT_INT(x, "a", 3);
  EXPECT_INT(x, "b", 7);
  EXPECT_FLOAT(x, "c", 3.0); /* mixed: promoted */
  EXPECT_FLOAT(x, "d", 4.0);
  EXPECT_INT(x, "e", 3);
  EXPECT_INT(x, "f", 5);
  EXPECT_FLOAT(x, "g", 2.0);
  EXPECT_FLOAT(x, "h", 1.0);
  EXPECT_FLOAT(x, "i", 0.0);
  EXPECT_FLOAT(x, "j", -1.5);
  EXPECT_INT(x, "k", 4);
  EXPECT_FLOAT(x, "l", 2.5);
  fx_free(x);
}
END_TEST

START_TEST(test_const_exact_division) {
  SemaFx *x = check_text("config {\n  dim = 100;\n  heads = 12;\n  hd = dim / heads;\n}\n");
  expect_errors(x, 1);
  expect_error_at(x, "100 is not divisible by 12", 4);
  ck_assert_int_eq(count_notes(x, "'/' on integers must be exact; write a float (100.0)"), 1);
  ck_assert_int_eq(cval(x, "hd").kind, CV_NONE); /* no truncated value */
  fx_free(x);
}
END_TEST

START_TEST(test_const_overflow) {
  SemaFx *x = check_text("config {\n"
                         "  a = 9223372036854775807 + 1;\n"
                         "  b = 3037000500 * 3037000500;\n"
                         "  c = 2 ** 63;\n"
                         "  d = -9223372036854775807 - 2;\n"
                         "  m = -9223372036854775807 - 1;\n"
                         "  e = -m;\n"
                         "  f = abs(m);\n"
                         "  g = 1e308 * 10;\n"
                         "  h = m / -1;\n"
                         "}\n");
  expect_errors(x, 8);
  expect_error_at(x, "integer overflow in 9223372036854775807 + 1", 2);
  expect_error_at(x, "integer overflow in 3037000500 * 3037000500", 3);
  expect_error_at(x, "integer overflow in 2 ** 63", 4);
  expect_error_at(x, "integer overflow in -9223372036854775807 - 2", 5);
  ck_assert_ptr_nonnull(find_error(x, "integer overflow in abs"));
  ck_assert_ptr_nonnull(find_error(x, "result is not a finite number"));
  ck_assert_int_eq(count_errors(x, "integer overflow"), 7);
  EXPECT_INT(x, "m", INT64_MIN); /* the most negative value itself is fine */
  fx_free(x);
}
END_TEST

START_TEST(test_const_errors) {
  SemaFx *x = check_text("config {\n"
                         "  a = 1 / 0;\n"
                         "  b = 1.0 / 0;\n"
                         "  c = sqrt(-1);\n"
                         "  d = \"a\" + 1;\n"
                         "  e = !1;\n"
                         "  f = 1 == \"x\";\n"
                         "  g = 5 % 2.0;\n"
                         "  h = sqr(4);\n"
                         "  i = min(1);\n"
                         "  j = log(0);\n"
                         "  k = true && 1;\n"
                         "  l = [1, 2];\n"
                         "  n = undefined_thing + 1;\n"
                         "}\n");
  expect_errors(x, 13);
  expect_error_at(x, "division by zero (1 / 0)", 2);
  expect_error_at(x, "sqrt of a negative number", 4);
  expect_error_at(x, "'+' needs numbers, not string and int", 5);
  expect_error_at(x, "'!' needs a bool", 6);
  expect_error_at(x, "cannot compare", 7);
  expect_error_at(x, "'%' needs integers", 8);
  expect_error_at(x, "'sqr' is not a compile-time function", 9);
  ck_assert_int_eq(count_notes(x, "did you mean 'sqrt'?"), 1);
  expect_error_at(x, "'min' takes 2 arguments, 1 given", 10);
  expect_error_at(x, "log of a non-positive number", 11);
  expect_error_at(x, "'&&' needs bools", 12);
  expect_error_at(x, "expected a compile-time constant here", 13);
  expect_error_at(x, "unknown constant 'undefined_thing'", 14);
  ck_assert_int_eq(count_errors(x, "division by zero"), 2);
  fx_free(x);
}
END_TEST

START_TEST(test_config_cycles) {
  SemaFx *x = check_text("config {\n  s = s + 1;\n}\n");
  expect_errors(x, 1);
  expect_error_at(x, "config constant 's' depends on itself", 2);
  fx_free(x);

  /* A longer cycle is one error, and constants that use it add none. */
  x = check_text("config {\n  a = b + 1;\n  b = c * 2;\n  c = a;\n  d = a + 1;\n  e = 3;\n}\n");
  expect_errors(x, 1);
  ck_assert_int_eq(count_errors(x, "depends on itself"), 1);
  ck_assert_int_eq(cval(x, "d").kind, CV_NONE);
  EXPECT_INT(x, "e", 3);
  fx_free(x);
}
END_TEST

START_TEST(test_duplicate_constant) {
  SemaFx *x = check_text("config { a = 1; }\nconfig { b = 2;\n a = 3; }\n");
  expect_errors(x, 1);
  expect_error_at(x, "config constant 'a' is defined twice", 3);
  ck_assert_int_eq(count_notes(x, "first defined here"), 1);
  EXPECT_INT(x, "a", 1); /* the first definition wins */
  fx_free(x);
}
END_TEST

/* ------------------------------------------------------------ -D */

static const char cfg_src[] = "config {\n"
                              "  layers = 2;\n"
                              "  dim = 64 * layers;\n"
                              "  lr = 0.001;\n"
                              "  name = \"tiny\";\n"
                              "  flag = true;\n"
                              "}\n";

START_TEST(test_define_overrides) {
  const char *defs[] = {"layers=12", "lr=3", "name=\"big\"", "flag=false", NULL};
  SemaFx *x = check_src(cfg_src, defs, NULL);
  expect_errors(x, 0);
  EXPECT_INT(x, "layers", 12);
  EXPECT_INT(x, "dim", 768); /* dependents see the override */
  EXPECT_FLOAT(x, "lr", 3.0); /* an int is accepted for a float */
  ck_assert_str_eq(cval(x, "name").s, "big");
  EXPECT_BOOL(x, "flag", 0);
  for (int i = 0; i < 4; i++) ck_assert(x->defines[i].used);
  fx_free(x);
}
END_TEST

START_TEST(test_define_type_mismatch) {
  const char *defs[] = {"layers=2.5", "flag=1", NULL};
  SemaFx *x = check_src(cfg_src, defs, NULL);
  expect_errors(x, 2);
  expect_error_at(x, "-D layers=2.5: 'layers' is a", 0);
  ck_assert_ptr_nonnull(strstr(find_error(x, "-D layers")->msg, "int constant, not a float"));
  expect_error_at(x, "-D flag=1: 'flag' is a bool constant", 0);
  ck_assert_int_eq(count_notes(x, "'layers' is declared here"), 1);
  ck_assert_uint_eq(find_error(x, "-D layers")->notes->loc.file, 1);
  fx_free(x);
}
END_TEST

START_TEST(test_define_unknown_name) {
  const char *defs[] = {"layer=4", "zzzzzz=1", NULL};
  SemaFx *x = check_src(cfg_src, defs, NULL);
  expect_errors(x, 2);
  expect_error_at(x, "-D layer=4: there is no config constant 'layer'", 0);
  Diag *g = find_error(x, "'layer'");
  ck_assert_ptr_nonnull(g->notes);
  ck_assert_str_eq(g->notes->msg, "did you mean 'layers'?");
  int l, c;
  diag_linecol(&x->diag, g->notes->loc.file, g->notes->loc.begin, &l, &c);
  ck_assert_int_eq(l, 2); /* the note points at the declaration */
  ck_assert_ptr_null(find_error(x, "'zzzzzz'")->notes);
  ck_assert(!x->defines[0].used);
  EXPECT_INT(x, "layers", 2);
  fx_free(x);
}
END_TEST

/* ------------------------------------------------------------ parallel */

START_TEST(test_parallel_defaults) {
  SemaFx *x = check_text("config { a = 1; }\n");
  expect_errors(x, 0);
  ParallelCfg *c = &x->p->par;
  ck_assert_int_eq(c->dp.kind, CV_INT);
  ck_assert_int_eq(c->dp.i, 1);
  ck_assert_int_eq(c->tp.i, 1);
  ck_assert_int_eq(c->pp.i, 1);
  ck_assert_int_eq(c->ep.i, 1);
  ck_assert_int_eq(c->zero.i, 0);
  ck_assert_int_eq(c->grad_accum.i, 1);
  ck_assert_int_eq(c->micro_batches.i, 1);
  ck_assert_int_eq(c->virtual_stages.i, 1);
  ck_assert_str_eq(c->schedule.s, "1f1b");
  ck_assert_str_eq(c->precision.s, "fp32");
  ck_assert_str_eq(c->loss_scale.s, "auto");
  ck_assert_str_eq(c->offload_optimizer.s, "none");
  ck_assert_str_eq(c->offload_params.s, "none");
  ck_assert_str_eq(c->checkpoint.s, "none");
  ck_assert_int_eq(c->nvme_path.kind, CV_STR);
  ck_assert_str_eq(c->nvme_path.s, "");
  ck_assert_int_eq(c->bucket_mb.kind, CV_FLOAT); /* "25" is promoted */
  ck_assert_double_eq(c->bucket_mb.f, 25.0);
  ck_assert_int_eq(c->loss_scale_value.kind, CV_FLOAT);
  ck_assert_double_eq(c->loss_scale_value.f, 65536.0);
  ck_assert_int_eq(c->overlap_comm.kind, CV_BOOL);
  ck_assert_int_eq(c->overlap_comm.i, 1);
  ck_assert_int_eq(c->sequence_parallel.i, 0);
  for (int i = 0; i < parallel_key_count; i++) {
    ck_assert_uint_eq(x->p->par_loc[i].file, 0); /* all defaults */
    ck_assert_ptr_null(x->p->par_from_flag[i]);
  }
  fx_free(x);
}
END_TEST

START_TEST(test_parallel_values) {
  SemaFx *x = check_text("config { ways = 4; prec = \"bf16\"; }\n"
                         "parallel {\n"
                         "  dp = ways * 2;\n"
                         "  tp = 2;\n"
                         "  zero = 3;\n"
                         "  precision = prec;\n"
                         "  schedule = interleaved;\n"
                         "  virtual_stages = 2;\n"
                         "  pp = 2;\n"
                         "  micro_batches = 8;\n"
                         "  bucket_mb = 50;\n"
                         "  offload_params = cpu;\n"
                         "  overlap_comm = false;\n"
                         "  sequence_parallel = true;\n"
                         "  nvme_path = \"/tmp\";\n"
                         "}\n");
  expect_errors(x, 0);
  ParallelCfg *c = &x->p->par;
  ck_assert_int_eq(c->dp.i, 8);
  ck_assert_int_eq(c->tp.i, 2);
  ck_assert_int_eq(c->zero.i, 3);
  ck_assert_str_eq(c->precision.s, "bf16"); /* through a string constant */
  ck_assert_str_eq(c->schedule.s, "interleaved");
  ck_assert_int_eq(c->bucket_mb.kind, CV_FLOAT);
  ck_assert_double_eq(c->bucket_mb.f, 50.0);
  ck_assert_str_eq(c->offload_params.s, "cpu");
  ck_assert_int_eq(c->overlap_comm.i, 0);
  ck_assert_str_eq(c->nvme_path.s, "/tmp");
  int k = sema_parallel_index("dp");
  ck_assert_int_ge(k, 0);
  int l, col;
  diag_linecol(&x->diag, x->p->par_loc[k].file, x->p->par_loc[k].begin, &l, &col);
  ck_assert_int_eq(l, 3); /* where dp was set */
  ck_assert_int_eq(sema_parallel_index("nope"), -1);
  fx_free(x);
}
END_TEST

START_TEST(test_parallel_key_errors) {
  SemaFx *x = check_text("parallel {\n"
                         "  dp = 2.5;\n"
                         "  tp = 0;\n"
                         "  bucket_mb = \"big\";\n"
                         "  loss_scale_value = 0;\n"
                         "  overlap_comm = 1;\n"
                         "  precision = bf61;\n"
                         "  nvme_path = 3;\n"
                         "  dpp = 2;\n"
                         "  checkpoint = sometimes;\n"
                         "  zero = 1;\n"
                         "  zero = 2;\n"
                         "}\n");
  expect_errors(x, 10);
  expect_error_at(x, "'dp' must be an integer", 2);
  expect_error_at(x, "'tp' must be between 1 and 1024, not 0", 3);
  expect_error_at(x, "'bucket_mb' must be a number", 4);
  expect_error_at(x, "'loss_scale_value' must be between", 5);
  expect_error_at(x, "'overlap_comm' must be true or false", 6);
  expect_error_at(x, "'precision' must be one of fp32, bf16, fp16; did you mean 'bf16'?", 7);
  expect_error_at(x, "'nvme_path' must be a string", 8);
  expect_error_at(x, "unknown parallel key 'dpp'", 9);
  ck_assert_int_eq(count_notes(x, "did you mean 'dp'?"), 1);
  expect_error_at(x, "'checkpoint' must be one of none, full, selective, auto", 10);
  ck_assert_ptr_null(strstr(find_error(x, "'checkpoint'")->msg, "did you mean"));
  expect_error_at(x, "parallel key 'zero' is set twice", 12);
  ck_assert_int_eq(x->p->par.zero.i, 1); /* the first setting stays */
  fx_free(x);
}
END_TEST

START_TEST(test_parallel_flags_override_file) {
  const char *flags[] = {"dp=4", "precision=bf16", "bucket_mb=12.5", "overlap_comm=false", NULL};
  SemaFx *x = check_src("parallel {\n  dp = 2;\n  precision = fp16;\n}\n", NULL, flags);
  expect_errors(x, 0);
  ck_assert_int_eq(x->p->par.dp.i, 4);
  ck_assert_str_eq(x->p->par.precision.s, "bf16");
  ck_assert_double_eq(x->p->par.bucket_mb.f, 12.5);
  ck_assert_int_eq(x->p->par.overlap_comm.i, 0);
  ck_assert_str_eq(x->p->par_from_flag[sema_parallel_index("dp")], "-fdp=4");
  ck_assert_ptr_null(x->p->par_from_flag[sema_parallel_index("tp")]);
  for (int i = 0; i < 4; i++) ck_assert(x->flags[i].used);
  fx_free(x);
}
END_TEST

START_TEST(test_parallel_flag_errors) {
  const char *flags[] = {"dp=x", "zero=5", "precision=bf61", "bucket_mb=0", NULL};
  SemaFx *x = check_src("parallel { dp = 2; }\n", NULL, flags);
  expect_errors(x, 4);
  expect_error_at(x, "-fdp=x: 'dp' must be an integer", 0);
  expect_error_at(x, "-fzero=5: 'zero' must be between 0 and 3, not 5", 0);
  expect_error_at(x, "-fprecision=bf61: 'precision' must be one of fp32, bf16, fp16; did you mean 'bf16'?", 0);
  expect_error_at(x, "-fbucket_mb=0: 'bucket_mb' must be between", 0);
  ck_assert_int_eq(x->p->par.dp.i, 2); /* a rejected flag changes nothing */
  ck_assert(!x->flags[0].used);
  fx_free(x);
}
END_TEST

START_TEST(test_parallel_combinations) {
  SemaFx *x = check_text("parallel {\n  dp = 2;\n  zero = 2;\n  offload_params = cpu;\n}\n");
  expect_errors(x, 1);
  expect_error_at(x, "offload_params = cpu needs zero = 3 (zero is 2)", 4);
  ck_assert_int_eq(count_notes(x, "zero is set here"), 1);
  fx_free(x);

  /* -fzero=3 fixes it from the command line. */
  const char *flags[] = {"zero=3", NULL};
  x = check_src("parallel {\n  dp = 2;\n  zero = 2;\n  offload_params = cpu;\n}\n", NULL, flags);
  expect_errors(x, 0);
  fx_free(x);

  x = check_text("parallel {\n  schedule = interleaved;\n  pp = 2;\n  micro_batches = 4;\n}\n");
  expect_errors(x, 1);
  expect_error_at(x, "schedule = interleaved needs virtual_stages >= 2", 2);
  fx_free(x);

  x = check_text("parallel {\n  virtual_stages = 2;\n}\n");
  expect_errors(x, 1);
  expect_error_at(x, "virtual_stages = 2 needs schedule = interleaved", 2);
  fx_free(x);

  x = check_text("parallel {\n  offload_optimizer = cpu;\n}\n");
  expect_errors(x, 1);
  expect_error_at(x, "offload_optimizer = cpu needs zero = 1, 2 or 3", 2);
  fx_free(x);

  x = check_text("parallel {\n  dp = 2;\n  zero = 1;\n  offload_optimizer = nvme;\n}\n");
  expect_errors(x, 1);
  expect_error_at(x, "NVMe offload needs nvme_path", 4);
  fx_free(x);

  /* Warnings, not errors. */
  x = check_text("parallel {\n  pp = 4;\n  micro_batches = 2;\n  zero = 1;\n  sequence_parallel = true;\n}\n");
  expect_errors(x, 0);
  ck_assert_int_eq(x->diag.nwarnings, 3);
  ck_assert_int_eq(count_sev(x, SEV_WARNING, "micro_batches (2) < pp (4)"), 1);
  ck_assert_int_eq(count_sev(x, SEV_WARNING, "zero = 1 with dp = 1 partitions nothing"), 1);
  ck_assert_int_eq(count_sev(x, SEV_WARNING, "sequence_parallel needs tp > 1"), 1);
  fx_free(x);
}
END_TEST

/* ------------------------------------------------------------ train */

START_TEST(test_train_adamw) {
  SemaFx *x = check_text("config { lr = 3e-4; }\n"
                         "train {\n"
                         "  optimizer = adamw(lr = lr, betas = (0.9, 0.95), eps = 1e-6, weight_decay = 0.1);\n"
                         "  lr_schedule = cosine(warmup = 20, min_lr = lr / 10);\n"
                         "  clip_grad_norm = 1.0;\n"
                         "  steps = 500;\n"
                         "  batch = 16;\n"
                         "  seed = 7;\n"
                         "}\n");
  expect_errors(x, 0);
  TrainCfg *t = &x->p->train_cfg;
  ck_assert_int_eq(t->opt, OPT_ADAMW);
  ck_assert_double_eq_tol(t->lr, 3e-4, 1e-15);
  ck_assert_double_eq_tol(t->beta1, 0.9, 1e-15);
  ck_assert_double_eq_tol(t->beta2, 0.95, 1e-15);
  ck_assert_double_eq_tol(t->eps, 1e-6, 1e-18);
  ck_assert_double_eq_tol(t->weight_decay, 0.1, 1e-15);
  ck_assert_int_eq(t->sched, SCHED_COSINE);
  ck_assert_int_eq(t->warmup, 20);
  ck_assert_double_eq_tol(t->min_lr, 3e-5, 1e-15);
  ck_assert_double_eq(t->clip_grad_norm, 1.0);
  ck_assert_int_eq(t->steps, 500);
  ck_assert_int_eq(t->batch, 16);
  ck_assert_int_eq(t->seed, 7);
  fx_free(x);

  /* Defaults when there is no train block. */
  x = check_text("config { a = 1; }\n");
  t = &x->p->train_cfg;
  ck_assert_int_eq(t->opt, OPT_ADAMW);
  ck_assert_double_eq(t->beta1, 0.9);
  ck_assert_double_eq(t->beta2, 0.999);
  ck_assert_int_eq(t->sched, SCHED_CONSTANT);
  ck_assert_int_eq(t->steps, 100);
  ck_assert_int_eq(t->seed, 1337);
  fx_free(x);
}
END_TEST

START_TEST(test_train_sgd) {
  SemaFx *x = check_text("train {\n  optimizer = sgd(0.05, momentum = 0.9, nesterov = true);\n"
                         "  lr_schedule = linear(warmup = 5);\n}\n");
  expect_errors(x, 0);
  TrainCfg *t = &x->p->train_cfg;
  ck_assert_int_eq(t->opt, OPT_SGD);
  ck_assert_double_eq(t->lr, 0.05); /* lr given positionally */
  ck_assert_double_eq(t->momentum, 0.9);
  ck_assert(t->nesterov);
  ck_assert_int_eq(t->sched, SCHED_LINEAR);
  ck_assert_int_eq(t->warmup, 5);
  fx_free(x);

  x = check_text("train {\n  optimizer = sgd(lr = 0.1, nesterov = true);\n}\n");
  expect_errors(x, 1);
  expect_error_at(x, "nesterov = true needs momentum > 0", 2);
  fx_free(x);
}
END_TEST

START_TEST(test_train_errors) {
  SemaFx *x = check_text("train {\n"
                         "  optimizer = adamw(lr = 0.1, betas = (0.9, 0.95, 0.99));\n"
                         "  lr_schedule = cosin;\n"
                         "  stepz = 3;\n"
                         "  dp = 2;\n"
                         "  batch = 0;\n"
                         "  seed = 1.5;\n"
                         "}\n");
  expect_errors(x, 6);
  expect_error_at(x, "'betas' must be a pair, e.g. (0.9, 0.95)", 2);
  expect_error_at(x, "lr_schedule must be constant, linear or cosine", 3);
  ck_assert_int_eq(count_notes(x, "did you mean 'cosine'?"), 1);
  expect_error_at(x, "unknown train key 'stepz'", 4);
  ck_assert_int_eq(count_notes(x, "did you mean 'steps'?"), 1);
  expect_error_at(x, "unknown train key 'dp'", 5);
  ck_assert_int_eq(count_notes(x, "'dp' belongs in the parallel block"), 1);
  expect_error_at(x, "'batch' must be between 1 and", 6);
  expect_error_at(x, "'seed' must be an integer", 7);
  fx_free(x);

  x = check_text("train {\n"
                 "  optimizer = adamw(betaz = (0.9, 0.95));\n"
                 "}\n");
  expect_errors(x, 1);
  expect_error_at(x, "'adamw' has no argument named 'betaz'", 2);
  ck_assert_int_eq(count_notes(x, "did you mean 'betas'?"), 1);
  fx_free(x);

  x = check_text("train {\n  optimizer = adamw(eps = 1e-8);\n}\n");
  expect_errors(x, 1);
  expect_error_at(x, "'adamw' needs argument 'lr'", 2);
  fx_free(x);

  x = check_text("train {\n  optimizer = adam(lr = 0.1);\n}\n");
  expect_errors(x, 1);
  expect_error_at(x, "optimizer must be adamw(...) or sgd(...)", 2);
  ck_assert_int_eq(count_notes(x, "did you mean 'adamw'?"), 1);
  fx_free(x);

  x = check_text("train {\n  optimizer = adamw(lr = 0.1, betas = (0.9, 0.95), beta1 = 0.8);\n"
                 "  lr_schedule = linear(warmup = 500, min_lr = 1.0);\n  steps = 100;\n  steps = 200;\n}\n");
  expect_errors(x, 3);
  expect_error_at(x, "give either 'betas' or 'beta1'/'beta2', not both", 2);
  expect_error_at(x, "min_lr (1) is above the optimizer's lr (0.1)", 3);
  expect_error_at(x, "train key 'steps' is set twice", 5);
  ck_assert_int_eq(count_sev(x, SEV_WARNING, "warmup (500 steps) is longer than training (100 steps)"), 1);
  fx_free(x);

  x = check_text("train {\n  optimizer = adamw(lr = 2e3, betas = (1.0, 0.9));\n"
                 "  lr_schedule = constant(warmup = 5, min_lr = 0.1);\n}\n");
  expect_errors(x, 3);
  ck_assert_ptr_nonnull(find_error(x, "'lr' must be between 0 and 1000, not 2000"));
  ck_assert_ptr_nonnull(find_error(x, "'beta1' must be between"));
  expect_error_at(x, "'constant' has no argument named 'min_lr'", 3);
  fx_free(x);
}
END_TEST

/* ------------------------------------------------------------ declarations */

START_TEST(test_duplicate_declarations) {
  SemaFx *x = check_text("block B(n: int) { forward(x) { return x; } }\n"
                         "block B(m: int) { forward(x) { return x; } }\n"
                         "model M { input x: f32[2]; forward { minimize x; } }\n"
                         "model N { input x: f32[2]; forward { minimize x; } }\n"
                         "train { steps = 1; }\n"
                         "train { steps = 2; }\n"
                         "parallel { dp = 1; }\n"
                         "parallel { dp = 2; }\n");
  expect_errors(x, 4);
  expect_error_at(x, "block 'B' is defined twice", 2);
  expect_error_at(x, "a program has one model; this is a second one", 4);
  expect_error_at(x, "a program has one train block", 6);
  expect_error_at(x, "a program has one parallel block", 8);
  ck_assert_int_eq(count_notes(x, "first defined here"), 1);
  ck_assert_int_eq(count_notes(x, "the first is here"), 3);
  ck_assert_str_eq(x->p->model->name, "M");
  ck_assert_int_eq(x->p->train_cfg.steps, 1);
  fx_free(x);
}
END_TEST

START_TEST(test_duplicate_members) {
  SemaFx *x = check_text("block B(n: int, n: float, k: int) {\n"
                         "  param w: f32[2] = zeros;\n"
                         "  layer w = C();\n"
                         "  param k: f32[2] = zeros;\n"
                         "  if n > 1 { param v: f32[2] = zeros; } else { param v: f32[3] = zeros; }\n"
                         "  forward(x) { return x; }\n"
                         "}\n"
                         "block C() { forward(x) { return x; } }\n");
  expect_errors(x, 3);
  expect_error_at(x, "parameter 'n' is declared twice", 1);
  expect_error_at(x, "'w' is declared twice in this block", 3);
  ck_assert_int_eq(count_notes(x, "first declared here"), 1);
  expect_error_at(x, "'k' is already a parameter of this block", 4);
  /* The same name in both branches of an 'if' is not a duplicate. */
  ck_assert_ptr_null(find_error(x, "'v'"));
  fx_free(x);
}
END_TEST

START_TEST(test_unknown_names) {
  SemaFx *x = check_text("import \"nn.dst\";\n"
                         "config { hidden = 32; }\n"
                         "model M {\n"
                         "  input x: f32[4, hiden];\n"
                         "  layer fc = Linaer(8, 8);\n"
                         "  layer fd = Linear(8, hiden);\n"
                         "  forward {\n"
                         "    h = gleu(fc(x));\n"
                         "    minimize mean(hh);\n"
                         "  }\n"
                         "}\n");
  expect_errors(x, 5);
  expect_error_at(x, "unknown block 'Linaer'", 5);
  Diag *g = find_error(x, "Linaer");
  ck_assert_str_eq(g->notes->msg, "did you mean 'Linear'?");
  ck_assert_uint_ne(g->notes->loc.file, 1); /* points at the stdlib's Linear */
  ck_assert_int_eq(count_errors(x, "unknown name 'hiden'"), 2);
  ck_assert_int_eq(count_notes(x, "did you mean 'hidden'?"), 2);
  expect_error_at(x, "unknown function or layer 'gleu'", 8);
  ck_assert_int_eq(count_notes(x, "did you mean 'gelu'?"), 1);
  expect_error_at(x, "unknown name 'hh'", 9);
  ck_assert_int_eq(count_notes(x, "did you mean 'h'?"), 1);
  fx_free(x);
}
END_TEST

START_TEST(test_block_structure) {
  SemaFx *x = check_text("block B(n: flaot, m: integer) { forward { return 1; } }\n"
                         "block C(k: int) { forward(x) { minimize x; } }\n"
                         "block D() { param w: f32[2] = zeros; }\n"
                         "model M { input x: f32[2]; forward(x) { return x; } }\n");
  expect_errors(x, 9);
  expect_error_at(x, "unknown parameter type 'flaot'", 1);
  ck_assert_int_eq(count_notes(x, "did you mean 'float'?"), 1);
  expect_error_at(x, "unknown parameter type 'integer'", 1);
  ck_assert_int_eq(count_notes(x, "block parameters are int, float, bool or string"), 1);
  expect_error_at(x, "a block's forward needs a parameter list", 1);
  expect_error_at(x, "'minimize' belongs in a model's forward, not in a block", 2);
  expect_error_at(x, "the forward of block 'C' never returns a value", 2);
  expect_error_at(x, "block 'D' has no forward", 3);
  expect_error_at(x, "a model's forward takes no parameters", 4);
  expect_error_at(x, "a model's forward ends with 'minimize', not 'return'", 4);
  expect_error_at(x, "the model's forward never says what to 'minimize'", 4);
  fx_free(x);
}
END_TEST

START_TEST(test_imports) {
  SemaFx *x = check_text("import \"transformer.dst\";\nimport \"nn.dst\";\nconfig { a = 1; }\n");
  expect_errors(x, 0);
  /* t.dst, transformer, nn, mlp, attention: each file once. */
  ck_assert_int_eq(x->p->nfiles, 5);
  ck_assert_ptr_nonnull(sema_find_block(x->p, "GPT2Block"));
  ck_assert_ptr_nonnull(sema_find_block(x->p, "Linear"));
  ck_assert_ptr_null(sema_find_block(x->p, "linear"));
  fx_free(x);

  x = check_text("config { a = 1; }\nimport \"no_such_file.dst\";\n");
  expect_errors(x, 1);
  expect_error_at(x, "cannot find imported file \"no_such_file.dst\"", 2);
  ck_assert_int_eq(count_notes(x, "searched next to this file"), 1);
  fx_free(x);

  /* Syntax errors in the main file stop sema before meaning is checked. */
  x = check_text("config { a = ; b = c; }\n");
  expect_errors(x, 1);
  ck_assert_ptr_nonnull(find_error(x, "syntax error"));
  fx_free(x);
}
END_TEST

START_TEST(test_unreadable_main) {
  Arena a;
  DiagSink d;
  arena_init(&a);
  diag_init(&d, &a);
  CompileOptions o;
  memset(&o, 0, sizeof o);
  o.search.stdlib_dir = DST_SOURCE_DIR "/stdlib";
  ck_assert_ptr_null(sema_program(&a, &d, DST_SOURCE_DIR "/no/such/file.dst", &o));
  ck_assert_ptr_null(sema_program(&a, &d, DST_SOURCE_DIR "/stdlib", &o)); /* a directory */
  arena_free(&a);
}
END_TEST

Suite *sema_suite(void) {
  Suite *s = suite_create("sema");
  TCase *tc = tcase_create("constants");
  tcase_add_test(tc, test_const_arithmetic);
  tcase_add_test(tc, test_const_promotion);
  tcase_add_test(tc, test_const_comparisons_and_logic);
  tcase_add_test(tc, test_const_functions);
  tcase_add_test(tc, test_const_exact_division);
  tcase_add_test(tc, test_const_overflow);
  tcase_add_test(tc, test_const_errors);
  tcase_add_test(tc, test_config_cycles);
  tcase_add_test(tc, test_duplicate_constant);
  suite_add_tcase(s, tc);
  tc = tcase_create("defines");
  tcase_add_test(tc, test_define_overrides);
  tcase_add_test(tc, test_define_type_mismatch);
  tcase_add_test(tc, test_define_unknown_name);
  suite_add_tcase(s, tc);
  tc = tcase_create("parallel");
  tcase_add_test(tc, test_parallel_defaults);
  tcase_add_test(tc, test_parallel_values);
  tcase_add_test(tc, test_parallel_key_errors);
  tcase_add_test(tc, test_parallel_flags_override_file);
  tcase_add_test(tc, test_parallel_flag_errors);
  tcase_add_test(tc, test_parallel_combinations);
  suite_add_tcase(s, tc);
  tc = tcase_create("train");
  tcase_add_test(tc, test_train_adamw);
  tcase_add_test(tc, test_train_sgd);
  tcase_add_test(tc, test_train_errors);
  suite_add_tcase(s, tc);
  tc = tcase_create("declarations");
  tcase_add_test(tc, test_duplicate_declarations);
  tcase_add_test(tc, test_duplicate_members);
  tcase_add_test(tc, test_unknown_names);
  tcase_add_test(tc, test_block_structure);
  tcase_add_test(tc, test_imports);
  tcase_add_test(tc, test_unreadable_main);
  suite_add_tcase(s, tc);
  return s;
}
