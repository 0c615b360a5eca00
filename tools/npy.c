/*
 * npy.c - see npy.h. Format reference:
 * https://numpy.org/doc/stable/reference/generated/numpy.lib.format.html
 *
 *   "\x93NUMPY" major minor  header_len (u16 LE for 1.0, u32 LE for 2.0/3.0)
 *   header: a Python dict literal, padded with spaces, ending in '\n'
 *   data:   count * itemsize bytes, C order
 */
#include "npy.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const unsigned char npy_magic[6] = {0x93, 'N', 'U', 'M', 'P', 'Y'};

/* Writes a one-line message to err: control characters become '?'. */
static void set_err(char *err, size_t errsz, const char *fmt, ...) {
  if (err == NULL || errsz == 0)
    return;
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(err, errsz, fmt, ap);
  va_end(ap);
  if (n < 0)
    err[0] = '\0';
  for (char *c = err; *c != '\0'; c++) {
    if ((unsigned char)*c < 0x20 || (unsigned char)*c == 0x7f)
      *c = '?';
  }
}

static int host_is_little_endian(void) {
  const uint16_t one = 1;
  unsigned char c;
  memcpy(&c, &one, 1);
  return c == 1;
}

/* Reverses the bytes of each of count elements of size esize in place. */
static void swap_bytes(void *data, size_t count, size_t esize) {
  unsigned char *p = data;
  if (esize < 2)
    return;
  for (size_t i = 0; i < count; i++, p += esize) {
    for (size_t a = 0, b = esize - 1; a < b; a++, b--) {
      unsigned char t = p[a];
      p[a] = p[b];
      p[b] = t;
    }
  }
}

size_t npy_dtype_size(npy_dtype dtype) {
  switch (dtype) {
  case NPY_DTYPE_F32:
  case NPY_DTYPE_I32:
    return 4;
  case NPY_DTYPE_F16:
    return 2;
  case NPY_DTYPE_BOOL:
    return 1;
  }
  return 0;
}

const char *npy_dtype_descr(npy_dtype dtype) {
  switch (dtype) {
  case NPY_DTYPE_F32:
    return "<f4";
  case NPY_DTYPE_F16:
    return "<f2";
  case NPY_DTYPE_BOOL:
    return "|b1";
  case NPY_DTYPE_I32:
    return "<i4";
  }
  return "?";
}

/* ---------------------------------------------------------------------- */
/* Header dict parser: a cursor over [p, end), never reads past end.      */
/* ---------------------------------------------------------------------- */

typedef struct cursor {
  const char *p;
  const char *end;
} cursor;

static void skip_ws(cursor *c) {
  while (c->p < c->end &&
         (*c->p == ' ' || *c->p == '\t' || *c->p == '\n' || *c->p == '\r'))
    c->p++;
}

static int accept_char(cursor *c, char ch) {
  skip_ws(c);
  if (c->p < c->end && *c->p == ch) {
    c->p++;
    return 1;
  }
  return 0;
}

/* A quoted string without escapes; *s and *n point into the header. */
static int parse_string(cursor *c, const char **s, size_t *n) {
  skip_ws(c);
  if (c->p >= c->end || (*c->p != '\'' && *c->p != '"'))
    return -1;
  char q = *c->p++;
  const char *start = c->p;
  while (c->p < c->end && *c->p != q) {
    if (*c->p == '\\' || *c->p == '\n')
      return -1;
    c->p++;
  }
  if (c->p >= c->end)
    return -1;
  *s = start;
  *n = (size_t)(c->p - start);
  c->p++; /* closing quote */
  return 0;
}

static int match_word(cursor *c, const char *w) {
  size_t n = strlen(w);
  skip_ws(c);
  if ((size_t)(c->end - c->p) < n || memcmp(c->p, w, n) != 0)
    return 0;
  /* the word must end here */
  if ((size_t)(c->end - c->p) > n) {
    char nx = c->p[n];
    if ((nx >= 'a' && nx <= 'z') || (nx >= 'A' && nx <= 'Z') ||
        (nx >= '0' && nx <= '9') || nx == '_')
      return 0;
  }
  c->p += n;
  return 1;
}

