/* dst_safetensors.c: reading and writing the safetensors format.
 *
 * Layout of a file: an 8-byte little-endian header length N, N bytes of
 * JSON (an object mapping tensor names to {"dtype", "shape",
 * "data_offsets": [begin, end]}, plus an optional "__metadata__" object of
 * strings), then the data section; offsets are relative to its start.
 *
 * The reader treats files as untrusted. After dst_st_open succeeds these
 * hold, so later calls never re-check them:
 *  - every tensor has a known dtype, 0..DST_TENSOR_MAX_DIMS dims >= 0, and
 *    end - begin == dtype size * product of dims, with end within the data;
 *  - non-empty tensors neither overlap nor leave unused bytes between them
 *    or at the end of the data (as the format requires);
 *  - names are unique, valid UTF-8 without NUL bytes.
 * The reader never exits; every failure is one message in the caller's
 * buffer, prefixed with the path when it is about the file.
 *
 * The writer keeps pointers to the caller's data (checkpoints are large;
 * copying them would double the memory of the save) and writes through a
 * temporary file renamed into place, so readers never see a partial file.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "dst_internal.h"

/* --------------------------------------------------------------- dtypes */

static const struct {
  const char *name;
  size_t size;
} dtypes[DST_DT_COUNT] = {
    [DST_DT_F64] = {"F64", 8},          [DST_DT_F32] = {"F32", 4},
    [DST_DT_F16] = {"F16", 2},          [DST_DT_BF16] = {"BF16", 2},
    [DST_DT_F8_E4M3] = {"F8_E4M3", 1},  [DST_DT_F8_E5M2] = {"F8_E5M2", 1},
    [DST_DT_I64] = {"I64", 8},          [DST_DT_I32] = {"I32", 4},
    [DST_DT_I16] = {"I16", 2},          [DST_DT_I8] = {"I8", 1},
    [DST_DT_U64] = {"U64", 8},          [DST_DT_U32] = {"U32", 4},
    [DST_DT_U16] = {"U16", 2},          [DST_DT_U8] = {"U8", 1},
    [DST_DT_BOOL] = {"BOOL", 1},
};

const char *dst_dtype_name(DstDtype dt) {
  return (unsigned)dt < DST_DT_COUNT ? dtypes[dt].name : "?";
}

size_t dst_dtype_size(DstDtype dt) { return (unsigned)dt < DST_DT_COUNT ? dtypes[dt].size : 0; }

bool dst_dtype_parse(const char *name, DstDtype *out) {
  for (int i = 0; i < DST_DT_COUNT; i++)
    if (strcmp(name, dtypes[i].name) == 0) {
      *out = (DstDtype)i;
      return true;
    }
  return false;
}

/* Writes "[d0,d1,...]" into buf (cut if too long: it is only a message). */
static void format_shape(char *buf, size_t cap, const int64_t *shape, int ndim) {
  size_t n = (size_t)snprintf(buf, cap, "[");
  for (int i = 0; i < ndim && n < cap; i++)
    n += (size_t)snprintf(buf + n, cap - n, "%s%" PRId64, i ? "," : "", shape[i]);
  if (n < cap) snprintf(buf + n, cap - n, "]");
}

/* Bytes of a tensor of this dtype and shape; false on overflow. */
static bool tensor_bytes(DstDtype dt, const int64_t *shape, int ndim, uint64_t *out) {
  uint64_t n = dst_dtype_size(dt);
  for (int i = 0; i < ndim; i++) {
    uint64_t d = (uint64_t)shape[i];
    if (d && n > UINT64_MAX / d) return false;
    n *= d;
  }
  *out = n;
  return true;
}

/* --------------------------------------------------------------- reader */

typedef struct {
  const char *key, *value;
} MetaEntry;

struct DstSafetensors {
  DstMap map;
  char *pool;           /* the parsed header's strings: names, metadata */
  DstStTensor *tensors; /* in header order */
  size_t n;
  const DstStTensor **by_name; /* tensors sorted by name, for lookup */
  MetaEntry *meta;      /* sorted by key */
  size_t nmeta;
};

static int cmp_meta(const void *a, const void *b) {
  return strcmp(((const MetaEntry *)a)->key, ((const MetaEntry *)b)->key);
}

