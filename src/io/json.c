/*
 * json.c - the strict JSON parser of json.h: recursive descent over the
 * text (depth bounded), nodes appended to a growing array.
 */
#include "json.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct parser {
  const char *s;
  size_t len, pos;
  json_node *nodes;
  int64_t n, cap;
  char *err;
  size_t err_size;
} parser;

#if defined(__GNUC__)
__attribute__((format(printf, 2, 3)))
#endif
static int
fail(parser *p, const char *fmt, ...) {
  if (p->err && p->err_size) {
    int k = snprintf(p->err, p->err_size, "offset %zu: ", p->pos);
    if (k >= 0 && (size_t)k < p->err_size) {
      va_list ap;
      va_start(ap, fmt);
      vsnprintf(p->err + k, p->err_size - (size_t)k, fmt, ap);
      va_end(ap);
    }
  }
  return -1;
}

static void skip_ws(parser *p) {
  while (p->pos < p->len) {
    char c = p->s[p->pos];
    if (c != ' ' && c != '\t' && c != '\n' && c != '\r')
      break;
    p->pos++;
  }
}

static int64_t push(parser *p, json_type t) {
  if (p->n == p->cap) {
    int64_t cap = p->cap ? p->cap * 2 : 64;
    json_node *nn = realloc(p->nodes, (size_t)cap * sizeof *nn);
    if (!nn)
      return -1;
    p->nodes = nn;
    p->cap = cap;
  }
  json_node *nd = &p->nodes[p->n];
  memset(nd, 0, sizeof *nd);
  nd->type = t;
  nd->start = p->pos;
  return p->n++;
}

/* Bytes of the UTF-8 sequence at s (n available) if it is valid (no
 * overlong form, no surrogate, at most U+10FFFF), else 0. */
static size_t utf8_valid(const unsigned char *s, size_t n) {
  unsigned c = s[0];
  size_t k;
  unsigned cp;
  if (c < 0x80)
    return 1;
  if (c >= 0xC2 && c <= 0xDF)
    k = 2, cp = c & 0x1F;
  else if (c >= 0xE0 && c <= 0xEF)
    k = 3, cp = c & 0x0F;
  else if (c >= 0xF0 && c <= 0xF4)
    k = 4, cp = c & 0x07;
  else
    return 0;
  if (n < k)
    return 0;
  for (size_t i = 1; i < k; i++) {
    if ((s[i] & 0xC0) != 0x80)
      return 0;
    cp = (cp << 6) | (s[i] & 0x3F);
  }
  if ((k == 3 && (cp < 0x800 || (cp >= 0xD800 && cp <= 0xDFFF))) ||
      (k == 4 && (cp < 0x10000 || cp > 0x10FFFF)))
    return 0;
  return k;
}

static int hex4(const char *s, unsigned *out) {
  unsigned v = 0;
  for (int i = 0; i < 4; i++) {
    char c = s[i];
    unsigned d;
    if (c >= '0' && c <= '9')
      d = (unsigned)(c - '0');
    else if (c >= 'a' && c <= 'f')
      d = (unsigned)(c - 'a' + 10);
    else if (c >= 'A' && c <= 'F')
      d = (unsigned)(c - 'A' + 10);
    else
      return -1;
    v = v * 16 + d;
  }
  *out = v;
  return 0;
}

/* A \u escape at s (after the backslash and 'u', n bytes left there):
 * the code point and the bytes used (4, or 10 for a surrogate pair), or
 * 0 when malformed. */
static size_t unicode_escape(const char *s, size_t n, unsigned *cp) {
  unsigned hi, lo;
  if (n < 4 || hex4(s, &hi) != 0)
    return 0;
  if (hi >= 0xDC00 && hi <= 0xDFFF)
    return 0; /* a lone low surrogate */
  if (hi < 0xD800 || hi > 0xDBFF) {
    *cp = hi;
    return 4;
  }
  if (n < 10 || s[4] != '\\' || s[5] != 'u' || hex4(s + 6, &lo) != 0 ||
      lo < 0xDC00 || lo > 0xDFFF)
    return 0;
  *cp = 0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00);
  return 10;
}

static int parse_string(parser *p) {
  int64_t i = push(p, JSON_STRING);
  if (i < 0)
    return fail(p, "out of memory");
  p->pos++; /* the opening quote */
  p->nodes[i].start = p->pos;
  while (p->pos < p->len) {
    unsigned char c = (unsigned char)p->s[p->pos];
    if (c == '"') {
      p->nodes[i].len = p->pos - p->nodes[i].start;
      p->pos++;
      p->nodes[i].next = p->n;
      return 0;
    }
    if (c < 0x20)
      return fail(p, "control character 0x%02x in a string", c);
    if (c == '\\') {
      if (p->pos + 1 >= p->len)
        break;
      char e = p->s[p->pos + 1];
      if (e == 'u') {
        unsigned cp;
        size_t k = unicode_escape(p->s + p->pos + 2, p->len - p->pos - 2, &cp);
        if (k == 0)
          return fail(p, "bad \\u escape");
        p->pos += 2 + k;
        continue;
      }
      if (!strchr("\"\\/bfnrt", e) || e == 0)
        return fail(p, "bad escape '\\%c'", e >= 0x20 && e < 0x7f ? e : '?');
      p->pos += 2;
      continue;
    }
    size_t k =
        utf8_valid((const unsigned char *)p->s + p->pos, p->len - p->pos);
    if (k == 0)
      return fail(p, "invalid UTF-8 in a string");
    p->pos += k;
  }
  return fail(p, "unterminated string");
}