/* A non-negative decimal integer that fits in int64. */
static int parse_dim(cursor *c, int64_t *out) {
  skip_ws(c);
  if (c->p >= c->end || *c->p < '0' || *c->p > '9')
    return -1;
  int64_t v = 0;
  while (c->p < c->end && *c->p >= '0' && *c->p <= '9') {
    int d = *c->p - '0';
    if (v > (INT64_MAX - d) / 10)
      return -2;
    v = v * 10 + d;
    c->p++;
  }
  *out = v;
  return 0;
}

/* Copies up to 16 characters of s into buf for a message. */
static const char *snip(const char *s, size_t n, char *buf, size_t bufsz) {
  size_t m = n < bufsz - 1 ? n : bufsz - 1;
  if (m > 16)
    m = 16;
  for (size_t i = 0; i < m; i++) {
    unsigned char ch = (unsigned char)s[i];
    buf[i] = (ch >= 0x20 && ch < 0x7f) ? (char)ch : '?';
  }
  buf[m] = '\0';
  return buf;
}

static int parse_dict(const char *h, size_t hlen, npy_array *out, char *err,
                      size_t errsz) {
  cursor c = {h, h + hlen};
  int have_descr = 0, have_fortran = 0, have_shape = 0;
  char tmp[32];

  if (!accept_char(&c, '{')) {
    set_err(err, errsz, "malformed header: expected '{'");
    return -1;
  }
  for (;;) {
    if (accept_char(&c, '}'))
      break;
    const char *key;
    size_t klen;
    if (parse_string(&c, &key, &klen) != 0) {
      set_err(err, errsz, "malformed header: expected a quoted key or '}'");
      return -1;
    }
    if (!accept_char(&c, ':')) {
      set_err(err, errsz, "malformed header: expected ':' after key");
      return -1;
    }
    if (klen == 5 && memcmp(key, "descr", 5) == 0) {
      const char *d;
      size_t dlen;
      if (have_descr++) {
        set_err(err, errsz, "malformed header: duplicate key 'descr'");
        return -1;
      }
      if (parse_string(&c, &d, &dlen) != 0) {
        set_err(err, errsz,
                "malformed header: 'descr' must be a string "
                "(structured dtypes are not supported)");
        return -1;
      }
      if (dlen == 3 && memcmp(d, "<f4", 3) == 0)
        out->dtype = NPY_DTYPE_F32;
      else if (dlen == 3 && memcmp(d, "<f2", 3) == 0)
        out->dtype = NPY_DTYPE_F16;
      else if (dlen == 3 && memcmp(d, "|b1", 3) == 0)
        out->dtype = NPY_DTYPE_BOOL;
      else if (dlen == 3 && memcmp(d, "<i4", 3) == 0)
        out->dtype = NPY_DTYPE_I32;
      else if (dlen >= 1 && d[0] == '>') {
        set_err(err, errsz,
                "big-endian dtype '%s' is not supported (use little-endian)",
                snip(d, dlen, tmp, sizeof tmp));
        return -1;
      } else {
        set_err(err, errsz,
                "unsupported dtype '%s' (expected <f4, <f2, <i4 or |b1)",
                snip(d, dlen, tmp, sizeof tmp));
        return -1;
      }
    } else if (klen == 13 && memcmp(key, "fortran_order", 13) == 0) {
      if (have_fortran++) {
        set_err(err, errsz, "malformed header: duplicate key 'fortran_order'");
        return -1;
      }
      if (match_word(&c, "True")) {
        set_err(err, errsz,
                "fortran_order=True is not supported "
                "(save a C-contiguous array)");
        return -1;
      }
      if (!match_word(&c, "False")) {
        set_err(err, errsz,
                "malformed header: 'fortran_order' must be True or False");
        return -1;
      }
    } else if (klen == 5 && memcmp(key, "shape", 5) == 0) {
      if (have_shape++) {
        set_err(err, errsz, "malformed header: duplicate key 'shape'");
        return -1;
      }
      if (!accept_char(&c, '(')) {
        set_err(err, errsz, "malformed header: 'shape' must be a tuple");
        return -1;
      }
      int n = 0;
      int trailing_comma = 0;
      for (;;) {
        if (accept_char(&c, ')'))
          break;
        int64_t v;
        int r = parse_dim(&c, &v);
        if (r == -2) {
          set_err(err, errsz, "shape dimension too large");
          return -1;
        }
        if (r != 0) {
          set_err(err, errsz, "malformed header: bad 'shape' tuple");
          return -1;
        }
        if (n < NPY_MAX_DIMS)
          out->shape[n] = v;
        n++;
        if (n > 64) {
          set_err(err, errsz, "malformed header: too many dimensions");
          return -1;
        }
        trailing_comma = accept_char(&c, ',');
        if (!trailing_comma) {
          if (!accept_char(&c, ')')) {
            set_err(err, errsz, "malformed header: bad 'shape' tuple");
            return -1;
          }
          break;
        }
      }
      if (n == 1 && !trailing_comma) {
        set_err(err, errsz, "malformed header: 'shape' must be a tuple");
        return -1;
      }
      if (n > NPY_MAX_DIMS) {
        set_err(err, errsz, "%d-D arrays are not supported (at most %d-D)", n,
                NPY_MAX_DIMS);
        return -1;
      }
      out->ndim = n;
    } else {
      set_err(err, errsz, "malformed header: unexpected key '%s'",
              snip(key, klen, tmp, sizeof tmp));
      return -1;
    }
    if (!accept_char(&c, ',')) {
      if (!accept_char(&c, '}')) {
        set_err(err, errsz, "malformed header: expected ',' or '}'");
        return -1;
      }
      break;
    }
  }
  skip_ws(&c);
  if (c.p != c.end) {
    set_err(err, errsz, "malformed header: unexpected text after the dict");
    return -1;
  }
  if (!have_descr || !have_fortran || !have_shape) {
    set_err(err, errsz, "malformed header: missing key '%s'",
            !have_descr     ? "descr"
            : !have_fortran ? "fortran_order"
                            : "shape");
    return -1;
  }
  return 0;
}

