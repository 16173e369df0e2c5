/* diag.c: the diagnostic sink.
 *
 * Diagnostics are data: collected while compiling, printed at the end in the
 * order they were reported, as
 *     file:line:col: error: message
 *      12 |     x = a @ b;
 *         |         ^~~~~
 * followed by notes at related locations. Line tables are computed only for
 * files that get a diagnostic. After DST_MAX_ERRORS errors further errors are
 * dropped and one "too many errors" line is printed. */
#include <string.h>

#include "dstc.h"

void diag_init(DiagSink *d, Arena *a) {
  memset(d, 0, sizeof *d);
  d->arena = a;
  SrcFile none = {.path = "<none>", .text = "", .len = 0};
  ARENA_PUSH(a, d->files, d->nfiles, d->capfiles, none);
}

uint32_t diag_add_file(DiagSink *d, const char *path, const char *text, uint32_t len) {
  SrcFile f = {.path = arena_strdup(d->arena, path), .text = text, .len = len};
  ARENA_PUSH(d->arena, d->files, d->nfiles, d->capfiles, f);
  return (uint32_t)(d->nfiles - 1);
}

static Diag *add(DiagSink *d, Severity sev, Loc loc, const char *fmt, va_list ap) {
  if (sev == SEV_WARNING && d->werror) sev = SEV_ERROR;
  char *msg = arena_vprintf(d->arena, fmt, ap);
  for (Diag *o = d->head; o; o = o->next)
    if (o->sev == sev && o->loc.file == loc.file && o->loc.begin == loc.begin && !strcmp(o->msg, msg))
      return NULL;
  if (sev == SEV_ERROR) {
    if (d->nerrors >= DST_MAX_ERRORS) {
      d->overflowed = true;
      d->nerrors++;
      return NULL;
    }
    d->nerrors++;
  } else {
    d->nwarnings++;
  }
  Diag *g = arena_alloc(d->arena, sizeof *g);
  g->sev = sev;
  g->loc = loc;
  g->msg = msg;
  if (d->tail) d->tail->next = g;
  else d->head = g;
  d->tail = g;
  return g;
}

Diag *diag_error(DiagSink *d, Loc loc, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  Diag *g = add(d, SEV_ERROR, loc, fmt, ap);
  va_end(ap);
  return g;
}

Diag *diag_warning(DiagSink *d, Loc loc, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  Diag *g = add(d, SEV_WARNING, loc, fmt, ap);
  va_end(ap);
  return g;
}

void diag_note(DiagSink *d, Diag *g, Loc loc, const char *fmt, ...) {
  if (!g) return;
  DiagNote *n = arena_alloc(d->arena, sizeof *n);
  va_list ap;
  va_start(ap, fmt);
  n->msg = arena_vprintf(d->arena, fmt, ap);
  va_end(ap);
  n->loc = loc;
  DiagNote **p = &g->notes;
  while (*p) p = &(*p)->next;
  *p = n;
}

bool diag_failed(const DiagSink *d) { return d->nerrors > 0; }

const char *diag_source_text(DiagSink *d, Loc loc) {
  if (!loc.file || loc.file >= (uint32_t)d->nfiles) return "the unit count";
  SrcFile *f = &d->files[loc.file];
  uint32_t b = loc.begin < f->len ? loc.begin : f->len;
  uint32_t e = loc.end < f->len ? loc.end : f->len;
  if (e - b > 80) e = b + 80;
  return arena_strndup(d->arena, f->text + b, e - b);
}

static void build_lines(DiagSink *d, SrcFile *f) {
  if (f->lines) return;
  uint32_t n = 1;
  for (uint32_t i = 0; i < f->len; i++) n += f->text[i] == '\n';
  f->lines = arena_alloc(d->arena, sizeof(uint32_t) * (n + 1));
  uint32_t k = 0;
  f->lines[k++] = 0;
  for (uint32_t i = 0; i < f->len; i++)
    if (f->text[i] == '\n') f->lines[k++] = i + 1;
  f->nlines = n;
  (void)d;
}

static uint32_t line_index(SrcFile *f, uint32_t off) {
  uint32_t lo = 0, hi = f->nlines; /* last line start <= off */
  while (hi - lo > 1) {
    uint32_t mid = lo + (hi - lo) / 2;
    if (f->lines[mid] <= off) lo = mid;
    else hi = mid;
  }
  return lo;
}

/* Length of the valid UTF-8 sequence at p (1-4), or 0 if invalid.
 * Rejects overlong forms, surrogates and code points above U+10FFFF. */
int utf8_seq_len(const unsigned char *p) {
  unsigned c = p[0];
  if (c < 0x80) return 1;
  if (c >= 0xC2 && c <= 0xDF) return (p[1] & 0xC0) == 0x80 ? 2 : 0;
  if (c >= 0xE0 && c <= 0xEF) {
    if ((p[1] & 0xC0) != 0x80 || (p[2] & 0xC0) != 0x80) return 0;
    if (c == 0xE0 && p[1] < 0xA0) return 0;
    if (c == 0xED && p[1] >= 0xA0) return 0;
    return 3;
  }
  if (c >= 0xF0 && c <= 0xF4) {
    if ((p[1] & 0xC0) != 0x80 || (p[2] & 0xC0) != 0x80 || (p[3] & 0xC0) != 0x80) return 0;
    if (c == 0xF0 && p[1] < 0x90) return 0;
    if (c == 0xF4 && p[1] >= 0x90) return 0;
    return 4;
  }
  return 0;
}

/* Display width of the bytes [b, e): one column per valid UTF-8 sequence
 * and one per invalid byte, the way the snippet printer shows them. */
