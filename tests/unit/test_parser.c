/* test_parser.c: the Bison grammar (grammar/parse.y) through parse_file.
 *
 * Expressions are compared as S-expressions built from the AST, so a test
 * states the intended tree ("(+ a (* b c))") rather than walking pointers;
 * declarations are checked field by field. Error recovery must report
 * several syntax errors in one run, and pathological nesting must end in one
 * error, never a crash or a stack overflow. */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "dstc.h"
#include "parse.h"

typedef struct {
  Arena arena;
  DiagSink diag;
  uint32_t file;
  Node *root;
} ParseFx;

static ParseFx *parse_n(const char *text, size_t len) {
  ParseFx *x = calloc(1, sizeof *x);
  ck_assert_ptr_nonnull(x);
  arena_init(&x->arena);
  diag_init(&x->diag, &x->arena);
  char *buf = arena_alloc(&x->arena, len + 1);
  memcpy(buf, text, len);
  x->file = diag_add_file(&x->diag, "t.dst", buf, (uint32_t)len);
  x->root = parse_file(&x->arena, &x->diag, x->file);
  ck_assert_ptr_nonnull(x->root);
  ck_assert_int_eq(x->root->kind, N_FILE);
  return x;
}

static ParseFx *parse(const char *text) { return parse_n(text, strlen(text)); }

static void parse_free(ParseFx *x) {
  arena_free(&x->arena);
  free(x);
}

static void expect_clean(ParseFx *x) {
  ck_assert_msg(x->diag.nerrors == 0, "unexpected error: %s",
                x->diag.head ? x->diag.head->msg : "?");
}

/* The number of errors whose message contains sub. */
static int count_errors(ParseFx *x, const char *sub) {
  int n = 0;
  for (Diag *g = x->diag.head; g; g = g->next)
    if (g->sev == SEV_ERROR && strstr(g->msg, sub)) n++;
  return n;
}

/* ------------------------------------------------------------ S-expressions */

static char *sx(Arena *a, const Node *n);

static char *sx_list(Arena *a, const char *head, const NodeList *l, const char *close) {
  char *s = arena_strdup(a, head);
  for (int i = 0; i < l->n; i++) s = arena_printf(a, "%s%s%s", s, (i || *head != '[') ? " " : "", sx(a, l->v[i]));
  return arena_printf(a, "%s%s", s, close);
}

static char *sx(Arena *a, const Node *n) {
  if (!n) return "null";
  switch (n->kind) {
  case N_INT: return arena_printf(a, "%lld", (long long)n->ival);
  case N_FLOAT: return arena_printf(a, "%g", n->fval);
  case N_STR: return arena_printf(a, "\"%s\"", n->str);
  case N_BOOL: return n->ival ? "true" : "false";
  case N_NAME: return arena_strdup(a, n->name);
  case N_MEMBER: return arena_printf(a, "(. %s %s)", sx(a, n->a), n->name);
  case N_CALL: return sx_list(a, arena_printf(a, "(call %s", sx(a, n->a)), &n->list, ")");
  case N_NAMEDARG: return arena_printf(a, "(= %s %s)", n->name, sx(a, n->a));
  case N_BINARY: return arena_printf(a, "(%s %s %s)", op_token_str(n->op), sx(a, n->a), sx(a, n->b));
  case N_UNARY: return arena_printf(a, "(%s %s)", n->op == '-' ? "neg" : op_token_str(n->op), sx(a, n->a));
  case N_LIST: return sx_list(a, "[", &n->list, "]");
  case N_TUPLE: return sx_list(a, "(tuple", &n->list, ")");
  default: return arena_printf(a, "<%s>", node_kind_name(n->kind));
  }
}

/* Parses "config { x = EXPR; }" and returns EXPR as an S-expression. */
static void expect_expr(const char *expr, const char *want) {
  char *text = malloc(strlen(expr) + 32);
  sprintf(text, "config { x = %s; }", expr);
  ParseFx *x = parse(text);
  expect_clean(x);
  ck_assert_int_eq(x->root->list.n, 1);
  Node *cfg = x->root->list.v[0];
  ck_assert_int_eq(cfg->kind, N_CONFIG);
  ck_assert_int_eq(cfg->list.n, 1);
  Node *c = cfg->list.v[0];
  ck_assert_int_eq(c->kind, N_CONST);
  ck_assert_str_eq(c->name, "x");
  const char *got = sx(&x->arena, c->a);
  ck_assert_msg(!strcmp(got, want), "%s parsed as %s, expected %s", expr, got, want);
  parse_free(x);
  free(text);
}

