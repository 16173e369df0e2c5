/* lower.c: instantiate the model and build its forward graph.
 *
 * The model's members are instantiated depth first: each `layer` becomes an
 * Inst with its block's formals bound to constants, each `param` an
 * OP_PARAM node named by its layer path ("blocks.3.attn.qkv.w"), each
 * `repeat(n)` n instances named .0 ... .n-1. The model's forward is then
 * evaluated abstractly: constants fold, tensor expressions append IR nodes
 * whose dtypes and shapes shape_infer checks. Errors are reported at the
 * expression, with a note naming the layer instance they occurred in; a
 * repeated layer that fails is not evaluated again for its siblings.
 * Finally the checks that need both the model and the parallel settings run
 * (tp/pp/dp divisibility, stage numbers). */
#include <stdlib.h>
#include <string.h>

#include "dstc.h"
#include "parse.h"

typedef enum { V_ERR, V_CONST, V_TENSOR, V_TUPLE, V_LAYER } VKind;
typedef struct Inst Inst;
typedef struct Value {
  VKind k;
  ConstVal c;
  ValId t;
  struct Value *elems; /* V_TUPLE */
  int n;
  Inst *inst;          /* V_LAYER */
} Value;

typedef struct {
  const char *name;
  Node *decl;
  Value val;
} Member;

typedef struct {
  ShardKind kind;
  int64_t units;
  Loc loc;
  Loc units_loc; /* the unit-count expression, quoted in messages */
} Shard;

struct Inst {
  Node *block;      /* N_BLOCK or N_MODEL; the repeated block for a repeat */
  const char *path; /* "" for the model */
  ConstScope scope; /* formals bound to constants */
  Member *m;
  int nm, capm;
  Inst **reps;      /* repeat holder: its instances */
  int nreps;
  Node *site;       /* the N_LAYER that made it; NULL for the model */
  Node *forward;
  Inst *parent;
  bool checkpoint;
  int stage;
  Loc stage_loc;    /* the @stage annotation that set stage */
  Shard shard;      /* inherited by params without their own */
  bool no_decay;
};

typedef struct {
  const char **names;
  Value *vals;
  int n, cap;
} Env;

typedef struct {
  Program *p;
  Arena *a;
  DiagSink *d;
  IrGraph *g;
  Inst *cur;        /* the instance whose forward is running */
  int depth;        /* instantiation depth */
  int64_t ninstances; /* layers instantiated so far, bounded */
  bool over_budget;   /* reported: stop instantiating */
  bool over_nodes;    /* DST_MAX_FORWARD_OPS reached and reported */
  Node **repeats;   /* top-level repeat layers, for the pp check */
  int nrepeats, caprepeats;
} Lower;

static const Value verr = {.k = V_ERR};

/* ------------------------------------------------------------ diagnostics */