/* Parses the preamble and header of an image of len bytes; fills every field
 * of out but data and sets *data_off. Checks the data size exactly. */
static int parse_image(const unsigned char *b, size_t len, npy_array *out,
                       size_t *data_off, char *err, size_t errsz) {
  memset(out, 0, sizeof *out);
  for (int i = 0; i < NPY_MAX_DIMS; i++)
    out->shape[i] = 1;
  if (len < 8 || memcmp(b, npy_magic, sizeof npy_magic) != 0) {
    set_err(err, errsz, "bad magic (not a .npy file)");
    return -1;
  }
  unsigned major = b[6], minor = b[7];
  size_t pre;
  uint64_t hlen;
  if (major == 1 && minor == 0) {
    pre = 10;
    if (len < pre) {
      set_err(err, errsz, "truncated .npy preamble");
      return -1;
    }
    hlen = (uint64_t)b[8] | (uint64_t)b[9] << 8;
  } else if ((major == 2 || major == 3) && minor == 0) {
    pre = 12;
    if (len < pre) {
      set_err(err, errsz, "truncated .npy preamble");
      return -1;
    }
    hlen = (uint64_t)b[8] | (uint64_t)b[9] << 8 | (uint64_t)b[10] << 16 |
           (uint64_t)b[11] << 24;
  } else {
    set_err(err, errsz, "unsupported .npy format version %u.%u", major, minor);
    return -1;
  }
  if (hlen > NPY_MAX_HEADER_LEN) {
    set_err(err, errsz, "header length %llu is too large (max %u)",
            (unsigned long long)hlen, (unsigned)NPY_MAX_HEADER_LEN);
    return -1;
  }
  if (hlen > len - pre) {
    set_err(err, errsz, "header length %llu exceeds the file size",
            (unsigned long long)hlen);
    return -1;
  }
  if (parse_dict((const char *)b + pre, (size_t)hlen, out, err, errsz) != 0)
    return -1;

  out->elem_size = npy_dtype_size(out->dtype);
  int64_t count = 1;
  for (int i = 0; i < out->ndim; i++) {
    int64_t d = out->shape[i];
    if (d != 0 && count > INT64_MAX / d) {
      set_err(err, errsz, "element count overflows 64 bits");
      return -1;
    }
    count *= d;
  }
  if ((uint64_t)count > (uint64_t)(INT64_MAX / (int64_t)out->elem_size) ||
      (uint64_t)count > SIZE_MAX / out->elem_size) {
    set_err(err, errsz, "data size overflows");
    return -1;
  }
  out->count = count;
  size_t off = pre + (size_t)hlen;
  size_t want = (size_t)count * out->elem_size;
  size_t have = len - off;
  if (have < want) {
    set_err(err, errsz, "truncated data: %zu bytes, expected %zu", have, want);
    return -1;
  }
  if (have > want) {
    set_err(err, errsz, "%zu bytes of trailing garbage after the data",
            have - want);
    return -1;
  }
  *data_off = off;
  return 0;
}