/* ------------------------------------------------------------ expressions */

START_TEST(test_precedence) {
  expect_expr("a + b * c @ d ** e", "(+ a (@ (* b c) (** d e)))");
  expect_expr("a - b - c", "(- (- a b) c)");
  expect_expr("a / b % c * d", "(* (% (/ a b) c) d)");
  expect_expr("a ** b ** c", "(** a (** b c))");
  expect_expr("a @ b @ c", "(@ (@ a b) c)");
  expect_expr("a < b == c >= d", "(== (< a b) (>= c d))");
  expect_expr("a + 1 <= b != c > d", "(!= (<= (+ a 1) b) (> c d))");
  expect_expr("!a && b || c && !d", "(|| (&& (! a) b) (&& c (! d)))");
  expect_expr("a || b && c", "(|| a (&& b c))");
  expect_expr("(a + b) * c", "(* (+ a b) c)");
}
END_TEST

START_TEST(test_unary_minus_and_power) {
  /* As in Python and math: -a ** 2 is -(a ** 2). */
  expect_expr("-a ** 2", "(neg (** a 2))");
  expect_expr("-a * b", "(* (neg a) b)");
  expect_expr("a * -b", "(* a (neg b))");
  expect_expr("2 ** -1", "(** 2 (neg 1))");
  expect_expr("- -a", "(neg (neg a))");
  expect_expr("-a.b(c)", "(neg (call (. a b) c))");
  expect_expr("a - -1", "(- a (neg 1))");
}
END_TEST

START_TEST(test_literals) {
  expect_expr("1_024", "1024");
  expect_expr("2.5e-1", "0.25");
  expect_expr("\"fp\\\"32\"", "\"fp\"32\"");
  expect_expr("true && false", "(&& true false)");
}
END_TEST

START_TEST(test_tuples_and_parens) {
  expect_expr("(1)", "1");
  expect_expr("((a))", "a");
  expect_expr("(1, 2)", "(tuple 1 2)");
  expect_expr("(0.9, 0.95, a + b)", "(tuple 0.9 0.95 (+ a b))");
  expect_expr("((1, 2), 3)", "(tuple (tuple 1 2) 3)");
  expect_expr("[]", "[]");
  expect_expr("[a, (b), [c]]", "[a b [c]]");
  expect_expr("[batch, seq, heads, dim / heads]", "[batch seq heads (/ dim heads)]");
}
END_TEST

START_TEST(test_calls_and_members) {
  expect_expr("f()", "(call f)");
  expect_expr("f(x, n = 2)(y).z", "(. (call (call f x (= n 2)) y) z)");
  expect_expr("adamw(lr = lr, betas = (0.9, 0.95))", "(call adamw (= lr lr) (= betas (tuple 0.9 0.95)))");
  expect_expr("transpose(wte.w)", "(call transpose (. wte w))");
  expect_expr("split(qkv(x), 3, dim = -1)", "(call split (call qkv x) 3 (= dim (neg 1)))");
  expect_expr("a.b.c", "(. (. a b) c)");
}
END_TEST

START_TEST(test_expression_locations) {
  ParseFx *x = parse("config { x = a + b * c; }");
  expect_clean(x);
  Node *c = x->root->list.v[0]->list.v[0];
  ck_assert_uint_eq(c->nloc.begin, 9); /* the name */
  ck_assert_uint_eq(c->nloc.end, 10);
  Node *e = c->a;
  ck_assert_uint_eq(e->loc.begin, 13); /* the whole of a + b * c */
  ck_assert_uint_eq(e->loc.end, 22);
  ck_assert_uint_eq(e->b->loc.begin, 17); /* b * c */
  ck_assert_uint_eq(e->b->loc.end, 22);
  ck_assert_uint_eq(c->loc.begin, 9); /* x = ...; */
  ck_assert_uint_eq(c->loc.end, 23);
  parse_free(x);
}
END_TEST

