/* dst_data.c: token batches from a text file or an llm.c token shard.
 *
 * The file is read, not mapped. Opening makes one streaming pass through a
 * bounded buffer (format, the largest token, the token frequencies behind
 * the unigram entropy); dst_data_next then reads only this rank's windows
 * with pread. So the loader holds O(T) bytes whatever the file's size, and
 * a file that another process truncates while training gives a located
 * error instead of killing the process with SIGBUS, as touching a mapping
 * past the new end of the file would. Which windows a rank reads is a pure
 * function of (pos, B, T, rank, world), documented with DstDataLoader in
 * dst.h, so every rank walks the same global sequence without
 * communicating, and a run resumed from a saved pos continues exactly
 * where it stopped.
 *
 * Format detection: the llm.c magic in the first int32 means a shard. A
 * file that is plainly meant to be a shard but lacks the magic (named
 * *.bin as llm.c names its shards, laid out like a shard, or with the
 * magic byte-swapped) is rejected rather than silently read as text, since
 * training on the bytes of a corrupt shard would fail much later and
 * quietly. Every other file is text, one token per byte.
 *
 * Invariants after a successful open: ntokens >= T + 1, so at least one
 * window fits; B, T >= 1; 0 <= rank < world; fd is open for reading.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "dst_internal.h"

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "dst_data.c reads little-endian shards as uint16 and needs a little-endian host"
#endif

/* Bytes per read of the streaming passes: large enough that the per-call
 * cost vanishes, small enough to be negligible next to the model. */
enum { SCAN_BYTES = 1 << 20 };

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

/* Reads exactly n bytes at byte offset off. A short read means the file
 * shrank since it was opened (reads within its size at open always
 * complete otherwise), which the message says with both sizes. */
static bool read_at(const DstDataLoader *dl, void *buf, size_t n, uint64_t off, char *err) {
  unsigned char *p = buf;
  while (n > 0) {
    ssize_t k = pread(dl->fd, p, n, (off_t)off);
    if (k < 0 && errno == EINTR) continue;
    if (k < 0) return errf(err, "%s: cannot read: %s", dl->path, strerror(errno));
    if (k == 0) {
      struct stat st;
      if (fstat(dl->fd, &st) != 0) return errf(err, "%s: cannot stat: %s", dl->path, strerror(errno));
      return errf(err,
                  "%s: the file is now %" PRIu64 " bytes, it had %" PRIu64
                  " when training started: it was truncated or replaced while training",
                  dl->path, (uint64_t)st.st_size, dl->file_bytes);
    }
    p += k;
    n -= (size_t)k;
    off += (uint64_t)k;
  }
  return true;
}

/* Decides the format from the first bytes of the file (head, hlen of
 * them) and its size len, and validates a shard's header against the size. */
static bool read_layout(const char *path, DstDataLoader *dl, const unsigned char *d, size_t hlen,
                        uint64_t len, char *err) {
  const uint32_t magic = DST_SHARD_MAGIC;
  const uint32_t swapped = (magic >> 24) | ((magic >> 8) & 0xff00) | ((magic << 8) & 0xff0000) |
                           (magic << 24);
  uint32_t m = hlen >= 4 ? le32(d) : 0;
  bool shaped = len >= DST_SHARD_HEADER_BYTES && hlen >= 12 && le32(d + 4) == DST_SHARD_VERSION &&
                len == DST_SHARD_HEADER_BYTES + 2 * (uint64_t)le32(d + 8);
  if (m != magic) {
    if (hlen >= 4 && m == swapped)
      return errf(err, "%s: token shard is big-endian (byte-swapped magic); not supported", path);
    if (ends_with(path, ".bin") || shaped)
      return errf(err, "%s: bad magic %" PRIu32 " (expected %d): not an llm.c token shard", path,
                  m, DST_SHARD_MAGIC);
    dl->format = DST_DATA_TEXT;
    dl->vocab = 256;
    dl->ntokens = len;
    dl->data_offset = 0;
    dl->token_bytes = 1;
    return true;
  }
  if (len < DST_SHARD_HEADER_BYTES)
    return errf(err, "%s: truncated token shard: %" PRIu64 " bytes, less than the %d-byte header",
                path, len, DST_SHARD_HEADER_BYTES);
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
                " bytes), file has %" PRIu64 " bytes",
                path, ntok, want, len);
  if (len > want)
    return errf(err,
                "%s: token shard has %" PRIu64 " bytes, but its header says %" PRId32
                " tokens (%" PRIu64 " bytes)",
                path, len, ntok, want);
  dl->format = DST_DATA_SHARD;
  dl->vocab = 65536;
  dl->ntokens = (uint64_t)ntok;
  dl->data_offset = DST_SHARD_HEADER_BYTES;
  dl->token_bytes = 2;
  return true;
}

