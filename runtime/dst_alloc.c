/* dst_alloc.c: the runtime's one allocation funnel, with byte accounting.
 *
 * Each block is laid out as [BlockHead, padded to DST_ALIGN][user bytes]:
 * the head remembers the size and category so dst_free can account without
 * the caller passing them, and the padding keeps the user pointer aligned.
 *
 * Invariants:
 *  - live[c] is the sum of the requested sizes of the blocks of category c
 *    not yet freed; peak[c] >= live[c] at all times, likewise for the total.
 *  - Accounted bytes are the requested sizes, not the heads or allocator
 *    overhead, because those are what the compiler's memory plan counts.
 *  - Counters are atomics so kernels running on OpenMP threads may allocate.
 *    The limit check reserves the bytes first and backs out on failure, so
 *    concurrent allocations cannot overshoot it together.
 */
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "dst.h"

enum { HEAD_BYTES = DST_ALIGN };

#define MAGIC_LIVE UINT64_C(0x647374206c697665) /* "dst live" */
#define MAGIC_FREED UINT64_C(0x6473742066726565) /* "dst free" */

typedef struct {
  uint64_t magic; /* MAGIC_LIVE while allocated, MAGIC_FREED after */
  uint64_t bytes; /* requested size, as accounted */
  uint32_t cat;   /* DstMemCat */
} BlockHead;

_Static_assert(sizeof(BlockHead) <= HEAD_BYTES, "head must fit in its padding");

static atomic_size_t live[DST_MEM_NCAT];
static atomic_size_t peak[DST_MEM_NCAT];
static atomic_size_t live_total;
static atomic_size_t peak_total;
static atomic_size_t limit_total; /* 0: no limit */

static const char *const cat_names[DST_MEM_NCAT] = {
    "params", "grads", "optim", "acts", "workspace", "data", "other",
};

const char *dst_mem_cat_name(DstMemCat cat) {
  return (unsigned)cat < DST_MEM_NCAT ? cat_names[cat] : "?";
}

/* Raises *p to at least v (a monotone max that tolerates races). */
static void raise_to(atomic_size_t *p, size_t v) {
  size_t cur = atomic_load(p);
  while (cur < v && !atomic_compare_exchange_weak(p, &cur, v)) {
  }
}

static void check_cat(DstMemCat cat, const char *tag) {
  if ((unsigned)cat >= DST_MEM_NCAT)
    dst_die("allocation '%s' has invalid memory category %d", tag ? tag : "(untagged)", (int)cat);
}

/* Allocates and accounts; NULL when the machine or the limit says no. */
static void *alloc_block(size_t bytes, DstMemCat cat) {
  if (bytes > SIZE_MAX - HEAD_BYTES) return NULL;
  size_t total = atomic_fetch_add(&live_total, bytes) + bytes;
  size_t lim = atomic_load(&limit_total);
  if (total < bytes || (lim && total > lim)) { /* wrapped, or over the cap */
    atomic_fetch_sub(&live_total, bytes);
    return NULL;
  }
  void *base = NULL;
  if (posix_memalign(&base, DST_ALIGN, HEAD_BYTES + bytes) != 0) {
    atomic_fetch_sub(&live_total, bytes);
    return NULL;
  }
  BlockHead *h = base;
  h->magic = MAGIC_LIVE;
  h->bytes = bytes;
  h->cat = (uint32_t)cat;
  size_t now = atomic_fetch_add(&live[cat], bytes) + bytes;
  raise_to(&peak[cat], now);
  raise_to(&peak_total, total);
  return (char *)base + HEAD_BYTES;
}

static _Noreturn void out_of_memory(size_t bytes, DstMemCat cat, const char *tag) {
  size_t lim = atomic_load(&limit_total);
  if (lim)
    dst_fatal("out of memory: '%s' (%s) needs %zu bytes; %zu bytes live, limit %zu",
              tag ? tag : "(untagged)", dst_mem_cat_name(cat), bytes,
              atomic_load(&live_total), lim);
  dst_fatal("out of memory: '%s' (%s) needs %zu bytes; %zu bytes live",
            tag ? tag : "(untagged)", dst_mem_cat_name(cat), bytes, atomic_load(&live_total));
}

