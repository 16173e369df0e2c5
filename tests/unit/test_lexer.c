/* test_lexer.c: the re2c lexer (grammar/lex.re) on its own.
 *
 * Each test registers a buffer in a fresh DiagSink and pulls tokens with
 * lex_next, checking kinds, values and byte ranges, and that malformed input
 * (NUL bytes, bad UTF-8, stray bytes, unterminated literals, overflowing
 * numbers, runaway nesting) becomes exactly the expected diagnostics. */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "dstc.h"
#include "parse.h"

typedef struct {
  Arena arena;
  DiagSink diag;
  Lexer lx;
  uint32_t file;
} LexFx;

static LexFx *lx_open_n(const char *text, size_t len) {
  LexFx *x = calloc(1, sizeof *x);
  ck_assert_ptr_nonnull(x);
  arena_init(&x->arena);
  diag_init(&x->diag, &x->arena);
  char *buf = arena_alloc(&x->arena, len + 1); /* NUL sentinel at buf[len] */
  memcpy(buf, text, len);
  x->file = diag_add_file(&x->diag, "t.dst", buf, (uint32_t)len);
  lex_init(&x->lx, &x->arena, &x->diag, x->file);
  return x;
}

static LexFx *lx_open(const char *text) { return lx_open_n(text, strlen(text)); }

static void lx_close(LexFx *x) {
  arena_free(&x->arena);
  free(x);
}

typedef struct {
  int kind;
  TokVal val;
  Loc loc;
} Tok;

static Tok next(LexFx *x) {
  Tok t;
  memset(&t, 0, sizeof t);
  t.kind = lex_next(&x->lx, &t.val, &t.loc);
  return t;
}

/* Asserts the next token's kind and byte range [b, e). */
#define EXPECT_TOK(x, k, b, e)                                                  \
  do {                                                                          \
    Tok t_ = next(x);                                                           \
    ck_assert_msg(t_.kind == (k), "token kind %d (%s), expected %d (%s)",       \
                  t_.kind, lex_token_name(t_.kind), (k), lex_token_name(k));    \
    ck_assert_uint_eq(t_.loc.begin, (b));                                       \
    ck_assert_uint_eq(t_.loc.end, (e));                                         \
    ck_assert_uint_eq(t_.loc.file, (x)->file);                                  \
  } while (0)

/* Lexes everything; returns the number of tokens before END. */
static int drain(LexFx *x) {
  int n = 0;
  for (int guard = 0; guard < 1000000; guard++) {
    Tok t = next(x);
    if (t.kind == 0) return n;
    n++;
  }
  ck_abort_msg("lexer did not reach the end of its input");
  return n;
}

/* The only diagnostic must be an error whose message contains sub, at [b, e). */
static void expect_one_error(LexFx *x, const char *sub, uint32_t b, uint32_t e) {
  ck_assert_int_eq(x->diag.nerrors, 1);
  Diag *g = x->diag.head;
  ck_assert_ptr_nonnull(g);
  ck_assert_int_eq(g->sev, SEV_ERROR);
  ck_assert_msg(strstr(g->msg, sub), "message '%s' lacks '%s'", g->msg, sub);
  ck_assert_uint_eq(g->loc.file, x->file);
  ck_assert_uint_eq(g->loc.begin, b);
  ck_assert_uint_eq(g->loc.end, e);
  ck_assert_ptr_null(g->next);
}

/* ------------------------------------------------------------ tokens */

START_TEST(test_identifiers_and_keywords) {
  LexFx *x = lx_open("import importx _a1 config block model param layer input forward "
                     "return minimize if else train parallel repeat true false Model");
  EXPECT_TOK(x, KW_IMPORT, 0, 6);
  Tok t = next(x);
  ck_assert_int_eq(t.kind, IDENT);
  ck_assert_str_eq(t.val.str, "importx"); /* longest match, not keyword + ident */
  ck_assert_uint_eq(t.loc.begin, 7);
  ck_assert_uint_eq(t.loc.end, 14);
  t = next(x);
  ck_assert_int_eq(t.kind, IDENT);
  ck_assert_str_eq(t.val.str, "_a1");
  static const int kws[] = {KW_CONFIG, KW_BLOCK, KW_MODEL, KW_PARAM, KW_LAYER, KW_INPUT,
                            KW_FORWARD, KW_RETURN, KW_MINIMIZE, KW_IF, KW_ELSE, KW_TRAIN,
                            KW_PARALLEL, KW_REPEAT};
  for (size_t i = 0; i < sizeof kws / sizeof kws[0]; i++) {
    t = next(x);
    ck_assert_int_eq(t.kind, kws[i]);
  }
  t = next(x);
  ck_assert_int_eq(t.kind, KW_TRUE);
  ck_assert_int_eq(t.val.ival, 1);
  t = next(x);
  ck_assert_int_eq(t.kind, KW_FALSE);
  ck_assert_int_eq(t.val.ival, 0);
  t = next(x);
  ck_assert_int_eq(t.kind, IDENT); /* keywords are case-sensitive */
  ck_assert_str_eq(t.val.str, "Model");
  ck_assert_int_eq(next(x).kind, 0);
  ck_assert_int_eq(x->diag.nerrors, 0);
  lx_close(x);
}
END_TEST

