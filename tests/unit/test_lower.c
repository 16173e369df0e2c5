/* test_lower.c: model instantiation and the forward graph (lower.c, shape.c).
 *
 * The examples are lowered from disk and checked against hand counts from
 * their definitions; small in-memory models check that every shape rule
 * reports its own message at the line of the offending expression, and that
 * the layout checks (tp/pp/dp divisibility) name the key and where it was
 * set: a line of the file, or the -f flag. */
#include <check.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "dstc.h"

#ifndef DST_SOURCE_DIR
#error "the test build defines DST_SOURCE_DIR (the source tree)"
#endif

typedef struct {
  Arena arena;
  DiagSink diag;
  Program *p;
  IrGraph *g;
  CliSetting defines[8], flags[8];
} LowerFx;

static void fill_settings(LowerFx *x, const char *const *list, CliSetting *out, int *n) {
  for (int i = 0; list && list[i]; i++) {
    ck_assert_int_lt(i, 8);
    const char *eq = strchr(list[i], '=');
    ck_assert_ptr_nonnull(eq);
    out[i].key = arena_strndup(&x->arena, list[i], (size_t)(eq - list[i]));
    out[i].value = eq + 1;
    *n = i + 1;
  }
}

/* Runs sema and, when it succeeds, lower_model. text == NULL reads path. */
static LowerFx *lower_src(const char *path, const char *text, const char *const *defs,
                          const char *const *flags) {
  LowerFx *x = calloc(1, sizeof *x);
  ck_assert_ptr_nonnull(x);
  arena_init(&x->arena);
  diag_init(&x->diag, &x->arena);
  CompileOptions o;
  memset(&o, 0, sizeof o);
  o.search.stdlib_dir = DST_SOURCE_DIR "/stdlib";
  if (text) {
    o.main_text = text;
    o.main_len = strlen(text);
  }
  fill_settings(x, defs, x->defines, &o.ndefines);
  fill_settings(x, flags, x->flags, &o.nflags);
  o.defines = x->defines;
  o.flags = x->flags;
  x->p = sema_program(&x->arena, &x->diag, path, &o);
  ck_assert_ptr_nonnull(x->p);
  if (!diag_failed(&x->diag) && x->p->model) x->g = lower_model(x->p, &x->arena, &x->diag);
  return x;
}

static LowerFx *lower_text(const char *text) { return lower_src("t.dst", text, NULL, NULL); }

static LowerFx *lower_example(const char *name, const char *const *defs, const char *const *flags) {
  char path[512];
  snprintf(path, sizeof path, "%s/examples/%s", DST_SOURCE_DIR, name);
  return lower_src(path, NULL, defs, flags);
}

static void fx_free(LowerFx *x) {
  arena_free(&x->arena);
  free(x);
}

static void dump_diags(LowerFx *x) {
  for (Diag *g = x->diag.head; g; g = g->next) fprintf(stderr, "  diag: %s\n", g->msg);
}

static void expect_clean(LowerFx *x) {
  if (x->diag.nerrors) dump_diags(x);
  ck_assert_int_eq(x->diag.nerrors, 0);
  ck_assert_ptr_nonnull(x->g);
  ck_assert_msg(ir_verify(x->g, stderr), "ir_verify failed");
}

static Diag *find_error(LowerFx *x, const char *sub) {
  for (Diag *g = x->diag.head; g; g = g->next)
    if (g->sev == SEV_ERROR && strstr(g->msg, sub)) return g;
  return NULL;
}

static int line_of(LowerFx *x, Loc l) {
  int line, col;
  diag_linecol(&x->diag, l.file, l.begin, &line, &col);
  return line;
}

/* Exactly one error, containing sub, at the given line of the main file. */
static Diag *expect_only_error(LowerFx *x, const char *sub, int line) {
  if (x->diag.nerrors != 1) dump_diags(x);
  ck_assert_int_eq(x->diag.nerrors, 1);
  Diag *g = x->diag.head;
  while (g && g->sev != SEV_ERROR) g = g->next;
  ck_assert_ptr_nonnull(g);
  ck_assert_msg(strstr(g->msg, sub), "error '%s' lacks '%s'", g->msg, sub);
  ck_assert_uint_eq(g->loc.file, 1);
  ck_assert_int_eq(line_of(x, g->loc), line);
  return g;
}

static const IrNode *param(LowerFx *x, const char *name) {
  for (int i = 0; i < x->g->nparams; i++) {
    const IrNode *n = &x->g->nodes[x->g->params[i]];
    if (!strcmp(n->name, name)) return n;
  }
  return NULL;
}

static int64_t total_params(const IrGraph *g) {
  int64_t t = 0;
  for (int i = 0; i < g->nparams; i++) t += ir_numel(&g->nodes[g->params[i]]);
  return t;
}