/* Both sort arrays of tensor pointers (qsort has no context argument). */
static int cmp_name(const void *a, const void *b) {
  return strcmp((*(const DstStTensor *const *)a)->name, (*(const DstStTensor *const *)b)->name);
}

static int cmp_range(const void *a, const void *b) {
  const DstStTensor *x = *(const DstStTensor *const *)a, *y = *(const DstStTensor *const *)b;
  if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
  if (x->end != y->end) return x->end < y->end ? -1 : 1;
  return 0;
}

static bool errf(char *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static bool errf(char *err, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(err, DST_ERR_LEN, fmt, ap);
  va_end(ap);
  return false;
}

/* Fills t from the JSON object node v describing tensor `name`. */
static bool read_tensor(const char *path, const DstJson *j, const DstJsonNode *v, const char *name,
                        uint64_t data_len, DstStTensor *t, char *err) {
  if (v->kind != DST_JSON_OBJECT)
    return errf(err, "%s: tensor '%s': description is not a JSON object", path, name);
  const DstJsonNode *dt = NULL, *shape = NULL, *offs = NULL;
  for (uint32_t c = v->first; c; c = j->nodes[c].next) {
    const DstJsonNode *f = &j->nodes[c];
    const char *key = dst_json_key(j, f);
    const DstJsonNode **slot = strcmp(key, "dtype") == 0          ? &dt
                               : strcmp(key, "shape") == 0        ? &shape
                               : strcmp(key, "data_offsets") == 0 ? &offs
                                                                  : NULL;
    if (!slot) return errf(err, "%s: tensor '%s': unknown field '%s'", path, name, key);
    if (*slot) return errf(err, "%s: tensor '%s': duplicate field '%s'", path, name, key);
    *slot = f;
  }
  if (!dt) return errf(err, "%s: tensor '%s': missing field 'dtype'", path, name);
  if (!shape) return errf(err, "%s: tensor '%s': missing field 'shape'", path, name);
  if (!offs) return errf(err, "%s: tensor '%s': missing field 'data_offsets'", path, name);

  if (dt->kind != DST_JSON_STRING)
    return errf(err, "%s: tensor '%s': dtype is not a string", path, name);
  if (!dst_dtype_parse(dst_json_str(j, dt), &t->dtype))
    return errf(err, "%s: tensor '%s': unknown dtype '%s'", path, name, dst_json_str(j, dt));

  if (shape->kind != DST_JSON_ARRAY)
    return errf(err, "%s: tensor '%s': shape is not an array", path, name);
  if (shape->count > DST_TENSOR_MAX_DIMS)
    return errf(err, "%s: tensor '%s': %u dimensions, at most %d supported", path, name,
                shape->count, DST_TENSOR_MAX_DIMS);
  t->ndim = 0;
  for (uint32_t c = shape->first; c; c = j->nodes[c].next) {
    const DstJsonNode *d = &j->nodes[c];
    if (d->kind != DST_JSON_INT || d->num < 0)
      return errf(err, "%s: tensor '%s': shape entries must be integers >= 0", path, name);
    t->shape[t->ndim++] = d->num;
  }

  if (offs->kind != DST_JSON_ARRAY || offs->count != 2)
    return errf(err, "%s: tensor '%s': data_offsets must be an array [begin, end]", path, name);
  const DstJsonNode *b = &j->nodes[offs->first], *e = &j->nodes[b->next];
  if (b->kind != DST_JSON_INT || e->kind != DST_JSON_INT || b->num < 0 || e->num < 0)
    return errf(err, "%s: tensor '%s': data_offsets must be integers >= 0", path, name);
  t->begin = (uint64_t)b->num;
  t->end = (uint64_t)e->num;
  if (t->begin > t->end || t->end > data_len)
    return errf(err,
                "%s: tensor '%s': data_offsets [%" PRIu64 ",%" PRIu64
                "] out of bounds (data section is %" PRIu64 " bytes)",
                path, name, t->begin, t->end, data_len);
  uint64_t need = 0;
  char sh[96];
  format_shape(sh, sizeof sh, t->shape, t->ndim);
  if (!tensor_bytes(t->dtype, t->shape, t->ndim, &need))
    return errf(err, "%s: tensor '%s': size of %s %s overflows", path, name,
                dst_dtype_name(t->dtype), sh);
  if (need != t->end - t->begin)
    return errf(err,
                "%s: tensor '%s': data_offsets [%" PRIu64 ",%" PRIu64 "] hold %" PRIu64
                " bytes, but %s %s needs %" PRIu64,
                path, name, t->begin, t->end, t->end - t->begin, dst_dtype_name(t->dtype), sh,
                need);
  return true;
}

/* Reads the __metadata__ object v into st->meta. */
static bool read_metadata(const char *path, const DstJson *j, const DstJsonNode *v,
                          DstSafetensors *st, char *err) {
  if (v->kind != DST_JSON_OBJECT)
    return errf(err, "%s: __metadata__ is not a JSON object", path);
  if (v->count == 0) return true;
  st->meta = dst_try_malloc(v->count * sizeof *st->meta, DST_MEM_OTHER, "safetensors.meta");
  if (!st->meta) return errf(err, "%s: out of memory for the metadata", path);
  for (uint32_t c = v->first; c; c = j->nodes[c].next) {
    const DstJsonNode *f = &j->nodes[c];
    if (f->kind != DST_JSON_STRING)
      return errf(err, "%s: __metadata__ value of '%s' is not a string", path, dst_json_key(j, f));
    st->meta[st->nmeta++] = (MetaEntry){dst_json_key(j, f), dst_json_str(j, f)};
  }
  qsort(st->meta, st->nmeta, sizeof *st->meta, cmp_meta);
  for (size_t i = 1; i < st->nmeta; i++)
    if (strcmp(st->meta[i - 1].key, st->meta[i].key) == 0)
      return errf(err, "%s: duplicate key '%s' in __metadata__", path, st->meta[i].key);
  return true;
}

/* Checks names and the tiling of the data section; builds by_name. */
static bool check_layout(const char *path, DstSafetensors *st, uint64_t data_len, char *err) {
  size_t n = st->n;
  const DstStTensor **order = dst_try_malloc(n * sizeof *order, DST_MEM_OTHER, "safetensors.order");
  st->by_name = dst_try_malloc(n * sizeof *st->by_name, DST_MEM_OTHER, "safetensors.index");
  if (!order || !st->by_name) {
    dst_free(order);
    return errf(err, "%s: out of memory for the tensor index", path);
  }
  for (size_t i = 0; i < n; i++) order[i] = st->by_name[i] = &st->tensors[i];
  qsort(st->by_name, n, sizeof *st->by_name, cmp_name);
  qsort(order, n, sizeof *order, cmp_range);
  bool ok = true;
  for (size_t i = 1; i < n && ok; i++)
    if (strcmp(st->by_name[i - 1]->name, st->by_name[i]->name) == 0)
      ok = errf(err, "%s: duplicate tensor name '%s'", path, st->by_name[i]->name);
  uint64_t cursor = 0;
  const DstStTensor *prev = NULL;
  for (size_t i = 0; i < n && ok; i++) {
    const DstStTensor *t = order[i];
    if (t->begin == t->end) continue; /* empty tensors occupy no bytes */
    if (t->begin < cursor)
      ok = errf(err,
                "%s: tensors '%s' [%" PRIu64 ",%" PRIu64 ") and '%s' [%" PRIu64 ",%" PRIu64
                ") overlap",
                path, prev->name, prev->begin, prev->end, t->name, t->begin, t->end);
    else if (t->begin > cursor)
      ok = errf(err, "%s: data bytes [%" PRIu64 ",%" PRIu64 ") before tensor '%s' are unused",
                path, cursor, t->begin, t->name);
    cursor = t->end;
    prev = t;
  }
  if (ok && cursor != data_len)
    ok = errf(err, "%s: the last %" PRIu64 " bytes of the data section belong to no tensor",
              path, data_len - cursor);
  dst_free(order);
  return ok;
}

/* Parses and validates everything after the file is mapped. */
static bool load_header(const char *path, DstSafetensors *st, char *err) {
  const unsigned char *d = st->map.data;
  size_t len = st->map.len;
  if (len < 8)
    return errf(err, "%s: file of %zu bytes is too short for a safetensors header", path, len);
  uint64_t hlen = 0;
  for (int i = 7; i >= 0; i--) hlen = hlen << 8 | d[i];
  if (hlen > DST_ST_MAX_HEADER)
    return errf(err, "%s: header length %" PRIu64 " exceeds the limit of %u bytes", path, hlen,
                DST_ST_MAX_HEADER);
  if (hlen > len - 8)
    return errf(err, "%s: header length %" PRIu64 " runs past the end of the file (%zu bytes)",
                path, hlen, len);
  uint64_t data_len = len - 8 - hlen;

  DstJson j;
  char jerr[DST_ERR_LEN];
  /* A few values per tensor; 8M values allows hundreds of thousands of
   * tensors while bounding the memory a hostile header can claim. */
  if (!dst_json_parse(&j, (const char *)d + 8, (size_t)hlen, 1u << 23, jerr, sizeof jerr))
    return errf(err, "%s: malformed JSON header: %s", path, jerr);
  /* Names and metadata point into the string pool, so st takes it over
   * (freed by close); the nodes are freed below. */
  st->pool = j.pool;
  bool ok = true;
  const DstJsonNode *root = &j.nodes[0];
  if (root->kind != DST_JSON_OBJECT) ok = errf(err, "%s: header is not a JSON object", path);
  if (ok && root->count) {
    st->tensors = dst_try_malloc(root->count * sizeof *st->tensors, DST_MEM_OTHER,
                                 "safetensors.tensors");
    if (!st->tensors) ok = errf(err, "%s: out of memory for %u tensors", path, root->count);
  }
  bool seen_meta = false;
  for (uint32_t c = ok ? root->first : 0; c && ok; c = j.nodes[c].next) {
    const DstJsonNode *m = &j.nodes[c];
    const char *name = dst_json_key(&j, m);
    if (strcmp(name, "__metadata__") == 0) {
      if (seen_meta) ok = errf(err, "%s: duplicate '__metadata__'", path);
      else ok = read_metadata(path, &j, m, st, err);
      seen_meta = true;
      continue;
    }
    if (strlen(name) != m->key_len) {
      ok = errf(err, "%s: a tensor name contains a NUL byte", path);
      break;
    }
    DstStTensor *t = &st->tensors[st->n];
    memset(t, 0, sizeof *t);
    t->name = name;
    ok = read_tensor(path, &j, m, name, data_len, t, err);
    if (ok) {
      t->data = d + 8 + hlen + t->begin;
      st->n++;
    }
  }
  dst_free(j.nodes);
  return ok && check_layout(path, st, data_len, err);
}

DstSafetensors *dst_st_open(const char *path, char err[DST_ERR_LEN]) {
  DstSafetensors *st = dst_try_malloc(sizeof *st, DST_MEM_OTHER, "safetensors");
  if (!st) {
    errf(err, "%s: out of memory", path);
    return NULL;
  }
  memset(st, 0, sizeof *st);
  if (!dst_map_file(path, &st->map, err, DST_ERR_LEN) || !load_header(path, st, err)) {
    dst_st_close(st);
    return NULL;
  }
  return st;
}

void dst_st_close(DstSafetensors *st) {
  if (!st) return;
  dst_unmap_file(&st->map);
  dst_free(st->pool);
  dst_free(st->tensors);
  dst_free(st->by_name);
  dst_free(st->meta);
  dst_free(st);
}

size_t dst_st_count(const DstSafetensors *st) { return st->n; }

const DstStTensor *dst_st_tensor(const DstSafetensors *st, size_t i) {
  return i < st->n ? &st->tensors[i] : NULL;
}

const DstStTensor *dst_st_find(const DstSafetensors *st, const char *name) {
  size_t lo = 0, hi = st->n;
  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;
    const DstStTensor *t = st->by_name[mid];
    int c = strcmp(name, t->name);
    if (c == 0) return t;
    if (c < 0) hi = mid;
    else lo = mid + 1;
  }
  return NULL;
}