START_TEST(test_integers) {
  LexFx *x = lx_open("0 42 1_000_000 9223372036854775807 007");
  Tok t = next(x);
  ck_assert_int_eq(t.kind, INT);
  ck_assert_int_eq(t.val.ival, 0);
  t = next(x);
  ck_assert_int_eq(t.kind, INT);
  ck_assert_int_eq(t.val.ival, 42);
  ck_assert_uint_eq(t.loc.begin, 2);
  ck_assert_uint_eq(t.loc.end, 4);
  t = next(x);
  ck_assert_int_eq(t.kind, INT);
  ck_assert_int_eq(t.val.ival, 1000000);
  ck_assert_uint_eq(t.loc.begin, 5);
  ck_assert_uint_eq(t.loc.end, 14); /* the underscores belong to the token */
  t = next(x);
  ck_assert_int_eq(t.kind, INT);
  ck_assert_int_eq(t.val.ival, INT64_MAX);
  t = next(x);
  ck_assert_int_eq(t.kind, INT);
  ck_assert_int_eq(t.val.ival, 7);
  ck_assert_int_eq(next(x).kind, 0);
  ck_assert_int_eq(x->diag.nerrors, 0);
  lx_close(x);
}
END_TEST

START_TEST(test_integer_too_large) {
  LexFx *x = lx_open("x = 9223372036854775808;");
  EXPECT_TOK(x, IDENT, 0, 1);
  EXPECT_TOK(x, '=', 2, 3);
  Tok t = next(x);
  ck_assert_int_eq(t.kind, INT); /* still a token, so parsing goes on */
  EXPECT_TOK(x, ';', 23, 24);
  expect_one_error(x, "integer literal is too large (the limit is 2^63 - 1)", 4, 23);
  lx_close(x);

  x = lx_open("99999999999999999999999999999999999999");
  drain(x);
  expect_one_error(x, "too large", 0, 38);
  lx_close(x);
}
END_TEST

START_TEST(test_floats) {
  LexFx *x = lx_open("3.25 1e3 2.5e-3 6E+2 1_0.2_5 1.5e1_0");
  double want[] = {3.25, 1e3, 2.5e-3, 600.0, 10.25, 1.5e10};
  uint32_t begins[] = {0, 5, 9, 16, 21, 29};
  for (int i = 0; i < 6; i++) {
    Tok t = next(x);
    ck_assert_int_eq(t.kind, FLOAT);
    ck_assert_double_eq_tol(t.val.fval, want[i], want[i] * 1e-12);
    ck_assert_uint_eq(t.loc.begin, begins[i]);
  }
  ck_assert_int_eq(next(x).kind, 0);
  ck_assert_int_eq(x->diag.nerrors, 0);
  lx_close(x);
}
END_TEST

START_TEST(test_number_then_dot) {
  /* "1." is not a float: the integer, then a '.' (member access syntax). */
  LexFx *x = lx_open("1.x");
  EXPECT_TOK(x, INT, 0, 1);
  EXPECT_TOK(x, '.', 1, 2);
  EXPECT_TOK(x, IDENT, 2, 3);
  EXPECT_TOK(x, 0, 3, 3);
  ck_assert_int_eq(x->diag.nerrors, 0);
  lx_close(x);
}
END_TEST

START_TEST(test_float_out_of_range) {
  LexFx *x = lx_open("a = 1e400;");
  ck_assert_int_eq(drain(x), 4);
  expect_one_error(x, "floating-point literal is out of range", 4, 9);
  lx_close(x);

  x = lx_open("1.0e99999");
  Tok t = next(x);
  ck_assert_int_eq(t.kind, FLOAT);
  ck_assert_double_eq(t.val.fval, 0.0); /* replaced, never inf */
  expect_one_error(x, "out of range", 0, 9);
  lx_close(x);
}
END_TEST

