/* sema.c: imports, declarations, constants, and the train/parallel blocks.
 *
 * sema_program loads the main file and, depth first, every file it imports
 * (each file once; a cycle is an error naming the chain). It then collects
 * config constants, blocks and the single model/train/parallel declarations,
 * applies -D overrides, evaluates constants, checks names inside every block
 * (used or not), and validates the train and parallel blocks against their
 * typed schemas (keys.def). Shapes are checked later by lower.c, which
 * instantiates the model with concrete constants. */
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "dstc.h"
#include "parse.h"

/* ------------------------------------------------------------ constants */

const char *const_kind_noun(ConstKind k) {
  switch (k) {
  case CV_INT: return "an int";
  case CV_FLOAT: return "a float";
  case CV_BOOL: return "a bool";
  case CV_STR: return "a string";
  default: return "nothing";
  }
}

const char *const_kind_name(ConstKind k) {
  switch (k) {
  case CV_INT: return "int";
  case CV_FLOAT: return "float";
  case CV_BOOL: return "bool";
  case CV_STR: return "string";
  default: return "none";
  }
}

void const_format(char *buf, size_t sz, ConstVal v) {
  switch (v.kind) {
  case CV_INT: snprintf(buf, sz, "%lld", (long long)v.i); break;
  case CV_FLOAT: snprintf(buf, sz, "%g", v.f); break;
  case CV_BOOL: snprintf(buf, sz, "%s", v.i ? "true" : "false"); break;
  case CV_STR: snprintf(buf, sz, "\"%s\"", v.s); break;
  default: snprintf(buf, sz, "none");
  }
}

bool const_parse_text(const char *text, ConstVal *out) {
  memset(out, 0, sizeof *out);
  if (!*text) return false;
  if (!strcmp(text, "true") || !strcmp(text, "false")) {
    out->kind = CV_BOOL;
    out->i = text[0] == 't';
    return true;
  }
  char *end;
  errno = 0;
  long long iv = strtoll(text, &end, 10);
  if (!*end && errno == 0) {
    out->kind = CV_INT;
    out->i = iv;
    return true;
  }
  errno = 0;
  double fv = strtod(text, &end);
  if (!*end && errno == 0 && isfinite(fv)) {
    out->kind = CV_FLOAT;
    out->f = fv;
    return true;
  }
  size_t n = strlen(text);
  if (n >= 2 && text[0] == '"' && text[n - 1] == '"') {
    out->kind = CV_STR;
    /* The unquoted copy lives as long as the process: kept reachable from a
     * static list so leak checkers see it is not lost. */
    static char **kept;
    static size_t nkept, capkept;
    if (nkept == capkept) {
      capkept = capkept ? capkept * 2 : 16;
      char **nk = realloc(kept, capkept * sizeof *kept);
      if (!nk) die("out of memory");
      kept = nk;
    }
    out->s = kept[nkept++] = strndup(text + 1, n - 2);
    if (!out->s) die("out of memory");
    return true;
  }
  out->kind = CV_STR; /* a bare word, e.g. -fprecision=bf16 */
  out->s = text;
  return true;
}

ConstDecl *sema_find_const(Program *p, const char *name) {
  for (int i = 0; i < p->nconsts; i++)
    if (!strcmp(p->consts[i].name, name)) return &p->consts[i];
  return NULL;
}

Node *sema_find_block(Program *p, const char *name) {
  for (int i = 0; i < p->nblocks; i++)
    if (!strcmp(p->blocks[i]->name, name)) return p->blocks[i];
  return NULL;
}

static bool eval_config(Program *p, ConstDecl *c);

bool sema_const_lookup(Program *p, const char *name, ConstVal *out) {
  ConstDecl *c = sema_find_const(p, name);
  if (!c) return false;
  if (!eval_config(p, c)) {
    out->kind = CV_NONE;
    return true;
  }
  *out = c->val;
  return true;
}

static bool as_float(ConstVal v, double *f) {
  if (v.kind == CV_INT) *f = (double)v.i;
  else if (v.kind == CV_FLOAT) *f = v.f;
  else return false;
  return true;
}

/* Integer arithmetic with overflow detection. */
static bool int_op(int op, int64_t a, int64_t b, int64_t *r) {
  switch (op) {
  case '+': return !__builtin_add_overflow(a, b, r);
  case '-': return !__builtin_sub_overflow(a, b, r);
  case '*': return !__builtin_mul_overflow(a, b, r);
  default: return false;
  }
}

static const char *const const_funcs[] = {"min", "max", "sqrt", "exp", "log", "int", "float", "abs"};

/* Applies a compile-time function to already evaluated arguments; argv[i]
 * is the value of the call's i-th argument. */
bool sema_const_call(Program *p, const Node *e, const ConstVal *argv, ConstVal *out) {
  DiagSink *d = p->diag;
  const Node *callee = e->a;
  const char *f = callee->name;
  int nf = (int)(sizeof const_funcs / sizeof const_funcs[0]);
  bool known = false;
  for (int i = 0; i < nf; i++) known |= !strcmp(f, const_funcs[i]);
  if (!known) {
    Diag *g = diag_error(d, callee->loc, "'%s' is not a compile-time function", f);
    const char *s = closest_name(f, const_funcs, nf);
    if (s) diag_note(d, g, callee->loc, "did you mean '%s'?", s);
    return false;
  }
  ConstVal args[2];
  int want = (!strcmp(f, "min") || !strcmp(f, "max")) ? 2 : 1;
  if (e->list.n != want) {
    diag_error(d, e->loc, "'%s' takes %d argument%s, %d given", f, want, want > 1 ? "s" : "",
               e->list.n);
    return false;
  }
  for (int i = 0; i < want; i++) {
    if (e->list.v[i]->kind == N_NAMEDARG) {
      diag_error(d, e->list.v[i]->loc, "'%s' takes no named arguments", f);
      return false;
    }
    args[i] = argv[i];
    double tmp;
    if (!as_float(args[i], &tmp)) {
      diag_error(d, e->list.v[i]->loc, "'%s' needs a number, not %s", f,
                 const_kind_noun(args[i].kind));
      return false;
    }
  }
  memset(out, 0, sizeof *out);
  double x = 0, y = 0;
  as_float(args[0], &x);
  if (want == 2) as_float(args[1], &y);
  if (!strcmp(f, "min") || !strcmp(f, "max")) {
    bool mn = f[1] == 'i';
    if (args[0].kind == CV_INT && args[1].kind == CV_INT) {
      *out = args[0];
      if (mn ? args[1].i < args[0].i : args[1].i > args[0].i) *out = args[1];
    } else {
      out->kind = CV_FLOAT;
      out->f = mn ? fmin(x, y) : fmax(x, y);
    }
    return true;
  }
  if (!strcmp(f, "int")) {
    if (!(x > -9.2e18 && x < 9.2e18)) {
      diag_error(d, e->loc, "value %g does not fit in an int", x);
      return false;
    }
    out->kind = CV_INT;
    out->i = args[0].kind == CV_INT ? args[0].i : (int64_t)x;
    return true;
  }
  if (!strcmp(f, "abs") && args[0].kind == CV_INT) {
    if (args[0].i == INT64_MIN) {
      diag_error(d, e->loc, "integer overflow in abs");
      return false;
    }
    out->kind = CV_INT;
    out->i = llabs(args[0].i);
    return true;
  }
  out->kind = CV_FLOAT;
  if (!strcmp(f, "float")) out->f = x;
  else if (!strcmp(f, "abs")) out->f = fabs(x);
  else if (!strcmp(f, "sqrt")) {
    if (x < 0) {
      diag_error(d, e->loc, "sqrt of a negative number (%g)", x);
      return false;
    }
    out->f = sqrt(x);
  } else if (!strcmp(f, "exp")) out->f = exp(x);
  else {
    if (x <= 0) {
      diag_error(d, e->loc, "log of a non-positive number (%g)", x);
      return false;
    }
    out->f = log(x);
  }
  if (!isfinite(out->f)) {
    diag_error(d, e->loc, "result of '%s' is not finite", f);
    return false;
  }
  return true;
}

