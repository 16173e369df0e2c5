/* lex.re: the dst lexer (re2c).
 *
 * The buffer ends in a NUL sentinel (text[len] == 0); NUL is excluded from
 * every character class, so the scanner never reads past it without a rule
 * for it. A NUL before the end is reported as an error and skipped.
 * Strings and block comments are scanned by hand so that an unterminated one
 * is reported at its start. Bytes outside ASCII are allowed only inside
 * strings and comments, and must be valid UTF-8 there.
 * Bracket depth is bounded (DST_MAX_NESTING) so the parser's stack and every
 * recursive pass stay bounded on hostile input. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "dstc.h"
#include "parse.h"

void lex_init(Lexer *lx, Arena *a, DiagSink *d, uint32_t file) {
  memset(lx, 0, sizeof *lx);
  lx->arena = a;
  lx->diag = d;
  lx->file = file;
  lx->start = d->files[file].text;
  lx->len = d->files[file].len;
  lx->cur = lx->start;
}

static Loc mkloc(Lexer *lx, const char *b, const char *e) {
  Loc l = {lx->file, (uint32_t)(b - lx->start), (uint32_t)(e - lx->start)};
  return l;
}

/* Validates UTF-8 in [b, e); reports the first bad byte once. */
static void check_utf8(Lexer *lx, const char *b, const char *e, const char *what) {
  const unsigned char *p = (const unsigned char *)b;
  while (p < (const unsigned char *)e) {
    int n = utf8_seq_len(p);
    if (n == 0) {
      diag_error(lx->diag, mkloc(lx, (const char *)p, (const char *)p + 1),
                 "invalid UTF-8 byte 0x%02X in %s", *p, what);
      return;
    }
    p += n;
  }
}

/* Scans a string literal; cur points after the opening quote. Strings end at
 * the quote on the same line; escapes are \" \\ \n \t. */
static int lex_string(Lexer *lx, const char *tok, TokVal *val, Loc *loc) {
  const char *p = lx->cur;
  size_t cap = 16, n = 0;
  char *buf = malloc(cap);
  if (!buf) die("out of memory");
  for (;;) {
    char c = *p;
    if (c == '"') { p++; break; }
    if (c == '\n' || (c == 0 && p >= lx->start + lx->len)) {
      diag_error(lx->diag, mkloc(lx, tok, tok + 1), "unterminated string literal");
      break;
    }
    if (c == 0) {
      diag_error(lx->diag, mkloc(lx, p, p + 1), "NUL byte in string literal");
      p++;
      continue;
    }
    if (c == '\\') {
      char e = p[1];
      char out = 0;
      switch (e) {
      case '"': out = '"'; break;
      case '\\': out = '\\'; break;
      case 'n': out = '\n'; break;
      case 't': out = '\t'; break;
      default:
        diag_error(lx->diag, mkloc(lx, p, p + 2), "unknown escape sequence in string literal");
        out = e;
      }
      if (e == '\n' || (e == 0 && p + 1 >= lx->start + lx->len)) { p++; continue; }
      p += 2;
      c = out;
    } else {
      p++;
    }
    if (n + 1 >= cap) {
      cap *= 2;
      char *nb = realloc(buf, cap);
      if (!nb) { free(buf); die("out of memory"); }
      buf = nb;
    }
    buf[n++] = c;
  }
  check_utf8(lx, tok + 1, p, "string literal");
  val->str = arena_strndup(lx->arena, buf, n);
  free(buf);
  lx->cur = p;
  *loc = mkloc(lx, tok, p);
  return STRING;
}

/* Skips a block comment; cur points after the opening slash-star. */
static void lex_block_comment(Lexer *lx, const char *tok) {
  const char *p = lx->cur;
  const char *end = lx->start + lx->len;
  while (p < end && !(p[0] == '*' && p[1] == '/')) p++;
  if (p >= end) {
    diag_error(lx->diag, mkloc(lx, tok, tok + 2), "unterminated comment");
    lx->cur = end;
    return;
  }
  check_utf8(lx, tok, p, "comment");
  lx->cur = p + 2;
}

static int lex_int(Lexer *lx, const char *b, const char *e, TokVal *val) {
  uint64_t v = 0;
  bool over = false;
  for (const char *p = b; p < e; p++) {
    if (*p == '_') continue;
    unsigned d = (unsigned)(*p - '0');
    if (v > (UINT64_C(9223372036854775807) - d) / 10) over = true;
    else v = v * 10 + d;
  }
  if (over) {
    diag_error(lx->diag, mkloc(lx, b, e), "integer literal is too large (the limit is 2^63 - 1)");
    v = 0;
  }
  val->ival = (int64_t)v;
  return INT;
}

static int lex_float(Lexer *lx, const char *b, const char *e, TokVal *val) {
  char tmp[128];
  size_t n = 0;
  for (const char *p = b; p < e && n + 1 < sizeof tmp; p++)
    if (*p != '_') tmp[n++] = *p;
  tmp[n] = 0;
  if ((size_t)(e - b) >= sizeof tmp) {
    diag_error(lx->diag, mkloc(lx, b, e), "floating-point literal is too long");
    val->fval = 0;
    return FLOAT;
  }
  errno = 0;
  double v = strtod(tmp, NULL);
  if (errno == ERANGE && (v > 1.0 || v < -1.0)) {
    diag_error(lx->diag, mkloc(lx, b, e), "floating-point literal is out of range");
    v = 0;
  }
  val->fval = v;
  return FLOAT;
}

static int open_bracket(Lexer *lx, const char *b, int tok) {
  if (++lx->depth > DST_MAX_NESTING && !lx->depth_reported) {
    diag_error(lx->diag, mkloc(lx, b, b + 1), "brackets nested more than %d deep", DST_MAX_NESTING);
    lx->depth_reported = true;
  }
  return tok;
}