#define EXPECT_SHAPE2(n, d0, d1)              \
  do {                                        \
    ck_assert_ptr_nonnull(n);                 \
    ck_assert_int_eq((n)->ndim, 2);           \
    ck_assert_int_eq((n)->shape[0], (d0));    \
    ck_assert_int_eq((n)->shape[1], (d1));    \
  } while (0)
#define EXPECT_SHAPE1(n, d0)                  \
  do {                                        \
    ck_assert_ptr_nonnull(n);                 \
    ck_assert_int_eq((n)->ndim, 1);           \
    ck_assert_int_eq((n)->shape[0], (d0));    \
  } while (0)

static void expect_scalar_loss(LowerFx *x) {
  ck_assert_uint_ne(x->g->loss, 0);
  const IrNode *l = &x->g->nodes[x->g->loss];
  ck_assert_int_eq(l->ndim, 0);
  ck_assert_int_eq(l->op, OP_CROSS_ENTROPY);
  ck_assert_int_eq(l->dtype, DT_F32);
}

/* ------------------------------------------------------------ examples */

/* GPT defaults (vocab 256, seq 64, dim 128, heads 4, layers 2), by hand:
 *   wte 256*128 = 32768, wpe 64*128 = 8192, ln_f 2*128 = 256
 *   per block: ln1 256 + qkv 128*384+384 = 49536 + proj 128*128+128 = 16512
 *              + ln2 256 + fc 128*512+512 = 66048 + proj 512*128+128 = 65664
 *              = 198272, times 2 layers = 396544
 *   total 32768 + 8192 + 396544 + 256 = 437760 in 2 + 12*2 + 2 = 28 tensors */
START_TEST(test_gpt_default) {
  LowerFx *x = lower_example("gpt.dst", NULL, NULL);
  expect_clean(x);
  ck_assert_int_eq(x->g->nparams, 28);
  ck_assert_int_eq(total_params(x->g), 437760);
  EXPECT_SHAPE2(param(x, "wte.w"), 256, 128);
  EXPECT_SHAPE2(param(x, "wpe.w"), 64, 128);
  EXPECT_SHAPE2(param(x, "blocks.1.attn.qkv.w"), 128, 384);
  EXPECT_SHAPE1(param(x, "blocks.1.attn.qkv.b"), 384);
  EXPECT_SHAPE2(param(x, "blocks.0.attn.proj.w"), 128, 128);
  EXPECT_SHAPE2(param(x, "blocks.0.mlp.fc.w"), 128, 512);
  EXPECT_SHAPE2(param(x, "blocks.1.mlp.proj.w"), 512, 128);
  EXPECT_SHAPE1(param(x, "blocks.1.ln2.b"), 128);
  EXPECT_SHAPE1(param(x, "ln_f.w"), 128);
  ck_assert_ptr_null(param(x, "blocks.2.ln1.w")); /* exactly `layers` copies */
  ck_assert_ptr_null(param(x, "blocks.ln1.w"));
  ck_assert_ptr_null(param(x, "ln_f.w.w"));
  /* Parameter names are unique. */
  for (int i = 0; i < x->g->nparams; i++)
    for (int k = i + 1; k < x->g->nparams; k++)
      ck_assert_str_ne(x->g->nodes[x->g->params[i]].name, x->g->nodes[x->g->params[k]].name);

  /* Inputs and the loss. */
  ck_assert_int_eq(x->g->ninputs, 2);
  const IrNode *tok = &x->g->nodes[x->g->inputs[0]];
  ck_assert_str_eq(tok->name, "tokens");
  ck_assert_int_eq(tok->dtype, DT_I32);
  EXPECT_SHAPE2(tok, 8, 64);
  expect_scalar_loss(x);

  /* Initializers and annotations reach the IR. */
  const IrNode *w = param(x, "blocks.0.attn.proj.w");
  ck_assert_int_eq(w->init, INIT_NORMAL);
  ck_assert_double_eq_tol(w->fattr[0], 0.01, 1e-12); /* 0.02 / sqrt(2 * layers) */
  ck_assert_int_eq(w->shard, SHARD_ROW);
  ck_assert_double_eq_tol(param(x, "wpe.w")->fattr[0], 0.01, 1e-12);
  ck_assert_int_eq(param(x, "wte.w")->shard, SHARD_VOCAB);
  const IrNode *qkv = param(x, "blocks.1.attn.qkv.w");
  ck_assert_int_eq(qkv->shard, SHARD_HEADS);
  ck_assert_int_eq(qkv->shard_units, 4);
  ck_assert_int_eq(qkv->iattr[0], 1); /* split along the output columns */
  ck_assert_int_eq(param(x, "blocks.0.mlp.fc.w")->shard, SHARD_COLUMN);
  ck_assert_int_eq(param(x, "ln_f.b")->init, INIT_ZEROS);
  ck_assert_int_eq(param(x, "ln_f.w")->init, INIT_ONES);
  ck_assert_int_eq(param(x, "ln_f.w")->iattr[1], 1); /* @no_decay */
  ck_assert_int_eq(param(x, "wte.w")->iattr[1], 0);
  /* Every op knows the layer it came from. */
  int in_attn = 0;
  for (int i = 1; i < x->g->n; i++)
    if (x->g->nodes[i].op == OP_ATTENTION) {
      ck_assert_ptr_nonnull(strstr(x->g->nodes[i].path, ".attn"));
      in_attn++;
    }
  ck_assert_int_eq(in_attn, 2);
  fx_free(x);
}
END_TEST