static uint32_t token_at(const DstDataLoader *dl, const unsigned char *p, uint64_t i) {
  if (dl->token_bytes == 1) return p[i];
  uint16_t v;
  memcpy(&v, p + 2 * i, 2);
  return v;
}

/* Calls visit(dl, tokens, first token index, count, ctx) over the whole
 * file, SCAN_BYTES at a time; stops early when visit returns false. */
static bool scan(const DstDataLoader *dl, bool (*visit)(const DstDataLoader *, const unsigned char *,
                                                        uint64_t, uint64_t, void *),
                 void *ctx, char *err) {
  unsigned char *buf = dst_try_malloc(SCAN_BYTES, DST_MEM_OTHER, "data scan");
  if (!buf) return errf(err, "%s: out of memory", dl->path);
  uint64_t per = SCAN_BYTES / dl->token_bytes;
  bool ok = true;
  for (uint64_t i = 0; ok && i < dl->ntokens; i += per) {
    uint64_t n = dl->ntokens - i < per ? dl->ntokens - i : per;
    ok = read_at(dl, buf, (size_t)(n * dl->token_bytes), dl->data_offset + i * dl->token_bytes, err);
    if (ok && !visit(dl, buf, i, n, ctx)) break;
  }
  dst_free(buf);
  return ok;
}

static bool count_tokens(const DstDataLoader *dl, const unsigned char *p, uint64_t first, uint64_t n,
                         void *ctx) {
  (void)first;
  uint64_t *count = ctx;
  for (uint64_t i = 0; i < n; i++) count[token_at(dl, p, i)]++;
  return true;
}

DstDataLoader *dst_data_open(const char *path, int B, int T, int rank, int world,
                             char err[DST_ERR_LEN]) {
  if (B < 1 || T < 1 || world < 1 || rank < 0 || rank >= world) {
    errf(err, "%s: invalid loader shape B=%d T=%d rank=%d world=%d", path, B, T, rank, world);
    return NULL;
  }
  /* O_NONBLOCK: opening a FIFO must not wait for a writer (it is then
   * refused below); it changes nothing for regular files. */
  int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0) {
    errf(err, "%s: cannot open: %s", path, strerror(errno));
    return NULL;
  }
  struct stat st;
  if (fstat(fd, &st) != 0) {
    errf(err, "%s: cannot stat: %s", path, strerror(errno));
    close(fd);
    return NULL;
  }
  if (!S_ISREG(st.st_mode)) {
    errf(err, "%s: not a regular file", path);
    close(fd);
    return NULL;
  }
  DstDataLoader *dl = dst_try_malloc(sizeof *dl, DST_MEM_OTHER, "data.loader");
  if (!dl) {
    errf(err, "%s: out of memory", path);
    close(fd);
    return NULL;
  }
  memset(dl, 0, sizeof *dl);
  dl->B = B;
  dl->T = T;
  dl->rank = rank;
  dl->world = world;
  dl->fd = fd;
  dl->file_bytes = (uint64_t)st.st_size;
  snprintf(dl->path, sizeof dl->path, "%s", path);
  unsigned char head[DST_SHARD_HEADER_BYTES];
  size_t hlen = dl->file_bytes < sizeof head ? (size_t)dl->file_bytes : sizeof head;
  bool ok = read_at(dl, head, hlen, 0, err) && read_layout(path, dl, head, hlen, dl->file_bytes, err);
  if (ok && dl->ntokens < (uint64_t)T + 1)
    ok = errf(err, "%s: %" PRIu64 " tokens, but one sequence needs T+1 = %" PRIu64, path,
              dl->ntokens, (uint64_t)T + 1);
  uint64_t *count = NULL;
  if (ok) {
    count = dst_try_malloc(sizeof(uint64_t) * dl->vocab, DST_MEM_OTHER, "token counts");
    if (!count) ok = errf(err, "%s: out of memory", path);
  }
  if (ok) {
    memset(count, 0, sizeof(uint64_t) * dl->vocab);
    ok = scan(dl, count_tokens, count, err);
  }
  if (ok) {
    double h = 0;
    for (uint32_t v = 0; v < dl->vocab; v++)
      if (count[v]) {
        double p = (double)count[v] / (double)dl->ntokens;
        h -= p * log(p);
        dl->max_token = v;
      }
    dl->entropy = h;
    dl->window = dst_try_malloc(((size_t)T + 1) * dl->token_bytes, DST_MEM_OTHER, "data window");
    if (!dl->window) ok = errf(err, "%s: out of memory", path);
  }
  dst_free(count);
  if (!ok) {
    dst_data_close(dl);
    return NULL;
  }
  return dl;
}