static bool eval_call(Program *p, const Node *e, const ConstScope *scope, ConstVal *out) {
  if (e->a->kind != N_NAME) {
    diag_error(p->diag, e->loc, "this call is not a compile-time constant");
    return false;
  }
  ConstVal argv[2] = {{0}, {0}};
  for (int i = 0; i < e->list.n && i < 2; i++) {
    const Node *a = e->list.v[i]->kind == N_NAMEDARG ? e->list.v[i]->a : e->list.v[i];
    if (!sema_eval_const(p, a, scope, &argv[i])) return false;
  }
  return sema_const_call(p, e, argv, out);
}

static bool lookup_scope(const ConstScope *s, const char *name, ConstVal *out) {
  for (; s; s = s->parent)
    for (int i = s->n - 1; i >= 0; i--)
      if (!strcmp(s->names[i], name)) {
        *out = s->vals[i];
        return true;
      }
  return false;
}

bool sema_eval_const(Program *p, const Node *e, const ConstScope *scope, ConstVal *out) {
  DiagSink *d = p->diag;
  memset(out, 0, sizeof *out);
  switch (e->kind) {
  case N_INT: out->kind = CV_INT; out->i = e->ival; return true;
  case N_FLOAT: out->kind = CV_FLOAT; out->f = e->fval; return true;
  case N_BOOL: out->kind = CV_BOOL; out->i = e->ival; return true;
  case N_STR: out->kind = CV_STR; out->s = e->str; return true;
  case N_NAME:
    if (scope && lookup_scope(scope, e->name, out)) return out->kind != CV_NONE;
    if (sema_const_lookup(p, e->name, out)) return out->kind != CV_NONE;
    {
      const char *cands[512];
      int n = 0;
      for (const ConstScope *s = scope; s; s = s->parent)
        for (int i = 0; i < s->n && n < 512; i++) cands[n++] = s->names[i];
      for (int i = 0; i < p->nconsts && n < 512; i++) cands[n++] = p->consts[i].name;
      Diag *g = diag_error(d, e->loc, "unknown constant '%s'", e->name);
      const char *s = closest_name(e->name, cands, n);
      if (s) diag_note(d, g, e->loc, "did you mean '%s'?", s);
    }
    return false;
  case N_UNARY: {
    ConstVal a;
    if (!sema_eval_const(p, e->a, scope, &a)) return false;
    if (e->op == '!') {
      if (a.kind != CV_BOOL) {
        diag_error(d, e->loc, "'!' needs a bool, not %s", const_kind_noun(a.kind));
        return false;
      }
      out->kind = CV_BOOL;
      out->i = !a.i;
      return true;
    }
    if (a.kind == CV_INT) {
      if (a.i == INT64_MIN) {
        diag_error(d, e->loc, "integer overflow");
        return false;
      }
      out->kind = CV_INT;
      out->i = -a.i;
      return true;
    }
    if (a.kind == CV_FLOAT) {
      out->kind = CV_FLOAT;
      out->f = -a.f;
      return true;
    }
    diag_error(d, e->loc, "'-' needs a number, not %s", const_kind_noun(a.kind));
    return false;
  }
  case N_BINARY: {
    ConstVal a, b;
    if (!sema_eval_const(p, e->a, scope, &a)) return false;
    if (!sema_eval_const(p, e->b, scope, &b)) return false;
    return sema_eval_binary(p, e, a, b, out);
  }
  case N_CALL: return eval_call(p, e, scope, out);
  default:
    diag_error(d, e->loc, "expected a compile-time constant here");
    return false;
  }
}

/* Binary operators on constants. Integer '/' must be exact: shapes are
 * integers, and an inexact split (dim / heads) is a configuration error that
 * should be reported, not truncated. */
bool sema_eval_binary(Program *p, const Node *e, ConstVal a, ConstVal b, ConstVal *out) {
  DiagSink *d = p->diag;
  int op = e->op;
  memset(out, 0, sizeof *out);
  char as[64], bs[64];
  const_format(as, sizeof as, a);
  const_format(bs, sizeof bs, b);
  if (op == AND || op == OR) {
    if (a.kind != CV_BOOL || b.kind != CV_BOOL) {
      diag_error(d, e->loc, "'%s' needs bools, not %s and %s", op_token_str(op),
                 const_kind_name(a.kind), const_kind_name(b.kind));
      return false;
    }
    out->kind = CV_BOOL;
    out->i = op == AND ? (a.i && b.i) : (a.i || b.i);
    return true;
  }
  if (op == '@') {
    diag_error(d, e->loc, "'@' (matmul) needs tensors, not constants");
    return false;
  }
  if (op == EQ || op == NE) {
    bool eq;
    double x, y;
    if (a.kind == CV_STR && b.kind == CV_STR) eq = !strcmp(a.s, b.s);
    else if (a.kind == CV_BOOL && b.kind == CV_BOOL) eq = a.i == b.i;
    else if (a.kind == CV_INT && b.kind == CV_INT) eq = a.i == b.i;
    else if (as_float(a, &x) && as_float(b, &y)) eq = x == y;
    else {
      diag_error(d, e->loc, "cannot compare %s with %s", const_kind_noun(a.kind),
                 const_kind_noun(b.kind));
      return false;
    }
    out->kind = CV_BOOL;
    out->i = op == EQ ? eq : !eq;
    return true;
  }
  double x, y;
  if (!as_float(a, &x) || !as_float(b, &y)) {
    diag_error(d, e->loc, "'%s' needs numbers, not %s and %s", op_token_str(op),
               const_kind_name(a.kind), const_kind_name(b.kind));
    return false;
  }
  if (op == '<' || op == LE || op == '>' || op == GE) {
    bool r;
    if (a.kind == CV_INT && b.kind == CV_INT)
      r = op == '<' ? a.i < b.i : op == LE ? a.i <= b.i : op == '>' ? a.i > b.i : a.i >= b.i;
    else
      r = op == '<' ? x < y : op == LE ? x <= y : op == '>' ? x > y : x >= y;
    out->kind = CV_BOOL;
    out->i = r;
    return true;
  }
  if (a.kind == CV_INT && b.kind == CV_INT) {
    out->kind = CV_INT;
    if (op == '/' || op == '%') {
      if (b.i == 0) {
        diag_error(d, e->loc, "division by zero (%s %s 0)", as, op_token_str(op));
        return false;
      }
      if (a.i == INT64_MIN && b.i == -1) {
        diag_error(d, e->loc, "integer overflow");
        return false;
      }
      if (op == '%') {
        out->i = a.i % b.i;
        return true;
      }
      if (a.i % b.i != 0) {
        Diag *g = diag_error(d, e->loc, "%s is not divisible by %s", as, bs);
        diag_note(d, g, e->loc,
                  "'/' on integers must be exact; write a float (%s.0) for a fractional result",
                  as);
        return false;
      }
      out->i = a.i / b.i;
      return true;
    }
    if (op == POW) {
      if (b.i < 0) {
        out->kind = CV_FLOAT;
        out->f = pow(x, y);
        return true;
      }
      int64_t r = 1;
      for (int64_t k = 0; k < b.i; k++) {
        if (__builtin_mul_overflow(r, a.i, &r)) {
          diag_error(d, e->loc, "integer overflow in %s ** %s", as, bs);
          return false;
        }
        if (r == 0 || r == 1) break; /* 0**n and 1**n; keeps 1**huge fast */
      }
      if (a.i == -1) r = (b.i % 2) ? -1 : 1;
      out->i = r;
      return true;
    }
    if (!int_op(op, a.i, b.i, &out->i)) {
      diag_error(d, e->loc, "integer overflow in %s %s %s", as, op_token_str(op), bs);
      return false;
    }
    return true;
  }
  out->kind = CV_FLOAT;
  switch (op) {
  case '+': out->f = x + y; break;
  case '-': out->f = x - y; break;
  case '*': out->f = x * y; break;
  case '/':
    if (y == 0) {
      diag_error(d, e->loc, "division by zero");
      return false;
    }
    out->f = x / y;
    break;
  case '%':
    diag_error(d, e->loc, "'%%' needs integers");
    return false;
  case POW: out->f = pow(x, y); break;
  default: diag_error(d, e->loc, "operator '%s' is not valid on constants", op_token_str(op)); return false;
  }
  if (!isfinite(out->f)) {
    diag_error(d, e->loc, "result is not a finite number");
    return false;
  }
  return true;
}