START_TEST(test_gpt2_sizes) {
  /* GPT-2 1.5B (XL) and 124M: the published parameter counts. */
  const char *xl[] = {"layers=48", "dim=1600", "heads=25", "vocab=50257", "seq=1024", NULL};
  LowerFx *x = lower_example("gpt.dst", xl, NULL);
  expect_clean(x);
  ck_assert_int_eq(total_params(x->g), 1557611200);
  ck_assert_int_eq(x->g->nparams, 2 + 12 * 48 + 2);
  EXPECT_SHAPE2(param(x, "blocks.47.mlp.fc.w"), 1600, 6400);
  ck_assert_ptr_null(param(x, "blocks.48.mlp.fc.w"));
  expect_scalar_loss(x);
  fx_free(x);

  const char *small[] = {"layers=12", "dim=768", "heads=12", "vocab=50257", "seq=1024", NULL};
  x = lower_example("gpt.dst", small, NULL);
  expect_clean(x);
  ck_assert_int_eq(total_params(x->g), 124439808);
  fx_free(x);
}
END_TEST

/* Llama defaults (vocab 256, dim 128, heads 4, kv_heads 2, hidden 344,
 * layers 2), no biases: embed 32768; per block: 2 norms 256 + wq 16384 +
 * wk, wv 128*64 each + wo 16384 + 3 SwiGLU matrices 128*344 = 181504;
 * norm 128; head 128*256 = 32768. Total 32768 + 2*181504 + 128 + 32768. */
START_TEST(test_llama_default) {
  LowerFx *x = lower_example("llama.dst", NULL, NULL);
  expect_clean(x);
  ck_assert_int_eq(total_params(x->g), 428672);
  ck_assert_int_eq(x->g->nparams, 1 + 9 * 2 + 1 + 1);
  EXPECT_SHAPE2(param(x, "blocks.1.attn.wk.w"), 128, 64); /* kv_heads * head_dim */
  EXPECT_SHAPE2(param(x, "blocks.0.attn.wq.w"), 128, 128);
  EXPECT_SHAPE2(param(x, "blocks.0.mlp.down.w"), 344, 128);
  EXPECT_SHAPE2(param(x, "head.w"), 128, 256);
  ck_assert_ptr_null(param(x, "blocks.0.attn.wq.b")); /* bias = false */
  ck_assert_ptr_null(param(x, "head.b"));
  ck_assert_int_eq(param(x, "blocks.1.attn.wk.w")->shard_units, 2);
  int ropes = 0;
  for (int i = 1; i < x->g->n; i++) ropes += x->g->nodes[i].op == OP_ROPE;
  ck_assert_int_eq(ropes, 4); /* q and k in each of 2 layers */
  expect_scalar_loss(x);
  fx_free(x);
}
END_TEST

/* MLP: emb 256*16 = 4096, fc1 256*256+256, fc2 256*256+256. */
START_TEST(test_mlp_default) {
  LowerFx *x = lower_example("mlp.dst", NULL, NULL);
  expect_clean(x);
  ck_assert_int_eq(x->g->nparams, 5);
  ck_assert_int_eq(total_params(x->g), 4096 + 65792 + 65792);
  EXPECT_SHAPE2(param(x, "fc1.w"), 256, 256);
  EXPECT_SHAPE1(param(x, "fc2.b"), 256);
  ck_assert_int_eq(x->p->train_cfg.opt, OPT_SGD);
  expect_scalar_loss(x);
  fx_free(x);
}
END_TEST

START_TEST(test_lowering_is_deterministic) {
  char *out[2];
  for (int i = 0; i < 2; i++) {
    LowerFx *x = lower_example("llama.dst", NULL, NULL);
    expect_clean(x);
    size_t len;
    FILE *f = open_memstream(&out[i], &len);
    ir_dump(f, x->g);
    fclose(f);
    fx_free(x);
  }
  ck_assert_str_eq(out[0], out[1]);
  ck_assert_ptr_nonnull(strstr(out[0], "name=blocks.1.attn.wq.w"));
  free(out[0]);
  free(out[1]);
}
END_TEST

