/* dst_internal.h: helpers shared by runtime modules; not part of the public
 * API (programs include only dst.h). One section per source file.
 */
#ifndef DST_RUNTIME_INTERNAL_H
#define DST_RUNTIME_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "dst.h"

/* ------------------------------------------------------------ dst_json.c */

/* A strict parser for the JSON subset that file headers use: objects,
 * arrays, strings (all escapes, UTF-8 checked) and integers that fit in
 * int64. true/false/null, fractions and exponents are rejected, as is
 * anything else RFC 8259 rejects. Duplicate keys are kept; the caller
 * decides whether they matter. */

typedef enum { DST_JSON_OBJECT, DST_JSON_ARRAY, DST_JSON_STRING, DST_JSON_INT } DstJsonKind;

/* Nodes live in one array and refer to each other by index. Index 0 is the
 * root, so 0 doubles as "none" for child and sibling links. */
typedef struct {
  uint8_t kind;      /* DstJsonKind */
  uint32_t at;       /* byte offset in the text, for messages */
  uint32_t next;     /* next sibling in the parent, 0 = none */
  uint32_t key;      /* member of an object: pool offset of its key */
  uint32_t key_len;  /* member of an object: key length in bytes */
  union {
    struct {
      uint32_t count;  /* object/array: number of children */
      uint32_t first;  /* object/array: first child, 0 = none */
    };
    struct {
      uint32_t str;    /* string: pool offset of its decoded bytes */
      uint32_t len;    /* string: decoded length (may contain NUL bytes) */
    };
    int64_t num;       /* integer */
  };
} DstJsonNode;

typedef struct {
  DstJsonNode *nodes;
  uint32_t n, cap;
  char *pool; /* decoded strings and keys, each followed by a NUL */
  size_t pool_len;
} DstJson;

/* Parses text[0..len) (len < 4 GiB) as one JSON value with optional
 * surrounding whitespace. At most max_nodes values and a nesting depth of
 * 64. On failure returns false with "at byte N: <problem>" in err and
 * leaves j empty. Memory comes from dst_try_malloc (category other). */
bool dst_json_parse(DstJson *j, const char *text, size_t len, uint32_t max_nodes, char *err,
                    size_t errlen);
void dst_json_free(DstJson *j);

/* True when s[0..len) is valid UTF-8 (no overlongs, surrogates or values
 * above U+10FFFF): what the parser accepts inside strings. */
bool dst_utf8_valid(const char *s, size_t len);

static inline const char *dst_json_str(const DstJson *j, const DstJsonNode *n) {
  return j->pool + n->str;
}
static inline const char *dst_json_key(const DstJson *j, const DstJsonNode *n) {
  return j->pool + n->key;
}

/* -------------------------------------------------------------- dst_io.c */

/* A read-only mapping of a whole regular file. An empty file maps to
 * data == NULL, len == 0. */
typedef struct {
  const unsigned char *data;
  size_t len;
} DstMap;

/* Maps path read-only; false with "<path>: <reason>" in err on failure. */
bool dst_map_file(const char *path, DstMap *m, char *err, size_t errlen);
void dst_unmap_file(DstMap *m);

#endif /* DST_RUNTIME_INTERNAL_H */