const char *dst_st_metadata(const DstSafetensors *st, const char *key) {
  MetaEntry probe = {key, NULL};
  const MetaEntry *m =
      st->nmeta ? bsearch(&probe, st->meta, st->nmeta, sizeof *st->meta, cmp_meta) : NULL;
  return m ? m->value : NULL;
}

bool dst_st_load_into(const DstSafetensors *st, const char *name, DstDtype dtype,
                      const int64_t *shape, int ndim, void *dst, char err[DST_ERR_LEN]) {
  const DstStTensor *t = dst_st_find(st, name);
  if (!t) return errf(err, "missing tensor '%s'", name);
  if (t->dtype != dtype)
    return errf(err, "tensor '%s': dtype %s expected, %s found", name, dst_dtype_name(dtype),
                dst_dtype_name(t->dtype));
  bool same = ndim == t->ndim;
  for (int i = 0; same && i < ndim; i++) same = shape[i] == t->shape[i];
  if (!same) {
    char want[96], got[96];
    format_shape(want, sizeof want, shape, ndim < 0                      ? 0
                                   : ndim > DST_TENSOR_MAX_DIMS ? DST_TENSOR_MAX_DIMS
                                                                : ndim);
    format_shape(got, sizeof got, t->shape, t->ndim);
    return errf(err, "tensor '%s': shape %s expected, %s found", name, want, got);
  }
  if (t->end > t->begin) memcpy(dst, t->data, t->end - t->begin);
  return true;
}