START_TEST(test_strings_and_escapes) {
  LexFx *x = lx_open("\"a\\\"b\\\\c\\nd\\te\" \"\" \"h\xc3\xa9llo \xe2\x82\xac\"");
  Tok t = next(x);
  ck_assert_int_eq(t.kind, STRING);
  ck_assert_str_eq(t.val.str, "a\"b\\c\nd\te");
  ck_assert_uint_eq(t.loc.begin, 0);
  ck_assert_uint_eq(t.loc.end, 15); /* both quotes included */
  t = next(x);
  ck_assert_int_eq(t.kind, STRING);
  ck_assert_str_eq(t.val.str, "");
  ck_assert_uint_eq(t.loc.begin, 16);
  ck_assert_uint_eq(t.loc.end, 18);
  t = next(x);
  ck_assert_int_eq(t.kind, STRING);
  ck_assert_str_eq(t.val.str, "h\xc3\xa9llo \xe2\x82\xac"); /* valid UTF-8 is kept */
  ck_assert_int_eq(next(x).kind, 0);
  ck_assert_int_eq(x->diag.nerrors, 0);
  lx_close(x);
}
END_TEST

START_TEST(test_string_unknown_escape) {
  LexFx *x = lx_open("\"a\\qb\"");
  Tok t = next(x);
  ck_assert_int_eq(t.kind, STRING);
  ck_assert_int_eq(next(x).kind, 0);
  expect_one_error(x, "unknown escape sequence", 2, 4);
  lx_close(x);
}
END_TEST

START_TEST(test_operators) {
  LexFx *x = lx_open("** == != <= >= && || + - * / % @ < > ! = , ; : . ( ) [ ] { }");
  static const int want[] = {POW, EQ, NE, LE, GE, AND, OR, '+', '-', '*', '/', '%', '@', '<',
                             '>', '!', '=', ',', ';', ':', '.', '(', ')', '[', ']', '{', '}'};
  uint32_t off = 0;
  for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
    uint32_t w = i < 7 ? 2 : 1;
    EXPECT_TOK(x, want[i], off, off + w);
    off += w + 1;
  }
  ck_assert_int_eq(next(x).kind, 0);
  ck_assert_int_eq(x->diag.nerrors, 0);
  lx_close(x);

  /* Maximal munch: "***" is POW then '*', "a<=-b" is LE then '-'. */
  x = lx_open("***a<=-b");
  EXPECT_TOK(x, POW, 0, 2);
  EXPECT_TOK(x, '*', 2, 3);
  EXPECT_TOK(x, IDENT, 3, 4);
  EXPECT_TOK(x, LE, 4, 6);
  EXPECT_TOK(x, '-', 6, 7);
  EXPECT_TOK(x, IDENT, 7, 8);
  lx_close(x);
}
END_TEST

START_TEST(test_comments) {
  LexFx *x = lx_open("a // line comment ( [ {\n"
                     "b /* block\n comment * / */ c /**/ d // at end");
  EXPECT_TOK(x, IDENT, 0, 1);
  EXPECT_TOK(x, IDENT, 24, 25);
  EXPECT_TOK(x, IDENT, 51, 52);
  EXPECT_TOK(x, IDENT, 58, 59);
  EXPECT_TOK(x, 0, 69, 69);
  ck_assert_int_eq(x->diag.nerrors, 0);
  lx_close(x);

  /* Brackets inside comments and strings do not count towards nesting. */
  x = lx_open("// ((((\n\"[[[[\" /* {{{{ */ )");
  EXPECT_TOK(x, STRING, 8, 14);
  EXPECT_TOK(x, ')', 26, 27);
  ck_assert_int_eq(x->lx.depth, 0);
  lx_close(x);
}
END_TEST

START_TEST(test_end_is_sticky) {
  LexFx *x = lx_open("a");
  EXPECT_TOK(x, IDENT, 0, 1);
  for (int i = 0; i < 3; i++) EXPECT_TOK(x, 0, 1, 1);
  lx_close(x);

  x = lx_open("");
  EXPECT_TOK(x, 0, 0, 0);
  ck_assert_int_eq(x->diag.nerrors, 0);
  lx_close(x);
}
END_TEST

/* ------------------------------------------------------------ errors */

START_TEST(test_nul_byte_in_middle) {
  LexFx *x = lx_open_n("ab\0\0\0cd", 7);
  Tok t = next(x);
  ck_assert_int_eq(t.kind, IDENT);
  ck_assert_str_eq(t.val.str, "ab");
  t = next(x); /* the NUL run is skipped, lexing continues */
  ck_assert_int_eq(t.kind, IDENT);
  ck_assert_str_eq(t.val.str, "cd");
  ck_assert_uint_eq(t.loc.begin, 5);
  EXPECT_TOK(x, 0, 7, 7);
  expect_one_error(x, "NUL byte in source", 2, 5); /* one error for the run */
  lx_close(x);
}
END_TEST