static bool eval_config(Program *p, ConstDecl *c) {
  if (c->state == 2) return c->val.kind != CV_NONE;
  if (c->state == 1) {
    Diag *g = diag_error(p->diag, c->decl->nloc, "config constant '%s' depends on itself", c->name);
    /* name the chain: c -> ... -> c */
    int from = p->eval_depth - 1;
    while (from > 0 && p->eval_stack[from] != c) from--;
    for (int i = from; i < p->eval_depth; i++) {
      ConstDecl *x = p->eval_stack[i];
      ConstDecl *next = i + 1 < p->eval_depth ? p->eval_stack[i + 1] : c;
      diag_note(p->diag, g, x->decl->a->loc, "'%s' uses '%s'", x->name, next->name);
    }
    c->state = 2;
    c->val.kind = CV_NONE;
    return false;
  }
  if (p->eval_depth >= 64) {
    diag_error(p->diag, c->decl->nloc, "config constants refer to each other more than 64 deep");
    c->state = 2;
    c->val.kind = CV_NONE;
    return false;
  }
  c->state = 1;
  p->eval_stack[p->eval_depth++] = c;
  ConstVal v;
  bool ok = sema_eval_const(p, c->decl->a, NULL, &v);
  p->eval_depth--;
  if (ok && c->override) {
    ConstVal o;
    const_parse_text(c->override, &o);
    if (o.kind == CV_INT && v.kind == CV_FLOAT) {
      o.kind = CV_FLOAT;
      o.f = (double)o.i;
    }
    if (o.kind != v.kind) {
      Diag *g = diag_error(p->diag, (Loc){0}, "-D %s=%s: '%s' is %s constant, not %s", c->name,
                           c->override, c->name, const_kind_noun(v.kind), const_kind_noun(o.kind));
      diag_note(p->diag, g, c->decl->nloc, "'%s' is declared here", c->name);
      ok = false;
    } else {
      v = o;
    }
  }
  if (c->state == 2) return false; /* a cycle was reported while evaluating */
  c->val = ok ? v : (ConstVal){.kind = CV_NONE};
  c->state = 2;
  return ok;
}

/* ------------------------------------------------------------ argument binding */

/* Maps a call's positional and named arguments onto spec slots. Reports
 * unknown names (with a suggestion), duplicates, too many and missing. */
bool sema_bind_args(Program *p, const Node *call, const char *fname, const ArgSpec *spec, int n,
                    Node **slots) {
  DiagSink *d = p->diag;
  bool ok = true;
  for (int i = 0; i < n; i++) slots[i] = NULL;
  int pos = 0;
  bool seen_named = false;
  for (int i = 0; i < call->list.n; i++) {
    Node *a = call->list.v[i];
    if (a->kind == N_NAMEDARG) {
      seen_named = true;
      int k = -1;
      for (int j = 0; j < n; j++)
        if (!strcmp(spec[j].name, a->name)) k = j;
      if (k < 0) {
        const char *cands[32];
        for (int j = 0; j < n && j < 32; j++) cands[j] = spec[j].name;
        Diag *g = diag_error(d, a->nloc, "'%s' has no argument named '%s'", fname, a->name);
        const char *s = closest_name(a->name, cands, n < 32 ? n : 32);
        if (s) diag_note(d, g, a->nloc, "did you mean '%s'?", s);
        ok = false;
        continue;
      }
      if (slots[k]) {
        diag_error(d, a->nloc, "argument '%s' of '%s' is given twice", a->name, fname);
        ok = false;
        continue;
      }
      slots[k] = a->a;
    } else {
      if (seen_named) {
        diag_error(d, a->loc, "positional argument after a named argument");
        ok = false;
        continue;
      }
      if (pos >= n) {
        diag_error(d, a->loc, "'%s' takes at most %d argument%s", fname, n, n == 1 ? "" : "s");
        ok = false;
        continue;
      }
      slots[pos++] = a;
    }
  }
  for (int j = 0; j < n && ok; j++)
    if (spec[j].required && !slots[j]) {
      diag_error(d, call->loc, "'%s' needs argument '%s'", fname, spec[j].name);
      ok = false;
    }
  return ok;
}

/* ------------------------------------------------------------ loading */

typedef struct {
  Program *p;
  const char **real;   /* realpath of each loaded file, by file index */
  int *state;          /* 1 loading, 2 done */
  int n, cap, capst;
  const char **stack;  /* paths on the import chain, for cycle messages */
  int depth;
} Loader;

static const char *dir_of(Arena *a, const char *path) {
  const char *slash = strrchr(path, '/');
  if (!slash) return NULL; /* the current directory */
  if (slash == path) return "/";
  return arena_strndup(a, path, (size_t)(slash - path));
}

static const char *resolve_import(Program *p, const char *from, const char *name) {
  Arena *a = p->arena;
  if (name[0] == '/') return access(name, R_OK) == 0 ? name : NULL;
  const char *dir = dir_of(a, from);
  const char *cand = dir ? arena_printf(a, "%s/%s", dir, name) : name;
  if (access(cand, R_OK) == 0) return cand;
  for (int i = 0; i < p->opts.search.nincdirs; i++) {
    cand = arena_printf(a, "%s/%s", p->opts.search.incdirs[i], name);
    if (access(cand, R_OK) == 0) return cand;
  }
  if (p->opts.search.stdlib_dir) {
    cand = arena_printf(a, "%s/%s", p->opts.search.stdlib_dir, name);
    if (access(cand, R_OK) == 0) return cand;
  }
  return NULL;
}

static int load_file(Loader *L, const char *path, Loc from);

static void load_imports(Loader *L, Node *file, const char *path) {
  for (int i = 0; i < file->list.n; i++) {
    Node *imp = file->list.v[i];
    if (imp->kind != N_IMPORT) continue;
    const char *found = resolve_import(L->p, path, imp->str);
    if (!found) {
      Diag *g = diag_error(L->p->diag, imp->nloc, "cannot find imported file \"%s\"", imp->str);
      diag_note(L->p->diag, g, imp->nloc,
                "searched next to this file, in -I directories (%d) and in the stdlib (%s)",
                L->p->opts.search.nincdirs,
                L->p->opts.search.stdlib_dir ? L->p->opts.search.stdlib_dir : "none");
      continue;
    }
    load_file(L, found, imp->nloc);
  }
}