static int columns(const char *b, const char *e) {
  int c = 0;
  const unsigned char *p = (const unsigned char *)b;
  while (p < (const unsigned char *)e) {
    int n = utf8_seq_len(p);
    p += n ? n : 1;
    c++;
  }
  return c;
}

void diag_linecol(DiagSink *d, uint32_t file, uint32_t off, int *line, int *col) {
  SrcFile *f = &d->files[file];
  build_lines(d, f);
  if (off > f->len) off = f->len;
  uint32_t li = line_index(f, off);
  *line = (int)li + 1;
  /* Columns count UTF-8 characters, so carets line up under the text. */
  *col = 1 + columns(f->text + f->lines[li], f->text + off);
}

/* Prints one source line with non-printable bytes shown as '?', so a binary
 * file cannot garble the terminal, then the caret and underline. */
static void print_snippet(DiagSink *d, FILE *out, Loc loc, bool color) {
  SrcFile *f = &d->files[loc.file];
  build_lines(d, f);
  uint32_t off = loc.begin > f->len ? f->len : loc.begin;
  uint32_t li = line_index(f, off);
  uint32_t start = f->lines[li];
  uint32_t end = start;
  while (end < f->len && f->text[end] != '\n') end++;
  /* Long lines (minified or binary input) are clipped around the caret. */
  uint32_t clip = start;
  if (off - start > 100) clip = off - 60;
  uint32_t stop = end;
  if (stop - clip > 160) stop = clip + 160;
  fprintf(out, "%5u | ", li + 1);
  if (clip > start) fputs("...", out);
  for (uint32_t i = clip; i < stop;) {
    const unsigned char *p = (const unsigned char *)f->text + i;
    int n = utf8_seq_len(p);
    /* Only printable characters reach the terminal: controls, C1 controls
     * (U+0080-U+009F, which include CSI) and invalid bytes become '?'. */
    if (n == 1) fputc(*p == '\t' ? ' ' : (*p >= 0x20 && *p != 0x7f) ? *p : '?', out);
    else if (n == 2 && p[0] == 0xC2 && p[1] < 0xA0) fputc('?', out);
    else if (n > 1) fwrite(p, 1, (size_t)n, out);
    else fputc('?', out);
    i += n ? (uint32_t)n : 1;
  }
  if (stop < end) fputs("...", out);
  fputs("\n      | ", out);
  if (clip > start) fputs("   ", out);
  for (int c = columns(f->text + clip, f->text + off); c > 0; c--) fputc(' ', out);
  if (color) fputs("\033[1;32m", out);
  fputc('^', out);
  uint32_t uend = loc.end < stop ? loc.end : stop;
  if (uend > off + 1)
    for (int c = columns(f->text + off, f->text + uend) - 1; c > 0; c--) fputc('~', out);
  if (color) fputs("\033[0m", out);
  fputc('\n', out);
}

static void print_one(DiagSink *d, FILE *out, Severity sev, Loc loc, const char *msg, bool color) {
  static const char *names[] = {"error", "warning", "note"};
  static const char *colors[] = {"\033[1;31m", "\033[1;35m", "\033[1;36m"};
  if (loc.file) {
    int line, col;
    diag_linecol(d, loc.file, loc.begin, &line, &col);
    fprintf(out, "%s:%d:%d: ", d->files[loc.file].path, line, col);
  } else {
    fputs("dstc: ", out);
  }
  if (color) fprintf(out, "%s%s:\033[0m ", colors[sev], names[sev]);
  else fprintf(out, "%s: ", names[sev]);
  fprintf(out, "%s\n", msg);
  if (loc.file) print_snippet(d, out, loc, color);
}

void diag_print(DiagSink *d, FILE *out, bool color) {
  for (Diag *g = d->head; g; g = g->next) {
    print_one(d, out, g->sev, g->loc, g->msg, color);
    for (DiagNote *n = g->notes; n; n = n->next) print_one(d, out, SEV_NOTE, n->loc, n->msg, color);
  }
  if (d->overflowed)
    fprintf(out, "dstc: error: too many errors (%d); stopping after the first %d\n", d->nerrors,
            DST_MAX_ERRORS);
}

/* Optimal-string-alignment distance: insertions, deletions, substitutions
 * and transpositions of neighbours (so "bf61" is one edit from "bf16"). */
int edit_distance(const char *a, const char *b) {
  size_t n = strlen(a), m = strlen(b);
  if (n > 64 || m > 64) return 1000;
  int rows[3][65];
  int *pp = rows[0], *prev = rows[1], *cur = rows[2];
  for (size_t j = 0; j <= m; j++) prev[j] = (int)j;
  for (size_t i = 1; i <= n; i++) {
    cur[0] = (int)i;
    for (size_t j = 1; j <= m; j++) {
      int best = prev[j - 1] + (a[i - 1] != b[j - 1]);
      if (prev[j] + 1 < best) best = prev[j] + 1;
      if (cur[j - 1] + 1 < best) best = cur[j - 1] + 1;
      if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] && pp[j - 2] + 1 < best)
        best = pp[j - 2] + 1;
      cur[j] = best;
    }
    int *t = pp;
    pp = prev;
    prev = cur;
    cur = t;
  }
  return prev[m];
}

const char *closest_name(const char *name, const char *const *cands, int n) {
  const char *best = NULL;
  int bestd = 1000;
  size_t len = strlen(name);
  int limit = len <= 3 ? 1 : len <= 6 ? 2 : 3;
  for (int i = 0; i < n; i++) {
    int dd = edit_distance(name, cands[i]);
    if (dd < bestd) {
      bestd = dd;
      best = cands[i];
    }
  }
  return bestd <= limit ? best : NULL;
}