START_TEST(test_nul_byte_in_string_and_comment) {
  LexFx *x = lx_open_n("\"a\0b\" c", 7);
  Tok t = next(x);
  ck_assert_int_eq(t.kind, STRING);
  ck_assert_uint_eq(t.loc.end, 5);
  EXPECT_TOK(x, IDENT, 6, 7);
  expect_one_error(x, "NUL byte in string literal", 2, 3);
  lx_close(x);

  /* A NUL ends a line comment's token; the NUL itself is then reported. */
  x = lx_open_n("// a\0b\nc", 8);
  drain(x);
  ck_assert_int_ge(x->diag.nerrors, 1);
  ck_assert_ptr_nonnull(strstr(x->diag.head->msg, "NUL byte"));
  ck_assert_uint_eq(x->diag.head->loc.begin, 4);
  lx_close(x);
}
END_TEST

START_TEST(test_invalid_utf8_outside) {
  LexFx *x = lx_open("a \xff\xfe b");
  EXPECT_TOK(x, IDENT, 0, 1);
  EXPECT_TOK(x, IDENT, 5, 6);
  expect_one_error(x, "invalid UTF-8 byte 0xFF", 2, 4); /* the run is one error */
  lx_close(x);

  /* Overlong encodings and surrogates are invalid too. */
  static const char *const bad[] = {"\xc0\xaf", "\xe0\x80\xaf", "\xed\xa0\x80", "\xf4\x90\x80\x80",
                                    "\xf8\x88\x80\x80\x80"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    x = lx_open(bad[i]);
    drain(x);
    ck_assert_int_ge(x->diag.nerrors, 1);
    ck_assert_msg(strstr(x->diag.head->msg, "invalid UTF-8"), "case %zu: %s", i, x->diag.head->msg);
    lx_close(x);
  }
}
END_TEST

START_TEST(test_valid_utf8_outside_string) {
  LexFx *x = lx_open("x \xc3\xa9 y");
  EXPECT_TOK(x, IDENT, 0, 1);
  EXPECT_TOK(x, IDENT, 5, 6);
  expect_one_error(x, "non-ASCII character outside a string or comment", 2, 4);
  lx_close(x);
}
END_TEST

START_TEST(test_invalid_utf8_in_string) {
  LexFx *x = lx_open("\"ok \xc3\x28 no\" z");
  Tok t = next(x);
  ck_assert_int_eq(t.kind, STRING);
  EXPECT_TOK(x, IDENT, 11, 12);
  expect_one_error(x, "invalid UTF-8 byte 0xC3 in string literal", 4, 5);
  lx_close(x);

  /* A truncated sequence right before the end of input. */
  x = lx_open("\"\xe2\x82");
  drain(x);
  ck_assert_int_ge(x->diag.nerrors, 1);
  lx_close(x);
}
END_TEST

START_TEST(test_invalid_utf8_in_comments) {
  LexFx *x = lx_open("a // caf\xe9\nb");
  EXPECT_TOK(x, IDENT, 0, 1);
  EXPECT_TOK(x, IDENT, 10, 11);
  expect_one_error(x, "invalid UTF-8 byte 0xE9 in comment", 8, 9);
  lx_close(x);

  x = lx_open("/* \x80 */ b /* \xe2\x82\xac ok */");
  EXPECT_TOK(x, IDENT, 8, 9);
  expect_one_error(x, "invalid UTF-8 byte 0x80 in comment", 3, 4);
  lx_close(x);
}
END_TEST

START_TEST(test_stray_bytes) {
  LexFx *x = lx_open("a $ b");
  EXPECT_TOK(x, IDENT, 0, 1);
  EXPECT_TOK(x, IDENT, 4, 5);
  expect_one_error(x, "unexpected character '$'", 2, 3);
  lx_close(x);

  x = lx_open("a\x01" "b");
  EXPECT_TOK(x, IDENT, 0, 1);
  EXPECT_TOK(x, IDENT, 2, 3);
  expect_one_error(x, "unexpected control character 0x01", 1, 2);
  lx_close(x);

  x = lx_open("# ` ? ~ ^ & | \\ '");
  ck_assert_int_eq(drain(x), 0);
  ck_assert_int_eq(x->diag.nerrors, 9);
  lx_close(x);
}
END_TEST