START_TEST(test_conditional_members) {
  /* `if` members pick parameters by configuration: bias = false drops b. */
  const char *src = "import \"nn.dst\";\n"
                    "config { batch = 4; use_bias = true; }\n"
                    "model M {\n"
                    "  input x: f32[batch, 8];\n"
                    "  input y: i32[batch];\n"
                    "  layer fc = Linear(8, 3, bias = use_bias);\n"
                    "  layer stack = repeat(3) Linear(8, 8);\n"
                    "  forward { minimize cross_entropy(fc(stack(x)), y); }\n"
                    "}\n";
  LowerFx *x = lower_text(src);
  expect_clean(x);
  ck_assert_ptr_nonnull(param(x, "fc.b"));
  ck_assert_ptr_nonnull(param(x, "stack.2.b"));
  ck_assert_ptr_null(param(x, "stack.3.w"));
  ck_assert_int_eq(x->g->nparams, 8);
  fx_free(x);
  const char *defs[] = {"use_bias=false", NULL};
  x = lower_src("t.dst", src, defs, NULL);
  expect_clean(x);
  ck_assert_ptr_null(param(x, "fc.b"));
  ck_assert_ptr_nonnull(param(x, "fc.w"));
  ck_assert_int_eq(x->g->nparams, 7);
  fx_free(x);
}
END_TEST

/* ------------------------------------------------------------ shape errors */

START_TEST(test_matmul_mismatch) {
  LowerFx *x = lower_text("config { batch = 4; }\n"
                          "block Proj(a: int, b: int) {\n"
                          "  param w: f32[b, a] = normal(0.02);\n"
                          "  forward(x) {\n"
                          "    return x @ w;\n"
                          "  }\n"
                          "}\n"
                          "model M {\n"
                          "  input x: f32[batch, 16];\n"
                          "  input y: i32[batch];\n"
                          "  layer p = Proj(16, 8);\n"
                          "  forward { minimize cross_entropy(p(x), y); }\n"
                          "}\n");
  Diag *g = expect_only_error(x, "matmul inner dimensions differ: the left operand f32[4, 16] has 16 "
                                 "columns but the right operand f32[8, 16] has 8 rows", 5);
  ck_assert_ptr_nonnull(g->notes); /* names the layer instance */
  ck_assert_str_eq(g->notes->msg, "in layer 'p' (block Proj)");
  ck_assert_int_eq(line_of(x, g->notes->loc), 11);
  fx_free(x);
}
END_TEST

START_TEST(test_broadcast_mismatch) {
  LowerFx *x = lower_text("config { batch = 4; }\n"
                          "model M {\n"
                          "  input x: f32[batch, 8];\n"
                          "  input b: f32[5];\n"
                          "  input y: i32[batch];\n"
                          "  forward {\n"
                          "    z = x * 2.0 + 1;\n"
                          "    h = z + b;\n"
                          "    minimize cross_entropy(h, y);\n"
                          "  }\n"
                          "}\n");
  expect_only_error(x, "shapes f32[4, 8] and f32[5] do not broadcast", 8);
  fx_free(x);
}
END_TEST

START_TEST(test_reshape_count) {
  LowerFx *x = lower_text("config { batch = 4; }\n"
                          "model M {\n"
                          "  input x: f32[batch, 6];\n"
                          "  input y: i32[batch];\n"
                          "  forward {\n"
                          "    a = reshape(x, [batch, 3, -1]);\n"
                          "    b = reshape(a, [batch, 4]);\n"
                          "    minimize cross_entropy(b, y);\n"
                          "  }\n"
                          "}\n");
  expect_only_error(x, "cannot reshape f32[4, 3, 2] (24 elements) to [4, 4] (16 elements)", 7);
  fx_free(x);

  x = lower_text("config { batch = 4; }\n"
                 "model M {\n"
                 "  input x: f32[batch, 6];\n"
                 "  input y: i32[batch];\n"
                 "  forward {\n"
                 "    a = reshape(x, [5, -1]);\n"
                 "    minimize cross_entropy(a, y);\n"
                 "  }\n"
                 "}\n");
  expect_only_error(x, "24 is not divisible by 5", 6);
  fx_free(x);
}
END_TEST

START_TEST(test_split_not_divisible) {
  LowerFx *x = lower_text("config { batch = 4; }\n"
                          "model M {\n"
                          "  input x: f32[batch, 10];\n"
                          "  input y: i32[batch];\n"
                          "  forward {\n"
                          "    a, b, c = split(x, 3, dim = -1);\n"
                          "    minimize cross_entropy(a, y);\n"
                          "  }\n"
                          "}\n");
  expect_only_error(x, "cannot split dimension 1 (size 10) of [4, 10] into 3 equal parts", 6);
  fx_free(x);

  /* The number of names must match the number of parts. */
  x = lower_text("config { batch = 4; }\n"
                 "model M {\n"
                 "  input x: f32[batch, 10];\n"
                 "  input y: i32[batch];\n"
                 "  forward {\n"
                 "    a, b, c = split(x, 2);\n"
                 "    minimize cross_entropy(a, y);\n"
                 "  }\n"
                 "}\n");
  expect_only_error(x, "3 names on the left but 2 values on the right", 6);
  fx_free(x);
}
END_TEST