/* --------------------------------------------------------------- writer */

typedef struct {
  char *name;
  DstDtype dtype;
  int ndim;
  int64_t shape[DST_TENSOR_MAX_DIMS];
  const void *data; /* the caller's, not copied */
  uint64_t bytes;
} WriterTensor;

struct DstStWriter {
  WriterTensor *t;
  size_t n, cap;
  uint32_t *slots; /* open-addressing set of names: index + 1, 0 = empty */
  size_t nslots;   /* power of two, kept above twice n */
  char **meta;     /* key, value pairs */
  size_t nmeta, metacap;
};

static char *dup_str(const char *s, const char *tag) {
  size_t n = strlen(s) + 1;
  char *p = dst_malloc(n, DST_MEM_OTHER, tag);
  memcpy(p, s, n);
  return p;
}

/* FNV-1a: short, and good enough to spread tensor names. */
static uint64_t hash_name(const char *s) {
  uint64_t h = UINT64_C(0xcbf29ce484222325);
  for (; *s; s++) h = (h ^ (unsigned char)*s) * UINT64_C(0x100000001b3);
  return h;
}

/* The slot holding name, or the empty slot where it would go. */
static uint32_t *find_slot(const DstStWriter *w, const char *name) {
  size_t mask = w->nslots - 1;
  for (size_t i = hash_name(name) & mask;; i = (i + 1) & mask) {
    uint32_t *s = &w->slots[i];
    if (!*s || strcmp(w->t[*s - 1].name, name) == 0) return s;
  }
}