static int digits(parser *p) {
  size_t s = p->pos;
  while (p->pos < p->len && p->s[p->pos] >= '0' && p->s[p->pos] <= '9')
    p->pos++;
  return p->pos > s ? 0 : -1;
}

static int parse_number(parser *p) {
  int64_t i = push(p, JSON_NUMBER);
  if (i < 0)
    return fail(p, "out of memory");
  if (p->s[p->pos] == '-')
    p->pos++;
  if (p->pos < p->len && p->s[p->pos] == '0') {
    p->pos++;
  } else if (digits(p) != 0) {
    return fail(p, "bad number");
  }
  if (p->pos < p->len && p->s[p->pos] == '.') {
    p->pos++;
    if (digits(p) != 0)
      return fail(p, "bad number: digits expected after '.'");
  }
  if (p->pos < p->len && (p->s[p->pos] == 'e' || p->s[p->pos] == 'E')) {
    p->pos++;
    if (p->pos < p->len && (p->s[p->pos] == '+' || p->s[p->pos] == '-'))
      p->pos++;
    if (digits(p) != 0)
      return fail(p, "bad number: digits expected in the exponent");
  }
  p->nodes[i].len = p->pos - p->nodes[i].start;
  p->nodes[i].next = p->n;
  return 0;
}

static int parse_word(parser *p, const char *w, json_type t) {
  size_t k = strlen(w);
  if (p->len - p->pos < k || memcmp(p->s + p->pos, w, k) != 0)
    return fail(p, "unexpected character '%c'",
                p->s[p->pos] >= 0x20 && p->s[p->pos] < 0x7f ? p->s[p->pos]
                                                            : '?');
  int64_t i = push(p, t);
  if (i < 0)
    return fail(p, "out of memory");
  p->pos += k;
  p->nodes[i].len = k;
  p->nodes[i].next = p->n;
  return 0;
}

static int parse_value(parser *p, int depth);

/* An array or object (p->pos at its bracket). */
static int parse_container(parser *p, int depth, int object) {
  const char close = object ? '}' : ']';
  if (depth >= JSON_MAX_DEPTH)
    return fail(p, "nested deeper than %d", JSON_MAX_DEPTH);
  int64_t i = push(p, object ? JSON_OBJECT : JSON_ARRAY);
  if (i < 0)
    return fail(p, "out of memory");
  p->pos++;
  skip_ws(p);
  int64_t count = 0;
  if (p->pos < p->len && p->s[p->pos] == close) {
    p->pos++;
  } else {
    for (;;) {
      skip_ws(p);
      if (object) {
        if (p->pos >= p->len || p->s[p->pos] != '"')
          return fail(p, "expected a string key");
        if (parse_string(p) != 0)
          return -1;
        skip_ws(p);
        if (p->pos >= p->len || p->s[p->pos] != ':')
          return fail(p, "expected ':'");
        p->pos++;
      }
      if (parse_value(p, depth + 1) != 0)
        return -1;
      count++;
      skip_ws(p);
      if (p->pos < p->len && p->s[p->pos] == ',') {
        p->pos++;
        continue;
      }
      if (p->pos < p->len && p->s[p->pos] == close) {
        p->pos++;
        break;
      }
      return fail(p, "expected ',' or '%c'", close);
    }
  }
  p->nodes[i].count = count;
  p->nodes[i].len = p->pos - p->nodes[i].start;
  p->nodes[i].next = p->n;
  return 0;
}

static int parse_value(parser *p, int depth) {
  skip_ws(p);
  if (p->pos >= p->len)
    return fail(p, "unexpected end of text");
  char c = p->s[p->pos];
  switch (c) {
  case '{':
    return parse_container(p, depth, 1);
  case '[':
    return parse_container(p, depth, 0);
  case '"':
    return parse_string(p);
  case 't':
    return parse_word(p, "true", JSON_TRUE);
  case 'f':
    return parse_word(p, "false", JSON_FALSE);
  case 'n':
    return parse_word(p, "null", JSON_NULL);
  default:
    if (c == '-' || (c >= '0' && c <= '9'))
      return parse_number(p);
    return fail(p, "unexpected character '%c'",
                c >= 0x20 && c < 0x7f ? c : '?');
  }
}

int json_parse(const char *text, size_t len, json_doc *doc, char *err,
               size_t err_size) {
  parser p = {text, len, 0, NULL, 0, 0, err, err_size};
  memset(doc, 0, sizeof *doc);
  if (!text && len)
    return fail(&p, "no text");
  if (parse_value(&p, 0) != 0) {
    free(p.nodes);
    return -1;
  }
  skip_ws(&p);
  if (p.pos != len) {
    free(p.nodes);
    return fail(&p, "trailing characters after the value");
  }
  doc->text = text;
  doc->nodes = p.nodes;
  doc->n = p.n;
  return 0;
}