START_TEST(test_attention_heads) {
  LowerFx *x = lower_text("config { batch = 2; seq = 8; }\n"
                          "model M {\n"
                          "  input q: f32[batch, 6, seq, 8];\n"
                          "  input kv: f32[batch, 4, seq, 8];\n"
                          "  input t: i32[batch, 6, seq];\n"
                          "  forward {\n"
                          "    y = attention(q, kv, kv);\n"
                          "    minimize cross_entropy(y, t);\n"
                          "  }\n"
                          "}\n");
  expect_only_error(x, "attention query heads (6) must be a multiple of key/value heads (4)", 7);
  fx_free(x);

  x = lower_text("config { batch = 2; seq = 8; }\n"
                 "model M {\n"
                 "  input q: f32[batch, 4, seq, 16];\n"
                 "  input k: f32[batch, 4, seq, 8];\n"
                 "  input t: i32[batch, 4, seq];\n"
                 "  forward {\n"
                 "    minimize cross_entropy(attention(q, k, k), t);\n"
                 "  }\n"
                 "}\n");
  expect_only_error(x, "attention head_dim differs", 7);
  fx_free(x);

  /* The stdlib's GQA with kv_heads that do not divide heads. */
  const char *defs[] = {"kv_heads=3", NULL};
  x = lower_example("llama.dst", defs, NULL);
  ck_assert_int_ge(x->diag.nerrors, 1);
  ck_assert_ptr_nonnull(find_error(x, "must be a multiple of key/value heads (3)"));
  fx_free(x);
}
END_TEST

START_TEST(test_cross_entropy_targets) {
  LowerFx *x = lower_text("config { batch = 4; seq = 8; vocab = 16; }\n"
                          "model M {\n"
                          "  input logits: f32[batch, seq, vocab];\n"
                          "  input t: i32[batch, vocab];\n"
                          "  forward {\n"
                          "    minimize cross_entropy(logits, t);\n"
                          "  }\n"
                          "}\n");
  expect_only_error(x, "cross_entropy targets i32[4, 16] must match the logits f32[4, 8, 16] without the "
                       "last dimension", 6);
  fx_free(x);

  x = lower_text("config { batch = 4; }\n"
                 "model M {\n"
                 "  input logits: f32[batch, 16];\n"
                 "  input t: f32[batch];\n"
                 "  forward {\n"
                 "    minimize cross_entropy(logits, t);\n"
                 "  }\n"
                 "}\n");
  expect_only_error(x, "cross_entropy targets must be an integer tensor (i32)", 6);
  fx_free(x);
}
END_TEST

START_TEST(test_other_lowering_errors) {
  /* Missing member, with a suggestion. */
  LowerFx *x = lower_text("import \"nn.dst\";\n"
                          "config { batch = 4; }\n"
                          "model M {\n"
                          "  input x: i32[batch];\n"
                          "  layer wte = Embedding(16, 8);\n"
                          "  forward {\n"
                          "    h = wte(x) @ transpose(wte.ww);\n"
                          "    minimize cross_entropy(h, x);\n"
                          "  }\n"
                          "}\n");
  Diag *g = expect_only_error(x, "layer 'wte' (block Embedding) has no member 'ww'", 7);
  ck_assert_str_eq(g->notes->msg, "did you mean 'w'?");
  fx_free(x);

  /* Wrong number of layer inputs points at the block's forward. */
  x = lower_text("import \"nn.dst\";\n"
                 "config { batch = 4; }\n"
                 "model M {\n"
                 "  input x: f32[batch, 8];\n"
                 "  input y: i32[batch];\n"
                 "  layer fc = Linear(8, 8);\n"
                 "  forward { minimize cross_entropy(fc(x, x), y); }\n"
                 "}\n");
  g = expect_only_error(x, "layer 'fc' (block Linear) takes 1 input, 2 given", 7);
  ck_assert_str_eq(g->notes->msg, "its forward is here");
  ck_assert_uint_ne(g->notes->loc.file, 1);
  fx_free(x);

  /* repeat(0). */
  x = lower_text("import \"nn.dst\";\n"
                 "config { batch = 4; }\n"
                 "model M {\n"
                 "  input x: f32[batch, 8];\n"
                 "  input y: i32[batch];\n"
                 "  layer s = repeat(0) Linear(8, 8);\n"
                 "  forward { minimize cross_entropy(s(x), y); }\n"
                 "}\n");
  expect_only_error(x, "repeat count must be an integer from 1 to 100000", 6);
  fx_free(x);

  /* minimize of a non-scalar. */
  x = lower_text("config { batch = 4; }\n"
                 "model M {\n"
                 "  input x: f32[batch, 8];\n"
                 "  forward {\n"
                 "    minimize x * 2.0;\n"
                 "  }\n"
                 "}\n");
  g = expect_only_error(x, "'minimize' needs a scalar loss, not f32[4, 8]", 5);
  ck_assert_str_eq(g->notes->msg, "reduce it first, e.g. mean(...)");
  fx_free(x);

  /* A wrong formal type at instantiation names the formal. */
  x = lower_text("import \"nn.dst\";\n"
                 "config { batch = 4; }\n"
                 "model M {\n"
                 "  input x: f32[batch, 8];\n"
                 "  input y: i32[batch];\n"
                 "  layer fc = Linear(8, 2.5);\n"
                 "  forward { minimize cross_entropy(fc(x), y); }\n"
                 "}\n");
  g = expect_only_error(x, "'out' of block Linear must be an int", 6);
  ck_assert_str_eq(g->notes->msg, "declared here");
  fx_free(x);

  /* A parameter without an initializer. */
  x = lower_text("config { batch = 4; }\n"
                 "block S(n: int) {\n"
                 "  param g: f32[n];\n"
                 "  forward(x) { return x * g; }\n"
                 "}\n"
                 "model M {\n"
                 "  input x: f32[batch, 8];\n"
                 "  input y: i32[batch];\n"
                 "  layer s = S(8);\n"
                 "  forward { minimize cross_entropy(s(x), y); }\n"
                 "}\n");
  expect_only_error(x, "parameter 'g' has no initializer", 3);
  fx_free(x);

  /* A block that contains itself is bounded, not a stack overflow. */
  x = lower_text("config { batch = 4; }\n"
                 "block R(n: int) {\n"
                 "  layer inner = R(n);\n"
                 "  forward(x) { return inner(x); }\n"
                 "}\n"
                 "model M {\n"
                 "  input x: f32[batch, 8];\n"
                 "  input y: i32[batch];\n"
                 "  layer r = R(8);\n"
                 "  forward { minimize cross_entropy(r(x), y); }\n"
                 "}\n");
  expect_only_error(x, "block 'R' contains itself", 3);
  fx_free(x);
}
END_TEST

