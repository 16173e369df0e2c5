/* fuzz_front.c: libFuzzer target for the whole front end.
 *
 * Each input is one main file, checked as sema_program would check a file on
 * disk (imports resolve next to the working directory, then in the real
 * stdlib), lowered when it checks clean, and its diagnostics printed to
 * /dev/null so the printer's line tables, clipping and carets run too.
 * Everything lives in a fresh Arena that is freed at the end, so a leak or a
 * use-after-free across inputs is a finding, not noise.
 *
 * An input whose first line is "// ARGS: ..." (the tests/diag convention)
 * also gets the -D NAME=VALUE and -fKEY=VALUE settings listed there, so the
 * override paths are fuzzed as well (unknown -f keys and repeated names are
 * dropped, as dstc's command line refuses them). A lowered graph that fails ir_verify is
 * an internal error and aborts. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "dstc.h"

#ifndef DST_SOURCE_DIR
#error "the fuzz build defines DST_SOURCE_DIR (the source tree)"
#endif

enum { MAX_SETTINGS = 8 };

/* Splits "NAME=VALUE" into an arena-owned setting; false when malformed. */
static bool split_setting(Arena *a, const char *s, size_t n, CliSetting *out) {
  const char *eq = memchr(s, '=', n);
  if (!eq || eq == s || eq + 1 == s + n) return false;
  out->key = arena_strndup(a, s, (size_t)(eq - s));
  out->value = arena_strndup(a, eq + 1, n - (size_t)(eq - s) - 1);
  out->used = false;
  return true;
}

/* Reads the -D and -f settings of a leading "// ARGS:" line. */
static void parse_args_line(Arena *a, const uint8_t *data, size_t size, CompileOptions *o,
                            CliSetting *defs, CliSetting *flags) {
  static const char tag[] = "// ARGS:";
  if (size < sizeof tag - 1 || memcmp(data, tag, sizeof tag - 1)) return;
  const char *p = (const char *)data + sizeof tag - 1;
  const char *end = (const char *)data + size;
  const char *nl = memchr(p, '\n', (size_t)(end - p));
  if (nl) end = nl;
  while (p < end) {
    while (p < end && (*p == ' ' || *p == '\t')) p++;
    const char *w = p;
    while (p < end && *p != ' ' && *p != '\t') p++;
    size_t n = (size_t)(p - w);
    if (n < 2 || w[0] != '-' || (w[1] != 'D' && w[1] != 'f')) continue;
    bool define = w[1] == 'D';
    const char *body = w + 2;
    size_t blen = n - 2;
    if (define && blen == 0) { /* "-D NAME=VALUE": the setting is the next word */
      while (p < end && (*p == ' ' || *p == '\t')) p++;
      body = p;
      while (p < end && *p != ' ' && *p != '\t') p++;
      blen = (size_t)(p - body);
    }
    CliSetting *list = define ? defs : flags;
    int *count = define ? &o->ndefines : &o->nflags;
    CliSetting s;
    if (*count >= MAX_SETTINGS || !split_setting(a, body, blen, &s)) continue;
    if (!define && sema_parallel_index(s.key) < 0) continue;
    bool dup = false; /* main.c refuses a repeated -D or -f */
    for (int i = 0; i < *count; i++) dup |= !strcmp(list[i].key, s.key);
    if (!dup) list[(*count)++] = s;
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static FILE *devnull;
  if (!devnull) devnull = fopen("/dev/null", "w");
  if (!devnull) abort();

  Arena arena;
  arena_init(&arena);
  DiagSink diag;
  diag_init(&diag, &arena);
  CliSetting defs[MAX_SETTINGS], flags[MAX_SETTINGS];
  CompileOptions o;
  memset(&o, 0, sizeof o);
  o.search.stdlib_dir = DST_SOURCE_DIR "/stdlib";
  o.main_text = size ? (const char *)data : "";
  o.main_len = size;
  o.defines = defs;
  o.flags = flags;
  parse_args_line(&arena, data, size, &o, defs, flags);

  Program *p = sema_program(&arena, &diag, "fuzz.dst", &o);
  if (p && !diag_failed(&diag) && p->model) {
    IrGraph *g = lower_model(p, &arena, &diag);
    if (g && !diag_failed(&diag) && !ir_verify(g, stderr)) abort();
  }
  diag_print(&diag, devnull, false);
  diag_print(&diag, devnull, true);
  arena_free(&arena);
  return 0;
}