START_TEST(test_unterminated_string) {
  LexFx *x = lx_open("  \"abc");
  Tok t = next(x);
  ck_assert_int_eq(t.kind, STRING);
  EXPECT_TOK(x, 0, 6, 6);
  expect_one_error(x, "unterminated string literal", 2, 3); /* at the opening quote */
  lx_close(x);

  /* A string ends at the end of its line; the next line is lexed normally. */
  x = lx_open("\"abc\nd");
  t = next(x);
  ck_assert_int_eq(t.kind, STRING);
  ck_assert_str_eq(t.val.str, "abc");
  EXPECT_TOK(x, IDENT, 5, 6);
  expect_one_error(x, "unterminated string literal", 0, 1);
  lx_close(x);
}
END_TEST

START_TEST(test_unterminated_comment) {
  LexFx *x = lx_open("a /* never ( ends");
  EXPECT_TOK(x, IDENT, 0, 1);
  EXPECT_TOK(x, 0, 17, 17);
  expect_one_error(x, "unterminated comment", 2, 4);
  lx_close(x);

  x = lx_open("/*/");
  drain(x);
  expect_one_error(x, "unterminated comment", 0, 2);
  lx_close(x);
}
END_TEST

START_TEST(test_nesting_limit) {
  /* DST_MAX_NESTING open brackets are fine. */
  char *ok = malloc(2 * DST_MAX_NESTING + 1);
  for (int i = 0; i < DST_MAX_NESTING; i++) {
    ok[i] = "([{"[i % 3];
    ok[2 * DST_MAX_NESTING - 1 - i] = ")]}"[i % 3];
  }
  ok[2 * DST_MAX_NESTING] = 0;
  LexFx *x = lx_open(ok);
  ck_assert_int_eq(drain(x), 2 * DST_MAX_NESTING);
  ck_assert_int_eq(x->diag.nerrors, 0);
  lx_close(x);
  free(ok);

  /* One more stops lexing with one error at the offending bracket. */
  int n = 10000;
  char *deep = malloc((size_t)n + 16);
  memset(deep, '(', (size_t)n);
  strcpy(deep + n, " $ \xff");
  x = lx_open(deep);
  int toks = drain(x);
  ck_assert_int_eq(toks, DST_MAX_NESTING + 1);
  expect_one_error(x, "brackets nested more than 200 deep", DST_MAX_NESTING, DST_MAX_NESTING + 1);
  EXPECT_TOK(x, 0, (uint32_t)n + 4, (uint32_t)n + 4);
  lx_close(x);
  free(deep);
}
END_TEST

START_TEST(test_errors_do_not_hide_tokens) {
  /* Every kind of bad byte is skipped and the tokens around it survive. */
  LexFx *x = lx_open_n("a\0b\xff" "c$d\x02" "e\xc3\xa9" "f", 12);
  const char *names[] = {"a", "b", "c", "d", "e", "f"};
  for (int i = 0; i < 6; i++) {
    Tok t = next(x);
    ck_assert_int_eq(t.kind, IDENT);
    ck_assert_str_eq(t.val.str, names[i]);
  }
  ck_assert_int_eq(next(x).kind, 0);
  ck_assert_int_eq(x->diag.nerrors, 5);
  lx_close(x);
}
END_TEST

Suite *lexer_suite(void) {
  Suite *s = suite_create("lexer");
  TCase *tc = tcase_create("tokens");
  tcase_add_test(tc, test_identifiers_and_keywords);
  tcase_add_test(tc, test_integers);
  tcase_add_test(tc, test_floats);
  tcase_add_test(tc, test_number_then_dot);
  tcase_add_test(tc, test_strings_and_escapes);
  tcase_add_test(tc, test_operators);
  tcase_add_test(tc, test_comments);
  tcase_add_test(tc, test_end_is_sticky);
  suite_add_tcase(s, tc);
  tc = tcase_create("errors");
  tcase_add_test(tc, test_integer_too_large);
  tcase_add_test(tc, test_float_out_of_range);
  tcase_add_test(tc, test_string_unknown_escape);
  tcase_add_test(tc, test_nul_byte_in_middle);
  tcase_add_test(tc, test_nul_byte_in_string_and_comment);
  tcase_add_test(tc, test_invalid_utf8_outside);
  tcase_add_test(tc, test_valid_utf8_outside_string);
  tcase_add_test(tc, test_invalid_utf8_in_string);
  tcase_add_test(tc, test_invalid_utf8_in_comments);
  tcase_add_test(tc, test_stray_bytes);
  tcase_add_test(tc, test_unterminated_string);
  tcase_add_test(tc, test_unterminated_comment);
  tcase_add_test(tc, test_nesting_limit);
  tcase_add_test(tc, test_errors_do_not_hide_tokens);
  suite_add_tcase(s, tc);
  return s;
}