/* ------------------------------------------------------------ layout checks */

/* The golden tiny GPT: heads 4, layers 2, batch 8 by default. */
static const char gpt_tp_src[] = "import \"transformer.dst\";\n"
                                 "config { vocab = 64; seq = 8; dim = 16; heads = 4; layers = 2; batch = 8; }\n"
                                 "model GPT {\n"
                                 "  input tokens: i32[batch, seq];\n"
                                 "  input targets: i32[batch, seq];\n"
                                 "  layer wte = Embedding(vocab, dim);\n"
                                 "  layer blocks = repeat(layers) GPT2Block(dim, heads, seq);\n"
                                 "  forward {\n"
                                 "    x = blocks(wte(tokens));\n"
                                 "    minimize cross_entropy(x @ transpose(wte.w), targets);\n"
                                 "  }\n"
                                 "}\n";

static char *with_parallel(const char *base, const char *par) {
  char *s = malloc(strlen(base) + strlen(par) + 1);
  strcpy(s, base);
  strcat(s, par);
  return s;
}

static int count_errors_with(LowerFx *x, const char *sub) {
  int n = 0;
  for (Diag *g = x->diag.head; g; g = g->next) n += g->sev == SEV_ERROR && strstr(g->msg, sub);
  return n;
}

static const char *note_with(Diag *g, const char *sub) {
  for (DiagNote *n = g->notes; n; n = n->next)
    if (strstr(n->msg, sub)) return n->msg;
  return NULL;
}

START_TEST(test_layout_valid) {
  char *src = with_parallel(gpt_tp_src, "parallel { dp = 2; tp = 2; pp = 2; micro_batches = 2; }\n");
  LowerFx *x = lower_text(src);
  expect_clean(x);
  fx_free(x);
  free(src);
}
END_TEST

START_TEST(test_tp_from_flag) {
  const char *flags[] = {"tp=3", NULL};
  LowerFx *x = lower_src("t.dst", gpt_tp_src, NULL, flags);
  /* One error per @shard annotation (qkv, proj, fc, proj), not per layer. */
  ck_assert_int_eq(x->diag.nerrors, 4);
  Diag *g = find_error(x, "heads (4) is not divisible by tp (3), so blocks.0.attn.qkv.w cannot be split");
  ck_assert_ptr_nonnull(g);
  ck_assert_ptr_nonnull(note_with(g, "tp = 3 comes from -ftp=3 on the command line"));
  ck_assert_ptr_nonnull(find_error(x, "blocks.0.mlp.fc.w [16, 64]: dimension 1 (size 64) split by "
                                      "@shard(column) is not divisible by tp (3)"));
  ck_assert_int_eq(count_errors_with(x, "blocks.1."), 0);
  fx_free(x);
}
END_TEST

START_TEST(test_tp_from_file) {
  char *src = with_parallel(gpt_tp_src, "parallel {\n  tp = 8;\n}\n");
  LowerFx *x = lower_text(src);
  ck_assert_int_ge(x->diag.nerrors, 1);
  Diag *g = find_error(x, "heads (4) is not divisible by tp (8)");
  ck_assert_ptr_nonnull(g);
  DiagNote *n = g->notes;
  while (n && !strstr(n->msg, "tp = 8 is set here")) n = n->next;
  ck_assert_ptr_nonnull(n);
  ck_assert_uint_eq(n->loc.file, 1);
  ck_assert_int_eq(line_of(x, n->loc), 14);
  fx_free(x);
  free(src);
}
END_TEST