DstStWriter *dst_st_writer_new(void) {
  DstStWriter *w = dst_calloc(1, sizeof *w, DST_MEM_OTHER, "safetensors.writer");
  w->nslots = 64;
  w->slots = dst_calloc(w->nslots, sizeof *w->slots, DST_MEM_OTHER, "safetensors.writer");
  return w;
}

void dst_st_writer_free(DstStWriter *w) {
  if (!w) return;
  for (size_t i = 0; i < w->n; i++) dst_free(w->t[i].name);
  for (size_t i = 0; i < 2 * w->nmeta; i++) dst_free(w->meta[i]);
  dst_free(w->t);
  dst_free(w->slots);
  dst_free(w->meta);
  dst_free(w);
}

bool dst_st_writer_add(DstStWriter *w, const char *name, DstDtype dtype, const int64_t *shape,
                       int ndim, const void *data, char err[DST_ERR_LEN]) {
  size_t nlen = strlen(name);
  if (nlen == 0) return errf(err, "tensor name is empty");
  if (!dst_utf8_valid(name, nlen)) return errf(err, "tensor name is not valid UTF-8");
  if (strcmp(name, "__metadata__") == 0) return errf(err, "'__metadata__' is reserved");
  if ((unsigned)dtype >= DST_DT_COUNT)
    return errf(err, "tensor '%s': invalid dtype %d", name, (int)dtype);
  if (ndim < 0 || ndim > DST_TENSOR_MAX_DIMS)
    return errf(err, "tensor '%s': %d dimensions, at most %d supported", name, ndim,
                DST_TENSOR_MAX_DIMS);
  for (int i = 0; i < ndim; i++)
    if (shape[i] < 0) return errf(err, "tensor '%s': negative dimension", name);
  uint64_t bytes;
  if (!tensor_bytes(dtype, shape, ndim, &bytes))
    return errf(err, "tensor '%s': size overflows", name);
  if (bytes && !data) return errf(err, "tensor '%s': no data", name);
  if (*find_slot(w, name)) return errf(err, "duplicate tensor name '%s'", name);
  if (w->n == w->cap) {
    w->cap = w->cap ? 2 * w->cap : 16;
    w->t = dst_realloc(w->t, w->cap * sizeof *w->t, DST_MEM_OTHER, "safetensors.writer");
  }
  WriterTensor *t = &w->t[w->n++];
  memset(t, 0, sizeof *t);
  t->name = dup_str(name, "safetensors.writer");
  t->dtype = dtype;
  t->ndim = ndim;
  if (ndim) memcpy(t->shape, shape, (size_t)ndim * sizeof *shape);
  t->data = data;
  t->bytes = bytes;
  if (2 * w->n > w->nslots) { /* rehash to keep probes short */
    dst_free(w->slots);
    w->nslots *= 2;
    w->slots = dst_calloc(w->nslots, sizeof *w->slots, DST_MEM_OTHER, "safetensors.writer");
    for (size_t i = 0; i < w->n; i++) *find_slot(w, w->t[i].name) = (uint32_t)(i + 1);
  } else {
    *find_slot(w, name) = (uint32_t)w->n;
  }
  return true;
}

