/* show.c - what the renderers of `attn show` share (see show.h). */
#include "show.h"

#include "unicode.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* viridis (van der Walt and Smith, matplotlib) at t = 0, 0.1, ..., 1 */
static const unsigned char viridis[11][3] = {
    {68, 1, 84},    {72, 36, 117},  {65, 68, 135},  {53, 95, 141},
    {42, 120, 142}, {33, 145, 140}, {34, 168, 132}, {68, 191, 112},
    {122, 209, 81}, {189, 223, 38}, {253, 231, 37}};

void show_color(double t, unsigned char rgb[3]) {
  if (!(t > 0)) /* also NaN */
    t = 0;
  if (t > 1)
    t = 1;
  double x = t * 10.0;
  int i = (int)x;
  if (i > 9)
    i = 9;
  double f = x - i;
  for (int c = 0; c < 3; c++)
    rgb[c] = (unsigned char)lrint(viridis[i][c] +
                                  f * (viridis[i + 1][c] - viridis[i][c]));
}

float show_max(const float *x, int64_t n) {
  float m = 1e-30f;
  for (int64_t i = 0; i < n; i++)
    if (isfinite(x[i]) && x[i] > m)
      m = x[i];
  return m;
}

/* Copies at most max bytes of s into out, not cutting a UTF-8 sequence. */
static void cut_utf8(const char *s, size_t max, char *out, size_t size) {
  size_t n = strlen(s);
  if (n > max)
    n = max;
  if (n >= size)
    n = size - 1;
  while (n > 0 && ((unsigned char)s[n] & 0xC0) == 0x80)
    n--;
  memcpy(out, s, n);
  out[n] = 0;
}

static void block_label(const show_input *in, const char *tok, int64_t b,
                        char *out, size_t size) {
  const int64_t bs = in->view->block;
  char t[32];
  cut_utf8(tok, 24, t, sizeof t);
  if (bs == 1)
    snprintf(out, size, "%s", t);
  else
    snprintf(out, size, "%lld:%s", (long long)(b * bs), t);
}

void show_block_label(const show_input *in, int64_t b, char *out, size_t size) {
  const int64_t i = b * in->view->block;
  block_label(in, model_trace_query_token(in->trace, i), b, out, size);
}

void show_key_label(const show_input *in, int64_t b, char *out, size_t size) {
  const int64_t j = b * in->view->block;
  block_label(in, model_trace_key_token(in->trace, j), b, out, size);
}

void show_buf_add(show_buf *b, const char *s, size_t n) {
  if (b->failed)
    return;
  if (b->n + n + 1 > b->cap) {
    size_t cap = b->cap ? b->cap : 4096;
    while (cap < b->n + n + 1)
      cap *= 2;
    char *s2 = realloc(b->s, cap);
    if (!s2) {
      b->failed = 1;
      return;
    }
    b->s = s2;
    b->cap = cap;
  }
  memcpy(b->s + b->n, s, n);
  b->n += n;
  b->s[b->n] = 0;
}

void show_buf_str(show_buf *b, const char *s) { show_buf_add(b, s, strlen(s)); }

void show_buf_printf(show_buf *b, const char *fmt, ...) {
  char small[512];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(small, sizeof small, fmt, ap);
  va_end(ap);
  if (n < 0)
    return;
  if ((size_t)n < sizeof small) {
    show_buf_add(b, small, (size_t)n);
    return;
  }
  char *big = malloc((size_t)n + 1);
  if (!big) {
    b->failed = 1;
    return;
  }
  va_start(ap, fmt);
  vsnprintf(big, (size_t)n + 1, fmt, ap);
  va_end(ap);
  show_buf_add(b, big, (size_t)n);
  free(big);
}

void show_buf_json(show_buf *b, const char *s) {
  show_buf_add(b, "\"", 1);
  size_t n = strlen(s), i = 0;
  while (i < n) {
    uint32_t cp = 0;
    size_t k = utf8_decode(s + i, n - i, &cp);
    if (k == 0)
      k = 1;
    char e[16];
    if (cp == '"' || cp == '\\') {
      e[0] = '\\';
      e[1] = (char)cp;
      show_buf_add(b, e, 2);
    } else if (cp < 0x20 || cp == '<' || cp == '>' || cp == '&' ||
               cp == 0x2028 || cp == 0x2029) {
      snprintf(e, sizeof e, "\\u%04x", (unsigned)cp);
      show_buf_str(b, e);
    } else {
      char u[4];
      size_t m = utf8_encode(cp, u); /* U+FFFD for invalid input */
      show_buf_add(b, u, m);
    }
    i += k;
  }
  show_buf_add(b, "\"", 1);
}

void show_buf_xml(show_buf *b, const char *s) {
  size_t n = strlen(s), i = 0;
  while (i < n) {
    uint32_t cp = 0;
    size_t k = utf8_decode(s + i, n - i, &cp);
    if (k == 0)
      k = 1;
    if (cp == '&')
      show_buf_str(b, "&amp;");
    else if (cp == '<')
      show_buf_str(b, "&lt;");
    else if (cp == '>')
      show_buf_str(b, "&gt;");
    else if (cp == '"')
      show_buf_str(b, "&quot;");
    else if (cp == '\'')
      show_buf_str(b, "&#39;");
    else {
      if ((cp < 0x20 && cp != '\t' && cp != '\n') || cp == 0x7F ||
          cp == 0xFFFE || cp == 0xFFFF)
        cp = 0xFFFD; /* not allowed in XML 1.0 */
      char u[4];
      show_buf_add(b, u, utf8_encode(cp, u));
    }
    i += k;
  }
}

int show_buf_save(const show_buf *b, const char *path, char *err,
                  size_t err_size) {
  if (b->failed) {
    snprintf(err, err_size, "%s: out of memory", path);
    return -1;
  }
  FILE *f = fopen(path, "wb");
  if (!f) {
    snprintf(err, err_size, "%s: cannot write", path);
    return -1;
  }
  size_t w = b->n ? fwrite(b->s, 1, b->n, f) : 0;
  int bad = w != b->n;
  if (fclose(f) != 0)
    bad = 1;
  if (bad) {
    snprintf(err, err_size, "%s: write failed", path);
    return -1;
  }
  return 0;
}