START_TEST(test_pp_divisibility) {
  const char *flags[] = {"pp=3", "micro_batches=4", NULL};
  LowerFx *x = lower_src("t.dst", gpt_tp_src, NULL, flags);
  Diag *g = expect_only_error(x, "2 layers of 'blocks' cannot be divided evenly among 3 pipeline stages", 7);
  ck_assert_ptr_nonnull(note_with(g, "pp = 3 comes from -fpp=3 on the command line"));
  fx_free(x);

  char *src = with_parallel(gpt_tp_src, "parallel {\n  pp = 4;\n  micro_batches = 4;\n}\n");
  x = lower_text(src);
  g = expect_only_error(x, "2 layers of 'blocks' cannot be divided evenly among 4 pipeline stages", 7);
  ck_assert_ptr_nonnull(g->notes);
  ck_assert_str_eq(g->notes->msg, "pp = 4 is set here");
  ck_assert_int_eq(line_of(x, g->notes->loc), 14);
  fx_free(x);
  free(src);

  /* With virtual stages, layers must divide by pp x virtual_stages. */
  src = with_parallel(gpt_tp_src,
                      "parallel { pp = 2; micro_batches = 4; schedule = interleaved; virtual_stages = 2; }\n");
  x = lower_text(src);
  g = expect_only_error(x, "among 4 pipeline stages (pp x virtual_stages)", 7);
  fx_free(x);
  free(src);
}
END_TEST

START_TEST(test_dp_divisibility) {
  const char *flags[] = {"dp=3", NULL};
  LowerFx *x = lower_src("t.dst", gpt_tp_src, NULL, flags);
  Diag *g = expect_only_error(x, "input 'tokens' has batch 8, which is not divisible by dp x grad_accum x "
                                 "micro_batches = 3", 4);
  ck_assert_ptr_nonnull(note_with(g, "dp = 3 comes from -fdp=3 on the command line"));
  fx_free(x);

  char *src = with_parallel(gpt_tp_src, "parallel {\n  dp = 4;\n  grad_accum = 4;\n}\n");
  x = lower_text(src);
  g = expect_only_error(x, "= 16", 4);
  ck_assert_ptr_nonnull(note_with(g, "dp = 4 is set here"));
  ck_assert_ptr_nonnull(note_with(g, "grad_accum = 4 is set here"));
  fx_free(x);
  free(src);

  /* The train block's batch must agree with the inputs. */
  src = with_parallel(gpt_tp_src, "train {\n  batch = 16;\n}\n");
  x = lower_text(src);
  Diag *first = find_error(x, "input 'tokens' has batch 8 but the train block says batch = 16");
  ck_assert_ptr_nonnull(first);
  ck_assert_int_eq(line_of(x, first->loc), 4);
  fx_free(x);
  free(src);
}
END_TEST

/* A train batch that disagrees with the inputs is one error, not one per
 * input: all inputs share the batch. */
START_TEST(test_train_batch_reported_once) {
  char *src = with_parallel(gpt_tp_src, "train {\n  batch = 16;\n}\n");
  LowerFx *x = lower_text(src);
  expect_only_error(x, "input 'tokens' has batch 8 but the train block says batch = 16", 4);
  fx_free(x);
  free(src);
}
END_TEST

/* ------------------------------------------------------------ regressions */

/* @stage(n) beyond pp is one error at the @stage annotation in the user's
 * file (it was once per parameter, at each param inside the stdlib). */
START_TEST(test_stage_reported_at_annotation) {
  char *src = malloc(strlen(gpt_tp_src) + 64);
  strcpy(src, gpt_tp_src);
  char *at = strstr(src, "GPT2Block(dim, heads, seq);");
  ck_assert_ptr_nonnull(at);
  strcpy(at + strlen("GPT2Block(dim, heads, seq)"), " @stage(3);\n  forward {\n"
         "    x = blocks(wte(tokens));\n    minimize cross_entropy(x @ transpose(wte.w), targets);\n  }\n}\n");
  const char *flags[] = {"pp=2", "micro_batches=2", NULL};
  LowerFx *x = lower_src("t.dst", src, NULL, flags);
  Diag *g = find_error(x, "stage 3 but there are only 2 stages");
  ck_assert_ptr_nonnull(g);
  expect_only_error(x, "stage", 7);
  fx_free(x);
  free(src);
}
END_TEST

/* split into more than 4096 parts names the limit (it once said the
 * dimension did not divide, although it did). */