int npy_read_mem(const void *buf, size_t len, npy_array *out, char *err,
                 size_t errsz) {
  npy_array a;
  size_t off = 0;
  if (out == NULL) {
    set_err(err, errsz, "no output array");
    return -1;
  }
  memset(out, 0, sizeof *out);
  if (buf == NULL) {
    set_err(err, errsz, len ? "no input buffer" : "bad magic (empty input)");
    return -1;
  }
  if (parse_image(buf, len, &a, &off, err, errsz) != 0)
    return -1;
  size_t nbytes = (size_t)a.count * a.elem_size;
  a.data = malloc(nbytes ? nbytes : 1);
  if (a.data == NULL) {
    set_err(err, errsz, "out of memory (%zu bytes)", nbytes);
    return -1;
  }
  if (nbytes)
    memcpy(a.data, (const unsigned char *)buf + off, nbytes);
  if (!host_is_little_endian())
    swap_bytes(a.data, (size_t)a.count, a.elem_size);
  *out = a;
  return 0;
}

int npy_read(const char *path, npy_array *out, char *err, size_t errsz) {
  char msg[256];
  if (out == NULL) {
    set_err(err, errsz, "no output array");
    return -1;
  }
  memset(out, 0, sizeof *out);
  if (path == NULL) {
    set_err(err, errsz, "no path");
    return -1;
  }
  FILE *f = fopen(path, "rb");
  if (f == NULL) {
    set_err(err, errsz, "%s: cannot open: %s", path, strerror(errno));
    return -1;
  }
  size_t cap = 1 << 16, len = 0;
  unsigned char *buf = malloc(cap);
  if (buf == NULL) {
    fclose(f);
    set_err(err, errsz, "%s: out of memory", path);
    return -1;
  }
  for (;;) {
    if (len == cap) {
      if (cap > SIZE_MAX / 2) {
        free(buf);
        fclose(f);
        set_err(err, errsz, "%s: file too large", path);
        return -1;
      }
      unsigned char *nb = realloc(buf, cap * 2);
      if (nb == NULL) {
        free(buf);
        fclose(f);
        set_err(err, errsz, "%s: out of memory", path);
        return -1;
      }
      buf = nb;
      cap *= 2;
    }
    size_t got = fread(buf + len, 1, cap - len, f);
    len += got;
    if (got == 0)
      break;
  }
  int bad = ferror(f);
  int saved = errno;
  fclose(f);
  if (bad) {
    free(buf);
    set_err(err, errsz, "%s: cannot read: %s", path, strerror(saved));
    return -1;
  }

  npy_array a;
  size_t off = 0;
  if (parse_image(buf, len, &a, &off, msg, sizeof msg) != 0) {
    free(buf);
    set_err(err, errsz, "%s: %s", path, msg);
    return -1;
  }
  /* Adopt the file buffer: move the data to its start and shrink it. */
  size_t nbytes = (size_t)a.count * a.elem_size;
  if (nbytes)
    memmove(buf, buf + off, nbytes);
  unsigned char *shrunk = realloc(buf, nbytes ? nbytes : 1);
  a.data = shrunk ? shrunk : buf;
  if (!host_is_little_endian())
    swap_bytes(a.data, (size_t)a.count, a.elem_size);
  *out = a;
  return 0;
}