static int load_file(Loader *L, const char *path, Loc from) {
  Program *p = L->p;
  DiagSink *d = p->diag;
  char *rp = realpath(path, NULL);
  const char *key = rp ? arena_strdup(p->arena, rp) : path;
  free(rp);
  for (int i = 0; i < L->n; i++) {
    if (strcmp(L->real[i], key)) continue;
    if (L->state[i] == 1) {
      Diag *g = diag_error(d, from, "import cycle: \"%s\" imports itself", path);
      for (int k = L->depth - 1; k >= 0; k--)
        diag_note(d, g, (Loc){0}, "through %s", L->stack[k]);
    }
    return i;
  }
  if (L->n >= DST_MAX_FILES) {
    diag_error(d, from, "more than %d imported files", DST_MAX_FILES);
    return -1;
  }
  const char *why = NULL;
  uint32_t fid;
  if (L->n == 0 && p->opts.main_text) {
    if (p->opts.main_len > DST_MAX_SOURCE_BYTES) {
      diag_error(d, from, "%s is larger than the 64 MiB limit for source files", path);
      return -1;
    }
    char *text = arena_alloc(p->arena, p->opts.main_len + 1);
    memcpy(text, p->opts.main_text, p->opts.main_len);
    fid = diag_add_file(d, path, text, (uint32_t)p->opts.main_len);
  } else {
    fid = source_load(d, path, &why);
  }
  if (!fid) {
    if (from.file) diag_error(d, from, "cannot read imported file \"%s\": %s", path, why);
    else diag_error(d, from, "cannot read %s: %s", path, why);
    return -1;
  }
  int idx = L->n;
  ARENA_PUSH(p->arena, L->real, L->n, L->cap, key);
  L->n--;
  ARENA_PUSH(p->arena, L->state, L->n, L->capst, 1);
  Node *file = parse_file(p->arena, d, fid);
  file->str = d->files[fid].path;
  ARENA_PUSH(p->arena, p->files, p->nfiles, p->capfiles, file);
  if (L->depth < DST_MAX_FILES) {
    static const char *stack_store[DST_MAX_FILES];
    L->stack = stack_store;
    L->stack[L->depth++] = d->files[fid].path;
    load_imports(L, file, d->files[fid].path);
    L->depth--;
  }
  L->state[idx] = 2;
  return idx;
}

/* ------------------------------------------------------------ declarations */

static void collect(Program *p) {
  DiagSink *d = p->diag;
  Node **firsts[3] = {&p->model, &p->train, &p->parallel};
  NodeKind kinds[3] = {N_MODEL, N_TRAIN, N_PARALLEL};
  const char *names[3] = {"model", "train block", "parallel block"};
  /* Imported files before the files that import them (files[] is in load
   * order, main first), so a redefinition is reported where the user wrote
   * it, with a note at the library's definition. */
  for (int f = p->nfiles - 1; f >= 0; f--) {
    Node *file = p->files[f];
    for (int i = 0; i < file->list.n; i++) {
      Node *n = file->list.v[i];
      if (n->kind == N_CONFIG) {
        for (int k = 0; k < n->list.n; k++) {
          Node *c = n->list.v[k];
          ConstDecl *prev = sema_find_const(p, c->name);
          if (prev) {
            Diag *g = diag_error(d, c->nloc, "config constant '%s' is defined twice", c->name);
            diag_note(d, g, prev->decl->nloc, "first defined here");
            continue;
          }
          ConstDecl cd = {.name = c->name, .decl = c};
          ARENA_PUSH(p->arena, p->consts, p->nconsts, p->capconsts, cd);
        }
      } else if (n->kind == N_BLOCK) {
        Node *prev = sema_find_block(p, n->name);
        if (prev) {
          Diag *g = diag_error(d, n->nloc, "block '%s' is defined twice", n->name);
          diag_note(d, g, prev->nloc, "first defined here");
          continue;
        }
        ARENA_PUSH(p->arena, p->blocks, p->nblocks, p->capblocks, n);
      } else {
        for (int k = 0; k < 3; k++) {
          if (n->kind != kinds[k]) continue;
          if (*firsts[k]) {
            Diag *g = diag_error(d, n->kind == N_MODEL ? n->nloc : n->loc,
                                 "a program has one %s; this is a second one", names[k]);
            diag_note(d, g, (*firsts[k])->kind == N_MODEL ? (*firsts[k])->nloc : (*firsts[k])->loc,
                      "the first is here");
          } else {
            *firsts[k] = n;
          }
        }
      }
    }
  }
}

static void apply_defines(Program *p) {
  for (int i = 0; i < p->opts.ndefines; i++) {
    CliSetting *s = &p->opts.defines[i];
    ConstDecl *c = sema_find_const(p, s->key);
    if (!c) {
      const char *cands[512];
      int n = 0;
      for (int k = 0; k < p->nconsts && n < 512; k++) cands[n++] = p->consts[k].name;
      Diag *g = diag_error(p->diag, (Loc){0}, "-D %s=%s: there is no config constant '%s'", s->key,
                           s->value, s->key);
      const char *sug = closest_name(s->key, cands, n);
      if (sug) diag_note(p->diag, g, sema_find_const(p, sug)->decl->nloc, "did you mean '%s'?", sug);
      continue;
    }
    c->override = s->value;
    s->used = true;
  }
}

/* ------------------------------------------------------------ name checks */

static const char *const builtin_names[] = {
    "gelu", "relu", "silu", "sigmoid", "exp", "log", "tanh", "sqrt", "matmul", "transpose",
    "reshape", "split", "concat", "slice", "sum", "mean", "max", "min", "softmax", "layernorm",
    "rmsnorm", "embedding", "attention", "rope", "dropout", "cross_entropy", "arange", "int",
    "float", "abs"};

bool sema_is_builtin(const char *name) {
  for (size_t i = 0; i < sizeof builtin_names / sizeof builtin_names[0]; i++)
    if (!strcmp(builtin_names[i], name)) return true;
  return false;
}

typedef struct {
  const char **names;
  int n, cap;
} NameSet;

static bool nameset_has(const NameSet *s, const char *name) {
  for (int i = s->n - 1; i >= 0; i--)
    if (!strcmp(s->names[i], name)) return true;
  return false;
}

static void nameset_add(Arena *a, NameSet *s, const char *name) {
  ARENA_PUSH(a, s->names, s->n, s->cap, name);
}

static void report_unknown(Program *p, const Node *e, const NameSet *scope, const char *what) {
  const char *cands[1024];
  int n = 0;
  for (int i = 0; i < scope->n && n < 1024; i++) cands[n++] = scope->names[i];
  for (int i = 0; i < p->nconsts && n < 1024; i++) cands[n++] = p->consts[i].name;
  Diag *g = diag_error(p->diag, e->loc, "unknown %s '%s'", what, e->name);
  const char *s = closest_name(e->name, cands, n);
  if (s) diag_note(p->diag, g, e->loc, "did you mean '%s'?", s);
}

/* Checks that every name used in an expression is defined somewhere in scope:
 * locals, formals, members, config constants, or (in call position) a
 * builtin or a layer. */