/* ------------------------------------------------------------ declarations */

START_TEST(test_top_level_declarations) {
  ParseFx *x = parse("import \"nn.dst\";\n"
                     "config { a = 1; b = 2.0; }\n"
                     "block B(n: int, f: float = 0.5) @checkpoint { forward(x) { return x; } }\n"
                     "model M { forward { minimize 1; } }\n"
                     "train { steps = 10; optimizer = sgd(lr = 0.1); }\n"
                     "parallel { dp = 2; precision = bf16; }\n");
  expect_clean(x);
  NodeList *d = &x->root->list;
  ck_assert_int_eq(d->n, 6);
  ck_assert_int_eq(d->v[0]->kind, N_IMPORT);
  ck_assert_str_eq(d->v[0]->str, "nn.dst");
  ck_assert_uint_eq(d->v[0]->nloc.begin, 7); /* the string, for "cannot find" */

  ck_assert_int_eq(d->v[1]->kind, N_CONFIG);
  ck_assert_int_eq(d->v[1]->list.n, 2);
  ck_assert_str_eq(d->v[1]->list.v[1]->name, "b");
  ck_assert_int_eq(d->v[1]->list.v[1]->a->kind, N_FLOAT);

  Node *b = d->v[2];
  ck_assert_int_eq(b->kind, N_BLOCK);
  ck_assert_str_eq(b->name, "B");
  ck_assert_int_eq(b->list.n, 2);
  ck_assert_int_eq(b->list.v[0]->kind, N_FORMAL);
  ck_assert_str_eq(b->list.v[0]->name, "n");
  ck_assert_str_eq(b->list.v[0]->str, "int");
  ck_assert_ptr_null(b->list.v[0]->a);
  ck_assert_str_eq(b->list.v[1]->str, "float");
  ck_assert_str_eq(sx(&x->arena, b->list.v[1]->a), "0.5");
  ck_assert_int_eq(b->annots.n, 1);
  ck_assert_str_eq(b->annots.v[0]->name, "checkpoint");
  ck_assert_int_eq(b->list2.n, 1);
  Node *fw = b->list2.v[0];
  ck_assert_int_eq(fw->kind, N_FORWARD);
  ck_assert_int_eq(fw->ival, 1); /* has a parameter list */
  ck_assert_int_eq(fw->list.n, 1);
  ck_assert_str_eq(fw->list.v[0]->name, "x");
  ck_assert_int_eq(fw->list2.v[0]->kind, N_RETURN);

  Node *m = d->v[3];
  ck_assert_int_eq(m->kind, N_MODEL);
  ck_assert_str_eq(m->name, "M");
  ck_assert_int_eq(m->list2.v[0]->kind, N_FORWARD);
  ck_assert_int_eq(m->list2.v[0]->ival, 0); /* forward without parameters */
  ck_assert_int_eq(m->list2.v[0]->list2.v[0]->kind, N_MINIMIZE);

  ck_assert_int_eq(d->v[4]->kind, N_TRAIN);
  ck_assert_int_eq(d->v[4]->list.n, 2);
  ck_assert_int_eq(d->v[4]->list.v[1]->kind, N_KEYVAL);
  ck_assert_str_eq(d->v[4]->list.v[1]->name, "optimizer");
  ck_assert_str_eq(sx(&x->arena, d->v[4]->list.v[1]->a), "(call sgd (= lr 0.1))");
  ck_assert_int_eq(d->v[5]->kind, N_PARALLEL);
  ck_assert_str_eq(sx(&x->arena, d->v[5]->list.v[1]->a), "bf16");
  parse_free(x);
}
END_TEST

