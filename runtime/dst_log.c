/* dst_log.c: errors and logging of the runtime.
 *
 * Everything goes to stderr, one line per call, so a program's stdout holds
 * only what it prints itself (losses, reports). Each line is formatted into
 * one buffer and written with a single fputs, so lines of different ranks
 * sharing a terminal interleave whole rather than character by character.
 * Exit statuses follow dstc: 1 for the user's input, 70 for internal bugs.
 * A message never glues onto a progress line the driver keeps on the
 * terminal: it clears that line first (dst_log_end_progress).
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

#include "dst.h"

static int log_rank = -1; /* < 0: no "[rank N] " prefix */
static bool progress;     /* a progress line (no newline yet) shows on stdout */

void dst_log_progress(bool showing) { progress = showing; }

/* Clears the progress line rather than ending it with a newline: the
 * message takes its place, and the next step redraws progress below. The
 * clear goes through stdout and is flushed before anything reaches stderr,
 * so on a shared terminal it lands first. */
void dst_log_end_progress(void) {
  if (!progress) return;
  progress = false;
  fputs("\r\033[K", stdout);
  fflush(stdout);
}

void dst_log_set_rank(int rank) { log_rank = rank; }

int dst_log_rank(void) { return log_rank; }

/* Formats "[rank N] <kind><where><msg>\n" and writes it in one call. A line
 * longer than the buffer is cut, which is acceptable for diagnostics. */
static void emit(const char *kind, const char *where, const char *fmt, va_list ap) {
  char line[2048];
  size_t n = 0;
  int k;
  if (log_rank >= 0) {
    k = snprintf(line, sizeof line, "[rank %d] ", log_rank);
    if (k > 0) n = (size_t)k;
  }
  k = snprintf(line + n, sizeof line - n, "%s%s", kind, where);
  if (k > 0) n += (size_t)k;
  if (n >= sizeof line) n = sizeof line - 1;
  k = vsnprintf(line + n, sizeof line - n, fmt, ap);
  if (k > 0) n += (size_t)k;
  if (n >= sizeof line - 1) n = sizeof line - 2;
  line[n] = '\n';
  line[n + 1] = '\0';
  dst_log_end_progress();
  fputs(line, stderr);
  fflush(stderr);
}

void dst_fatal(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  emit("error: ", "", fmt, ap);
  va_end(ap);
  exit(DST_EXIT_INPUT);
}

void dst_die_at(const char *file, int line, const char *fmt, ...) {
  char where[512];
  snprintf(where, sizeof where, "%s:%d: ", file, line);
  va_list ap;
  va_start(ap, fmt);
  emit("internal error: ", where, fmt, ap);
  va_end(ap);
  exit(DST_EXIT_INTERNAL);
}

void dst_check_failed(const char *file, int line, const char *cond, const char *fmt, ...) {
  char where[512];
  snprintf(where, sizeof where, "%s:%d: check '%s' failed: ", file, line, cond);
  va_list ap;
  va_start(ap, fmt);
  emit("internal error: ", where, fmt, ap);
  va_end(ap);
  exit(DST_EXIT_INTERNAL);
}

void dst_log_info(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  emit("", "", fmt, ap);
  va_end(ap);
}

void dst_log_warn(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  emit("warning: ", "", fmt, ap);
  va_end(ap);
}

void dst_log_error(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  emit("error: ", "", fmt, ap);
  va_end(ap);
}
