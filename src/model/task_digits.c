/*
 * task_digits.c - scikit-learn's 8x8 digits for the ViT (vit.h): read from
 * the package's own data file, digits.csv.gz (no download, no export
 * step), inflated with the distribution's stb (stb_image's zlib decoder).
 * The file is treated as hostile: every field is checked.
 */
#include "vit.h"

#include <stb/stb_image.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DIGITS_MAX_FILE (16u << 20)

/* scikit-learn's directory asked of python (find_spec: no import) */
static int find_sklearn(char *path, size_t size) {
  const char *py = getenv("ATTN_PYTHON");
  char cmd[512];
  snprintf(cmd, sizeof cmd,
           "%s -c \"import importlib.util as u, os; s = "
           "u.find_spec('sklearn'); print(os.path.dirname(s.origin) if s "
           "and s.origin else '')\" 2>/dev/null",
           py && *py ? py : "python3");
  FILE *f = popen(cmd, "r");
  if (!f)
    return -1;
  char dir[400] = "";
  const int got = fgets(dir, sizeof dir, f) != NULL;
  pclose(f);
  dir[strcspn(dir, "\r\n")] = 0;
  if (!got || !*dir)
    return -1;
  snprintf(path, size, "%s/datasets/data/digits.csv.gz", dir);
  return 0;
}

/* the raw deflate stream of a gzip member (RFC 1952) */
static const unsigned char *gzip_body(const unsigned char *b, size_t n,
                                      size_t *len) {
  if (n < 18 || b[0] != 0x1f || b[1] != 0x8b || b[2] != 8)
    return NULL;
  const unsigned flg = b[3];
  size_t at = 10;
  if (flg & 4) { /* FEXTRA */
    if (at + 2 > n)
      return NULL;
    at += 2 + (size_t)(b[at] | b[at + 1] << 8);
  }
  for (unsigned f = 8; f <= 16; f <<= 1) /* FNAME, FCOMMENT */
    if (flg & f) {
      while (at < n && b[at])
        at++;
      at++;
    }
  if (flg & 2) /* FHCRC */
    at += 2;
  if (at + 8 > n)
    return NULL;
  *len = n - at - 8;
  return b + at;
}

static int parse_csv(const char *text, size_t n, task_digits *d,
                     const char *path, char *err, size_t err_size) {
  int64_t lines = 0;
  for (size_t i = 0; i < n; i++)
    lines += text[i] == '\n';
  if (n && text[n - 1] != '\n')
    lines++;
  d->x = malloc((size_t)(lines * TASK_DIGITS_PIXELS + 1) * sizeof *d->x);
  d->y = malloc((size_t)(lines + 1) * sizeof *d->y);
  if (!d->x || !d->y)
    return train_fail(err, err_size, "%s: out of memory", path);
  const char *p = text, *end = text + n;
  int64_t row = 0;
  while (p < end) {
    if (*p == '\n') { /* blank line */
      p++;
      continue;
    }
    for (int c = 0; c <= TASK_DIGITS_PIXELS; c++) {
      long v = 0;
      int digits = 0;
      while (p < end && *p >= '0' && *p <= '9' && digits < 4) {
        v = v * 10 + (*p++ - '0');
        digits++;
      }
      if (p < end && *p == '.') /* "3.0" */
        for (p++; p < end && *p == '0'; p++)
          ;
      const char want = c < TASK_DIGITS_PIXELS ? ',' : '\n';
      const int at_end = p >= end && c == TASK_DIGITS_PIXELS;
      if (!digits || (!at_end && (p >= end || (*p != want && *p != '\r'))) ||
          (c < TASK_DIGITS_PIXELS && v > 16) ||
          (c == TASK_DIGITS_PIXELS && v > 9))
        return train_fail(
            err, err_size,
            "%s: line %lld, field %d: not a value 0..16 (or a label "
            "0..9) followed by '%s'",
            path, (long long)row + 1, c + 1, c < 64 ? "," : "\\n");
      if (p < end && *p == '\r')
        p++;
      if (p < end)
        p++;
      if (c < TASK_DIGITS_PIXELS)
        d->x[row * TASK_DIGITS_PIXELS + c] = (float)v;
      else
        d->y[row] = (int32_t)v;
    }
    row++;
  }
  if (row < 10)
    return train_fail(err, err_size, "%s: %lld images, too few", path,
                      (long long)row);
  d->n = row;
  return 0;
}