START_TEST(test_block_members) {
  ParseFx *x = parse("block Attn(dim: int, heads: int) {\n"
                     "  param w: f32[dim, 3 * dim] = normal(0.02) @shard(heads, heads) @no_decay;\n"
                     "  param b: bf16[dim] = zeros;\n"
                     "  param s: f32;\n"
                     "  layer blocks = repeat(layers * 2) Blk(dim, std = 0.1) @checkpoint @stage(1);\n"
                     "  layer ln = LayerNorm(dim);\n"
                     "  input tok: i32[4, 8];\n"
                     "  forward(x, y) {\n"
                     "    q, k, v = split(x, 3);\n"
                     "    return q;\n"
                     "  }\n"
                     "}\n");
  expect_clean(x);
  Node *b = x->root->list.v[0];
  ck_assert_int_eq(b->list2.n, 7);
  Node *w = b->list2.v[0];
  ck_assert_int_eq(w->kind, N_PARAM);
  ck_assert_str_eq(w->name, "w");
  ck_assert_int_eq(w->a->kind, N_TENSORTY);
  ck_assert_str_eq(w->a->name, "f32");
  ck_assert_int_eq(w->a->list.n, 2);
  ck_assert_str_eq(sx(&x->arena, w->a->list.v[1]), "(* 3 dim)");
  ck_assert_str_eq(sx(&x->arena, w->b), "(call normal 0.02)");
  ck_assert_int_eq(w->annots.n, 2);
  ck_assert_str_eq(w->annots.v[0]->name, "shard");
  ck_assert_int_eq(w->annots.v[0]->list.n, 2);
  ck_assert_str_eq(w->annots.v[1]->name, "no_decay");
  ck_assert_int_eq(w->annots.v[1]->list.n, 0);

  Node *bb = b->list2.v[1];
  ck_assert_str_eq(bb->a->name, "bf16");
  ck_assert_int_eq(bb->b->kind, N_NAME); /* "= zeros" without parentheses */
  ck_assert_str_eq(bb->b->name, "zeros");

  Node *s = b->list2.v[2];
  ck_assert_int_eq(s->a->list.n, 0); /* a scalar: no shape */
  ck_assert_ptr_null(s->b);          /* and no initializer */

  Node *rep = b->list2.v[3];
  ck_assert_int_eq(rep->kind, N_LAYER);
  ck_assert_str_eq(rep->name, "blocks");
  ck_assert_str_eq(sx(&x->arena, rep->b), "(* layers 2)"); /* repeat count */
  ck_assert_str_eq(sx(&x->arena, rep->a), "(call Blk dim (= std 0.1))");
  ck_assert_int_eq(rep->annots.n, 2);
  ck_assert_str_eq(rep->annots.v[1]->name, "stage");

  Node *ln = b->list2.v[4];
  ck_assert_ptr_null(ln->b); /* not repeated */
  ck_assert_str_eq(sx(&x->arena, ln->a), "(call LayerNorm dim)");

  ck_assert_int_eq(b->list2.v[5]->kind, N_INPUT);
  ck_assert_str_eq(b->list2.v[5]->a->name, "i32");

  Node *fw = b->list2.v[6];
  ck_assert_int_eq(fw->list.n, 2);
  Node *as = fw->list2.v[0];
  ck_assert_int_eq(as->kind, N_ASSIGN);
  ck_assert_int_eq(as->list.n, 3); /* q, k, v */
  ck_assert_str_eq(as->list.v[0]->name, "q");
  ck_assert_str_eq(as->list.v[2]->name, "v");
  ck_assert_uint_eq(as->list.v[2]->loc.begin - as->list.v[0]->loc.begin, 6);
  ck_assert_str_eq(sx(&x->arena, as->a), "(call split x 3)");
  parse_free(x);
}
END_TEST