void *dst_try_malloc(size_t bytes, DstMemCat cat, const char *tag) {
  check_cat(cat, tag);
  return alloc_block(bytes, cat);
}

void *dst_malloc(size_t bytes, DstMemCat cat, const char *tag) {
  check_cat(cat, tag);
  void *p = alloc_block(bytes, cat);
  if (!p) out_of_memory(bytes, cat, tag);
  return p;
}

void *dst_calloc(size_t n, size_t size, DstMemCat cat, const char *tag) {
  check_cat(cat, tag);
  if (size && n > SIZE_MAX / size)
    dst_fatal("out of memory: '%s' (%s) needs %zu x %zu bytes, which overflows",
              tag ? tag : "(untagged)", dst_mem_cat_name(cat), n, size);
  void *p = dst_malloc(n * size, cat, tag);
  memset(p, 0, n * size);
  return p;
}

/* The head of a block from this funnel; dies on a foreign or freed one. */
static BlockHead *head_of(void *ptr) {
  if ((uintptr_t)ptr % DST_ALIGN != 0) dst_die("dst_free of a pointer not from dst_malloc");
  BlockHead *h = (BlockHead *)((char *)ptr - HEAD_BYTES);
  if (h->magic == MAGIC_FREED) dst_die("double dst_free of a block");
  if (h->magic != MAGIC_LIVE || h->cat >= DST_MEM_NCAT)
    dst_die("dst_free of a pointer not from dst_malloc");
  return h;
}

void dst_free(void *ptr) {
  if (!ptr) return;
  BlockHead *h = head_of(ptr);
  atomic_fetch_sub(&live[h->cat], (size_t)h->bytes);
  atomic_fetch_sub(&live_total, (size_t)h->bytes);
  h->magic = MAGIC_FREED;
  free(h);
}

void *dst_realloc(void *ptr, size_t bytes, DstMemCat cat, const char *tag) {
  if (!ptr) return dst_malloc(bytes, cat, tag);
  BlockHead *h = head_of(ptr);
  size_t keep = h->bytes < bytes ? (size_t)h->bytes : bytes;
  void *q = dst_malloc(bytes, cat, tag);
  memcpy(q, ptr, keep);
  dst_free(ptr);
  return q;
}

bool dst_mem_account(DstMemCat cat, size_t bytes) {
  check_cat(cat, "device");
  size_t total = atomic_fetch_add(&live_total, bytes) + bytes;
  size_t lim = atomic_load(&limit_total);
  if (total < bytes || (lim && total > lim)) {
    atomic_fetch_sub(&live_total, bytes);
    return false;
  }
  raise_to(&peak[cat], atomic_fetch_add(&live[cat], bytes) + bytes);
  raise_to(&peak_total, total);
  return true;
}

void dst_mem_unaccount(DstMemCat cat, size_t bytes) {
  check_cat(cat, "device");
  atomic_fetch_sub(&live[cat], bytes);
  atomic_fetch_sub(&live_total, bytes);
}

size_t dst_mem_live(DstMemCat cat) {
  return (unsigned)cat < DST_MEM_NCAT ? atomic_load(&live[cat]) : 0;
}

size_t dst_mem_peak(DstMemCat cat) {
  return (unsigned)cat < DST_MEM_NCAT ? atomic_load(&peak[cat]) : 0;
}

size_t dst_mem_live_total(void) { return atomic_load(&live_total); }

size_t dst_mem_peak_total(void) { return atomic_load(&peak_total); }

void dst_mem_reset_peak(void) {
  for (int c = 0; c < DST_MEM_NCAT; c++) atomic_store(&peak[c], atomic_load(&live[c]));
  atomic_store(&peak_total, atomic_load(&live_total));
}

void dst_mem_set_limit(size_t bytes) { atomic_store(&limit_total, bytes); }

void dst_mem_report(FILE *f) {
  fprintf(f, "%-10s %14s %14s\n", "memory", "live bytes", "peak bytes");
  for (int c = 0; c < DST_MEM_NCAT; c++)
    fprintf(f, "%-10s %14zu %14zu\n", cat_names[c], dst_mem_live((DstMemCat)c),
            dst_mem_peak((DstMemCat)c));
  fprintf(f, "%-10s %14zu %14zu\n", "total", dst_mem_live_total(), dst_mem_peak_total());
}