static Diag *lerr(Lower *L, Loc loc, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static Diag *lerr(Lower *L, Loc loc, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  char *msg = arena_vprintf(L->a, fmt, ap);
  va_end(ap);
  Diag *g = diag_error(L->d, loc, "%s", msg);
  for (Inst *i = L->cur; g && i && i->site; i = i->parent) {
    if (i->parent && i->parent->reps) continue; /* the holder's note says it */
    diag_note(L->d, g, i->site->nloc, "in layer '%s' (block %s)", i->path, i->block->name);
  }
  return g;
}

static void fmt_value_type(Lower *L, char *buf, size_t sz, Value v) {
  if (v.k == V_TENSOR) {
    const IrNode *n = &L->g->nodes[v.t];
    int o = snprintf(buf, sz, "%s", dtype_name(n->dtype));
    shape_format(buf + o, sz - (size_t)o, n->shape, n->ndim);
  } else if (v.k == V_CONST) {
    snprintf(buf, sz, "a constant (%s)", const_kind_name(v.c.kind));
  } else if (v.k == V_TUPLE) {
    snprintf(buf, sz, "a tuple of %d values", v.n);
  } else if (v.k == V_LAYER) {
    snprintf(buf, sz, "the layer '%s'", v.inst->path);
  } else {
    snprintf(buf, sz, "an invalid value");
  }
}

/* ------------------------------------------------------------ IR helpers */

static IrNode proto(Lower *L, OpKind op, Loc loc) {
  IrNode n;
  memset(&n, 0, sizeof n);
  n.op = (uint16_t)op;
  n.loc = loc;
  n.stage = -1;
  if (L->cur) {
    n.path = L->cur->path;
    for (Inst *i = L->cur; i; i = i->parent) n.checkpoint |= i->checkpoint;
  }
  return n;
}

static Value emit(Lower *L, IrNode *n, const ValId *in, int nin) {
  n->nin = (uint32_t)nin;
  n->in = arena_alloc(L->a, sizeof(ValId) * (size_t)(nin ? nin : 1));
  if (nin) memcpy(n->in, in, sizeof(ValId) * (size_t)nin);
  char msg[512];
  if (!shape_infer(L->g, n, msg, sizeof msg)) {
    lerr(L, n->loc, "%s", msg);
    return verr;
  }
  Value v = {.k = V_TENSOR, .t = ir_add(L->g, n)};
  return v;
}

static Value emit_const(Lower *L, double x, Loc loc) {
  IrNode n = proto(L, OP_CONST, loc);
  n.dtype = DT_F32;
  n.fattr[0] = x;
  Value v = {.k = V_TENSOR, .t = ir_add(L->g, &n)};
  return v;
}

static const IrNode *tnode(Lower *L, Value v) { return &L->g->nodes[v.t]; }

/* ------------------------------------------------------------ environments */

static void env_set(Lower *L, Env *e, const char *name, Value v) {
  for (int i = 0; i < e->n; i++)
    if (!strcmp(e->names[i], name)) {
      e->vals[i] = v;
      return;
    }
  int cap = e->cap;
  ARENA_PUSH(L->a, e->names, e->n, e->cap, name);
  e->n--;
  e->cap = cap;
  ARENA_PUSH(L->a, e->vals, e->n, e->cap, v);
}

static Member *find_member(Inst *in, const char *name) {
  for (int i = 0; i < in->nm; i++)
    if (!strcmp(in->m[i].name, name)) return &in->m[i];
  return NULL;
}

static bool lookup(Lower *L, Env *env, Inst *in, const char *name, Value *out) {
  for (int i = 0; env && i < env->n; i++)
    if (!strcmp(env->names[i], name)) {
      *out = env->vals[i];
      return true;
    }
  ConstVal c;
  for (int i = in->scope.n - 1; i >= 0; i--)
    if (!strcmp(in->scope.names[i], name)) {
      *out = (Value){.k = V_CONST, .c = in->scope.vals[i]};
      return true;
    }
  Member *m = find_member(in, name);
  if (m) {
    *out = m->val;
    return true;
  }
  if (sema_const_lookup(L->p, name, &c)) {
    *out = c.kind == CV_NONE ? verr : (Value){.k = V_CONST, .c = c};
    return true;
  }
  return false;
}

/* ------------------------------------------------------------ constants */

static bool eval_const_in(Lower *L, Inst *in, const Node *e, ConstVal *out) {
  return sema_eval_const(L->p, e, &in->scope, out);
}

static bool const_int(Lower *L, Value v, const Node *e, const char *what, int64_t *out) {
  if (v.k == V_ERR) return false;
  if (v.k != V_CONST || v.c.kind != CV_INT) {
    char t[160];
    fmt_value_type(L, t, sizeof t, v);
    lerr(L, e->loc, "%s must be a constant integer, not %s", what, t);
    return false;
  }
  *out = v.c.i;
  return true;
}

static bool const_num(Lower *L, Value v, const Node *e, const char *what, double *out) {
  if (v.k == V_ERR) return false;
  if (v.k == V_CONST && v.c.kind == CV_INT) *out = (double)v.c.i;
  else if (v.k == V_CONST && v.c.kind == CV_FLOAT) *out = v.c.f;
  else {
    char t[160];
    fmt_value_type(L, t, sizeof t, v);
    lerr(L, e->loc, "%s must be a constant number, not %s", what, t);
    return false;
  }
  return true;
}

static bool const_bool(Lower *L, Value v, const Node *e, const char *what, bool *out) {
  if (v.k == V_ERR) return false;
  if (v.k != V_CONST || v.c.kind != CV_BOOL) {
    char t[160];
    fmt_value_type(L, t, sizeof t, v);
    lerr(L, e->loc, "%s must be true or false, not %s", what, t);
    return false;
  }
  *out = v.c.i;
  return true;
}

/* Normalizes a Python-style dimension index against a rank. */
static bool norm_dim(Lower *L, int64_t d, int ndim, const Node *e, const IrNode *t, int64_t *out) {
  if (d < -ndim || d >= ndim) {
    char ts[160];
    shape_format(ts, sizeof ts, t->shape, t->ndim);
    lerr(L, e->loc, "dimension %lld is out of range for a tensor of shape %s", (long long)d, ts);
    return false;
  }
  *out = d < 0 ? d + ndim : d;
  return true;
}

/* ------------------------------------------------------------ instantiation */

static Inst *instantiate(Lower *L, Node *block, const char *path, const NodeList *args,
                         const ConstScope *caller, Node *site, Inst *parent);

static const char *const shard_kind_names[] = {"", "column", "row", "vocab", "heads", "experts",
                                               "replicated"};

static bool parse_shard(Lower *L, Inst *in, Node *an, Shard *out) {
  if (an->list.n < 1 || an->list.n > 2 || an->list.v[0]->kind != N_NAME) {
    lerr(L, an->loc, "@shard takes a kind (column, row, vocab, heads, experts, replicated) and "
                     "optionally a unit count, e.g. @shard(heads, n_heads)");
    return false;
  }
  const char *k = an->list.v[0]->name;
  int kind = -1;
  for (int i = 1; i < 7; i++)
    if (!strcmp(k, shard_kind_names[i])) kind = i;
  if (kind < 0) {
    Diag *g = lerr(L, an->list.v[0]->loc, "unknown shard kind '%s'", k);
    const char *s = closest_name(k, shard_kind_names + 1, 6);
    diag_note(L->d, g, an->list.v[0]->loc, s ? "did you mean '%s'?" : "kinds are column, row, vocab, heads, experts and replicated%s", s ? s : "");
    return false;
  }
  out->kind = (ShardKind)kind;
  out->units = 0;
  out->loc = an->loc;
  if (an->list.n == 2) {
    ConstVal u;
    if (!eval_const_in(L, in, an->list.v[1], &u)) return false;
    if (u.kind != CV_INT || u.i < 1) {
      lerr(L, an->list.v[1]->loc, "the shard unit count must be a positive integer");
      return false;
    }
    out->units = u.i;
    out->units_loc = an->list.v[1]->loc;
  } else if (kind == SHARD_HEADS || kind == SHARD_EXPERTS) {
    lerr(L, an->loc, "@shard(%s, N) needs the number of %s", k, k);
    return false;
  }
  return true;
}

static void apply_annots(Lower *L, Inst *in, const NodeList *annots, bool on_layer, Shard *shard,
                         bool *checkpoint, int *stage, bool *no_decay, Loc *stage_loc) {
  static const char *const names[] = {"shard", "checkpoint", "stage", "no_decay"};
  for (int i = 0; i < annots->n; i++) {
    Node *an = annots->v[i];
    if (!strcmp(an->name, "shard")) {
      parse_shard(L, in, an, shard);
    } else if (!strcmp(an->name, "no_decay")) {
      if (an->list.n) lerr(L, an->loc, "@no_decay takes no arguments");
      *no_decay = true;
    } else if (!strcmp(an->name, "checkpoint")) {
      if (!on_layer) {
        lerr(L, an->loc, "@checkpoint applies to layers and blocks, not to parameters");
        continue;
      }
      bool v = true;
      if (an->list.n > 1) lerr(L, an->loc, "@checkpoint takes at most one argument (true or false)");
      else if (an->list.n == 1) {
        ConstVal c;
        if (eval_const_in(L, in, an->list.v[0], &c)) {
          if (c.kind != CV_BOOL) lerr(L, an->list.v[0]->loc, "@checkpoint takes true or false");
          else v = c.i;
        }
      }
      *checkpoint = v;
    } else if (!strcmp(an->name, "stage")) {
      if (!on_layer) {
        lerr(L, an->loc, "@stage applies to layers, not to parameters");
        continue;
      }
      ConstVal c;
      if (an->list.n != 1) {
        lerr(L, an->loc, "@stage takes one argument, the pipeline stage number");
      } else if (eval_const_in(L, in, an->list.v[0], &c)) {
        if (c.kind != CV_INT || c.i < 0 || c.i > 1 << 20) lerr(L, an->list.v[0]->loc, "@stage needs a stage number >= 0");
        else {
          *stage = (int)c.i;
          if (stage_loc) *stage_loc = an->loc;
        }
      }
    } else {
      Diag *g = lerr(L, an->nloc, "unknown annotation '@%s'", an->name);
      const char *s = closest_name(an->name, names, 4);
      diag_note(L->d, g, an->nloc, s ? "did you mean '@%s'?" : "annotations are @shard, @checkpoint, @stage and @no_decay%s", s ? s : "");
    }
  }
}

static void add_member(Lower *L, Inst *in, const char *name, Node *decl, Value v) {
  Member m = {.name = name, .decl = decl, .val = v};
  ARENA_PUSH(L->a, in->m, in->nm, in->capm, m);
}

static const char *join(Lower *L, const char *path, const char *name) {
  return *path ? arena_printf(L->a, "%s.%s", path, name) : name;
}

static void lower_param(Lower *L, Inst *in, Node *m) {
  Node *ty = m->a;
  DType dt;
  if (!dtype_from_name(ty->name, &dt)) {
    static const char *const dts[] = {"f32", "bf16", "f16", "i32"};
    Diag *g = lerr(L, ty->nloc, "unknown dtype '%s'", ty->name);
    const char *s = closest_name(ty->name, dts, 4);
    diag_note(L->d, g, ty->nloc, s ? "did you mean '%s'?" : "dtypes are f32, bf16, f16 and i32%s", s ? s : "");
    add_member(L, in, m->name, m, verr);
    return;
  }
  IrNode n = proto(L, m->kind == N_PARAM ? OP_PARAM : OP_INPUT, m->loc);
  n.path = in->path;
  n.checkpoint = false;
  n.dtype = (uint8_t)dt;
  n.name = join(L, in->path, m->name);
  if (ty->list.n > DST_MAX_DIMS) {
    lerr(L, ty->loc, "tensors have at most %d dimensions", DST_MAX_DIMS);
    add_member(L, in, m->name, m, verr);
    return;
  }
  bool ok = true;
  int64_t numel = 1;
  for (int i = 0; i < ty->list.n; i++) {
    ConstVal c;
    if (!eval_const_in(L, in, ty->list.v[i], &c)) {
      ok = false;
      continue;
    }
    if (c.kind != CV_INT || c.i < 1) {
      char b[64];
      const_format(b, sizeof b, c);
      lerr(L, ty->list.v[i]->loc, "a dimension must be a positive integer, not %s", b);
      ok = false;
      continue;
    }
    if (__builtin_mul_overflow(numel, c.i, &numel) || numel > ((int64_t)1 << 50)) {
      lerr(L, ty->list.v[i]->loc, "tensor '%s' has more than 2^50 elements", n.name);
      ok = false;
      break;
    }
    n.shape[n.ndim++] = c.i;
  }
  if (!ok) {
    add_member(L, in, m->name, m, verr);
    return;
  }
  if (m->kind == N_INPUT) {
    /* The graph is one micro-step of one rank: data parallelism gives each
     * of the dp ranks an equal share of the global batch (the leading
     * dimension), and gradient accumulation splits a rank's share into
     * grad_accum micro-batches. iattr[0] keeps the declared, global size
     * for the layout checks. */
    int64_t split = L->p->par.dp.i * L->p->par.grad_accum.i;
    n.iattr[0] = n.ndim ? n.shape[0] : 0;
    if (n.ndim && split > 1 && n.shape[0] % split == 0) n.shape[0] /= split;
    add_member(L, in, m->name, m, (Value){.k = V_TENSOR, .t = ir_add(L->g, &n)});
    return;
  }
  if (dt == DT_I32) lerr(L, ty->nloc, "parameter '%s' must have a floating-point dtype", n.name);
  /* Initializer. */
  Node *init = m->b;
  if (!init) {
    lerr(L, m->nloc, "parameter '%s' has no initializer; add '= normal(0.02)', '= zeros' or '= ones'",
         m->name);
  } else {
    const char *iname = init->kind == N_CALL ? init->a->name : init->name;
    static const char *const inits[] = {"normal", "zeros", "ones", "uniform", "constant"};
    static const InitKind kinds[] = {INIT_NORMAL, INIT_ZEROS, INIT_ONES, INIT_UNIFORM, INIT_CONST};
    static const char *const argn[] = {"std", NULL, NULL, "bound", "value"};
    int k = -1;
    for (int i = 0; i < 5; i++)
      if (!strcmp(iname, inits[i])) k = i;
    if (k < 0) {
      Diag *g = lerr(L, init->loc, "unknown initializer '%s'", iname);
      const char *s = closest_name(iname, inits, 5);
      diag_note(L->d, g, init->loc, s ? "did you mean '%s'?" : "initializers are normal(std), zeros, ones, uniform(bound) and constant(value)%s", s ? s : "");
    } else {
      n.init = (uint8_t)kinds[k];
      if (argn[k]) {
        ArgSpec spec[1] = {{argn[k], true}};
        Node *slot[1];
        Node fake = {.kind = N_CALL, .loc = init->loc};
        if (sema_bind_args(L->p, init->kind == N_CALL ? init : &fake, iname, spec, 1, slot)) {
          ConstVal c;
          if (eval_const_in(L, in, slot[0], &c)) {
            double x = c.kind == CV_INT ? (double)c.i : c.f;
            if (c.kind != CV_INT && c.kind != CV_FLOAT) lerr(L, slot[0]->loc, "'%s' must be a number", argn[k]);
            else if (kinds[k] != INIT_CONST && x < 0) lerr(L, slot[0]->loc, "'%s' must not be negative", argn[k]);
            n.fattr[0] = x;
          }
        }
      } else if (init->kind == N_CALL && init->list.n) {
        lerr(L, init->loc, "'%s' takes no arguments", iname);
      }
    }
  }
  Shard sh = in->shard;
  bool cp = false, nd = in->no_decay;
  int stage = -1;
  apply_annots(L, in, &m->annots, false, &sh, &cp, &stage, &nd, NULL);
  n.shard = (uint8_t)sh.kind;
  n.shard_units = sh.units;
  n.stage = in->stage;
  n.stage_loc = in->stage_loc;
  n.iattr[1] = nd;
  /* The split dimension: column-like kinds split the last dimension, row the
   * first (1-D parameters of a row-split layer stay whole, as Megatron's
   * RowParallelLinear keeps its bias), vocab and experts the first. */
  switch (sh.kind) {
  case SHARD_COLUMN: case SHARD_HEADS: n.iattr[0] = n.ndim - 1; break;
  case SHARD_ROW:
    if (n.ndim < 2) n.shard = SHARD_REPLICATED;
    break;
  default: n.iattr[0] = 0;
  }
  if (n.ndim == 0 && n.shard != SHARD_NONE && n.shard != SHARD_REPLICATED) n.shard = SHARD_REPLICATED;
  n.loc = m->nloc;
  n.shard_loc = sh.loc;
  n.shard_units_loc = sh.units_loc;
  ValId id = ir_add(L->g, &n);
  add_member(L, in, m->name, m, (Value){.k = V_TENSOR, .t = id});
}

static void lower_members(Lower *L, Inst *in, const NodeList *members);

static void lower_layer(Lower *L, Inst *in, Node *m) {
  Node *call = m->a;
  Node *block = sema_find_block(L->p, call->a->name);
  if (!block) { /* reported by sema */
    add_member(L, in, m->name, m, verr);
    return;
  }
  const char *path = join(L, in->path, m->name);
  if (!m->b) {
    Inst *child = instantiate(L, block, path, &call->list, &in->scope, m, in);
    add_member(L, in, m->name, m, child ? (Value){.k = V_LAYER, .inst = child} : verr);
    return;
  }
  ConstVal cnt;
  if (!eval_const_in(L, in, m->b, &cnt)) {
    add_member(L, in, m->name, m, verr);
    return;
  }
  if (cnt.kind != CV_INT || cnt.i < 1 || cnt.i > DST_MAX_REPEAT) {
    char v[64];
    const_format(v, sizeof v, cnt);
    lerr(L, m->b->loc, "repeat count must be an integer from 1 to %d, not %s", DST_MAX_REPEAT, v);
    add_member(L, in, m->name, m, verr);
    return;
  }
  Inst *holder = arena_alloc(L->a, sizeof *holder);
  holder->block = block;
  holder->path = path;
  holder->site = m;
  holder->parent = in;
  holder->stage = in->stage;
  holder->scope = in->scope;
  holder->reps = arena_alloc(L->a, sizeof(Inst *) * (size_t)cnt.i);
  bool cp = false, nd = in->no_decay;
  int stage = -1;
  Shard sh = in->shard;
  Loc sloc = in->stage_loc;
  apply_annots(L, in, &m->annots, true, &sh, &cp, &stage, &nd, &sloc);
  holder->checkpoint = cp;
  holder->stage_loc = in->stage_loc;
  if (stage >= 0) {
    holder->stage = stage;
    holder->stage_loc = sloc;
  }
  holder->shard = sh;
  holder->no_decay = nd;
  int before = L->d->nerrors;
  for (int64_t i = 0; i < cnt.i; i++) {
    const char *rp = arena_printf(L->a, "%s.%lld", path, (long long)i);
    Inst *r = instantiate(L, block, rp, &call->list, &in->scope, m, holder);
    if (!r || L->d->nerrors > before) {
      add_member(L, in, m->name, m, verr);
      return;
    }
    holder->reps[holder->nreps++] = r;
  }
  if (!in->parent) ARENA_PUSH(L->a, L->repeats, L->nrepeats, L->caprepeats, m);
  add_member(L, in, m->name, m, (Value){.k = V_LAYER, .inst = holder});
}

static void lower_members(Lower *L, Inst *in, const NodeList *members) {
  for (int i = 0; i < members->n; i++) {
    Node *m = members->v[i];
    switch (m->kind) {
    case N_PARAM: lower_param(L, in, m); break;
    case N_INPUT:
      if (in->block->kind != N_MODEL) {
        lerr(L, m->loc, "'input' declarations belong in the model; a block gets its inputs through forward(...)");
        break;
      }
      lower_param(L, in, m);
      break;
    case N_LAYER: lower_layer(L, in, m); break;
    case N_FORWARD:
      if (in->forward) {
        Diag *g = lerr(L, m->loc, "'%s' has two forward definitions", in->block->name);
        diag_note(L->d, g, in->forward->loc, "the other one is here");
      } else {
        in->forward = m;
      }
      break;
    case N_IF: {
      ConstVal c;
      if (!eval_const_in(L, in, m->a, &c)) break;
      if (c.kind != CV_BOOL) {
        lerr(L, m->a->loc, "an 'if' condition must be true or false, not %s", const_kind_noun(c.kind));
        break;
      }
      lower_members(L, in, c.i ? &m->list : &m->list2);
      break;
    }
    default: die("unexpected member kind %s", node_kind_name(m->kind));
    }
  }
}

static bool bind_formals(Lower *L, Inst *in, Node *block, const NodeList *args, const ConstScope *caller,
                         Node *site) {
  int nf = block->list.n;
  ArgSpec *spec = arena_alloc(L->a, sizeof(ArgSpec) * (size_t)(nf + 1));
  for (int i = 0; i < nf; i++) spec[i] = (ArgSpec){block->list.v[i]->name, block->list.v[i]->a == NULL};
  Node **slots = arena_alloc(L->a, sizeof(Node *) * (size_t)(nf + 1));
  Node call = {.kind = N_CALL, .loc = site->a->loc, .list = *args};
  if (!sema_bind_args(L->p, &call, block->name, spec, nf, slots)) return false;
  in->scope.names = arena_alloc(L->a, sizeof(char *) * (size_t)(nf + 1));
  in->scope.vals = arena_alloc(L->a, sizeof(ConstVal) * (size_t)(nf + 1));
  bool ok = true;
  for (int i = 0; i < nf; i++) {
    Node *f = block->list.v[i];
    ConstVal v;
    bool got = slots[i] ? sema_eval_const(L->p, slots[i], caller, &v)
                        : sema_eval_const(L->p, f->a, &in->scope, &v);
    if (!got) {
      ok = false;
      continue;
    }
    const char *want = f->str;
    bool match = (!strcmp(want, "int") && v.kind == CV_INT) || (!strcmp(want, "bool") && v.kind == CV_BOOL) ||
                 (!strcmp(want, "string") && v.kind == CV_STR) ||
                 (!strcmp(want, "float") && (v.kind == CV_FLOAT || v.kind == CV_INT));
    if (!match) {
      Diag *g = diag_error(L->d, slots[i] ? slots[i]->loc : f->loc, "'%s' of block %s must be %s %s, not %s",
                           f->name, block->name, !strcmp(want, "int") ? "an" : "a", want, const_kind_noun(v.kind));
      diag_note(L->d, g, f->loc, "declared here");
      ok = false;
      continue;
    }
    if (!strcmp(want, "float") && v.kind == CV_INT) {
      v.kind = CV_FLOAT;
      v.f = (double)v.i;
    }
    in->scope.names[in->scope.n] = f->name;
    in->scope.vals[in->scope.n++] = v;
  }
  return ok;
}

static Inst *instantiate(Lower *L, Node *block, const char *path, const NodeList *args,
                         const ConstScope *caller, Node *site, Inst *parent) {
  for (Inst *a = parent; a; a = a->parent)
    if (a->block == block && !a->reps) {
      Diag *g = lerr(L, site->nloc, "block '%s' contains itself, so it would never end", block->name);
      diag_note(L->d, g, block->nloc, "'%s' is defined here", block->name);
      return NULL;
    }
  if (L->depth >= DST_MAX_INST_DEPTH) {
    lerr(L, site->nloc, "layers nested more than %d deep", DST_MAX_INST_DEPTH);
    return NULL;
  }
  if (L->over_budget) return NULL;
  if (++L->ninstances > DST_MAX_INSTANCES) {
    L->over_budget = true;
    lerr(L, site->nloc, "the model instantiates more than %d layers; is a repeat count too large?",
         DST_MAX_INSTANCES);
    return NULL;
  }
  Inst *in = arena_alloc(L->a, sizeof *in);
  in->block = block;
  in->path = path;
  in->site = site;
  in->parent = parent;
  in->stage = parent ? parent->stage : -1;
  if (parent) in->stage_loc = parent->stage_loc;
  in->shard = parent ? parent->shard : (Shard){0};
  in->no_decay = parent ? parent->no_decay : false;
  Inst *saved = L->cur;
  L->cur = in;
  if (!bind_formals(L, in, block, args, caller, site)) {
    L->cur = saved;
    return NULL;
  }
  /* Annotations on the layer declaration, then on the block itself. */
  bool cp = parent && parent->reps ? parent->checkpoint : false;
  int stage = -1;
  Loc sloc = in->stage_loc;
  if (!(parent && parent->reps))
    apply_annots(L, parent ? parent : in, &site->annots, true, &in->shard, &cp, &stage, &in->no_decay, &sloc);
  apply_annots(L, in, &block->annots, true, &in->shard, &cp, &stage, &in->no_decay, &sloc);
  in->checkpoint = cp;
  if (stage >= 0) {
    in->stage = stage;
    in->stage_loc = sloc;
  }
  L->depth++;
  lower_members(L, in, &block->list2);
  L->depth--;
  L->cur = saved;
  return in;
}

/* ------------------------------------------------------------ expressions */

static Value eval(Lower *L, Env *env, Inst *in, Node *e);
static Value call_layer(Lower *L, Inst *layer, Value *args, int nargs, Node *site);

static bool want_tensor(Lower *L, Value v, const Node *e, const char *what) {
  if (v.k == V_TENSOR) return true;
  if (v.k == V_ERR) return false;
  char t[160];
  fmt_value_type(L, t, sizeof t, v);
  lerr(L, e->loc, "%s must be a tensor, not %s", what, t);
  return false;
}

static Value to_tensor(Lower *L, Value v, Loc loc) {
  if (v.k == V_CONST && (v.c.kind == CV_INT || v.c.kind == CV_FLOAT))
    return emit_const(L, v.c.kind == CV_INT ? (double)v.c.i : v.c.f, loc);
  return v;
}

static Value eval_binary(Lower *L, Env *env, Inst *in, Node *e) {
  Value a = eval(L, env, in, e->a), b = eval(L, env, in, e->b);
  if (a.k == V_ERR || b.k == V_ERR) return verr;
  if (a.k == V_CONST && b.k == V_CONST) {
    ConstVal r;
    if (!sema_eval_binary(L->p, e, a.c, b.c, &r)) return verr;
    return (Value){.k = V_CONST, .c = r};
  }
  OpKind op;
  switch (e->op) {
  case '+': op = OP_ADD; break;
  case '-': op = OP_SUB; break;
  case '*': op = OP_MUL; break;
  case '/': op = OP_DIV; break;
  case '@': op = OP_MATMUL; break;
  default: {
    char ta[160], tb[160];
    fmt_value_type(L, ta, sizeof ta, a);
    fmt_value_type(L, tb, sizeof tb, b);
    lerr(L, e->loc, "operator '%s' is not defined for %s and %s", op_token_str(e->op), ta, tb);
    return verr;
  }
  }
  if (op == OP_MATMUL) {
    if (!want_tensor(L, a, e->a, "the left operand of '@'") || !want_tensor(L, b, e->b, "the right operand of '@'"))
      return verr;
  } else {
    a = to_tensor(L, a, e->a->loc);
    b = to_tensor(L, b, e->b->loc);
    if (!want_tensor(L, a, e->a, "an arithmetic operand") || !want_tensor(L, b, e->b, "an arithmetic operand"))
      return verr;
  }
  IrNode n = proto(L, op, e->loc);
  ValId ins[2] = {a.t, b.t};
  return emit(L, &n, ins, 2);
}

typedef enum {
  B_UNARY, B_MATMUL, B_TRANSPOSE, B_RESHAPE, B_SPLIT, B_CONCAT, B_SLICE, B_REDUCE, B_SOFTMAX,
  B_LAYERNORM, B_RMSNORM, B_EMBEDDING, B_ATTENTION, B_ROPE, B_DROPOUT, B_XENT, B_ARANGE
} BuiltinKind;

typedef struct {
  const char *name;
  BuiltinKind kind;
  OpKind op;
  ArgSpec spec[5];
  int nspec;
} Builtin;

static const Builtin builtins[] = {
    {"gelu", B_UNARY, OP_GELU, {{"x", true}}, 1},
    {"relu", B_UNARY, OP_RELU, {{"x", true}}, 1},
    {"silu", B_UNARY, OP_SILU, {{"x", true}}, 1},
    {"sigmoid", B_UNARY, OP_SIGMOID, {{"x", true}}, 1},
    {"exp", B_UNARY, OP_EXP, {{"x", true}}, 1},
    {"log", B_UNARY, OP_LOG, {{"x", true}}, 1},
    {"tanh", B_UNARY, OP_TANH, {{"x", true}}, 1},
    {"sqrt", B_UNARY, OP_SQRT, {{"x", true}}, 1},
    {"matmul", B_MATMUL, OP_MATMUL, {{"a", true}, {"b", true}}, 2},
    {"transpose", B_TRANSPOSE, OP_TRANSPOSE, {{"x", true}, {"dim0", false}, {"dim1", false}}, 3},
    {"reshape", B_RESHAPE, OP_RESHAPE, {{"x", true}, {"shape", true}}, 2},
    {"split", B_SPLIT, OP_SLICE, {{"x", true}, {"n", true}, {"dim", false}}, 3},
    {"concat", B_CONCAT, OP_CONCAT, {{"xs", true}, {"dim", false}}, 2},
    {"slice", B_SLICE, OP_SLICE, {{"x", true}, {"dim", true}, {"start", true}, {"end", true}}, 4},
    {"sum", B_REDUCE, OP_SUM, {{"x", true}, {"dim", false}, {"keepdim", false}}, 3},
    {"mean", B_REDUCE, OP_MEAN, {{"x", true}, {"dim", false}, {"keepdim", false}}, 3},
    {"max", B_REDUCE, OP_MAX, {{"x", true}, {"dim", false}, {"keepdim", false}}, 3},
    {"softmax", B_SOFTMAX, OP_SOFTMAX, {{"x", true}, {"dim", false}}, 2},
    {"layernorm", B_LAYERNORM, OP_LAYERNORM, {{"x", true}, {"w", true}, {"b", false}, {"eps", false}}, 4},
    {"rmsnorm", B_RMSNORM, OP_RMSNORM, {{"x", true}, {"w", true}, {"eps", false}}, 3},
    {"embedding", B_EMBEDDING, OP_EMBEDDING, {{"ids", true}, {"table", true}}, 2},
    {"attention", B_ATTENTION, OP_ATTENTION, {{"q", true}, {"k", true}, {"v", true}, {"causal", false}}, 4},
    {"rope", B_ROPE, OP_ROPE, {{"x", true}, {"theta", false}}, 2},
    {"dropout", B_DROPOUT, OP_DROPOUT, {{"x", true}, {"p", true}}, 2},
    {"cross_entropy", B_XENT, OP_CROSS_ENTROPY, {{"logits", true}, {"targets", true}}, 2},
    {"arange", B_ARANGE, OP_ARANGE, {{"n", true}}, 1},
};

/* argv holds the value of each of e's arguments, evaluated once by the
 * caller (evaluation appends IR, so it must not be repeated). */
static Value eval_builtin(Lower *L, Node *e, const Value *argv, const Builtin *b) {
  Node *s[5] = {0};
  if (!sema_bind_args(L->p, e, b->name, b->spec, b->nspec, s)) return verr;
  Value v[5];
  for (int i = 0; i < b->nspec; i++) {
    v[i] = (Value){.k = V_CONST};
    for (int k = 0; s[i] && k < e->list.n; k++) {
      Node *a = e->list.v[k];
      if (a == s[i] || (a->kind == N_NAMEDARG && a->a == s[i])) v[i] = argv[k];
    }
  }
  IrNode n = proto(L, b->op, e->loc);
  Value x = v[0];
  const IrNode *xt = NULL;
  if (b->kind != B_CONCAT && b->kind != B_ARANGE) {
    if (!want_tensor(L, x, s[0], b->kind == B_XENT ? "the logits" : "the first argument")) return verr;
    xt = tnode(L, x);
  }
  switch (b->kind) {
  case B_UNARY: case B_ROPE: case B_DROPOUT: {
    if (b->kind == B_ROPE) {
      n.fattr[0] = 10000.0;
      if (s[1] && !const_num(L, v[1], s[1], "theta", &n.fattr[0])) return verr;
      if (n.fattr[0] <= 0) {
        lerr(L, s[1]->loc, "theta must be positive");
        return verr;
      }
    }
    if (b->kind == B_DROPOUT) {
      if (!const_num(L, v[1], s[1], "the dropout probability", &n.fattr[0])) return verr;
      if (!(n.fattr[0] >= 0 && n.fattr[0] < 1)) {
        lerr(L, s[1]->loc, "the dropout probability must be in [0, 1), not %g", n.fattr[0]);
        return verr;
      }
    }
    return emit(L, &n, &x.t, 1);
  }
  case B_MATMUL: {
    if (!want_tensor(L, v[1], s[1], "the second argument")) return verr;
    ValId ins[2] = {x.t, v[1].t};
    return emit(L, &n, ins, 2);
  }
  case B_TRANSPOSE: {
    int64_t d0 = -2, d1 = -1;
    if (s[1] && !const_int(L, v[1], s[1], "dim0", &d0)) return verr;
    if (s[2] && !const_int(L, v[2], s[2], "dim1", &d1)) return verr;
    if (!norm_dim(L, d0, xt->ndim, s[1] ? s[1] : e, xt, &n.iattr[0]) ||
        !norm_dim(L, d1, xt->ndim, s[2] ? s[2] : e, xt, &n.iattr[1]))
      return verr;
    return emit(L, &n, &x.t, 1);
  }
  case B_RESHAPE: {
    Value sh = v[1];
    if (sh.k != V_TUPLE) {
      lerr(L, s[1]->loc, "reshape needs a shape list, e.g. [B, T, heads, dim / heads]");
      return verr;
    }
    if (sh.n > DST_MAX_DIMS) {
      lerr(L, s[1]->loc, "tensors have at most %d dimensions", DST_MAX_DIMS);
      return verr;
    }
    int infer = -1;
    int64_t known = 1;
    for (int i = 0; i < sh.n; i++) {
      int64_t d;
      if (!const_int(L, sh.elems[i], s[1], "a reshape dimension", &d)) return verr;
      if (d == -1 && infer < 0) {
        infer = i;
        d = 1;
      } else if (d < 1) {
        lerr(L, s[1]->loc, "reshape dimensions must be positive (one may be -1), not %lld", (long long)d);
        return verr;
      } else if (__builtin_mul_overflow(known, d, &known)) {
        lerr(L, s[1]->loc, "reshape shape is too large");
        return verr;
      }
      n.shape[i] = d;
    }
    n.ndim = (uint8_t)sh.n;
    if (infer >= 0) {
      int64_t total = ir_numel(xt);
      if (total % known) {
        char ts[160];
        shape_format(ts, sizeof ts, xt->shape, xt->ndim);
        lerr(L, s[1]->loc, "cannot reshape %s (%lld elements) with -1: %lld is not divisible by %lld", ts,
             (long long)total, (long long)total, (long long)known);
        return verr;
      }
      n.shape[infer] = total / known;
    }
    return emit(L, &n, &x.t, 1);
  }
  case B_SPLIT: {
    int64_t parts, dim = -1;
    if (!const_int(L, v[1], s[1], "the number of parts", &parts)) return verr;
    if (s[2] && !const_int(L, v[2], s[2], "dim", &dim)) return verr;
    if (!norm_dim(L, dim, xt->ndim, s[2] ? s[2] : e, xt, &dim)) return verr;
    int64_t size = xt->shape[dim];
    if (parts > 4096) {
      lerr(L, s[1]->loc, "split makes at most 4096 parts, not %lld", (long long)parts);
      return verr;
    }
    if (parts < 1 || size % parts) {
      char ts[160];
      shape_format(ts, sizeof ts, xt->shape, xt->ndim);
      lerr(L, s[1]->loc, "cannot split dimension %lld (size %lld) of %s into %lld equal parts", (long long)dim,
           (long long)size, ts, (long long)parts);
      return verr;
    }
    Value t = {.k = V_TUPLE, .n = (int)parts};
    t.elems = arena_alloc(L->a, sizeof(Value) * (size_t)parts);
    for (int64_t i = 0; i < parts; i++) {
      IrNode sl = proto(L, OP_SLICE, e->loc);
      sl.iattr[0] = dim;
      sl.iattr[1] = i * (size / parts);
      sl.iattr[2] = (i + 1) * (size / parts);
      t.elems[i] = emit(L, &sl, &x.t, 1);
      if (t.elems[i].k == V_ERR) return verr;
    }
    return t;
  }
  case B_CONCAT: {
    if (x.k != V_TUPLE || x.n < 1) {
      lerr(L, s[0]->loc, "concat needs a list of tensors, e.g. concat([a, b], dim=-1)");
      return verr;
    }
    ValId *ins = arena_alloc(L->a, sizeof(ValId) * (size_t)x.n);
    for (int i = 0; i < x.n; i++) {
      if (!want_tensor(L, x.elems[i], s[0], "each concat operand")) return verr;
      ins[i] = x.elems[i].t;
    }
    int64_t dim = -1;
    if (s[1] && !const_int(L, v[1], s[1], "dim", &dim)) return verr;
    const IrNode *first = tnode(L, x.elems[0]);
    if (!norm_dim(L, dim, first->ndim, s[1] ? s[1] : e, first, &n.iattr[0])) return verr;
    return emit(L, &n, ins, x.n);
  }
  case B_SLICE: {
    int64_t dim, st, en;
    if (!const_int(L, v[1], s[1], "dim", &dim) || !const_int(L, v[2], s[2], "start", &st) ||
        !const_int(L, v[3], s[3], "end", &en))
      return verr;
    if (!norm_dim(L, dim, xt->ndim, s[1], xt, &dim)) return verr;
    int64_t size = xt->shape[dim];
    if (st < 0) st += size;
    if (en < 0) en += size;
    n.iattr[0] = dim;
    n.iattr[1] = st;
    n.iattr[2] = en;
    return emit(L, &n, &x.t, 1);
  }
  case B_REDUCE: {
    if (s[1]) {
      int64_t dim;
      if (!const_int(L, v[1], s[1], "dim", &dim)) return verr;
      if (!norm_dim(L, dim, xt->ndim, s[1], xt, &n.iattr[0])) return verr;
      bool kd = false;
      if (s[2] && !const_bool(L, v[2], s[2], "keepdim", &kd)) return verr;
      n.iattr[1] = kd;
    } else {
      if (s[2]) {
        lerr(L, s[2]->loc, "keepdim needs a dim");
        return verr;
      }
      n.iattr[2] = 1;
    }
    return emit(L, &n, &x.t, 1);
  }
  case B_SOFTMAX: {
    int64_t dim = -1;
    if (s[1] && !const_int(L, v[1], s[1], "dim", &dim)) return verr;
    if (!norm_dim(L, dim, xt->ndim, s[1] ? s[1] : e, xt, &n.iattr[0])) return verr;
    return emit(L, &n, &x.t, 1);
  }
  case B_LAYERNORM: case B_RMSNORM: {
    int epsi = b->kind == B_LAYERNORM ? 3 : 2;
    n.fattr[0] = b->kind == B_LAYERNORM ? 1e-5 : 1e-6;
    if (s[epsi] && !const_num(L, v[epsi], s[epsi], "eps", &n.fattr[0])) return verr;
    if (!(n.fattr[0] > 0)) {
      lerr(L, s[epsi]->loc, "eps must be positive");
      return verr;
    }
    if (!want_tensor(L, v[1], s[1], "the weight")) return verr;
    ValId ins[3] = {x.t, v[1].t, 0};
    int nin = 2;
    if (b->kind == B_LAYERNORM && s[2]) {
      if (!want_tensor(L, v[2], s[2], "the bias")) return verr;
      ins[nin++] = v[2].t;
    }
    return emit(L, &n, ins, nin);
  }
  case B_EMBEDDING: case B_XENT: {
    if (!want_tensor(L, v[1], s[1], b->kind == B_XENT ? "the targets" : "the table")) return verr;
    ValId ins[2] = {x.t, v[1].t};
    return emit(L, &n, ins, 2);
  }
  case B_ATTENTION: {
    if (!want_tensor(L, v[1], s[1], "k") || !want_tensor(L, v[2], s[2], "v")) return verr;
    bool causal = true;
    if (s[3] && !const_bool(L, v[3], s[3], "causal", &causal)) return verr;
    n.iattr[0] = causal;
    ValId ins[3] = {x.t, v[1].t, v[2].t};
    return emit(L, &n, ins, 3);
  }
  case B_ARANGE: {
    int64_t cnt;
    if (!const_int(L, x, s[0], "arange's length", &cnt)) return verr;
    if (cnt < 1 || cnt > ((int64_t)1 << 31)) {
      lerr(L, s[0]->loc, "arange's length must be between 1 and 2^31");
      return verr;
    }
    n.dtype = DT_I32;
    n.ndim = 1;
    n.shape[0] = cnt;
    n.iattr[0] = cnt;
    return emit(L, &n, NULL, 0);
  }
  }
  return verr;
}

static Value eval_call(Lower *L, Env *env, Inst *in, Node *e) {
  Node *callee = e->a;
  Value f = verr;
  bool is_layer = false;
  if (callee->kind == N_NAME) {
    is_layer = lookup(L, env, in, callee->name, &f) && f.k == V_LAYER;
  } else {
    f = eval(L, env, in, callee);
    if (f.k == V_ERR) return verr;
    is_layer = f.k == V_LAYER;
  }
  Value *argv = arena_alloc(L->a, sizeof(Value) * (size_t)(e->list.n + 1));
  bool all_const = true;
  for (int i = 0; i < e->list.n; i++) {
    Node *a = e->list.v[i];
    if (is_layer && a->kind == N_NAMEDARG) {
      lerr(L, a->loc, "layers take positional inputs only");
      return verr;
    }
    argv[i] = eval(L, env, in, a->kind == N_NAMEDARG ? a->a : a);
    if (argv[i].k == V_ERR) return verr;
    all_const &= argv[i].k == V_CONST;
  }
  if (is_layer) return call_layer(L, f.inst, argv, e->list.n, e);
  if (callee->kind != N_NAME) {
    char t[160];
    fmt_value_type(L, t, sizeof t, f);
    lerr(L, callee->loc, "only layers and builtin functions can be called; this is %s", t);
    return verr;
  }
  /* Constant folding: sqrt(2 * layers), max(a, b), int(x) ... */
  static const char *const foldable[] = {"sqrt", "exp", "log", "min", "max", "int", "float", "abs"};
  bool fold = false;
  for (size_t i = 0; i < sizeof foldable / sizeof foldable[0]; i++) fold |= !strcmp(foldable[i], callee->name);
  if (fold && (all_const || !sema_is_builtin(callee->name) || !strcmp(callee->name, "int") ||
               !strcmp(callee->name, "float") || !strcmp(callee->name, "abs") || !strcmp(callee->name, "min"))) {
    ConstVal cv[2] = {{0}, {0}};
    for (int i = 0; i < e->list.n && i < 2; i++) {
      if (argv[i].k != V_CONST) {
        char t[160];
        fmt_value_type(L, t, sizeof t, argv[i]);
        lerr(L, e->list.v[i]->loc, "'%s' needs a constant, not %s", callee->name, t);
        return verr;
      }
      cv[i] = argv[i].c;
    }
    ConstVal r;
    if (!sema_const_call(L->p, e, cv, &r)) return verr;
    return (Value){.k = V_CONST, .c = r};
  }
  for (size_t i = 0; i < sizeof builtins / sizeof builtins[0]; i++)
    if (!strcmp(builtins[i].name, callee->name)) return eval_builtin(L, e, argv, &builtins[i]);
  if (f.k != V_ERR) {
    char t[160];
    fmt_value_type(L, t, sizeof t, f);
    lerr(L, callee->loc, "only layers and builtin functions can be called; '%s' is %s", callee->name, t);
  }
  return verr; /* unknown names were reported by sema */
}

static Value eval(Lower *L, Env *env, Inst *in, Node *e) {
  switch (e->kind) {
  case N_INT: return (Value){.k = V_CONST, .c = {.kind = CV_INT, .i = e->ival}};
  case N_FLOAT: return (Value){.k = V_CONST, .c = {.kind = CV_FLOAT, .f = e->fval}};
  case N_BOOL: return (Value){.k = V_CONST, .c = {.kind = CV_BOOL, .i = e->ival}};
  case N_STR: return (Value){.k = V_CONST, .c = {.kind = CV_STR, .s = e->str}};
  case N_NAME: {
    Value v;
    if (lookup(L, env, in, e->name, &v)) return v;
    lerr(L, e->loc, "'%s' is not defined here (is it assigned only in an 'if' branch not taken?)", e->name);
    return verr;
  }
  case N_MEMBER: {
    Value o = eval(L, env, in, e->a);
    if (o.k == V_ERR) return verr;
    if (o.k != V_LAYER) {
      char t[160];
      fmt_value_type(L, t, sizeof t, o);
      lerr(L, e->nloc, "'.%s' needs a layer on the left, not %s", e->name, t);
      return verr;
    }
    if (o.inst->reps) {
      lerr(L, e->loc, "'%s' is a repeated layer; call it as a whole, e.g. %s(x)", o.inst->path, e->a->name ? e->a->name : "layers");
      return verr;
    }
    Member *m = find_member(o.inst, e->name);
    if (!m) {
      const char *cands[256];
      int n = 0;
      for (int i = 0; i < o.inst->nm && n < 256; i++) cands[n++] = o.inst->m[i].name;
      Diag *g = lerr(L, e->nloc, "layer '%s' (block %s) has no member '%s'", o.inst->path, o.inst->block->name, e->name);
      const char *s = closest_name(e->name, cands, n);
      if (s) diag_note(L->d, g, e->nloc, "did you mean '%s'?", s);
      return verr;
    }
    return m->val;
  }
  case N_BINARY: return eval_binary(L, env, in, e);
  case N_UNARY: {
    Value a = eval(L, env, in, e->a);
    if (a.k == V_ERR) return verr;
    if (a.k == V_CONST) {
      ConstVal r;
      Node tmp = *e;
      ConstScope sc = {0};
      const char *nm = "__v";
      sc.names = &nm;
      sc.vals = &a.c;
      sc.n = 1;
      Node name = {.kind = N_NAME, .name = nm, .loc = e->a->loc};
      tmp.a = &name;
      if (!sema_eval_const(L->p, &tmp, &sc, &r)) return verr;
      return (Value){.k = V_CONST, .c = r};
    }
    if (e->op != '-' || !want_tensor(L, a, e->a, "the operand of '-'")) {
      if (e->op != '-') lerr(L, e->loc, "'!' needs a constant bool");
      return verr;
    }
    IrNode n = proto(L, OP_NEG, e->loc);
    return emit(L, &n, &a.t, 1);
  }
  case N_CALL: return eval_call(L, env, in, e);
  case N_LIST: case N_TUPLE: {
    Value t = {.k = V_TUPLE, .n = e->list.n};
    t.elems = arena_alloc(L->a, sizeof(Value) * (size_t)(e->list.n + 1));
    for (int i = 0; i < e->list.n; i++) {
      t.elems[i] = eval(L, env, in, e->list.v[i]);
      if (t.elems[i].k == V_ERR) return verr;
    }
    return t;
  }
  case N_NAMEDARG:
    lerr(L, e->loc, "named arguments are allowed only in calls");
    return verr;
  default: die("unexpected expression kind %s", node_kind_name(e->kind));
  }
}

/* ------------------------------------------------------------ statements */

typedef struct {
  bool returned;
  Value ret;
} Flow;

/* Whether the forward graph has reached DST_MAX_FORWARD_OPS (reported
 * once, at the statement that crossed it). */
static bool over_node_budget(Lower *L, const Node *s) {
  if (L->g->n <= DST_MAX_FORWARD_OPS) return false;
  if (!L->over_nodes) {
    L->over_nodes = true;
    lerr(L, s->loc, "the model's forward pass has more than %d operations, this compiler's limit; is a repeat "
                    "count too large?", DST_MAX_FORWARD_OPS);
  }
  return true;
}

static void exec(Lower *L, Env *env, Inst *in, const NodeList *body, Flow *fl) {
  for (int i = 0; i < body->n && !fl->returned; i++) {
    Node *s = body->v[i];
    if (over_node_budget(L, s)) { /* the rest evaluates to errors, quietly */
      if (s->kind == N_ASSIGN)
        for (int k = 0; k < s->list.n; k++) env_set(L, env, s->list.v[k]->name, verr);
      if (s->kind == N_RETURN) {
        fl->ret = verr;
        fl->returned = true;
      }
      continue;
    }
    switch (s->kind) {
    case N_ASSIGN: {
      Value v = eval(L, env, in, s->a);
      if (s->list.n == 1) {
        env_set(L, env, s->list.v[0]->name, v);
        break;
      }
      if (v.k == V_TUPLE && v.n != s->list.n)
        lerr(L, s->loc, "%d names on the left but %d values on the right", s->list.n, v.n);
      else if (v.k != V_TUPLE && v.k != V_ERR) {
        char t[160];
        fmt_value_type(L, t, sizeof t, v);
        lerr(L, s->a->loc, "%d names on the left need a tuple on the right, not %s", s->list.n, t);
      }
      for (int k = 0; k < s->list.n; k++)
        env_set(L, env, s->list.v[k]->name, v.k == V_TUPLE && v.n == s->list.n ? v.elems[k] : verr);
      break;
    }
    case N_RETURN:
      fl->ret = eval(L, env, in, s->a);
      fl->returned = true;
      break;
    case N_MINIMIZE: {
      Value v = eval(L, env, in, s->a);
      if (v.k == V_ERR) break;
      if (L->g->loss) {
        lerr(L, s->loc, "the model minimizes more than one value; add the losses into one");
        break;
      }
      if (v.k != V_TENSOR || tnode(L, v)->ndim != 0) {
        char t[160];
        fmt_value_type(L, t, sizeof t, v);
        Diag *g = lerr(L, s->a->loc, "'minimize' needs a scalar loss, not %s", t);
        if (v.k == V_TENSOR) diag_note(L->d, g, s->a->loc, "reduce it first, e.g. mean(...)");
        break;
      }
      L->g->loss = v.t;
      break;
    }
    case N_IF: {
      Value c = eval(L, env, in, s->a);
      bool b;
      if (!const_bool(L, c, s->a, "an 'if' condition", &b)) break;
      exec(L, env, in, b ? &s->list : &s->list2, fl);
      break;
    }
    default: die("unexpected statement %s", node_kind_name(s->kind));
    }
  }
}

static Value call_layer(Lower *L, Inst *layer, Value *args, int nargs, Node *site) {
  if (layer->reps) {
    if (nargs != 1) {
      lerr(L, site->loc, "the repeated layer '%s' is applied in sequence and takes exactly one input", layer->path);
      return verr;
    }
    Value x = args[0];
    int before = L->d->nerrors;
    for (int i = 0; i < layer->nreps && x.k != V_ERR; i++) {
      x = call_layer(L, layer->reps[i], &x, 1, site);
      if (L->d->nerrors > before) return verr;
      if (x.k == V_TUPLE) {
        lerr(L, site->loc, "the repeated layer '%s' must return one value to feed the next", layer->path);
        return verr;
      }
    }
    return x;
  }
  Node *fw = layer->forward;
  if (!fw) return verr; /* reported by sema */
  if (fw->list.n != nargs) {
    Diag *g = lerr(L, site->loc, "layer '%s' (block %s) takes %d input%s, %d given", layer->path,
                   layer->block->name, fw->list.n, fw->list.n == 1 ? "" : "s", nargs);
    diag_note(L->d, g, fw->loc, "its forward is here");
    return verr;
  }
  Env env = {0};
  for (int i = 0; i < nargs; i++) env_set(L, &env, fw->list.v[i]->name, args[i]);
  Inst *saved = L->cur;
  L->cur = layer;
  Flow fl = {0};
  exec(L, &env, layer, &fw->list2, &fl);
  L->cur = saved;
  if (!fl.returned) {
    if (!diag_failed(L->d)) lerr(L, fw->loc, "the forward of block %s ended without 'return'", layer->block->name);
    return verr;
  }
  return fl.ret;
}

/* ------------------------------------------------------------ model checks */

static Loc par_where(Program *p, const char *key, const char **flag) {
  int k = sema_parallel_index(key);
  *flag = p->par_from_flag[k];
  return p->par_loc[k];
}

static void note_key(Lower *L, Diag *g, const char *key, long long v) {
  const char *flag;
  Loc w = par_where(L->p, key, &flag);
  if (flag) diag_note(L->d, g, (Loc){0}, "%s = %lld comes from %s on the command line", key, v, flag);
  else if (w.file) diag_note(L->d, g, w, "%s = %lld is set here", key, v);
}

static void check_layout(Lower *L, Inst *model) {
  Program *p = L->p;
  IrGraph *g = L->g;
  int64_t tp = p->par.tp.i, pp = p->par.pp.i, dp = p->par.dp.i, ep = p->par.ep.i;
  /* Tensor-parallel splits: the split dimension and its units must divide.
   * One message per annotation, not per parameter or repeated layer. */
  Loc *reported = arena_alloc(L->a, sizeof(Loc) * (size_t)(g->nparams + 1));
  int nreported = 0;
  int stage_reported = -1;
  for (int i = 0; i < g->nparams; i++) {
    IrNode *n = &g->nodes[g->params[i]];
    if (n->stage >= pp && n->stage != stage_reported) {
      /* once per stage number, not once per parameter placed there */
      stage_reported = n->stage;
      Diag *d = diag_error(L->d, n->stage_loc.file ? n->stage_loc : n->loc, "layer '%s' is placed on stage %d but there are only %lld stages",
                           n->path && *n->path ? n->path : n->name, n->stage, (long long)pp);
      note_key(L, d, "pp", pp);
    }
    if (n->shard == SHARD_NONE || n->shard == SHARD_REPLICATED || n->shard == SHARD_VOCAB) continue;
    int64_t deg = n->shard == SHARD_EXPERTS ? ep : tp;
    const char *key = n->shard == SHARD_EXPERTS ? "ep" : "tp";
    if (deg == 1) continue;
    Loc at = n->shard_loc.file ? n->shard_loc : n->loc;
    bool dup = false;
    for (int k = 0; k < nreported; k++) dup |= reported[k].file == at.file && reported[k].begin == at.begin;
    if (dup) continue;
    int64_t size = n->shape[n->iattr[0]];
    Diag *d = NULL;
    if (n->shard_units && n->shard_units % deg) {
      const char *what = diag_source_text(L->d, n->shard_units_loc);
      d = diag_error(L->d, at, "%s (%lld) is not divisible by %s (%lld), so %s cannot be split",
                     what, (long long)n->shard_units, key, (long long)deg, n->name);
    } else if (size % deg) {
      char ts[160];
      shape_format(ts, sizeof ts, n->shape, n->ndim);
      d = diag_error(L->d, at, "%s %s: dimension %lld (size %lld) split by @shard(%s) is not divisible by %s (%lld)",
                     n->name, ts, (long long)n->iattr[0], (long long)size, shard_kind_names[n->shard], key,
                     (long long)deg);
    }
    if (d) {
      note_key(L, d, key, deg);
      reported[nreported++] = at;
    }
  }
  /* Pipeline: the repeated layers are divided among the stages. */
  if (pp > 1) {
    for (int i = 0; i < L->nrepeats; i++) {
      Node *m = L->repeats[i];
      Member *mm = find_member(model, m->name);
      if (!mm || mm->val.k != V_LAYER) continue;
      int64_t cnt = mm->val.inst->nreps;
      int64_t per = pp * p->par.virtual_stages.i;
      if (cnt % per) {
        Diag *d = diag_error(L->d, m->b->loc, "%lld layers of '%s' cannot be divided evenly among %lld pipeline stages%s",
                             (long long)cnt, m->name, (long long)per, p->par.virtual_stages.i > 1 ? " (pp x virtual_stages)" : "");
        note_key(L, d, "pp", pp);
      }
    }
  }
  /* Data: the global batch splits over dp ranks, accumulation steps and
   * pipeline micro-batches. */
  int64_t parts = dp * p->par.grad_accum.i * p->par.micro_batches.i;
  for (int i = 0; i < g->ninputs; i++) {
    IrNode *n = &g->nodes[g->inputs[i]];
    if (n->ndim == 0) continue;
    int64_t global = n->iattr[0];
    if (global % parts) {
      Diag *d = diag_error(L->d, n->loc, "input '%s' has batch %lld, which is not divisible by dp x grad_accum x micro_batches = %lld",
                           n->name, (long long)global, (long long)parts);
      note_key(L, d, "dp", dp);
      note_key(L, d, "grad_accum", p->par.grad_accum.i);
      note_key(L, d, "micro_batches", p->par.micro_batches.i);
      break; /* every input shares the batch; one message is enough */
    }
    if (p->train_cfg.batch && p->train_cfg.batch != global) {
      Diag *d = diag_error(L->d, n->loc, "input '%s' has batch %lld but the train block says batch = %lld", n->name,
                           (long long)global, (long long)p->train_cfg.batch);
      diag_note(L->d, d, (Loc){0}, "the leading dimension of each input is the global batch of one optimizer step");
      break;
    }
  }
  if (!g->ninputs) diag_error(L->d, model->block->nloc, "model '%s' declares no inputs", model->block->name);
}

IrGraph *lower_model(Program *p, Arena *a, DiagSink *d) {
  if (!p->model) return NULL;
  IrGraph *g = arena_alloc(a, sizeof *g);
  ir_init(g, a);
  Lower L = {.p = p, .a = a, .d = d, .g = g};
  Inst *model = arena_alloc(a, sizeof *model);
  model->block = p->model;
  model->path = "";
  model->stage = -1;
  L.cur = model;
  lower_members(&L, model, &p->model->list2);
  int before = d->nerrors;
  if (model->forward && !diag_failed(d)) {
    Env env = {0};
    Flow fl = {0};
    exec(&L, &env, model, &model->forward->list2, &fl);
    if (!g->loss && d->nerrors == before)
      diag_error(d, model->forward->loc, "the model's forward never reaches 'minimize'");
    /* Named tensors of the model's forward (logits, ...) stay reachable by
     * name, for sampling and inspection. */
    for (int i = 0; i < env.n; i++)
      if (env.vals[i].k == V_TENSOR) {
        struct IrNamed nv = {env.names[i], env.vals[i].t};
        ARENA_PUSH(a, g->named, g->nnamed, g->capnamed, nv);
      }
  }
  L.cur = NULL;
  g->nforward = g->n - 1;
  if (!diag_failed(d)) check_layout(&L, model);
  p->graph = g;
  return g;
}