static int close_bracket(Lexer *lx, int tok) {
  if (lx->depth > 0) lx->depth--;
  return tok;
}

int lex_next(Lexer *lx, TokVal *val, Loc *loc) {
  const char *YYMARKER;
  for (;;) {
    if (lx->depth_reported) { /* stop: the rest would only cascade */
      *loc = mkloc(lx, lx->start + lx->len, lx->start + lx->len);
      return 0;
    }
    const char *tok = lx->cur;
    const char *YYCURSOR = lx->cur;
#define RET(t) do { lx->cur = YYCURSOR; *loc = mkloc(lx, tok, YYCURSOR); return (t); } while (0)
    /*!re2c
      re2c:define:YYCTYPE = "unsigned char";
      re2c:yyfill:enable = 0;
      re2c:flags:utf-8 = 0;

      digit = [0-9];
      digits = digit (digit | "_")*;
      ident = [a-zA-Z_] [a-zA-Z0-9_]*;
      exp = [eE] [+-]? digits;

      "\x00" {
        if (tok >= lx->start + lx->len) { lx->cur = tok; *loc = mkloc(lx, tok, tok); return 0; }
        const char *e = YYCURSOR;
        while (e < lx->start + lx->len && *e == 0) e++;
        diag_error(lx->diag, mkloc(lx, tok, e), "NUL byte in source (is this a binary file?)");
        lx->cur = e;
        continue;
      }
      [ \t\r\n]+ { lx->cur = YYCURSOR; continue; }
      "//" [^\n\x00]* {
        lx->cur = YYCURSOR;
        check_utf8(lx, tok, YYCURSOR, "comment");
        continue;
      }
      "/*" { lx->cur = YYCURSOR; lex_block_comment(lx, tok); continue; }
      "\"" { lx->cur = YYCURSOR; return lex_string(lx, tok, val, loc); }

      "import"   { RET(KW_IMPORT); }
      "config"   { RET(KW_CONFIG); }
      "block"    { RET(KW_BLOCK); }
      "model"    { RET(KW_MODEL); }
      "param"    { RET(KW_PARAM); }
      "layer"    { RET(KW_LAYER); }
      "input"    { RET(KW_INPUT); }
      "forward"  { RET(KW_FORWARD); }
      "return"   { RET(KW_RETURN); }
      "minimize" { RET(KW_MINIMIZE); }
      "if"       { RET(KW_IF); }
      "else"     { RET(KW_ELSE); }
      "train"    { RET(KW_TRAIN); }
      "parallel" { RET(KW_PARALLEL); }
      "repeat"   { RET(KW_REPEAT); }
      "true"     { val->ival = 1; RET(KW_TRUE); }
      "false"    { val->ival = 0; RET(KW_FALSE); }

      ident {
        val->str = arena_strndup(lx->arena, tok, (size_t)(YYCURSOR - tok));
        RET(IDENT);
      }
      digits {
        int t = lex_int(lx, tok, YYCURSOR, val);
        RET(t);
      }
      digits "." digits exp? | digits exp {
        int t = lex_float(lx, tok, YYCURSOR, val);
        RET(t);
      }

      "("  { lx->cur = YYCURSOR; *loc = mkloc(lx, tok, YYCURSOR); return open_bracket(lx, tok, '('); }
      "["  { lx->cur = YYCURSOR; *loc = mkloc(lx, tok, YYCURSOR); return open_bracket(lx, tok, '['); }
      "{"  { lx->cur = YYCURSOR; *loc = mkloc(lx, tok, YYCURSOR); return open_bracket(lx, tok, '{'); }
      ")"  { lx->cur = YYCURSOR; *loc = mkloc(lx, tok, YYCURSOR); return close_bracket(lx, ')'); }
      "]"  { lx->cur = YYCURSOR; *loc = mkloc(lx, tok, YYCURSOR); return close_bracket(lx, ']'); }
      "}"  { lx->cur = YYCURSOR; *loc = mkloc(lx, tok, YYCURSOR); return close_bracket(lx, '}'); }
      "**" { RET(POW); }
      "==" { RET(EQ); }
      "!=" { RET(NE); }
      "<=" { RET(LE); }
      ">=" { RET(GE); }
      "&&" { RET(AND); }
      "||" { RET(OR); }
      [,;:=.@+\-*/%<>!] { RET(tok[0]); }

      [\x80-\xff] {
        /* Coalesce a run of stray bytes into one diagnostic. */
        const unsigned char *p = (const unsigned char *)tok;
        int n = utf8_seq_len(p);
        const char *e = YYCURSOR;
        if (n > 0) {
          e = tok + n;
          diag_error(lx->diag, mkloc(lx, tok, e),
                     "non-ASCII character outside a string or comment");
        } else {
          while (e < lx->start + lx->len && (unsigned char)*e >= 0x80 && utf8_seq_len((const unsigned char *)e) == 0) e++;
          diag_error(lx->diag, mkloc(lx, tok, e), "invalid UTF-8 byte 0x%02X", *p);
        }
        lx->cur = e;
        continue;
      }
      * {
        unsigned char c = (unsigned char)tok[0];
        if (c >= 0x20 && c < 0x7f)
          diag_error(lx->diag, mkloc(lx, tok, YYCURSOR), "unexpected character '%c'", c);
        else
          diag_error(lx->diag, mkloc(lx, tok, YYCURSOR), "unexpected control character 0x%02X", c);
        lx->cur = YYCURSOR;
        continue;
      }
    */
#undef RET
  }
}