START_TEST(test_split_limit_message) {
  LowerFx *x = lower_text("config { batch = 4; }\n"
                          "model M {\n"
                          "  input x: f32[batch, 8192];\n"
                          "  input t: i32[batch];\n"
                          "  forward {\n"
                          "    parts = split(x, 8192);\n"
                          "    minimize cross_entropy(x, t);\n"
                          "  }\n"
                          "}\n");
  Diag *g = expect_only_error(x, "split", 6);
  ck_assert_msg(strstr(g->msg, "4096"), "message does not name the limit: %s", g->msg);
  fx_free(x);
}
END_TEST

/* Caps the address space of this (forked) test at 1 GiB, so that a
 * regression of the blow-ups below fails the test instead of the machine.
 * Not under AddressSanitizer (its shadow memory needs an unlimited address
 * space) nor without fork mode (the cap would outlive the test). */
static void cap_memory(void) {
#if defined(__SANITIZE_ADDRESS__)
  return;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
  return;
#endif
#endif
  const char *fork = getenv("CK_FORK");
  if (fork && !strcmp(fork, "no")) return;
  struct rlimit r = {(rlim_t)1 << 30, (rlim_t)1 << 30};
  setrlimit(RLIMIT_AS, &r);
}

/* A block that instantiates itself twice is one error; it used to recurse to
 * DST_MAX_INST_DEPTH along every path, 2^64 instantiations (a hang that
 * grew by hundreds of MB a second). */
START_TEST(test_self_recursive_block_terminates) {
  cap_memory();
  LowerFx *x = lower_text("config { batch = 2; }\n"
                          "block R(n: int) {\n"
                          "  layer a = R(n);\n"
                          "  layer b = R(n);\n"
                          "  forward(x) { return a(x) + b(x); }\n"
                          "}\n"
                          "model M {\n"
                          "  input x: f32[batch, 4];\n"
                          "  input t: i32[batch];\n"
                          "  layer r = R(4);\n"
                          "  forward { minimize cross_entropy(r(x), t); }\n"
                          "}\n");
  ck_assert_int_ge(x->diag.nerrors, 1);
  ck_assert_int_le(x->diag.nerrors, 4);
  ck_assert_ptr_nonnull(find_error(x, "'R'"));
  fx_free(x);
}
END_TEST

/* Nested repeats are bounded as a whole, not only each count: 100000 x
 * 100000 layer instances is a prompt error at a repeat (it used to run for
 * ~20 s, take 4+ GB and die with "internal error: out of memory"). */
START_TEST(test_nested_repeat_is_bounded) {
  cap_memory();
  LowerFx *x = lower_text("config { batch = 2; }\n"
                          "block Id(n: int) { forward(x) { return x; } }\n"
                          "block Many(n: int) { layer l = repeat(100000) Id(n); forward(x) { return l(x); } }\n"
                          "model M {\n"
                          "  input x: f32[batch, 4];\n"
                          "  input t: i32[batch];\n"
                          "  layer m = repeat(100000) Many(4);\n"
                          "  forward { minimize cross_entropy(m(x), t); }\n"
                          "}\n");
  ck_assert_int_ge(x->diag.nerrors, 1);
  int line = line_of(x, x->diag.head->loc);
  ck_assert_msg(line == 3 || line == 7, "error at line %d: %s", line, x->diag.head->msg);
  fx_free(x);
}
END_TEST

Suite *lower_suite(void) {
  Suite *s = suite_create("lower");
  TCase *tc = tcase_create("examples");
  tcase_set_timeout(tc, 30);
  tcase_add_test(tc, test_gpt_default);
  tcase_add_test(tc, test_gpt2_sizes);
  tcase_add_test(tc, test_llama_default);
  tcase_add_test(tc, test_mlp_default);
  tcase_add_test(tc, test_lowering_is_deterministic);
  tcase_add_test(tc, test_conditional_members);
  suite_add_tcase(s, tc);
  tc = tcase_create("shapes");
  tcase_add_test(tc, test_matmul_mismatch);
  tcase_add_test(tc, test_broadcast_mismatch);
  tcase_add_test(tc, test_reshape_count);
  tcase_add_test(tc, test_split_not_divisible);
  tcase_add_test(tc, test_attention_heads);
  tcase_add_test(tc, test_cross_entropy_targets);
  tcase_add_test(tc, test_other_lowering_errors);
  suite_add_tcase(s, tc);
  tc = tcase_create("layout");
  tcase_add_test(tc, test_layout_valid);
  tcase_add_test(tc, test_tp_from_flag);
  tcase_add_test(tc, test_tp_from_file);
  tcase_add_test(tc, test_pp_divisibility);
  tcase_add_test(tc, test_dp_divisibility);
  tcase_add_test(tc, test_train_batch_reported_once);
  suite_add_tcase(s, tc);
  tc = tcase_create("regressions");
  tcase_set_timeout(tc, 10);
  tcase_add_test(tc, test_stage_reported_at_annotation);
  tcase_add_test(tc, test_split_limit_message);
  tcase_add_test(tc, test_self_recursive_block_terminates);
  tcase_add_test(tc, test_nested_repeat_is_bounded);
  suite_add_tcase(s, tc);
  return s;
}