bool dst_st_writer_set_metadata(DstStWriter *w, const char *key, const char *value,
                                char err[DST_ERR_LEN]) {
  if (!dst_utf8_valid(key, strlen(key)) || !dst_utf8_valid(value, strlen(value)))
    return errf(err, "metadata '%s': not valid UTF-8", key);
  for (size_t i = 0; i < w->nmeta; i++)
    if (strcmp(w->meta[2 * i], key) == 0) {
      dst_free(w->meta[2 * i + 1]);
      w->meta[2 * i + 1] = dup_str(value, "safetensors.writer");
      return true;
    }
  if (w->nmeta == w->metacap) {
    w->metacap = w->metacap ? 2 * w->metacap : 8;
    w->meta = dst_realloc(w->meta, 2 * w->metacap * sizeof *w->meta, DST_MEM_OTHER,
                          "safetensors.writer");
  }
  w->meta[2 * w->nmeta] = dup_str(key, "safetensors.writer");
  w->meta[2 * w->nmeta + 1] = dup_str(value, "safetensors.writer");
  w->nmeta++;
  return true;
}

/* A growable byte buffer for the header text. */
typedef struct {
  char *s;
  size_t n, cap;
} Buf;

static void buf_put(Buf *b, const char *s, size_t n) {
  if (b->n + n + 1 > b->cap) {
    while (b->n + n + 1 > b->cap) b->cap = b->cap ? 2 * b->cap : 4096;
    b->s = dst_realloc(b->s, b->cap, DST_MEM_OTHER, "safetensors.header");
  }
  memcpy(b->s + b->n, s, n);
  b->n += n;
  b->s[b->n] = '\0';
}

