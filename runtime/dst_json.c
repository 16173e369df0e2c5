/* dst_json.c: a strict recursive-descent parser for the JSON that file
 * headers (safetensors, later checkpoint manifests) are made of.
 *
 * Input is untrusted, so every path that consumes a byte checks the bound,
 * nesting is limited (no stack exhaustion), the node count is limited (no
 * memory exhaustion), and every rejection says what was expected at which
 * byte. Accepted: objects, arrays, strings and integers exactly as RFC 8259
 * writes them. Rejected with a message: true/false/null, fractions and
 * exponents, integers outside int64, raw control characters and invalid
 * UTF-8 in strings, unpaired surrogates, trailing commas, trailing garbage.
 *
 * Invariants: nodes are referenced by index because the node array moves
 * when it grows; every decoded string fits the pool, which is sized to the
 * text (a string's decoded bytes plus NUL never exceed its quoted length).
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "dst_internal.h"

enum { MAX_DEPTH = 64 };

typedef struct {
  const unsigned char *s;
  size_t len, i; /* text and read position */
  DstJson *j;
  uint32_t max_nodes;
  char *err;
  size_t errlen;
} Parser;

static bool fail(Parser *p, size_t at, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static bool fail(Parser *p, size_t at, const char *fmt, ...) {
  int k = snprintf(p->err, p->errlen, "at byte %zu: ", at);
  if (k < 0 || (size_t)k >= p->errlen) return false;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(p->err + k, p->errlen - (size_t)k, fmt, ap);
  va_end(ap);
  return false;
}

/* Describes the byte at i for messages: 'x', end of header, or 0xNN. */
static const char *describe(Parser *p, size_t i, char buf[16]) {
  if (i >= p->len) return "end of header";
  unsigned c = p->s[i];
  if (c > 0x20 && c < 0x7f) snprintf(buf, 16, "'%c'", (char)c);
  else snprintf(buf, 16, "byte 0x%02x", c);
  return buf;
}

static void skip_ws(Parser *p) {
  while (p->i < p->len) {
    unsigned char c = p->s[p->i];
    if (c != ' ' && c != '\t' && c != '\n' && c != '\r') break;
    p->i++;
  }
}

/* Appends a zeroed node and stores its index in *out; false with err set
 * when the node budget or memory runs out. */
static bool new_node(Parser *p, DstJsonKind kind, size_t at, uint32_t *out) {
  DstJson *j = p->j;
  if (j->n >= p->max_nodes)
    return fail(p, at, "header too complex (more than %u values)", p->max_nodes);
  if (j->n == j->cap) {
    uint32_t cap = j->cap ? j->cap : 64;
    cap = cap > p->max_nodes / 2 ? p->max_nodes : cap * 2;
    DstJsonNode *nodes = dst_try_malloc((size_t)cap * sizeof *nodes, DST_MEM_OTHER, "json.nodes");
    if (!nodes) return fail(p, at, "out of memory for %u JSON values", cap);
    if (j->n) memcpy(nodes, j->nodes, (size_t)j->n * sizeof *nodes);
    dst_free(j->nodes);
    j->nodes = nodes;
    j->cap = cap;
  }
  DstJsonNode *n = &j->nodes[j->n];
  memset(n, 0, sizeof *n);
  n->kind = (uint8_t)kind;
  n->at = (uint32_t)at;
  *out = j->n++;
  return true;
}

static int hex_digit(unsigned char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

/* Reads the 4 hex digits of a \u escape starting at p->i. */
static bool read_hex4(Parser *p, unsigned *out) {
  if (p->len - p->i < 4) return fail(p, p->i, "truncated \\u escape");
  unsigned v = 0;
  for (int k = 0; k < 4; k++) {
    int d = hex_digit(p->s[p->i + k]);
    if (d < 0) return fail(p, p->i + k, "invalid hex digit in \\u escape");
    v = v * 16 + (unsigned)d;
  }
  p->i += 4;
  *out = v;
  return true;
}

/* Length of the valid UTF-8 sequence at s[0..avail), or 0 if invalid
 * (overlong forms, surrogates and values above U+10FFFF are invalid). */
static size_t utf8_seq(const unsigned char *s, size_t avail) {
  unsigned c = s[0];
  size_t n;
  unsigned lo = 0x80, hi = 0xbf; /* allowed range of the second byte */
  if (c < 0x80) return 1;
  if (c >= 0xc2 && c <= 0xdf) n = 2;
  else if (c >= 0xe0 && c <= 0xef) {
    n = 3;
    if (c == 0xe0) lo = 0xa0;      /* no overlong */
    else if (c == 0xed) hi = 0x9f; /* no surrogates */
  } else if (c >= 0xf0 && c <= 0xf4) {
    n = 4;
    if (c == 0xf0) lo = 0x90;      /* no overlong */
    else if (c == 0xf4) hi = 0x8f; /* <= U+10FFFF */
  } else return 0;
  if (avail < n) return 0;
  if (s[1] < lo || s[1] > hi) return 0;
  for (size_t k = 2; k < n; k++)
    if (s[k] < 0x80 || s[k] > 0xbf) return 0;
  return n;
}

bool dst_utf8_valid(const char *s, size_t len) {
  const unsigned char *u = (const unsigned char *)s;
  for (size_t i = 0; i < len;) {
    size_t k = utf8_seq(u + i, len - i);
    if (!k) return false;
    i += k;
  }
  return true;
}

static size_t put_utf8(char *o, unsigned cp) {
  if (cp < 0x80) {
    o[0] = (char)cp;
    return 1;
  }
  if (cp < 0x800) {
    o[0] = (char)(0xc0 | (cp >> 6));
    o[1] = (char)(0x80 | (cp & 0x3f));
    return 2;
  }
  if (cp < 0x10000) {
    o[0] = (char)(0xe0 | (cp >> 12));
    o[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
    o[2] = (char)(0x80 | (cp & 0x3f));
    return 3;
  }
  o[0] = (char)(0xf0 | (cp >> 18));
  o[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
  o[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
  o[3] = (char)(0x80 | (cp & 0x3f));
  return 4;
}

/* Parses the string at p->i (which is '"') into the pool. */
static bool parse_string(Parser *p, uint32_t *off, uint32_t *len) {
  size_t start = p->i++;
  char *o = p->j->pool + p->j->pool_len;
  size_t n = 0;
  for (;;) {
    if (p->i >= p->len) return fail(p, start, "unterminated string");
    unsigned char c = p->s[p->i];
    if (c == '"') break;
    if (c < 0x20) return fail(p, p->i, "raw control character 0x%02x in string", c);
    if (c == '\\') {
      size_t esc = p->i++;
      if (p->i >= p->len) return fail(p, start, "unterminated string");
      unsigned char e = p->s[p->i++];
      unsigned cp;
      switch (e) {
      case '"': o[n++] = '"'; continue;
      case '\\': o[n++] = '\\'; continue;
      case '/': o[n++] = '/'; continue;
      case 'b': o[n++] = '\b'; continue;
      case 'f': o[n++] = '\f'; continue;
      case 'n': o[n++] = '\n'; continue;
      case 'r': o[n++] = '\r'; continue;
      case 't': o[n++] = '\t'; continue;
      case 'u': break;
      default: return fail(p, esc, "invalid escape '\\%c'", e >= 0x20 && e < 0x7f ? e : '?');
      }
      if (!read_hex4(p, &cp)) return false;
      if (cp >= 0xdc00 && cp <= 0xdfff) return fail(p, esc, "unpaired low surrogate in \\u escape");
      if (cp >= 0xd800 && cp <= 0xdbff) {
        unsigned lo;
        if (p->len - p->i < 2 || p->s[p->i] != '\\' || p->s[p->i + 1] != 'u')
          return fail(p, esc, "high surrogate not followed by a low surrogate");
        p->i += 2;
        if (!read_hex4(p, &lo)) return false;
        if (lo < 0xdc00 || lo > 0xdfff)
          return fail(p, esc, "high surrogate not followed by a low surrogate");
        cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
      }
      n += put_utf8(o + n, cp);
      continue;
    }
    size_t k = utf8_seq(p->s + p->i, p->len - p->i);
    if (!k) return fail(p, p->i, "invalid UTF-8 in string");
    memcpy(o + n, p->s + p->i, k);
    n += k;
    p->i += k;
  }
  p->i++; /* closing quote */
  o[n] = '\0';
  *off = (uint32_t)p->j->pool_len;
  *len = (uint32_t)n;
  p->j->pool_len += n + 1;
  return true;
}

static bool parse_int(Parser *p, int64_t *out) {
  size_t start = p->i;
  bool neg = false;
  if (p->s[p->i] == '-') {
    neg = true;
    p->i++;
  }
  if (p->i >= p->len || p->s[p->i] < '0' || p->s[p->i] > '9')
    return fail(p, start, "expected a digit after '-'");
  if (p->s[p->i] == '0' && p->i + 1 < p->len && p->s[p->i + 1] >= '0' && p->s[p->i + 1] <= '9')
    return fail(p, start, "leading zero in integer");
  uint64_t mag = 0;
  const uint64_t limit = neg ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX;
  while (p->i < p->len && p->s[p->i] >= '0' && p->s[p->i] <= '9') {
    unsigned d = p->s[p->i] - '0';
    if (mag > (limit - d) / 10) return fail(p, start, "integer out of range");
    mag = mag * 10 + d;
    p->i++;
  }
  if (p->i < p->len && (p->s[p->i] == '.' || p->s[p->i] == 'e' || p->s[p->i] == 'E'))
    return fail(p, start, "only integers are supported (no fractions or exponents)");
  /* -2^63 has no positive twin, so negate in unsigned arithmetic. */
  *out = neg ? (int64_t)(0 - mag) : (int64_t)mag;
  return true;
}

static bool parse_value(Parser *p, int depth, uint32_t *out);

/* Parses '{' or '[' ... at p->i; members of objects carry their key. */
static bool parse_container(Parser *p, int depth, bool object, uint32_t *out) {
  size_t open = p->i;
  if (depth >= MAX_DEPTH) return fail(p, open, "nesting deeper than %d", MAX_DEPTH);
  uint32_t self;
  if (!new_node(p, object ? DST_JSON_OBJECT : DST_JSON_ARRAY, open, &self)) return false;
  char close = object ? '}' : ']';
  const char *what = object ? "object" : "array";
  p->i++;
  skip_ws(p);
  uint32_t last = 0, count = 0;
  if (p->i < p->len && p->s[p->i] == close) {
    p->i++;
    *out = self;
    return true;
  }
  for (;;) {
    char b[16];
    uint32_t key = 0, key_len = 0, child;
    if (p->i >= p->len) return fail(p, open, "unterminated %s", what);
    if (object) {
      if (p->s[p->i] != '"')
        return fail(p, p->i, "expected a string key in object, found %s", describe(p, p->i, b));
      if (!parse_string(p, &key, &key_len)) return false;
      skip_ws(p);
      if (p->i >= p->len || p->s[p->i] != ':')
        return fail(p, p->i, "expected ':' after object key, found %s", describe(p, p->i, b));
      p->i++;
      skip_ws(p);
    }
    if (!parse_value(p, depth + 1, &child)) return false;
    DstJsonNode *nodes = p->j->nodes;
    nodes[child].key = key;
    nodes[child].key_len = key_len;
    if (last) nodes[last].next = child;
    else nodes[self].first = child;
    last = child;
    count++;
    skip_ws(p);
    if (p->i < p->len && p->s[p->i] == ',') {
      p->i++;
      skip_ws(p);
      if (p->i < p->len && p->s[p->i] == close)
        return fail(p, p->i, "trailing comma in %s", what);
      continue;
    }
    if (p->i < p->len && p->s[p->i] == close) {
      p->i++;
      break;
    }
    if (p->i >= p->len) return fail(p, open, "unterminated %s", what);
    return fail(p, p->i, "expected ',' or '%c' in %s, found %s", close, what,
                describe(p, p->i, b));
  }
  p->j->nodes[self].count = count;
  *out = self;
  return true;
}

static bool parse_value(Parser *p, int depth, uint32_t *out) {
  char b[16];
  if (p->i >= p->len) return fail(p, p->i, "expected a value, found end of header");
  unsigned char c = p->s[p->i];
  if (c == '{' || c == '[') return parse_container(p, depth, c == '{', out);
  if (c == '"') {
    size_t at = p->i;
    uint32_t off, len;
    if (!parse_string(p, &off, &len)) return false;
    if (!new_node(p, DST_JSON_STRING, at, out)) return false;
    p->j->nodes[*out].str = off;
    p->j->nodes[*out].len = len;
    return true;
  }
  if (c == '-' || (c >= '0' && c <= '9')) {
    size_t at = p->i;
    int64_t v = 0;
    if (!parse_int(p, &v)) return false;
    if (!new_node(p, DST_JSON_INT, at, out)) return false;
    p->j->nodes[*out].num = v;
    return true;
  }
  if (c == 't' || c == 'f' || c == 'n')
    return fail(p, p->i, "true, false and null are not supported here");
  return fail(p, p->i, "expected a value, found %s", describe(p, p->i, b));
}

bool dst_json_parse(DstJson *j, const char *text, size_t len, uint32_t max_nodes, char *err,
                    size_t errlen) {
  memset(j, 0, sizeof *j);
  Parser p = {(const unsigned char *)text, len, 0, j, max_nodes, err, errlen};
  if (len >= UINT32_MAX) return fail(&p, 0, "header of %zu bytes is too large", len);
  j->pool = dst_try_malloc(len + 1, DST_MEM_OTHER, "json.strings");
  if (!j->pool) return fail(&p, 0, "out of memory for a %zu-byte header", len);
  skip_ws(&p);
  uint32_t root;
  bool ok = parse_value(&p, 0, &root);
  if (ok) {
    skip_ws(&p);
    if (p.i != p.len) {
      char b[16];
      ok = fail(&p, p.i, "unexpected %s after the top-level value", describe(&p, p.i, b));
    }
  }
  if (!ok) dst_json_free(j);
  return ok;
}

void dst_json_free(DstJson *j) {
  dst_free(j->nodes);
  dst_free(j->pool);
  memset(j, 0, sizeof *j);
}
