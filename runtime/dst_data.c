/* dst_data.c: token batches from a text file or an llm.c token shard.
 *
 * The whole file is mapped and validated once at open; dst_data_next then
 * only copies tokens. Which windows a rank reads is a pure function of
 * (pos, B, T, rank, world), documented with DstDataLoader in dst.h, so
 * every rank walks the same global sequence without communicating, and a
 * run resumed from a saved pos continues exactly where it stopped.
 *
 * Format detection: the llm.c magic in the first int32 means a shard. A
 * file that is plainly meant to be a shard but lacks the magic (named
 * *.bin as llm.c names its shards, laid out like a shard, or with the
 * magic byte-swapped) is rejected rather than silently read as text, since
 * training on the bytes of a corrupt shard would fail much later and
 * quietly. Every other file is text, one token per byte.
 *
 * Invariants after a successful open: ntokens >= T + 1, so at least one
 * window fits; B, T >= 1; 0 <= rank < world.
 */
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "dst_internal.h"

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "dst_data.c reads little-endian shards in place and needs a little-endian host"
#endif

static uint32_t le32(const unsigned char *p) {
  return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static bool ends_with(const char *s, const char *suffix) {
  size_t n = strlen(s), k = strlen(suffix);
  return n >= k && strcmp(s + n - k, suffix) == 0;
}

static bool errf(char *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static bool errf(char *err, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(err, DST_ERR_LEN, fmt, ap);
  va_end(ap);
  return false;
}

/* Decides the format and validates a shard's header against the size. */
static bool read_layout(const char *path, DstDataLoader *dl, const unsigned char *d, size_t len,
                        char *err) {
  const uint32_t magic = DST_SHARD_MAGIC;
  const uint32_t swapped = (magic >> 24) | ((magic >> 8) & 0xff00) | ((magic << 8) & 0xff0000) |
                           (magic << 24);
  uint32_t m = len >= 4 ? le32(d) : 0;
  bool shaped = len >= DST_SHARD_HEADER_BYTES && le32(d + 4) == DST_SHARD_VERSION &&
                len == DST_SHARD_HEADER_BYTES + 2 * (uint64_t)le32(d + 8);
  if (m != magic) {
    if (len >= 4 && m == swapped)
      return errf(err, "%s: token shard is big-endian (byte-swapped magic); not supported", path);
    if (ends_with(path, ".bin") || shaped)
      return errf(err, "%s: bad magic %" PRIu32 " (expected %d): not an llm.c token shard", path,
                  m, DST_SHARD_MAGIC);
    dl->format = DST_DATA_TEXT;
    dl->vocab = 256;
    dl->ntokens = len;
    dl->bytes = d;
    return true;
  }
  if (len < DST_SHARD_HEADER_BYTES)
    return errf(err, "%s: truncated token shard: %zu bytes, less than the %d-byte header", path,
                len, DST_SHARD_HEADER_BYTES);
  uint32_t version = le32(d + 4);
  if (version != DST_SHARD_VERSION)
    return errf(err, "%s: token shard version %" PRIu32 ", expected %d", path, version,
                DST_SHARD_VERSION);
  int32_t ntok = (int32_t)le32(d + 8);
  if (ntok < 0) return errf(err, "%s: token shard header has negative token count", path);
  uint64_t want = DST_SHARD_HEADER_BYTES + 2 * (uint64_t)ntok;
  if (len < want)
    return errf(err,
                "%s: truncated token shard: header says %" PRId32 " tokens (%" PRIu64
                " bytes), file has %zu bytes",
                path, ntok, want, len);
  if (len > want)
    return errf(err,
                "%s: token shard has %zu bytes, but its header says %" PRId32 " tokens (%" PRIu64
                " bytes)",
                path, len, ntok, want);
  dl->format = DST_DATA_SHARD;
  dl->vocab = 65536;
  dl->ntokens = (uint64_t)ntok;
  /* Page-aligned map plus 1024 bytes: aligned for uint16. */
  dl->tokens = (const uint16_t *)(const void *)(d + DST_SHARD_HEADER_BYTES);
  return true;
}

DstDataLoader *dst_data_open(const char *path, int B, int T, int rank, int world,
                             char err[DST_ERR_LEN]) {
  if (B < 1 || T < 1 || world < 1 || rank < 0 || rank >= world) {
    errf(err, "%s: invalid loader shape B=%d T=%d rank=%d world=%d", path, B, T, rank, world);
    return NULL;
  }
  DstMap map;
  if (!dst_map_file(path, &map, err, DST_ERR_LEN)) return NULL;
  DstDataLoader *dl = dst_try_malloc(sizeof *dl, DST_MEM_OTHER, "data.loader");
  if (!dl) {
    errf(err, "%s: out of memory", path);
    dst_unmap_file(&map);
    return NULL;
  }
  memset(dl, 0, sizeof *dl);
  dl->B = B;
  dl->T = T;
  dl->rank = rank;
  dl->world = world;
  dl->map = (void *)map.data;
  dl->map_len = map.len;
  snprintf(dl->path, sizeof dl->path, "%s", path);
  bool ok = read_layout(path, dl, map.data, map.len, err);
  if (ok && dl->ntokens < (uint64_t)T + 1)
    ok = errf(err, "%s: %" PRIu64 " tokens, but one sequence needs T+1 = %" PRIu64, path,
              dl->ntokens, (uint64_t)T + 1);
  if (!ok) {
    dst_data_close(dl);
    return NULL;
  }
  uint32_t mx = 0;
  for (uint64_t i = 0; i < dl->ntokens; i++) {
    uint32_t t = dl->format == DST_DATA_TEXT ? dl->bytes[i] : dl->tokens[i];
    if (t > mx) mx = t;
  }
  dl->max_token = mx;
  return dl;
}

void dst_data_close(DstDataLoader *dl) {
  if (!dl) return;
  DstMap map = {dl->map, dl->map_len};
  dst_unmap_file(&map);
  dst_free(dl);
}

void dst_data_next(DstDataLoader *dl, int32_t *inputs, int32_t *targets) {
  const uint64_t T = (uint64_t)dl->T, last_start = dl->ntokens - T - 1;
  const uint64_t nseq = (uint64_t)dl->B * (uint64_t)dl->world;
  const uint64_t mine = (uint64_t)dl->rank * (uint64_t)dl->B; /* first window of this rank */
  uint64_t cur = dl->pos;
  for (uint64_t k = 0; k < nseq; k++) {
    if (cur > last_start) cur = 0; /* the window would run past the end */
    if (k >= mine && k < mine + (uint64_t)dl->B) {
      int32_t *in = inputs + (k - mine) * T, *tg = targets + (k - mine) * T;
      if (dl->format == DST_DATA_TEXT) {
        const uint8_t *s = dl->bytes + cur;
        for (uint64_t t = 0; t < T; t++) {
          in[t] = s[t];
          tg[t] = s[t + 1];
        }
      } else {
        const uint16_t *s = dl->tokens + cur;
        for (uint64_t t = 0; t < T; t++) {
          in[t] = s[t];
          tg[t] = s[t + 1];
        }
      }
    }
    cur += T;
  }
  dl->pos = cur;
}

void dst_data_reset(DstDataLoader *dl) { dl->pos = 0; }

uint64_t dst_data_batches_per_epoch(const DstDataLoader *dl) {
  uint64_t windows = (dl->ntokens - 1) / (uint64_t)dl->T;
  uint64_t n = windows / ((uint64_t)dl->B * (uint64_t)dl->world);
  return n ? n : 1;
}