static void check_expr_names(Program *p, const Node *e, const NameSet *scope) {
  if (!e) return;
  switch (e->kind) {
  case N_NAME:
    if (!nameset_has(scope, e->name) && !sema_find_const(p, e->name))
      report_unknown(p, e, scope, "name");
    return;
  case N_CALL:
    if (e->a->kind == N_NAME) {
      const char *f = e->a->name;
      if (!nameset_has(scope, f) && !sema_is_builtin(f)) {
        const char *cands[1024];
        int n = 0;
        for (int i = 0; i < scope->n && n < 1000; i++) cands[n++] = scope->names[i];
        for (size_t i = 0; i < sizeof builtin_names / sizeof builtin_names[0]; i++)
          cands[n++] = builtin_names[i];
        Diag *g = diag_error(p->diag, e->a->loc, "unknown function or layer '%s'", f);
        const char *s = closest_name(f, cands, n);
        if (s) diag_note(p->diag, g, e->a->loc, "did you mean '%s'?", s);
      }
    } else {
      check_expr_names(p, e->a, scope);
    }
    for (int i = 0; i < e->list.n; i++) check_expr_names(p, e->list.v[i], scope);
    return;
  case N_NAMEDARG: check_expr_names(p, e->a, scope); return;
  case N_MEMBER: check_expr_names(p, e->a, scope); return;
  case N_BINARY: check_expr_names(p, e->a, scope); check_expr_names(p, e->b, scope); return;
  case N_UNARY: check_expr_names(p, e->a, scope); return;
  case N_LIST: case N_TUPLE:
    for (int i = 0; i < e->list.n; i++) check_expr_names(p, e->list.v[i], scope);
    return;
  default: return;
  }
}

static void check_stmts(Program *p, const NodeList *body, NameSet *scope, bool in_model,
                        bool *has_return, bool *has_min) {
  for (int i = 0; i < body->n; i++) {
    Node *s = body->v[i];
    switch (s->kind) {
    case N_ASSIGN:
      check_expr_names(p, s->a, scope);
      for (int k = 0; k < s->list.n; k++) nameset_add(p->arena, scope, s->list.v[k]->name);
      break;
    case N_RETURN:
      check_expr_names(p, s->a, scope);
      if (in_model) diag_error(p->diag, s->loc, "a model's forward ends with 'minimize', not 'return'");
      *has_return = true;
      break;
    case N_MINIMIZE:
      check_expr_names(p, s->a, scope);
      if (!in_model)
        diag_error(p->diag, s->loc, "'minimize' belongs in a model's forward, not in a block");
      *has_min = true;
      break;
    case N_IF: {
      check_expr_names(p, s->a, scope);
      int mark = scope->n;
      check_stmts(p, &s->list, scope, in_model, has_return, has_min);
      /* Names bound in either branch stay visible after the if; whether the
       * taken branch bound them is checked when the model is lowered. */
      check_stmts(p, &s->list2, scope, in_model, has_return, has_min);
      (void)mark;
      break;
    }
    default: die("unexpected statement kind %s", node_kind_name(s->kind));
    }
  }
}

static void collect_member_names(Program *p, const NodeList *members, NameSet *scope,
                                 NameSet *seen_decls, const Node **decls, int *ndecls) {
  for (int i = 0; i < members->n; i++) {
    Node *m = members->v[i];
    if (m->kind == N_IF) {
      collect_member_names(p, &m->list, scope, seen_decls, decls, ndecls);
      collect_member_names(p, &m->list2, scope, seen_decls, decls, ndecls);
      continue;
    }
    if (m->kind == N_FORWARD) continue;
    nameset_add(p->arena, scope, m->name);
  }
}

static void check_duplicates(Program *p, const NodeList *members, const Node **seen, int *nseen,
                             int depth_if) {
  for (int i = 0; i < members->n; i++) {
    Node *m = members->v[i];
    if (m->kind == N_IF) {
      /* The two branches are alternatives: a name may appear in both. */
      int mark = *nseen;
      check_duplicates(p, &m->list, seen, nseen, depth_if + 1);
      int after_then = *nseen;
      *nseen = mark;
      check_duplicates(p, &m->list2, seen, nseen, depth_if + 1);
      if (after_then > *nseen) *nseen = after_then; /* keep the longer list's entries */
      continue;
    }
    if (m->kind == N_FORWARD) continue;
    for (int k = 0; k < *nseen; k++)
      if (!strcmp(seen[k]->name, m->name)) {
        Diag *g = diag_error(p->diag, m->nloc, "'%s' is declared twice in this block", m->name);
        diag_note(p->diag, g, seen[k]->nloc, "first declared here");
        break;
      }
    if (*nseen < 4096) seen[(*nseen)++] = m;
  }
}

static void check_type_exprs(Program *p, const NodeList *members, NameSet *formals) {
  for (int i = 0; i < members->n; i++) {
    Node *m = members->v[i];
    if (m->kind == N_IF) {
      check_expr_names(p, m->a, formals);
      check_type_exprs(p, &m->list, formals);
      check_type_exprs(p, &m->list2, formals);
    } else if (m->kind == N_PARAM || m->kind == N_INPUT) {
      for (int k = 0; k < m->a->list.n; k++) check_expr_names(p, m->a->list.v[k], formals);
      if (m->b && m->b->kind == N_CALL)
        for (int k = 0; k < m->b->list.n; k++) check_expr_names(p, m->b->list.v[k], formals);
    } else if (m->kind == N_LAYER) {
      const char *bn = m->a->a->name;
      if (!sema_find_block(p, bn)) {
        const char *cands[1024];
        int n = 0;
        for (int k = 0; k < p->nblocks && n < 1024; k++) cands[n++] = p->blocks[k]->name;
        Diag *g = diag_error(p->diag, m->a->a->loc, "unknown block '%s'", bn);
        const char *s = closest_name(bn, cands, n);
        if (s) diag_note(p->diag, g, sema_find_block(p, s)->nloc, "did you mean '%s'?", s);
      }
      for (int k = 0; k < m->a->list.n; k++) check_expr_names(p, m->a->list.v[k], formals);
      if (m->b) check_expr_names(p, m->b, formals);
    }
  }
}

static void find_forwards(const NodeList *members, const Node **fw, int *n) {
  for (int i = 0; i < members->n; i++) {
    Node *m = members->v[i];
    if (m->kind == N_FORWARD) {
      if (*n < 8) fw[*n] = m;
      (*n)++;
    } else if (m->kind == N_IF) {
      find_forwards(&m->list, fw, n);
      find_forwards(&m->list2, fw, n);
    }
  }
}

static const char *const formal_types[] = {"int", "float", "bool", "string"};