void json_free(json_doc *doc) {
  if (!doc)
    return;
  free(doc->nodes);
  memset(doc, 0, sizeof *doc);
}

/* Decodes string node i; writes at most cap bytes (when out) and returns
 * the decoded length, or -1 when it holds U+0000. */
static int64_t decode(const json_doc *doc, int64_t i, char *out, size_t cap) {
  const json_node *nd = &doc->nodes[i];
  const char *s = doc->text + nd->start;
  size_t n = nd->len, k = 0;
  for (size_t r = 0; r < n;) {
    char buf[4];
    size_t m;
    if (s[r] != '\\') {
      buf[0] = s[r];
      m = 1;
      r++;
    } else if (s[r + 1] == 'u') {
      unsigned cp = 0;
      r += 2 + unicode_escape(s + r + 2, n - r - 2, &cp); /* validated */
      if (cp == 0)
        return -1;
      if (cp < 0x80) {
        buf[0] = (char)cp, m = 1;
      } else if (cp < 0x800) {
        buf[0] = (char)(0xC0 | (cp >> 6));
        buf[1] = (char)(0x80 | (cp & 0x3F)), m = 2;
      } else if (cp < 0x10000) {
        buf[0] = (char)(0xE0 | (cp >> 12));
        buf[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        buf[2] = (char)(0x80 | (cp & 0x3F)), m = 3;
      } else {
        buf[0] = (char)(0xF0 | (cp >> 18));
        buf[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
        buf[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
        buf[3] = (char)(0x80 | (cp & 0x3F)), m = 4;
      }
    } else {
      const char *from = "\"\\/bfnrt", *to = "\"\\/\b\f\n\r\t";
      buf[0] = to[strchr(from, s[r + 1]) - from];
      m = 1;
      r += 2;
    }
    for (size_t j = 0; j < m; j++, k++)
      if (out && k < cap)
        out[k] = buf[j];
  }
  return (int64_t)k;
}

int64_t json_object_get(const json_doc *doc, int64_t obj, const char *key) {
  if (obj < 0 || obj >= doc->n || doc->nodes[obj].type != JSON_OBJECT)
    return -1;
  int64_t found = -1, c = obj + 1;
  for (int64_t k = 0; k < doc->nodes[obj].count; k++) {
    int64_t v = doc->nodes[c].next;
    if (json_string_eq(doc, c, key))
      found = v;
    c = doc->nodes[v].next;
  }
  return found;
}

int json_string_eq(const json_doc *doc, int64_t i, const char *s) {
  if (i < 0 || i >= doc->n || doc->nodes[i].type != JSON_STRING)
    return 0;
  const json_node *nd = &doc->nodes[i];
  size_t sl = strlen(s);
  if (!memchr(doc->text + nd->start, '\\', nd->len))
    return nd->len == sl && memcmp(doc->text + nd->start, s, sl) == 0;
  char buf[256];
  int64_t k = decode(doc, i, buf, sizeof buf);
  return k >= 0 && (size_t)k == sl && sl <= sizeof buf &&
         memcmp(buf, s, sl) == 0;
}

int64_t json_string_copy(const json_doc *doc, int64_t i, char *out,
                         size_t cap) {
  if (i < 0 || i >= doc->n || doc->nodes[i].type != JSON_STRING)
    return -1;
  int64_t k = decode(doc, i, out, out ? cap : 0);
  if (k < 0)
    return -1;
  if (out) {
    if ((size_t)k >= cap)
      return -1;
    out[k] = 0;
  }
  return k;
}

int json_int64(const json_doc *doc, int64_t i, int64_t *out) {
  if (i < 0 || i >= doc->n || doc->nodes[i].type != JSON_NUMBER)
    return -1;
  const char *s = doc->text + doc->nodes[i].start;
  size_t n = doc->nodes[i].len, r = 0;
  int neg = s[0] == '-';
  r += (size_t)neg;
  uint64_t v = 0;
  const uint64_t lim = neg ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX;
  for (; r < n; r++) {
    if (s[r] < '0' || s[r] > '9')
      return -1; /* a fraction or an exponent */
    unsigned d = (unsigned)(s[r] - '0');
    if (v > (lim - d) / 10)
      return -1;
    v = v * 10 + d;
  }
  *out = neg ? (int64_t)(0 - v) : (int64_t)v;
  return 0;
}

int json_double(const json_doc *doc, int64_t i, double *out) {
  if (i < 0 || i >= doc->n || doc->nodes[i].type != JSON_NUMBER)
    return -1;
  char buf[128];
  size_t n = doc->nodes[i].len;
  if (n >= sizeof buf)
    return -1;
  memcpy(buf, doc->text + doc->nodes[i].start, n);
  buf[n] = 0;
  errno = 0;
  char *end;
  double v = strtod(buf, &end);
  if (end != buf + n || errno == ERANGE)
    return -1;
  *out = v;
  return 0;
}