int task_digits_load(const char *path, task_digits *d, char *err,
                     size_t err_size) {
  memset(d, 0, sizeof *d);
  char found[512];
  if (!path || !*path) {
    path = getenv("ATTN_DIGITS");
    if (!path || !*path) {
      if (find_sklearn(found, sizeof found))
        return train_fail(err, err_size,
                          "scikit-learn's digits were not found: pip install "
                          "scikit-learn, or give --data digits.csv.gz");
      path = found;
    }
  }
  FILE *f = fopen(path, "rb");
  if (!f)
    return train_fail(err, err_size, "%s: cannot be opened", path);
  unsigned char *buf = malloc(DIGITS_MAX_FILE);
  size_t n = buf ? fread(buf, 1, DIGITS_MAX_FILE, f) : 0;
  const int more = buf && fgetc(f) != EOF;
  fclose(f);
  if (!buf || more) {
    free(buf);
    return train_fail(err, err_size, "%s: %s", path,
                      buf ? "larger than 16 MiB" : "out of memory");
  }
  size_t body_len = 0;
  const unsigned char *body = gzip_body(buf, n, &body_len);
  char *text = NULL;
  int text_len = 0;
  if (body && body_len < (size_t)1 << 30)
    text = stbi_zlib_decode_noheader_malloc((const char *)body, (int)body_len,
                                            &text_len);
  else if (!body && n > 0 && buf[0] >= '0' && buf[0] <= '9') {
    text = (char *)buf; /* an uncompressed CSV */
    text_len = (int)n;
    buf = NULL;
  }
  free(buf);
  if (!text || text_len <= 0) {
    free(text);
    return train_fail(err, err_size, "%s: not a gzip-compressed CSV", path);
  }
  const int rc = parse_csv(text, (size_t)text_len, d, path, err, err_size);
  free(text);
  if (rc)
    task_digits_free(d);
  return rc;
}

void task_digits_free(task_digits *d) {
  free(d->x);
  free(d->y);
  memset(d, 0, sizeof *d);
}

void task_digits_split(const task_digits *d, int64_t *idx, int64_t *n_train) {
  train_rng r = {12345};
  for (int64_t i = 0; i < d->n; i++)
    idx[i] = i;
  for (int64_t i = d->n - 1; i > 0; i--) {
    const int64_t j = train_rng_below(&r, i + 1);
    const int64_t t = idx[i];
    idx[i] = idx[j];
    idx[j] = t;
  }
  *n_train = d->n - d->n / 5;
}

void task_digits_batch(const task_digits *d, const int64_t *idx, int64_t b,
                       train_rng *augment, float *images, int32_t *labels) {
  for (int64_t i = 0; i < b; i++) {
    const float *src = d->x + idx[i] * TASK_DIGITS_PIXELS;
    float *dst = images + i * TASK_DIGITS_PIXELS;
    int dy = 0, dx = 0;
    if (augment) {
      dy = (int)train_rng_below(augment, 3) - 1;
      dx = (int)train_rng_below(augment, 3) - 1;
    }
    for (int r = 0; r < 8; r++)
      for (int c = 0; c < 8; c++) {
        const int sr = r - dy, sc = c - dx;
        dst[r * 8 + c] = sr >= 0 && sr < 8 && sc >= 0 && sc < 8
                             ? src[sr * 8 + sc] / 16.0f
                             : 0.0f;
      }
    labels[i] = d->y[idx[i]];
  }
}