START_TEST(test_if_members_and_statements) {
  ParseFx *x = parse("block L(bias: bool) {\n"
                     "  param w: f32[2] = zeros;\n"
                     "  if bias { param b: f32[2] = zeros; } else { param c: f32[2] = ones; layer d = X(); }\n"
                     "  if !bias { }\n"
                     "  forward(x) {\n"
                     "    y = x;\n"
                     "    if bias { y = y + b; } else { if a == 1 { y = -y; } }\n"
                     "    return y;\n"
                     "  }\n"
                     "}\n");
  expect_clean(x);
  Node *b = x->root->list.v[0];
  ck_assert_int_eq(b->list2.n, 4);
  Node *im = b->list2.v[1];
  ck_assert_int_eq(im->kind, N_IF);
  ck_assert_str_eq(sx(&x->arena, im->a), "bias");
  ck_assert_int_eq(im->list.n, 1);
  ck_assert_int_eq(im->list.v[0]->kind, N_PARAM);
  ck_assert_str_eq(im->list.v[0]->name, "b");
  ck_assert_int_eq(im->list2.n, 2); /* else branch */
  ck_assert_str_eq(im->list2.v[0]->name, "c");
  ck_assert_int_eq(im->list2.v[1]->kind, N_LAYER);
  Node *empty = b->list2.v[2];
  ck_assert_int_eq(empty->kind, N_IF);
  ck_assert_int_eq(empty->list.n, 0);
  ck_assert_int_eq(empty->list2.n, 0);

  Node *fw = b->list2.v[3];
  ck_assert_int_eq(fw->list2.n, 3);
  Node *is = fw->list2.v[1];
  ck_assert_int_eq(is->kind, N_IF);
  ck_assert_int_eq(is->list.n, 1);
  ck_assert_int_eq(is->list.v[0]->kind, N_ASSIGN);
  ck_assert_int_eq(is->list2.n, 1);
  Node *inner = is->list2.v[0];
  ck_assert_int_eq(inner->kind, N_IF);
  ck_assert_str_eq(sx(&x->arena, inner->a), "(== a 1)");
  ck_assert_str_eq(sx(&x->arena, inner->list.v[0]->a), "(neg y)");
  ck_assert_ptr_null(inner->list2.v);
  parse_free(x);
}
END_TEST

START_TEST(test_ast_dump_is_stable) {
  /* --dump-ast prints offsets, not pointers: two parses dump identically. */
  const char *src = "config { a = (1, \"s\\n\") ; }\nmodel M { forward { minimize -a ** 2; } }";
  char *out[2];
  for (int i = 0; i < 2; i++) {
    ParseFx *x = parse(src);
    expect_clean(x);
    size_t len;
    FILE *f = open_memstream(&out[i], &len);
    ast_dump(f, x->root, 0);
    fclose(f);
    parse_free(x);
  }
  ck_assert_str_eq(out[0], out[1]);
  ck_assert_ptr_nonnull(strstr(out[0], "string \"s\\n\""));
  ck_assert_ptr_nonnull(strstr(out[0], "unary -"));
  free(out[0]);
  free(out[1]);
}
END_TEST

/* ------------------------------------------------------------ errors */

START_TEST(test_error_recovery) {
  ParseFx *x = parse("config {\n"
                     "  a = 1 +;\n"
                     "  b = 2;\n"
                     "  c = * 3;\n"
                     "}\n"
                     "model M { forward { y = ; minimize y; } }\n"
                     "block B(x: int) {\n"
                     "  param w f32[x] = zeros;\n"
                     "  param v: f32[x] = zeros;\n"
                     "  forward(x) { return x }\n"
                     "}\n");
  ck_assert_int_eq(x->diag.nerrors, 5);
  ck_assert_int_eq(count_errors(x, "syntax error"), 5);
  ck_assert_int_eq(count_errors(x, "unexpected ';'"), 2);
  ck_assert_int_eq(count_errors(x, "unexpected '*'"), 1);
  ck_assert_int_eq(count_errors(x, "expecting ':'"), 1);
  ck_assert_int_eq(count_errors(x, "unexpected '}'"), 1);
  /* The errors are reported in source order. */
  uint32_t prev = 0;
  for (Diag *g = x->diag.head; g; g = g->next) {
    ck_assert_uint_ge(g->loc.begin, prev);
    prev = g->loc.begin;
  }
  parse_free(x);

  /* When recovery resynchronizes, what parsed around the errors is kept. */
  x = parse("config { a = 1 +; b = 2; c = * 3; }\n"
            "model M { forward { y = ; minimize y; } }\n"
            "block B(x: int) { param w f32[x] = zeros; param v: f32[x] = zeros;\n"
            "  forward(x) { return x; } }\n");
  ck_assert_int_eq(x->diag.nerrors, 4);
  NodeList *d = &x->root->list;
  ck_assert_int_eq(d->n, 3);
  Node *cfg = d->v[0];
  ck_assert_int_eq(cfg->kind, N_CONFIG);
  ck_assert_int_eq(cfg->list.n, 1);
  ck_assert_str_eq(cfg->list.v[0]->name, "b");
  ck_assert_int_eq(d->v[1]->kind, N_MODEL);
  ck_assert_int_eq(d->v[1]->list2.v[0]->list2.n, 1); /* minimize y */
  Node *blk = d->v[2];
  ck_assert_int_eq(blk->kind, N_BLOCK);
  ck_assert_int_eq(blk->list2.n, 2);
  ck_assert_str_eq(blk->list2.v[0]->name, "v");
  ck_assert_int_eq(blk->list2.v[1]->kind, N_FORWARD);
  parse_free(x);
}
END_TEST

