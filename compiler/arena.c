/* arena.c: the compiler's one allocation funnel.
 *
 * Memory comes in chunks that are freed together by arena_free; nothing is
 * freed individually. Allocations are zeroed and 16-byte aligned. Running out
 * of memory is an internal error (die), never undefined behaviour. */
#include <stdlib.h>
#include <string.h>

#include "dstc.h"

struct ArenaChunk {
  ArenaChunk *next;
  size_t size, used;
  _Alignas(16) unsigned char data[];
};

enum { CHUNK_MIN = 1 << 16 };

void arena_init(Arena *a) { memset(a, 0, sizeof *a); }

void arena_free(Arena *a) {
  ArenaChunk *c = a->head;
  while (c) {
    ArenaChunk *n = c->next;
    free(c);
    c = n;
  }
  a->head = NULL;
  a->used = 0;
}

void *arena_alloc(Arena *a, size_t n) {
  n = (n + 15) & ~(size_t)15;
  if (n == 0) n = 16;
  ArenaChunk *c = a->head;
  if (!c || c->size - c->used < n) {
    size_t size = n > CHUNK_MIN ? n : CHUNK_MIN;
    /* Grow chunk sizes geometrically so big inputs need few chunks. */
    if (c && c->size * 2 > size && c->size < (64u << 20)) size = c->size * 2;
    c = malloc(sizeof *c + size);
    if (!c) die("out of memory allocating %zu bytes", size);
    c->size = size;
    c->used = 0;
    c->next = a->head;
    a->head = c;
  }
  void *p = c->data + c->used;
  c->used += n;
  a->used += n;
  memset(p, 0, n);
  return p;
}

char *arena_strndup(Arena *a, const char *s, size_t n) {
  char *p = arena_alloc(a, n + 1);
  memcpy(p, s, n);
  p[n] = 0;
  return p;
}

char *arena_strdup(Arena *a, const char *s) { return arena_strndup(a, s, strlen(s)); }

char *arena_vprintf(Arena *a, const char *fmt, va_list ap) {
  va_list ap2;
  va_copy(ap2, ap);
  int n = vsnprintf(NULL, 0, fmt, ap2);
  va_end(ap2);
  if (n < 0) die("bad format string");
  char *p = arena_alloc(a, (size_t)n + 1);
  vsnprintf(p, (size_t)n + 1, fmt, ap);
  return p;
}

char *arena_printf(Arena *a, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  char *p = arena_vprintf(a, fmt, ap);
  va_end(ap);
  return p;
}

void arena_grow(Arena *a, void **v, int *cap, int n, size_t elem) {
  if (n < *cap) return;
  int ncap = *cap ? *cap * 2 : 8;
  void *nv = arena_alloc(a, (size_t)ncap * elem);
  if (n) memcpy(nv, *v, (size_t)n * elem);
  *v = nv;
  *cap = ncap;
}

_Noreturn void die_at(const char *file, int line, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fprintf(stderr, "dstc: internal error at %s:%d: ", file, line);
  vfprintf(stderr, fmt, ap);
  fputs("\n(this is a bug in dstc; please report it with the input)\n", stderr);
  va_end(ap);
  exit(EXIT_INTERNAL);
}
