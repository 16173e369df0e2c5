/* source.c: reading source files into the diagnostic sink's file table.
 * Files are read whole, capped at DST_MAX_SOURCE_BYTES, and NUL-terminated
 * so the lexer can use a sentinel. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "dstc.h"

uint32_t source_load(DiagSink *d, const char *path, const char **why) {
  struct stat st;
  if (stat(path, &st) != 0) {
    *why = strerror(errno);
    return 0;
  }
  if (S_ISDIR(st.st_mode)) {
    *why = "is a directory";
    return 0;
  }
  FILE *f = fopen(path, "rb");
  if (!f) {
    *why = strerror(errno);
    return 0;
  }
  /* Read incrementally rather than trusting st_size: pipes and /proc files
   * report 0, and a file may grow while being read. */
  size_t cap = 4096, n = 0;
  char *buf = malloc(cap + 1);
  if (!buf) die("out of memory");
  for (;;) {
    if (n == cap) {
      if (cap >= DST_MAX_SOURCE_BYTES) break;
      cap *= 2;
      char *nb = realloc(buf, cap + 1);
      if (!nb) die("out of memory");
      buf = nb;
    }
    size_t got = fread(buf + n, 1, cap - n, f);
    if (got == 0) break;
    n += got;
  }
  bool err = ferror(f);
  bool more = !err && n >= DST_MAX_SOURCE_BYTES && fgetc(f) != EOF;
  fclose(f);
  if (err || more) {
    free(buf);
    *why = err ? "read error" : "file is larger than the 64 MiB limit for source files";
    return 0;
  }
  char *text = arena_alloc(d->arena, n + 1);
  memcpy(text, buf, n);
  text[n] = 0;
  free(buf);
  return diag_add_file(d, path, text, (uint32_t)n);
}

const char *source_stdlib_dir(void) {
  const char *env = getenv("DST_STDLIB");
  if (env && *env) return env;
#ifdef DST_STDLIB_DIR
  return DST_STDLIB_DIR;
#else
  return "stdlib";
#endif
}
