/* driver.h: one compilation of one input file through the pipeline. */
#ifndef DST_DRIVER_H
#define DST_DRIVER_H
#include "dstc.h"

typedef struct {
  Arena arena;
  DiagSink diag;
  const char *path;
  CompileOptions opts;
  Program *prog;
  IrGraph *graph;
  bool dump_ast;
  const char *dump_ir;    /* pass name, or NULL */
  const char *stop_after; /* pass name, or NULL */
  FILE *out;              /* where dumps go */
} Compilation;

void compilation_init(Compilation *c, const char *path, const CompileOptions *opts);
void compilation_free(Compilation *c);
/* Runs the pipeline; returns an exit code (EXIT_OK or EXIT_INPUT). The
 * diagnostics are left in c->diag for the caller to print. */
int compile_file(Compilation *c);
bool driver_pass_exists(const char *name);
const char *driver_pass_list(void);

#endif