START_TEST(test_error_messages) {
  ParseFx *x = parse("model { }");
  ck_assert_int_eq(x->diag.nerrors, 1);
  ck_assert_str_eq(x->diag.head->msg, "syntax error, unexpected '{', expecting identifier");
  ck_assert_uint_eq(x->diag.head->loc.begin, 6);
  parse_free(x);

  x = parse("config { a = 1; }\nconfig { b = 2");
  ck_assert_int_eq(x->diag.nerrors, 1);
  ck_assert_ptr_nonnull(strstr(x->diag.head->msg, "unexpected end of file"));
  parse_free(x);

  /* A keyword where a name is needed. */
  x = parse("config { model = 1; }");
  ck_assert_int_ge(x->diag.nerrors, 1);
  ck_assert_ptr_nonnull(strstr(x->diag.head->msg, "unexpected model"));
  parse_free(x);

  /* Named arguments only inside calls; layers need a call. */
  x = parse("config { a = (b = 1); }");
  ck_assert_int_ge(x->diag.nerrors, 1);
  parse_free(x);
  x = parse("block B() { layer l = 3; forward(x) { return x; } }");
  ck_assert_int_ge(x->diag.nerrors, 1);
  parse_free(x);
}
END_TEST

START_TEST(test_lexer_errors_reach_parser) {
  /* A lexical error is reported once; the bad bytes are skipped. */
  ParseFx *x = parse("config { a = 1; \xff b = 2; }");
  ck_assert_int_eq(x->diag.nerrors, 1);
  ck_assert_ptr_nonnull(strstr(x->diag.head->msg, "invalid UTF-8"));
  ck_assert_int_eq(x->root->list.v[0]->list.n, 2);
  parse_free(x);
}
END_TEST

static char *repeat_str(const char *head, const char *unit, int n, const char *mid, const char *tail_unit,
                        const char *tail) {
  size_t len = strlen(head) + (strlen(unit) + strlen(tail_unit)) * (size_t)n + strlen(mid) + strlen(tail) + 1;
  char *s = malloc(len);
  char *p = s;
  p += sprintf(p, "%s", head);
  for (int i = 0; i < n; i++) p += sprintf(p, "%s", unit);
  p += sprintf(p, "%s", mid);
  for (int i = 0; i < n; i++) p += sprintf(p, "%s", tail_unit);
  sprintf(p, "%s", tail);
  return s;
}

START_TEST(test_deep_parentheses) {
  char *s = repeat_str("config { x = ", "(", 10000, "1", ")", "; }");
  ParseFx *x = parse(s);
  ck_assert_int_eq(x->diag.nerrors, 1);
  ck_assert_int_eq(count_errors(x, "nested more than 200 deep"), 1);
  ck_assert_int_eq(x->root->list.n, 0);
  parse_free(x);
  free(s);
}
END_TEST

START_TEST(test_long_binary_chain) {
  /* 100,000 terms: no recursion in the parser, but the tree would be
   * 100,000 levels deep, which every later pass would recurse over. */
  char *s = repeat_str("config { x = 1", "+1", 99999, "", "", "; }");
  ParseFx *x = parse(s);
  ck_assert_int_eq(x->diag.nerrors, 1);
  ck_assert_int_eq(count_errors(x, "expression nested more than 200 levels deep"), 1);
  ck_assert_int_eq(x->root->list.n, 0);
  parse_free(x);
  free(s);
}
END_TEST

START_TEST(test_expression_depth_boundary) {
  char *s = repeat_str("config { x = 1", "+1", DST_MAX_NESTING, "", "", "; }");
  ParseFx *x = parse(s);
  expect_clean(x);
  ck_assert_int_eq(x->root->list.n, 1);
  parse_free(x);
  free(s);
  s = repeat_str("config { x = 1", "+1", DST_MAX_NESTING + 1, "", "", "; }");
  x = parse(s);
  ck_assert_int_eq(x->diag.nerrors, 1);
  parse_free(x);
  free(s);
}
END_TEST