static void check_block(Program *p, Node *b) {
  DiagSink *d = p->diag;
  bool is_model = b->kind == N_MODEL;
  NameSet formals = {0};
  for (int i = 0; i < b->list.n; i++) {
    Node *f = b->list.v[i];
    bool ok = false;
    for (int k = 0; k < 4; k++) ok |= !strcmp(f->str, formal_types[k]);
    if (!ok) {
      Diag *g = diag_error(d, f->loc, "unknown parameter type '%s'", f->str);
      const char *s = closest_name(f->str, formal_types, 4);
      diag_note(d, g, f->loc, s ? "did you mean '%s'?" : "block parameters are int, float, bool or string%s",
                s ? s : "");
    }
    if (nameset_has(&formals, f->name)) diag_error(d, f->nloc, "parameter '%s' is declared twice", f->name);
    if (f->a) check_expr_names(p, f->a, &formals);
    nameset_add(p->arena, &formals, f->name);
  }
  const Node *seen[4096];
  int nseen = 0;
  check_duplicates(p, &b->list2, seen, &nseen, 0);
  for (int i = 0; i < nseen; i++)
    if (nameset_has(&formals, seen[i]->name))
      diag_error(d, seen[i]->nloc, "'%s' is already a parameter of this block", seen[i]->name);
  check_type_exprs(p, &b->list2, &formals);

  const Node *fw[8];
  int nfw = 0;
  find_forwards(&b->list2, fw, &nfw);
  if (nfw == 0) {
    diag_error(d, b->nloc, "%s '%s' has no forward", is_model ? "model" : "block", b->name);
    return;
  }
  NameSet scope = formals;
  scope.names = NULL;
  scope.n = scope.cap = 0;
  for (int i = 0; i < formals.n; i++) nameset_add(p->arena, &scope, formals.names[i]);
  collect_member_names(p, &b->list2, &scope, NULL, NULL, NULL);
  for (int i = 0; i < nfw && i < 8; i++) {
    const Node *f = fw[i];
    if (is_model && f->ival)
      diag_error(d, f->loc, "a model's forward takes no parameters; declare 'input's instead");
    if (!is_model && !f->ival)
      diag_error(d, f->loc, "a block's forward needs a parameter list, e.g. forward(x)");
    NameSet local = {0};
    for (int k = 0; k < scope.n; k++) nameset_add(p->arena, &local, scope.names[k]);
    for (int k = 0; k < f->list.n; k++) nameset_add(p->arena, &local, f->list.v[k]->name);
    bool has_return = false, has_min = false;
    check_stmts(p, &f->list2, &local, is_model, &has_return, &has_min);
    if (is_model && !has_min)
      diag_error(d, f->loc, "the model's forward never says what to 'minimize'");
    if (!is_model && !has_return)
      diag_error(d, f->loc, "the forward of block '%s' never returns a value", b->name);
  }
}

/* ------------------------------------------------------------ parallel block */

const char *const parallel_key_names[] = {
#define PARALLEL_KEY(name, type, def, lo, hi, enums, doc) #name,
#include "keys.def"
#undef PARALLEL_KEY
};
const int parallel_key_count = (int)(sizeof parallel_key_names / sizeof parallel_key_names[0]);

typedef struct {
  const char *name;
  ParamKeyType type;
  const char *def;
  double lo, hi;
  const char *enums;
} KeySpec;

static const KeySpec parallel_keys[] = {
#define PARALLEL_KEY(name, type, def, lo, hi, enums, doc) {#name, type, def, lo, hi, enums},
#include "keys.def"
#undef PARALLEL_KEY
};

int sema_parallel_index(const char *key) {
  for (int i = 0; i < parallel_key_count; i++)
    if (!strcmp(parallel_key_names[i], key)) return i;
  return -1;
}

static ConstVal *par_slot(ParallelCfg *c, int i) { return (ConstVal *)c + i; }

static bool enum_has(const char *enums, const char *v) {
  size_t n = strlen(v);
  for (const char *s = enums; *s;) {
    const char *bar = strchr(s, '|');
    size_t len = bar ? (size_t)(bar - s) : strlen(s);
    if (len == n && !strncmp(s, v, n)) return true;
    if (!bar) break;
    s = bar + 1;
  }
  return false;
}

/* Checks a value against a key's type; returns NULL or a message. */
static const char *check_key_value(Arena *a, const KeySpec *k, ConstVal *v) {
  switch (k->type) {
  case PK_INT:
    if (v->kind != CV_INT) return arena_printf(a, "'%s' must be an integer", k->name);
    if (v->i < (int64_t)k->lo || v->i > (int64_t)k->hi)
      return arena_printf(a, "'%s' must be between %lld and %lld, not %lld", k->name,
                          (long long)k->lo, (long long)k->hi, (long long)v->i);
    return NULL;
  case PK_FLOAT:
    if (v->kind == CV_INT) {
      v->kind = CV_FLOAT;
      v->f = (double)v->i;
    }
    if (v->kind != CV_FLOAT) return arena_printf(a, "'%s' must be a number", k->name);
    if (v->f < k->lo || v->f > k->hi)
      return arena_printf(a, "'%s' must be between %g and %g, not %g", k->name, k->lo, k->hi, v->f);
    return NULL;
  case PK_BOOL:
    if (v->kind != CV_BOOL) return arena_printf(a, "'%s' must be true or false", k->name);
    return NULL;
  case PK_STR:
    if (v->kind != CV_STR) return arena_printf(a, "'%s' must be a string", k->name);
    return NULL;
  case PK_ENUM: {
    if (v->kind == CV_STR && enum_has(k->enums, v->s)) return NULL;
    const char *vals[16];
    int n = 0;
    char *list = arena_strdup(a, k->enums);
    for (char *t = strtok(list, "|"); t && n < 16; t = strtok(NULL, "|")) vals[n++] = t;
    char *shown = arena_strdup(a, "");
    for (int i = 0; i < n; i++) shown = arena_printf(a, "%s%s%s", shown, i ? ", " : "", vals[i]);
    const char *sug = v->kind == CV_STR ? closest_name(v->s, vals, n) : NULL;
    if (sug) return arena_printf(a, "'%s' must be one of %s; did you mean '%s'?", k->name, shown, sug);
    return arena_printf(a, "'%s' must be one of %s", k->name, shown);
  }
  default: return "bad key type";
  }
}

/* A parallel value: an identifier naming an enum value, or a constant. */
static bool eval_key_expr(Program *p, const Node *e, ConstVal *v) {
  if (e->kind == N_NAME && !sema_find_const(p, e->name)) {
    memset(v, 0, sizeof *v);
    v->kind = CV_STR;
    v->s = e->name;
    return true;
  }
  return sema_eval_const(p, e, NULL, v);
}