static void buf_printf(Buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void buf_printf(Buf *b, const char *fmt, ...) {
  char tmp[128]; /* used only for numbers and short punctuation */
  va_list ap;
  va_start(ap, fmt);
  int k = vsnprintf(tmp, sizeof tmp, fmt, ap);
  va_end(ap);
  DST_CHECK(k >= 0 && (size_t)k < sizeof tmp, "header fragment too long");
  buf_put(b, tmp, (size_t)k);
}

/* Appends s as a JSON string: quotes, backslashes and control characters
 * escaped, other bytes (valid UTF-8, checked on add) as they are. */
static void buf_json_string(Buf *b, const char *s) {
  buf_put(b, "\"", 1);
  for (; *s; s++) {
    unsigned char c = (unsigned char)*s;
    if (c == '"' || c == '\\') {
      char e[2] = {'\\', (char)c};
      buf_put(b, e, 2);
    } else if (c < 0x20) {
      buf_printf(b, "\\u%04x", c);
    } else {
      buf_put(b, (const char *)&c, 1);
    }
  }
  buf_put(b, "\"", 1);
}

/* Builds the header JSON, padded with spaces so 8 + length is a multiple
 * of 8 and the data section starts aligned. */
static void build_header(const DstStWriter *w, Buf *b) {
  buf_put(b, "{", 1);
  bool first = true;
  if (w->nmeta) {
    buf_put(b, "\"__metadata__\":{", 16);
    for (size_t i = 0; i < w->nmeta; i++) {
      if (i) buf_put(b, ",", 1);
      buf_json_string(b, w->meta[2 * i]);
      buf_put(b, ":", 1);
      buf_json_string(b, w->meta[2 * i + 1]);
    }
    buf_put(b, "}", 1);
    first = false;
  }
  uint64_t off = 0;
  for (size_t i = 0; i < w->n; i++) {
    const WriterTensor *t = &w->t[i];
    if (!first) buf_put(b, ",", 1);
    first = false;
    buf_json_string(b, t->name);
    buf_printf(b, ":{\"dtype\":\"%s\",\"shape\":[", dst_dtype_name(t->dtype));
    for (int d = 0; d < t->ndim; d++) buf_printf(b, "%s%" PRId64, d ? "," : "", t->shape[d]);
    buf_printf(b, "],\"data_offsets\":[%" PRIu64 ",%" PRIu64 "]}", off, off + t->bytes);
    off += t->bytes;
  }
  buf_put(b, "}", 1);
  while ((8 + b->n) % 8) buf_put(b, " ", 1);
}

/* fsyncs the directory holding path so the rename itself is durable.
 * Failure is ignored: some file systems do not support it, and the data
 * is already safe in the file. */
static void sync_dir_of(const char *path) {
  const char *slash = strrchr(path, '/');
  char dir[4096];
  if (!slash) snprintf(dir, sizeof dir, ".");
  else if (slash == path) snprintf(dir, sizeof dir, "/");
  else if ((size_t)(slash - path) < sizeof dir)
    snprintf(dir, sizeof dir, "%.*s", (int)(slash - path), path);
  else return;
  int fd = open(dir, O_RDONLY);
  if (fd < 0) return;
  (void)fsync(fd);
  close(fd);
}

bool dst_st_writer_write(DstStWriter *w, const char *path, char err[DST_ERR_LEN]) {
  size_t plen = strlen(path);
  char *tmp = dst_malloc(plen + 5, DST_MEM_OTHER, "safetensors.path");
  memcpy(tmp, path, plen);
  memcpy(tmp + plen, ".tmp", 5);
  Buf h = {0};
  build_header(w, &h);
  unsigned char len8[8];
  for (int i = 0; i < 8; i++) len8[i] = (unsigned char)((uint64_t)h.n >> (8 * i));

  bool ok = false;
  const char *what = "open";
  FILE *f = fopen(tmp, "wb");
  if (f) {
    what = "write";
    ok = fwrite(len8, 1, 8, f) == 8 && fwrite(h.s, 1, h.n, f) == h.n;
    for (size_t i = 0; ok && i < w->n; i++)
      ok = !w->t[i].bytes || fwrite(w->t[i].data, 1, w->t[i].bytes, f) == w->t[i].bytes;
    if (ok) ok = fflush(f) == 0;
    if (ok) {
      what = "sync";
      ok = fsync(fileno(f)) == 0;
    }
    int saved = errno;
    if (fclose(f) != 0 && ok) {
      what = "close";
      ok = false;
    } else {
      errno = saved;
    }
    if (ok) {
      what = "rename";
      ok = rename(tmp, path) == 0;
    }
  }
  if (!ok) {
    if (what[0] == 'r') /* "rename": name both ends */
      errf(err, "%s: cannot rename to %s: %s", tmp, path, strerror(errno));
    else
      errf(err, "%s: cannot %s: %s", tmp, what, strerror(errno));
    unlink(tmp);
  } else {
    sync_dir_of(path);
  }
  dst_free(h.s);
  dst_free(tmp);
  return ok;
}
