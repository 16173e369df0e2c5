/* driver.c: the compilation pipeline, declared once.
 *
 * compile_file runs the passes of the table below in order on one input,
 * stopping after the first pass that reports an error (later passes would
 * only report consequences). Each pass can print its result
 * (--dump-ast / --dump-ir=PASS); in debug builds, and in any build
 * configured with -DDST_VERIFY_IR=ON (the test suite's), the IR verifier
 * runs after every pass that produces IR. */
#include <string.h>

#include "driver.h"

typedef bool (*PassFn)(Compilation *c);

static bool pass_sema(Compilation *c) {
  c->prog = sema_program(&c->arena, &c->diag, c->path, &c->opts);
  if (!c->prog) return false;
  if (c->dump_ast && !diag_failed(&c->diag))
    for (int i = 0; i < c->prog->nfiles; i++) {
      fprintf(c->out, "; %s\n", c->prog->files[i]->str);
      ast_dump(c->out, c->prog->files[i], 0);
    }
  return !diag_failed(&c->diag);
}

static bool pass_lower(Compilation *c) {
  if (!c->prog->model) return true; /* a library file: nothing to lower */
  c->graph = lower_model(c->prog, &c->arena, &c->diag);
  return !diag_failed(&c->diag);
}

static bool pass_simplify_run(Compilation *c) {
  if (c->graph) pass_simplify(c->graph);
  return true;
}

static bool pass_fuse_run(Compilation *c) {
  if (c->graph) pass_fuse(c->graph);
  return true;
}

static bool pass_precision_run(Compilation *c) {
  DType dt;
  if (c->graph && precision_from_name(c->prog->par.precision.s, &dt)) pass_precision(c->graph, dt);
  return true;
}

static bool pass_autodiff_run(Compilation *c) {
  if (c->graph) pass_autodiff(c->graph);
  return true;
}

typedef struct {
  const char *name;
  PassFn run;
  bool makes_ir;
} Pass;

/* The pipeline. Later stages (autodiff, plan, schedule, memory, emit) are
 * appended here. */
static const Pass pipeline[] = {
    {"sema", pass_sema, false},
    {"lower", pass_lower, true},
    {"simplify", pass_simplify_run, true},
    {"precision", pass_precision_run, true},
    {"autodiff", pass_autodiff_run, true},
    {"fuse", pass_fuse_run, true},
};
enum { NPASSES = sizeof pipeline / sizeof pipeline[0] };

bool driver_pass_exists(const char *name) {
  for (int i = 0; i < NPASSES; i++)
    if (!strcmp(pipeline[i].name, name)) return true;
  return false;
}

const char *driver_pass_list(void) { return "sema, lower, simplify, precision, autodiff, fuse"; }

int compile_file(Compilation *c) {
  for (int i = 0; i < NPASSES; i++) {
    bool ok = pipeline[i].run(c);
    if (!c->prog) return EXIT_INPUT;
    if (!ok) return EXIT_INPUT;
    if (pipeline[i].makes_ir && c->graph) {
#if !defined(NDEBUG) || defined(DST_VERIFY_IR)
      if (!ir_verify(c->graph, stderr)) die("IR verification failed after pass %s", pipeline[i].name);
#endif
      if (c->dump_ir && !strcmp(c->dump_ir, pipeline[i].name)) ir_dump(c->out, c->graph);
    }
    if (c->stop_after && !strcmp(c->stop_after, pipeline[i].name)) break;
  }
  return EXIT_OK;
}

void compilation_init(Compilation *c, const char *path, const CompileOptions *opts) {
  memset(c, 0, sizeof *c);
  arena_init(&c->arena);
  diag_init(&c->diag, &c->arena);
  c->path = path;
  c->opts = *opts;
  c->out = stdout;
}

void compilation_free(Compilation *c) { arena_free(&c->arena); }