START_TEST(test_deep_unary_minus) {
  char *s = repeat_str("config { x = ", "-", 10000, "1", "", "; }");
  ParseFx *x = parse(s);
  ck_assert_int_eq(x->diag.nerrors, 1);
  ck_assert_int_eq(x->root->list.n, 0);
  parse_free(x);
  free(s);

  s = repeat_str("config { x = ", "!", 100000, "true", "", "; }");
  x = parse(s);
  ck_assert_int_eq(x->diag.nerrors, 1);
  parse_free(x);
  free(s);
}
END_TEST

START_TEST(test_deep_power_and_members) {
  char *s = repeat_str("config { x = 1", "**1", 100000, "", "", "; }");
  ParseFx *x = parse(s);
  ck_assert_int_eq(x->diag.nerrors, 1);
  parse_free(x);
  free(s);

  s = repeat_str("config { x = a", ".b", 10000, "", "", "; }");
  x = parse(s);
  ck_assert_int_eq(x->diag.nerrors, 1);
  ck_assert_int_eq(count_errors(x, "nested more than"), 1);
  parse_free(x);
  free(s);

  s = repeat_str("config { x = f", "(1)", 10000, "", "", "; }");
  x = parse(s);
  ck_assert_int_eq(x->diag.nerrors, 1);
  parse_free(x);
  free(s);
}
END_TEST

START_TEST(test_deep_blocks) {
  char *s = repeat_str("block B() { forward(x) { ", "if a { ", 5000, "", "} ", "return x; } }");
  ParseFx *x = parse(s);
  ck_assert_int_eq(x->diag.nerrors, 1);
  ck_assert_int_eq(count_errors(x, "nested more than 200 deep"), 1);
  parse_free(x);
  free(s);
}
END_TEST

START_TEST(test_many_errors_are_capped) {
  /* 1,000 bad lines: the sink keeps DST_MAX_ERRORS and counts the rest. */
  char *s = repeat_str("config {\n", "a = ;\n", 1000, "", "", "}");
  ParseFx *x = parse(s);
  ck_assert(x->diag.overflowed);
  ck_assert_int_gt(x->diag.nerrors, DST_MAX_ERRORS);
  int kept = 0;
  for (Diag *g = x->diag.head; g; g = g->next) kept++;
  ck_assert_int_eq(kept, DST_MAX_ERRORS);
  parse_free(x);
  free(s);
}
END_TEST

Suite *parser_suite(void) {
  Suite *s = suite_create("parser");
  TCase *tc = tcase_create("expressions");
  tcase_add_test(tc, test_precedence);
  tcase_add_test(tc, test_unary_minus_and_power);
  tcase_add_test(tc, test_literals);
  tcase_add_test(tc, test_tuples_and_parens);
  tcase_add_test(tc, test_calls_and_members);
  tcase_add_test(tc, test_expression_locations);
  suite_add_tcase(s, tc);
  tc = tcase_create("declarations");
  tcase_add_test(tc, test_top_level_declarations);
  tcase_add_test(tc, test_block_members);
  tcase_add_test(tc, test_if_members_and_statements);
  tcase_add_test(tc, test_ast_dump_is_stable);
  suite_add_tcase(s, tc);
  tc = tcase_create("errors");
  tcase_set_timeout(tc, 30);
  tcase_add_test(tc, test_error_recovery);
  tcase_add_test(tc, test_error_messages);
  tcase_add_test(tc, test_lexer_errors_reach_parser);
  tcase_add_test(tc, test_deep_parentheses);
  tcase_add_test(tc, test_long_binary_chain);
  tcase_add_test(tc, test_expression_depth_boundary);
  tcase_add_test(tc, test_deep_unary_minus);
  tcase_add_test(tc, test_deep_power_and_members);
  tcase_add_test(tc, test_deep_blocks);
  tcase_add_test(tc, test_many_errors_are_capped);
  suite_add_tcase(s, tc);
  return s;
}