static void check_parallel(Program *p) {
  DiagSink *d = p->diag;
  for (int i = 0; i < parallel_key_count; i++) {
    ConstVal v;
    const_parse_text(parallel_keys[i].def, &v);
    if (parallel_keys[i].type == PK_FLOAT && v.kind == CV_INT) {
      v.kind = CV_FLOAT;
      v.f = (double)v.i;
    }
    *par_slot(&p->par, i) = v;
  }
  if (p->parallel) {
    for (int i = 0; i < p->parallel->list.n; i++) {
      Node *kv = p->parallel->list.v[i];
      int k = sema_parallel_index(kv->name);
      if (k < 0) {
        Diag *g = diag_error(d, kv->nloc, "unknown parallel key '%s'", kv->name);
        const char *s = closest_name(kv->name, parallel_key_names, parallel_key_count);
        if (s) diag_note(d, g, kv->nloc, "did you mean '%s'?", s);
        continue;
      }
      if (p->par_loc[k].file) {
        Diag *g = diag_error(d, kv->nloc, "parallel key '%s' is set twice", kv->name);
        diag_note(d, g, p->par_loc[k], "first set here");
        continue;
      }
      p->par_loc[k] = kv->nloc; /* even when the value is rejected below */
      ConstVal v;
      if (!eval_key_expr(p, kv->a, &v)) continue;
      const char *msg = check_key_value(p->arena, &parallel_keys[k], &v);
      if (msg) {
        diag_error(d, kv->a->loc, "%s", msg);
        continue;
      }
      *par_slot(&p->par, k) = v;
      p->par_loc[k] = kv->nloc;
      p->par_given[k] = true;
    }
  }
  for (int i = 0; i < p->opts.nflags; i++) {
    CliSetting *s = &p->opts.flags[i];
    int k = sema_parallel_index(s->key);
    if (k < 0) continue; /* rejected by the command-line parser */
    ConstVal v;
    const_parse_text(s->value, &v);
    const char *msg = check_key_value(p->arena, &parallel_keys[k], &v);
    if (msg) {
      diag_error(d, (Loc){0}, "-f%s=%s: %s", s->key, s->value, msg);
      continue;
    }
    *par_slot(&p->par, k) = v;
    p->par_from_flag[k] = arena_printf(p->arena, "-f%s=%s", s->key, s->value);
    p->par_loc[k] = (Loc){0}; /* the file's setting no longer applies */
    p->par_given[k] = true;
    s->used = true;
  }

  /* Combinations. Each message names the keys involved. */
  ParallelCfg *c = &p->par;
#define WHERE(key) (p->par_loc[sema_parallel_index(#key)])
  if (strcmp(c->offload_params.s, "none") && c->zero.i != 3) {
    Diag *g = diag_error(d, WHERE(offload_params), "offload_params = %s needs zero = 3 (zero is %lld)",
                         c->offload_params.s, (long long)c->zero.i);
    diag_note(d, g, WHERE(zero), "zero is set here");
  }
  if (strcmp(c->offload_optimizer.s, "none") && c->zero.i == 0)
    diag_error(d, WHERE(offload_optimizer),
               "offload_optimizer = %s needs zero = 1, 2 or 3, which partitions the optimizer state",
               c->offload_optimizer.s);
  if ((!strcmp(c->offload_optimizer.s, "nvme") || !strcmp(c->offload_params.s, "nvme")) &&
      !*c->nvme_path.s)
    diag_error(d, WHERE(offload_optimizer).file ? WHERE(offload_optimizer) : WHERE(offload_params),
               "NVMe offload needs nvme_path = \"DIR\"");
  if (!strcmp(c->schedule.s, "interleaved") && c->virtual_stages.i < 2)
    diag_error(d, WHERE(schedule), "schedule = interleaved needs virtual_stages >= 2");
  if (c->virtual_stages.i > 1 && strcmp(c->schedule.s, "interleaved"))
    diag_error(d, WHERE(virtual_stages), "virtual_stages = %lld needs schedule = interleaved",
               (long long)c->virtual_stages.i);
  if (c->pp.i > 1 && c->micro_batches.i < c->pp.i)
    diag_warning(d, WHERE(micro_batches),
                 "micro_batches (%lld) < pp (%lld): some pipeline stages idle every step",
                 (long long)c->micro_batches.i, (long long)c->pp.i);
  if (c->pp.i == 1 && c->micro_batches.i > 1)
    diag_warning(d, WHERE(micro_batches),
                 "micro_batches = %lld without pipeline stages (pp = 1) splits the batch "
                 "like grad_accum does", (long long)c->micro_batches.i);
  if (!strcmp(c->precision.s, "fp32") &&
      (!strcmp(c->loss_scale.s, "static") || !strcmp(c->loss_scale.s, "dynamic")))
    diag_warning(d, WHERE(loss_scale), "loss_scale = %s has no effect with precision = fp32",
                 c->loss_scale.s);
  if (c->zero.i > 0 && c->dp.i == 1)
    diag_warning(d, WHERE(zero), "zero = %lld with dp = 1 partitions nothing",
                 (long long)c->zero.i);
  if (c->sequence_parallel.i && c->tp.i == 1)
    diag_warning(d, WHERE(sequence_parallel), "sequence_parallel needs tp > 1 to have an effect");
  /* Keys set in the file or by a flag that this layout gives nothing to
   * do: a warning each, so that no setting is silently ignored. */
  bool fp16 = !strcmp(c->precision.s, "fp16");
  bool nvme = !strcmp(c->offload_optimizer.s, "nvme") || !strcmp(c->offload_params.s, "nvme");
  bool reduces = c->dp.i > 1; /* gradients are reduced across ranks */
  const struct {
    const char *key;
    bool idle;
    const char *why;
  } idle[] = {
      {"schedule", c->pp.i == 1, "without pipeline stages (pp = 1)"},
      {"virtual_stages", c->pp.i == 1 && c->virtual_stages.i > 1, "without pipeline stages (pp = 1)"},
      {"bucket_mb", !reduces, "without data parallelism (dp = 1): no gradients are reduced"},
      {"bucket_mb", reduces && c->zero.i == 1,
       "at zero = 1, whose gradients are reduce-scattered in one piece after the backward pass"},
      {"bucket_mb", reduces && c->zero.i == 0 && !c->overlap_comm.i,
       "with overlap_comm = false: the gradients are all-reduced in one piece after the backward pass"},
      {"overlap_comm", !reduces, "without data parallelism (dp = 1): no gradients are reduced"},
      {"overlap_comm", reduces && c->zero.i == 1 && c->overlap_comm.i,
       "at zero = 1, whose gradients are reduce-scattered after the backward pass"},
      {"nvme_path", !nvme, "without NVMe offload (offload_optimizer or offload_params = nvme)"},
      {"loss_scale_value", !fp16 && strcmp(c->loss_scale.s, "static") && strcmp(c->loss_scale.s, "dynamic"),
       "without loss scaling (precision = fp16, or loss_scale = static or dynamic)"},
  };
  for (size_t i = 0; i < sizeof idle / sizeof idle[0]; i++) {
    int k = sema_parallel_index(idle[i].key);
    if (!p->par_given[k] || !idle[i].idle) continue;
    Diag *g = diag_warning(d, p->par_loc[k], "%s has no effect %s", idle[i].key, idle[i].why);
    if (p->par_from_flag[k]) diag_note(d, g, (Loc){0}, "set by %s on the command line", p->par_from_flag[k]);
  }
#undef WHERE
}

/* ------------------------------------------------------------ train block */

static const char *const train_keys[] = {"optimizer", "lr_schedule", "clip_grad_norm", "steps",
                                         "batch", "seed", "log_every", "eval_every", "save_every"};
enum { NTRAIN_KEYS = sizeof train_keys / sizeof train_keys[0] };

static bool get_num(Program *p, Node *e, double *out, double lo, double hi, const char *what) {
  ConstVal v;
  if (!sema_eval_const(p, e, NULL, &v)) return false;
  double x;
  if (!as_float(v, &x)) {
    diag_error(p->diag, e->loc, "'%s' must be a number", what);
    return false;
  }
  if (!(x >= lo && x <= hi)) {
    diag_error(p->diag, e->loc, "'%s' must be between %g and %g, not %g", what, lo, hi, x);
    return false;
  }
  *out = x;
  return true;
}

static bool get_int(Program *p, Node *e, int64_t *out, int64_t lo, int64_t hi, const char *what) {
  ConstVal v;
  if (!sema_eval_const(p, e, NULL, &v)) return false;
  if (v.kind != CV_INT) {
    diag_error(p->diag, e->loc, "'%s' must be an integer", what);
    return false;
  }
  if (v.i < lo || v.i > hi) {
    diag_error(p->diag, e->loc, "'%s' must be between %lld and %lld, not %lld", what,
               (long long)lo, (long long)hi, (long long)v.i);
    return false;
  }
  *out = v.i;
  return true;
}