void dst_data_close(DstDataLoader *dl) {
  if (!dl) return;
  close(dl->fd);
  dst_free(dl->window);
  dst_free(dl);
}

bool dst_data_next(DstDataLoader *dl, int32_t *inputs, int32_t *targets, char err[DST_ERR_LEN]) {
  const uint64_t T = (uint64_t)dl->T, last_start = dl->ntokens - T - 1;
  const uint64_t nseq = (uint64_t)dl->B * (uint64_t)dl->world;
  const uint64_t mine = (uint64_t)dl->rank * (uint64_t)dl->B; /* first window of this rank */
  uint64_t cur = dl->pos;
  for (uint64_t k = 0; k < nseq; k++) {
    if (cur > last_start) cur = 0; /* the window would run past the end */
    if (k >= mine && k < mine + (uint64_t)dl->B) {
      int32_t *in = inputs + (k - mine) * T, *tg = targets + (k - mine) * T;
      if (!read_at(dl, dl->window, (size_t)((T + 1) * dl->token_bytes),
                   dl->data_offset + cur * dl->token_bytes, err))
        return false;
      for (uint64_t t = 0; t < T; t++) {
        in[t] = (int32_t)token_at(dl, dl->window, t);
        tg[t] = (int32_t)token_at(dl, dl->window, t + 1);
      }
    }
    cur += T;
  }
  dl->pos = cur;
  return true;
}

typedef struct {
  uint32_t limit, value;
  uint64_t at; /* UINT64_MAX: not found yet */
} IdSearch;

static bool find_id(const DstDataLoader *dl, const unsigned char *p, uint64_t first, uint64_t n,
                    void *ctx) {
  IdSearch *s = ctx;
  for (uint64_t i = 0; i < n; i++) {
    uint32_t v = token_at(dl, p, i);
    if (v >= s->limit) {
      s->value = v;
      s->at = first + i;
      return false;
    }
  }
  return true;
}

bool dst_data_check_ids(const DstDataLoader *dl, uint32_t limit, const char *reader,
                        char err[DST_ERR_LEN]) {
  if (dl->max_token < limit) return true;
  IdSearch s = {limit, 0, UINT64_MAX};
  if (!scan(dl, find_id, &s, err)) return false;
  if (s.at == UINT64_MAX) /* the file changed under us; the batches will say so */
    return true;
  return errf(err,
              "%s: token %" PRIu32 " at token offset %" PRIu64
              " is outside the model's vocabulary: %s takes ids below %" PRIu32,
              dl->path, s.value, s.at, reader, limit);
}

void dst_data_reset(DstDataLoader *dl) { dl->pos = 0; }

uint64_t dst_data_batches_per_epoch(const DstDataLoader *dl) {
  uint64_t windows = (dl->ntokens - 1) / (uint64_t)dl->T;
  uint64_t n = windows / ((uint64_t)dl->B * (uint64_t)dl->world);
  return n ? n : 1;
}