void npy_free(npy_array *arr) {
  if (arr == NULL)
    return;
  free(arr->data);
  memset(arr, 0, sizeof *arr);
}

int npy_write(const char *path, npy_dtype dtype, const void *data, int ndim,
              const int64_t *shape, char *err, size_t errsz) {
  size_t esize = npy_dtype_size(dtype);
  if (path == NULL || esize == 0 || ndim < 0 || ndim > NPY_MAX_DIMS ||
      (ndim > 0 && shape == NULL)) {
    set_err(err, errsz, "%s: invalid arguments to npy_write",
            path ? path : "(null)");
    return -1;
  }
  int64_t count = 1;
  for (int i = 0; i < ndim; i++) {
    if (shape[i] < 0 || (shape[i] != 0 && count > INT64_MAX / shape[i])) {
      set_err(err, errsz, "%s: invalid shape", path);
      return -1;
    }
    count *= shape[i];
  }
  if ((uint64_t)count > SIZE_MAX / esize) {
    set_err(err, errsz, "%s: array too large", path);
    return -1;
  }
  if (count > 0 && data == NULL) {
    set_err(err, errsz, "%s: no data", path);
    return -1;
  }

  char hdr[256];
  int n = snprintf(hdr, sizeof hdr,
                   "{'descr': '%s', 'fortran_order': False, "
                   "'shape': (",
                   npy_dtype_descr(dtype));
  for (int i = 0; i < ndim; i++)
    n += snprintf(hdr + n, sizeof hdr - (size_t)n, "%s%lld", i ? ", " : "",
                  (long long)shape[i]);
  n +=
      snprintf(hdr + n, sizeof hdr - (size_t)n, "%s), }", ndim == 1 ? "," : "");
  /* pad with spaces so that the data starts on a 64-byte boundary */
  size_t total = 10 + (size_t)n + 1;
  size_t pad = (64 - total % 64) % 64;
  if ((size_t)n + pad + 1 >= sizeof hdr) {
    set_err(err, errsz, "%s: header too long", path);
    return -1;
  }
  memset(hdr + n, ' ', pad);
  hdr[(size_t)n + pad] = '\n';
  size_t hlen = (size_t)n + pad + 1;

  unsigned char pre[10];
  memcpy(pre, npy_magic, 6);
  pre[6] = 1;
  pre[7] = 0;
  pre[8] = (unsigned char)(hlen & 0xff);
  pre[9] = (unsigned char)(hlen >> 8);

  FILE *f = fopen(path, "wb");
  if (f == NULL) {
    set_err(err, errsz, "%s: cannot create: %s", path, strerror(errno));
    return -1;
  }
  int ok = fwrite(pre, 1, sizeof pre, f) == sizeof pre &&
           fwrite(hdr, 1, hlen, f) == hlen;
  size_t nbytes = (size_t)count * esize;
  if (ok && nbytes > 0) {
    if (host_is_little_endian() || esize == 1) {
      ok = fwrite(data, 1, nbytes, f) == nbytes;
    } else {
      unsigned char chunk[4096];
      const unsigned char *src = data;
      for (size_t done = 0; ok && done < nbytes;) {
        size_t m = nbytes - done < sizeof chunk ? nbytes - done : sizeof chunk;
        memcpy(chunk, src + done, m);
        swap_bytes(chunk, m / esize, esize);
        ok = fwrite(chunk, 1, m, f) == m;
        done += m;
      }
    }
  }
  int saved = errno;
  if (fclose(f) != 0 && ok) {
    ok = 0;
    saved = errno;
  }
  if (!ok) {
    set_err(err, errsz, "%s: write failed: %s", path, strerror(saved));
    return -1;
  }
  return 0;
}

int npy_write_f32(const char *path, const float *data, int ndim,
                  const int64_t *shape, char *err, size_t errsz) {
  return npy_write(path, NPY_DTYPE_F32, data, ndim, shape, err, errsz);
}