static void check_optimizer(Program *p, Node *e) {
  TrainCfg *t = &p->train_cfg;
  const char *name = e->kind == N_CALL && e->a->kind == N_NAME ? e->a->name
                     : e->kind == N_NAME                       ? e->name
                                                               : NULL;
  static const char *const opts[] = {"adamw", "sgd"};
  if (!name || (strcmp(name, "adamw") && strcmp(name, "sgd"))) {
    Diag *g = diag_error(p->diag, e->loc, "optimizer must be adamw(...) or sgd(...)");
    const char *s = name ? closest_name(name, opts, 2) : NULL;
    if (s) diag_note(p->diag, g, e->loc, "did you mean '%s'?", s);
    return;
  }
  Node empty = {.kind = N_CALL, .loc = e->loc};
  Node *call = e->kind == N_CALL ? e : &empty;
  if (!strcmp(name, "adamw")) {
    t->opt = OPT_ADAMW;
    static const ArgSpec spec[] = {{"lr", true}, {"betas", false}, {"beta1", false},
                                   {"beta2", false}, {"eps", false}, {"weight_decay", false}};
    Node *s[6];
    if (!sema_bind_args(p, call, "adamw", spec, 6, s)) return;
    get_num(p, s[0], &t->lr, 0, 1e3, "lr");
    if (s[1]) {
      if (s[1]->kind != N_TUPLE || s[1]->list.n != 2) {
        diag_error(p->diag, s[1]->loc, "'betas' must be a pair, e.g. (0.9, 0.95)");
      } else {
        get_num(p, s[1]->list.v[0], &t->beta1, 0, 0.999999999, "beta1");
        get_num(p, s[1]->list.v[1], &t->beta2, 0, 0.999999999, "beta2");
      }
      if (s[2] || s[3]) diag_error(p->diag, (s[2] ? s[2] : s[3])->loc, "give either 'betas' or 'beta1'/'beta2', not both");
    }
    if (s[2]) get_num(p, s[2], &t->beta1, 0, 0.999999999, "beta1");
    if (s[3]) get_num(p, s[3], &t->beta2, 0, 0.999999999, "beta2");
    if (s[4]) get_num(p, s[4], &t->eps, 0, 1, "eps");
    if (s[5]) get_num(p, s[5], &t->weight_decay, 0, 10, "weight_decay");
  } else {
    t->opt = OPT_SGD;
    static const ArgSpec spec[] = {{"lr", true}, {"momentum", false}, {"weight_decay", false},
                                   {"nesterov", false}};
    Node *s[4];
    if (!sema_bind_args(p, call, "sgd", spec, 4, s)) return;
    get_num(p, s[0], &t->lr, 0, 1e3, "lr");
    if (s[1]) get_num(p, s[1], &t->momentum, 0, 0.999999999, "momentum");
    if (s[2]) get_num(p, s[2], &t->weight_decay, 0, 10, "weight_decay");
    if (s[3]) {
      ConstVal v;
      if (sema_eval_const(p, s[3], NULL, &v)) {
        if (v.kind != CV_BOOL) diag_error(p->diag, s[3]->loc, "'nesterov' must be true or false");
        else t->nesterov = v.i;
      }
      if (t->nesterov && t->momentum == 0)
        diag_error(p->diag, s[3]->loc, "nesterov = true needs momentum > 0");
    }
  }
}

static void check_schedule(Program *p, Node *e) {
  TrainCfg *t = &p->train_cfg;
  const char *name = e->kind == N_CALL && e->a->kind == N_NAME ? e->a->name
                     : e->kind == N_NAME                       ? e->name
                                                               : NULL;
  static const char *const names[] = {"constant", "linear", "cosine"};
  int k = -1;
  for (int i = 0; i < 3 && name; i++)
    if (!strcmp(name, names[i])) k = i;
  if (k < 0) {
    Diag *g = diag_error(p->diag, e->loc, "lr_schedule must be constant, linear or cosine");
    const char *s = name ? closest_name(name, names, 3) : NULL;
    if (s) diag_note(p->diag, g, e->loc, "did you mean '%s'?", s);
    return;
  }
  t->sched = (SchedKind)k;
  if (e->kind != N_CALL) return;
  static const ArgSpec spec[] = {{"warmup", false}, {"min_lr", false}};
  Node *s[2];
  if (!sema_bind_args(p, e, names[k], spec, k == 0 ? 1 : 2, s)) return;
  if (s[0]) get_int(p, s[0], &t->warmup, 0, INT64_MAX / 2, "warmup");
  if (k > 0 && s[1]) get_num(p, s[1], &t->min_lr, 0, 1e3, "min_lr");
}

static void check_train(Program *p) {
  TrainCfg *t = &p->train_cfg;
  memset(t, 0, sizeof *t);
  t->opt = OPT_ADAMW;
  t->lr = 1e-3;
  t->beta1 = 0.9;
  t->beta2 = 0.999;
  t->eps = 1e-8;
  t->sched = SCHED_CONSTANT;
  t->steps = 100;
  t->seed = 1337;
  t->log_every = 1;
  if (!p->train) return;
  Loc seen[NTRAIN_KEYS] = {{0}};
  Node *sched = NULL, *opt = NULL;
  for (int i = 0; i < p->train->list.n; i++) {
    Node *kv = p->train->list.v[i];
    int k = -1;
    for (int j = 0; j < NTRAIN_KEYS; j++)
      if (!strcmp(train_keys[j], kv->name)) k = j;
    if (k < 0) {
      Diag *g = diag_error(p->diag, kv->nloc, "unknown train key '%s'", kv->name);
      const char *s = closest_name(kv->name, train_keys, NTRAIN_KEYS);
      if (s) diag_note(p->diag, g, kv->nloc, "did you mean '%s'?", s);
      else if (sema_parallel_index(kv->name) >= 0)
        diag_note(p->diag, g, kv->nloc, "'%s' belongs in the parallel block", kv->name);
      continue;
    }
    if (seen[k].file) {
      Diag *g = diag_error(p->diag, kv->nloc, "train key '%s' is set twice", kv->name);
      diag_note(p->diag, g, seen[k], "first set here");
      continue;
    }
    seen[k] = kv->nloc;
    switch (k) {
    case 0: opt = kv->a; break;
    case 1: sched = kv->a; break;
    case 2: get_num(p, kv->a, &t->clip_grad_norm, 0, 1e30, "clip_grad_norm"); break;
    case 3: get_int(p, kv->a, &t->steps, 0, INT64_MAX / 2, "steps"); break;
    case 4: get_int(p, kv->a, &t->batch, 1, INT64_MAX / 2, "batch"); break;
    case 5: get_int(p, kv->a, &t->seed, 0, INT64_MAX, "seed"); break;
    case 6: get_int(p, kv->a, &t->log_every, 1, INT64_MAX / 2, "log_every"); break;
    case 7: get_int(p, kv->a, &t->eval_every, 0, INT64_MAX / 2, "eval_every"); break;
    case 8: get_int(p, kv->a, &t->save_every, 0, INT64_MAX / 2, "save_every"); break;
    }
  }
  if (opt) check_optimizer(p, opt);
  if (sched) check_schedule(p, sched);
  if (sched && t->warmup > t->steps && t->steps > 0)
    diag_warning(p->diag, sched->loc, "warmup (%lld steps) is longer than training (%lld steps)",
                 (long long)t->warmup, (long long)t->steps);
  if (sched && t->min_lr > t->lr)
    diag_error(p->diag, sched->loc, "min_lr (%g) is above the optimizer's lr (%g)", t->min_lr, t->lr);
}

/* ------------------------------------------------------------ entry */

Program *sema_program(Arena *a, DiagSink *d, const char *path, const CompileOptions *opts) {
  Program *p = arena_alloc(a, sizeof *p);
  p->arena = a;
  p->diag = d;
  p->opts = *opts;
  Loader L = {.p = p};
  if (load_file(&L, path, (Loc){0}) < 0) return NULL;
  if (diag_failed(d)) return p; /* syntax errors: meaning would only cascade */
  collect(p);
  apply_defines(p);
  for (int i = 0; i < p->nconsts; i++) eval_config(p, &p->consts[i]);
  for (int i = 0; i < p->nblocks; i++) check_block(p, p->blocks[i]);
  if (p->model) check_block(p, p->model);
  check_parallel(p);
  check_train(p);
  return p;
}
