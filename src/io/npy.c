/*
 * npy.c — attn/io.h: the .npy reader and writer. Every input is hostile.
 *
 *   "\x93NUMPY" major minor  header_len (u16 LE for 1.0, u32 LE for 2.0/3.0)
 *   header: a Python dict literal, padded with spaces, ending in '\n'
 *   data:   count * itemsize bytes, C order
 *
 * Reading is in three steps, the same for memory, files and streams: the
 * preamble (magic, version, header length), the header dict (dtype, order,
 * shape, then the payload size with overflow checks), then exactly the
 * payload. Nothing is allocated before the header is known to be valid.
 */
#include "attn/io.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#if defined(__GNUC__)
#define NPY_PRINTF(f, a) __attribute__((format(printf, f, a)))
#else
#define NPY_PRINTF(f, a)
#endif

static const unsigned char npy_magic[6] = {0x93, 'N', 'U', 'M', 'P', 'Y'};

/* A stream's payload buffer starts this big and doubles as data arrives. */
#define NPY_STREAM_CHUNK ((size_t)1 << 20)

/* A message buffer: one line, control characters replaced by '?'. */
typedef struct npy_msg {
  char *buf;
  size_t size;
} npy_msg;

NPY_PRINTF(3, 4)
static attn_status fail(npy_msg *m, attn_status st, const char *fmt, ...) {
  if (m->buf == NULL || m->size == 0)
    return st;
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(m->buf, m->size, fmt, ap);
  va_end(ap);
  if (n < 0)
    m->buf[0] = '\0';
  for (char *c = m->buf; *c != '\0'; c++) {
    if ((unsigned char)*c < 0x20 || (unsigned char)*c == 0x7f)
      *c = '?';
  }
  return st;
}

/* Rewrites the message in m as "path: message". */
static attn_status prefix_path(npy_msg *m, attn_status st, const char *path) {
  char tmp[512];
  if (m->buf == NULL || m->size == 0)
    return st;
  snprintf(tmp, sizeof tmp, "%s", m->buf);
  return fail(m, st, "%s: %s", path, tmp);
}

static int host_is_little_endian(void) {
  const uint16_t one = 1;
  unsigned char c;
  memcpy(&c, &one, 1);
  return c == 1;
}

/* Reverses the bytes of each of count elements of esize bytes, in place. */
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

static void to_host_order(attn_npy *a) {
  if (!host_is_little_endian())
    swap_bytes(a->data, (size_t)a->count, a->elem_size);
}

size_t attn_npy_dtype_size(attn_npy_dtype dtype) {
  switch (dtype) {
  case ATTN_NPY_F32:
  case ATTN_NPY_I32:
    return 4;
  case ATTN_NPY_F16:
    return 2;
  case ATTN_NPY_BOOL:
    return 1;
  case ATTN_NPY_I64:
    return 8;
  }
  return 0;
}

static const struct {
  attn_npy_dtype dtype;
  const char *descr;
} npy_descrs[] = {
    {ATTN_NPY_F32, "<f4"}, {ATTN_NPY_F16, "<f2"}, {ATTN_NPY_BOOL, "|b1"},
    {ATTN_NPY_I32, "<i4"}, {ATTN_NPY_I64, "<i8"},
};

const char *attn_npy_dtype_descr(attn_npy_dtype dtype) {
  for (size_t i = 0; i < sizeof npy_descrs / sizeof npy_descrs[0]; i++) {
    if (npy_descrs[i].dtype == dtype)
      return npy_descrs[i].descr;
  }
  return "?";
}

/* ---------------------------------------------------------------------- */
/* Step 1: the preamble                                                   */
/* ---------------------------------------------------------------------- */

/* Parses the len (>= 0) bytes available at b: the magic and version need
 * 8, the header length 10 (1.0) or 12 (2.0, 3.0). Sets *pre to the
 * preamble's size and *hlen to the header's. */
static attn_status preamble_parse(const unsigned char *b, size_t len,
                                  size_t *pre, size_t *hlen, npy_msg *m) {
  if (len < 8 || memcmp(b, npy_magic, sizeof npy_magic) != 0)
    return fail(m, ATTN_ERR_INVALID_ARGUMENT, "bad magic (not a .npy file)");
  unsigned major = b[6], minor = b[7];
  if (major == 1 && minor == 0)
    *pre = 10;
  else if ((major == 2 || major == 3) && minor == 0)
    *pre = 12;
  else
    return fail(m, ATTN_ERR_INVALID_ARGUMENT,
                "unsupported .npy format version %u.%u", major, minor);
  if (len < *pre)
    return fail(m, ATTN_ERR_INVALID_ARGUMENT, "truncated .npy preamble");
  uint32_t h = (uint32_t)b[8] | (uint32_t)b[9] << 8;
  if (*pre == 12)
    h |= (uint32_t)b[10] << 16 | (uint32_t)b[11] << 24;
  if (h > ATTN_NPY_MAX_HEADER_LEN)
    return fail(m, ATTN_ERR_INVALID_ARGUMENT,
                "header length %lu is too large (max %u)", (unsigned long)h,
                (unsigned)ATTN_NPY_MAX_HEADER_LEN);
  *hlen = h;
  return ATTN_OK;
}

/* ---------------------------------------------------------------------- */
/* Step 2: the header dict. A cursor over [p, end), never past end.       */
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
  if ((size_t)(c->end - c->p) > n) { /* the word must end here */
    char nx = c->p[n];
    if ((nx >= 'a' && nx <= 'z') || (nx >= 'A' && nx <= 'Z') ||
        (nx >= '0' && nx <= '9') || nx == '_')
      return 0;
  }
  c->p += n;
  return 1;
}

/* Up to 16 printable characters of s, for a message. */
static const char *snip(const char *s, size_t n, char buf[20]) {
  size_t k = n < 16 ? n : 16;
  for (size_t i = 0; i < k; i++) {
    unsigned char ch = (unsigned char)s[i];
    buf[i] = (ch >= 0x20 && ch < 0x7f) ? (char)ch : '?';
  }
  buf[k] = '\0';
  return buf;
}

static attn_status parse_descr(cursor *c, attn_npy *out, npy_msg *m) {
  const char *d;
  size_t n;
  char tmp[20];
  if (parse_string(c, &d, &n) != 0)
    return fail(m, ATTN_ERR_INVALID_DTYPE,
                "malformed header: 'descr' must be a string "
                "(structured dtypes are not supported)");
  for (size_t i = 0; i < sizeof npy_descrs / sizeof npy_descrs[0]; i++) {
    if (n == 3 && memcmp(d, npy_descrs[i].descr, 3) == 0) {
      out->dtype = npy_descrs[i].dtype;
      return ATTN_OK;
    }
  }
  if (n >= 1 && d[0] == '>')
    return fail(m, ATTN_ERR_INVALID_DTYPE,
                "big-endian dtype '%s' is not supported (use little-endian)",
                snip(d, n, tmp));
  if (n >= 2 && d[1] == 'O')
    return fail(m, ATTN_ERR_INVALID_DTYPE,
                "object dtype '%s' is not supported (arrays of Python "
                "objects cannot be read)",
                snip(d, n, tmp));
  return fail(m, ATTN_ERR_INVALID_DTYPE,
              "unsupported dtype '%s' (expected <f4, <f2, <i4, <i8 or |b1)",
              snip(d, n, tmp));
}

static attn_status parse_fortran(cursor *c, npy_msg *m) {
  if (match_word(c, "True"))
    return fail(m, ATTN_ERR_INVALID_DTYPE,
                "fortran_order=True is not supported "
                "(save a C-contiguous array)");
  if (!match_word(c, "False"))
    return fail(m, ATTN_ERR_INVALID_ARGUMENT,
                "malformed header: 'fortran_order' must be True or False");
  return ATTN_OK;
}

/* One dimension: a decimal integer >= 0 that fits in int64. */
static attn_status parse_dim(cursor *c, int64_t *out, npy_msg *m) {
  skip_ws(c);
  if (c->p < c->end && *c->p == '-')
    return fail(m, ATTN_ERR_INVALID_SHAPE, "negative dimension in 'shape'");
  if (c->p >= c->end || *c->p < '0' || *c->p > '9')
    return fail(m, ATTN_ERR_INVALID_ARGUMENT,
                "malformed header: bad 'shape' tuple");
  int64_t v = 0;
  while (c->p < c->end && *c->p >= '0' && *c->p <= '9') {
    int d = *c->p - '0';
    if (v > (INT64_MAX - d) / 10)
      return fail(m, ATTN_ERR_INVALID_SHAPE, "shape dimension too large");
    v = v * 10 + d;
    c->p++;
  }
  *out = v;
  return ATTN_OK;
}

/* A Python tuple of dimensions: (), (n,), (n, m), ... */
static attn_status parse_shape(cursor *c, attn_npy *out, npy_msg *m) {
  if (!accept_char(c, '('))
    return fail(m, ATTN_ERR_INVALID_ARGUMENT,
                "malformed header: 'shape' must be a tuple");
  int n = 0, trailing_comma = 0;
  while (!accept_char(c, ')')) {
    int64_t v = 0;
    attn_status st = parse_dim(c, &v, m);
    if (st != ATTN_OK)
      return st;
    if (n >= ATTN_NPY_MAX_DIMS)
      return fail(m, ATTN_ERR_INVALID_SHAPE,
                  "arrays of more than %d dimensions are not supported",
                  ATTN_NPY_MAX_DIMS);
    out->shape[n++] = v;
    trailing_comma = accept_char(c, ',');
    if (!trailing_comma) {
      if (!accept_char(c, ')'))
        return fail(m, ATTN_ERR_INVALID_ARGUMENT,
                    "malformed header: bad 'shape' tuple");
      break;
    }
  }
  if (n == 1 && !trailing_comma)
    return fail(m, ATTN_ERR_INVALID_ARGUMENT,
                "malformed header: 'shape' must be a tuple");
  out->ndim = n;
  return ATTN_OK;
}

/* The value of one key; seen[] counts descr, fortran_order, shape. */
static attn_status parse_entry(cursor *c, attn_npy *out, int seen[3],
                               npy_msg *m) {
  static const char *const keys[3] = {"descr", "fortran_order", "shape"};
  const char *key;
  size_t klen;
  char tmp[20];
  if (parse_string(c, &key, &klen) != 0)
    return fail(m, ATTN_ERR_INVALID_ARGUMENT,
                "malformed header: expected a quoted key or '}'");
  if (!accept_char(c, ':'))
    return fail(m, ATTN_ERR_INVALID_ARGUMENT,
                "malformed header: expected ':' after key");
  int k = 0;
  while (k < 3 && !(strlen(keys[k]) == klen && memcmp(key, keys[k], klen) == 0))
    k++;
  if (k == 3)
    return fail(m, ATTN_ERR_INVALID_ARGUMENT,
                "malformed header: unexpected key '%s'", snip(key, klen, tmp));
  if (seen[k]++)
    return fail(m, ATTN_ERR_INVALID_ARGUMENT,
                "malformed header: duplicate key '%s'", keys[k]);
  return k == 0   ? parse_descr(c, out, m)
         : k == 1 ? parse_fortran(c, m)
                  : parse_shape(c, out, m);
}

static attn_status parse_dict(const char *h, size_t hlen, attn_npy *out,
                              npy_msg *m) {
  cursor c = {h, h + hlen};
  int seen[3] = {0, 0, 0};
  if (!accept_char(&c, '{'))
    return fail(m, ATTN_ERR_INVALID_ARGUMENT, "malformed header: expected '{'");
  while (!accept_char(&c, '}')) {
    attn_status st = parse_entry(&c, out, seen, m);
    if (st != ATTN_OK)
      return st;
    if (!accept_char(&c, ',')) {
      if (!accept_char(&c, '}'))
        return fail(m, ATTN_ERR_INVALID_ARGUMENT,
                    "malformed header: expected ',' or '}'");
      break;
    }
  }
  skip_ws(&c);
  if (c.p != c.end)
    return fail(m, ATTN_ERR_INVALID_ARGUMENT,
                "malformed header: unexpected text after the dict");
  if (!seen[0] || !seen[1] || !seen[2])
    return fail(m, ATTN_ERR_INVALID_ARGUMENT,
                "malformed header: missing key '%s'",
                !seen[0]   ? "descr"
                : !seen[1] ? "fortran_order"
                           : "shape");
  return ATTN_OK;
}

/* Parses the header text and sets every field of out but data. */
static attn_status header_parse(const char *h, size_t hlen, attn_npy *out,
                                npy_msg *m) {
  memset(out, 0, sizeof *out);
  for (int i = 0; i < ATTN_NPY_MAX_DIMS; i++)
    out->shape[i] = 1;
  attn_status st = parse_dict(h, hlen, out, m);
  if (st != ATTN_OK)
    return st;
  out->elem_size = attn_npy_dtype_size(out->dtype);
  int64_t count = 1;
  for (int i = 0; i < out->ndim; i++) {
    int64_t d = out->shape[i];
    if (d != 0 && count > INT64_MAX / d)
      return fail(m, ATTN_ERR_OVERFLOW, "element count overflows 64 bits");
    count *= d;
  }
  if ((uint64_t)count > (uint64_t)INT64_MAX / out->elem_size ||
      (uint64_t)count > SIZE_MAX / out->elem_size)
    return fail(m, ATTN_ERR_OVERFLOW, "data size overflows");
  out->count = count;
  out->nbytes = (size_t)count * out->elem_size;
  return ATTN_OK;
}

/* The payload must be exactly want bytes; have are available. */
static attn_status payload_check(size_t have, size_t want, npy_msg *m) {
  if (have < want)
    return fail(m, ATTN_ERR_INVALID_ARGUMENT,
                "truncated data: %zu bytes, expected %zu", have, want);
  if (have > want)
    return fail(m, ATTN_ERR_INVALID_ARGUMENT,
                "%zu bytes of trailing garbage after the data", have - want);
  return ATTN_OK;
}

static attn_status alloc_data(attn_npy *a, npy_msg *m) {
  a->data = malloc(a->nbytes ? a->nbytes : 1);
  if (a->data == NULL)
    return fail(m, ATTN_ERR_OUT_OF_MEMORY, "out of memory (%zu bytes)",
                a->nbytes);
  return ATTN_OK;
}

/* ---------------------------------------------------------------------- */
/* From memory                                                            */
/* ---------------------------------------------------------------------- */

attn_status attn_npy_parse(const void *bytes, size_t n, attn_npy *out,
                           char *err, size_t err_size) {
  npy_msg m = {err, err_size};
  if (out == NULL)
    return fail(&m, ATTN_ERR_NULL_POINTER, "no output array");
  memset(out, 0, sizeof *out);
  if (bytes == NULL && n > 0)
    return fail(&m, ATTN_ERR_NULL_POINTER, "no input buffer");
  if (bytes == NULL)
    return fail(&m, ATTN_ERR_INVALID_ARGUMENT, "bad magic (empty input)");
  const unsigned char *b = bytes;
  size_t pre = 0, hlen = 0;
  attn_status st = preamble_parse(b, n, &pre, &hlen, &m);
  if (st != ATTN_OK)
    return st;
  if (hlen > n - pre)
    return fail(&m, ATTN_ERR_INVALID_ARGUMENT,
                "header length %zu exceeds the file size", hlen);
  attn_npy a;
  st = header_parse((const char *)b + pre, hlen, &a, &m);
  if (st == ATTN_OK)
    st = payload_check(n - pre - hlen, a.nbytes, &m);
  if (st == ATTN_OK)
    st = alloc_data(&a, &m);
  if (st != ATTN_OK)
    return st;
  if (a.nbytes)
    memcpy(a.data, b + pre + hlen, a.nbytes);
  to_host_order(&a);
  *out = a;
  return ATTN_OK;
}

void attn_npy_free(attn_npy *a) {
  if (a == NULL)
    return;
  free(a->data);
  memset(a, 0, sizeof *a);
}

/* ---------------------------------------------------------------------- */
/* From a file or a stream                                                */
/* ---------------------------------------------------------------------- */

/* An open file: its descriptor and, for a regular file of known size, that
 * size (streams: sized = 0). */
typedef struct npy_file {
  int fd;
  int sized;
  uint64_t size;
} npy_file;

/* Reads up to n bytes (fewer only at end of file) into buf; sets *got.
 * Returns 0, or -1 with errno on a read error. */
static int read_full(int fd, void *buf, size_t n, size_t *got) {
  unsigned char *p = buf;
  size_t done = 0;
  while (done < n) {
    size_t want = n - done < ((size_t)1 << 30) ? n - done : (size_t)1 << 30;
    ssize_t r = read(fd, p + done, want);
    if (r < 0 && errno == EINTR)
      continue;
    if (r < 0) {
      *got = done;
      return -1;
    }
    if (r == 0)
      break;
    done += (size_t)r;
  }
  *got = done;
  return 0;
}

static attn_status read_error(npy_msg *m) {
  return fail(m, ATTN_ERR_INVALID_ARGUMENT, "cannot read: %s", strerror(errno));
}

/* Steps 1 and 2: reads and parses the preamble and the header. */
static attn_status read_head(const npy_file *f, attn_npy *a, npy_msg *m) {
  unsigned char pre[12];
  size_t got = 0, more = 0, npre = 0, hlen = 0;
  if (read_full(f->fd, pre, 10, &got) != 0)
    return read_error(m);
  if (got == 10 && (pre[6] == 2 || pre[6] == 3) &&
      read_full(f->fd, pre + 10, 2, &more) != 0)
    return read_error(m);
  attn_status st = preamble_parse(pre, got + more, &npre, &hlen, m);
  if (st != ATTN_OK)
    return st;
  if (f->sized && (f->size < npre || hlen > f->size - npre))
    return fail(m, ATTN_ERR_INVALID_ARGUMENT,
                "header length %zu exceeds the file size", hlen);
  char *h = malloc(hlen ? hlen : 1);
  if (h == NULL)
    return fail(m, ATTN_ERR_OUT_OF_MEMORY, "out of memory (header)");
  if (read_full(f->fd, h, hlen, &got) != 0) {
    free(h);
    return read_error(m);
  }
  if (got < hlen)
    st = fail(m, ATTN_ERR_INVALID_ARGUMENT,
              "header length %zu exceeds the input (truncated header: %zu "
              "bytes)",
              hlen, got);
  else
    st = header_parse(h, hlen, a, m);
  free(h);
  if (st == ATTN_OK && f->sized)
    st = payload_check((size_t)(f->size - npre - hlen), a->nbytes, m);
  return st;
}

/* After the payload the input must end: one more byte is an error. */
static attn_status expect_end(const npy_file *f, npy_msg *m) {
  unsigned char extra;
  size_t got = 0;
  if (read_full(f->fd, &extra, 1, &got) != 0)
    return read_error(m);
  if (got != 0)
    return fail(m, ATTN_ERR_INVALID_ARGUMENT,
                "trailing bytes after the data (the %s goes on)",
                f->sized ? "file grew and" : "stream");
  return ATTN_OK;
}

/* Step 3 for a regular file: its size already matches, read it at once. */
static attn_status read_payload_sized(const npy_file *f, attn_npy *a,
                                      npy_msg *m) {
  attn_status st = alloc_data(a, m);
  size_t got = 0;
  if (st != ATTN_OK)
    return st;
  if (read_full(f->fd, a->data, a->nbytes, &got) != 0)
    return read_error(m);
  if (got < a->nbytes) /* the file shrank meanwhile */
    return payload_check(got, a->nbytes, m);
  return expect_end(f, m);
}

/* Step 3 for a stream: the buffer grows (doubling) only as data arrives,
 * up to the declared size, so a stream that stops early costs little. */
static attn_status read_payload_stream(const npy_file *f, attn_npy *a,
                                       npy_msg *m) {
  size_t cap = a->nbytes < NPY_STREAM_CHUNK ? a->nbytes : NPY_STREAM_CHUNK;
  size_t len = 0;
  unsigned char *buf = malloc(cap ? cap : 1);
  if (buf == NULL)
    return fail(m, ATTN_ERR_OUT_OF_MEMORY, "out of memory (%zu bytes)", cap);
  a->data = buf;
  for (;;) {
    size_t got = 0;
    if (read_full(f->fd, buf + len, cap - len, &got) != 0)
      return read_error(m);
    len += got;
    if (len < cap)
      return payload_check(len, a->nbytes, m);
    if (len == a->nbytes)
      break;
    size_t ncap = cap > a->nbytes / 2 ? a->nbytes : cap * 2;
    unsigned char *nb = realloc(buf, ncap);
    if (nb == NULL)
      return fail(m, ATTN_ERR_OUT_OF_MEMORY, "out of memory (%zu bytes)", ncap);
    a->data = buf = nb;
    cap = ncap;
  }
  return expect_end(f, m);
}

attn_status attn_npy_read(const char *path, attn_npy *out, char *err,
                          size_t err_size) {
  npy_msg m = {err, err_size};
  if (out == NULL)
    return fail(&m, ATTN_ERR_NULL_POINTER, "no output array");
  memset(out, 0, sizeof *out);
  if (path == NULL)
    return fail(&m, ATTN_ERR_NULL_POINTER, "no path");
  /* O_NONBLOCK: opening a FIFO that has no writer must not wait forever */
  npy_file f = {open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC), 0, 0};
  if (f.fd < 0)
    return fail(&m, ATTN_ERR_INVALID_ARGUMENT, "%s: cannot open: %s", path,
                strerror(errno));
  struct stat sb;
  int fstat_ok = fstat(f.fd, &sb) == 0;
  if (fstat_ok && S_ISREG(sb.st_mode) && sb.st_size > 0) {
    f.sized = 1; /* /proc files say 0: read those as streams */
    f.size = (uint64_t)sb.st_size;
  }
  if (fstat_ok && S_ISFIFO(sb.st_mode)) {
    /* a writer starting at the same time gets a second to connect and
     * send; after that a FIFO with no writer reads as empty (an error) */
    struct pollfd pfd = {f.fd, POLLIN, 0};
    (void)poll(&pfd, 1, 1000);
  }
  int fl = fcntl(f.fd, F_GETFL); /* then reads block: a stream as it comes */
  if (fl != -1)
    (void)fcntl(f.fd, F_SETFL, fl & ~O_NONBLOCK);
  attn_npy a;
  memset(&a, 0, sizeof a);
  attn_status st = read_head(&f, &a, &m);
  if (st == ATTN_OK)
    st = f.sized ? read_payload_sized(&f, &a, &m)
                 : read_payload_stream(&f, &a, &m);
  close(f.fd);
  if (st != ATTN_OK) {
    attn_npy_free(&a);
    return prefix_path(&m, st, path);
  }
  to_host_order(&a);
  *out = a;
  return ATTN_OK;
}

/* ---------------------------------------------------------------------- */
/* Writing                                                                */
/* ---------------------------------------------------------------------- */

/* Preamble and header of a version 1.0 file for (dt, ndim, shape), padded
 * so that the data starts on a 64-byte boundary; checks the arguments.
 * Sets *head_len and *nbytes (the payload). */
static attn_status head_build(attn_npy_dtype dt, int ndim, const int64_t *shape,
                              const void *data, unsigned char head[512],
                              size_t *head_len, size_t *nbytes, npy_msg *m) {
  size_t esize = attn_npy_dtype_size(dt);
  if (esize == 0)
    return fail(m, ATTN_ERR_INVALID_DTYPE, "unknown dtype %d", (int)dt);
  if (ndim < 0 || ndim > ATTN_NPY_MAX_DIMS)
    return fail(m, ATTN_ERR_INVALID_SHAPE, "ndim %d is not in 0..%d", ndim,
                ATTN_NPY_MAX_DIMS);
  if (ndim > 0 && shape == NULL)
    return fail(m, ATTN_ERR_NULL_POINTER, "no shape");
  int64_t count = 1;
  for (int i = 0; i < ndim; i++) {
    if (shape[i] < 0)
      return fail(m, ATTN_ERR_INVALID_SHAPE, "negative dimension %lld",
                  (long long)shape[i]);
    if (shape[i] != 0 && count > INT64_MAX / shape[i])
      return fail(m, ATTN_ERR_OVERFLOW, "element count overflows 64 bits");
    count *= shape[i];
  }
  if ((uint64_t)count > SIZE_MAX / esize)
    return fail(m, ATTN_ERR_OVERFLOW, "array too large");
  *nbytes = (size_t)count * esize;
  if (*nbytes > 0 && data == NULL)
    return fail(m, ATTN_ERR_NULL_POINTER, "no data");

  char *h = (char *)head + 10;
  const size_t cap = 512 - 10;
  int n = snprintf(h, cap, "{'descr': '%s', 'fortran_order': False, 'shape': (",
                   attn_npy_dtype_descr(dt));
  for (int i = 0; i < ndim; i++)
    n += snprintf(h + n, cap - (size_t)n, "%s%lld", i ? ", " : "",
                  (long long)shape[i]);
  n += snprintf(h + n, cap - (size_t)n, "%s), }", ndim == 1 ? "," : "");
  size_t pad = (64 - (10 + (size_t)n + 1) % 64) % 64;
  memset(h + n, ' ', pad); /* fits: at most ~290 + 63 + 1 bytes */
  h[(size_t)n + pad] = '\n';
  size_t hlen = (size_t)n + pad + 1;
  memcpy(head, npy_magic, 6);
  head[6] = 1;
  head[7] = 0;
  head[8] = (unsigned char)(hlen & 0xff);
  head[9] = (unsigned char)(hlen >> 8);
  *head_len = 10 + hlen;
  return ATTN_OK;
}

attn_status attn_npy_encode(attn_npy_dtype dt, int ndim, const int64_t *shape,
                            const void *data, void *buf, size_t cap,
                            size_t *len, char *err, size_t err_size) {
  npy_msg m = {err, err_size};
  unsigned char head[512];
  size_t head_len = 0, nbytes = 0;
  if (len == NULL)
    return fail(&m, ATTN_ERR_NULL_POINTER, "no length output");
  attn_status st =
      head_build(dt, ndim, shape, data, head, &head_len, &nbytes, &m);
  if (st != ATTN_OK)
    return st;
  if (nbytes > SIZE_MAX - head_len)
    return fail(&m, ATTN_ERR_OVERFLOW, "array too large");
  *len = head_len + nbytes;
  if (buf == NULL)
    return ATTN_OK;
  if (cap < *len)
    return fail(&m, ATTN_ERR_WORKSPACE_TOO_SMALL,
                "buffer of %zu bytes, %zu needed", cap, *len);
  unsigned char *out = buf;
  memcpy(out, head, head_len);
  if (nbytes)
    memcpy(out + head_len, data, nbytes);
  if (!host_is_little_endian())
    swap_bytes(out + head_len, nbytes / attn_npy_dtype_size(dt),
               attn_npy_dtype_size(dt));
  return ATTN_OK;
}

/* Writes n bytes of data, little-endian elements of esize bytes. */
static int write_data(FILE *f, const void *data, size_t n, size_t esize) {
  if (host_is_little_endian() || esize == 1)
    return fwrite(data, 1, n, f) == n;
  unsigned char chunk[4096];
  const unsigned char *src = data;
  for (size_t done = 0; done < n;) {
    size_t k = n - done < sizeof chunk ? n - done : sizeof chunk;
    memcpy(chunk, src + done, k);
    swap_bytes(chunk, k / esize, esize);
    if (fwrite(chunk, 1, k, f) != k)
      return 0;
    done += k;
  }
  return 1;
}

attn_status attn_npy_write(const char *path, attn_npy_dtype dt, int ndim,
                           const int64_t *shape, const void *data, char *err,
                           size_t err_size) {
  npy_msg m = {err, err_size};
  unsigned char head[512];
  size_t head_len = 0, nbytes = 0;
  if (path == NULL)
    return fail(&m, ATTN_ERR_NULL_POINTER, "no path");
  attn_status st =
      head_build(dt, ndim, shape, data, head, &head_len, &nbytes, &m);
  if (st != ATTN_OK)
    return prefix_path(&m, st, path);
  FILE *f = fopen(path, "wb");
  if (f == NULL)
    return fail(&m, ATTN_ERR_INVALID_ARGUMENT, "%s: cannot create: %s", path,
                strerror(errno));
  int ok = fwrite(head, 1, head_len, f) == head_len &&
           write_data(f, data, nbytes, attn_npy_dtype_size(dt));
  int saved = errno;
  if (fclose(f) != 0 && ok) {
    ok = 0;
    saved = errno;
  }
  if (!ok)
    return fail(&m, ATTN_ERR_INVALID_ARGUMENT, "%s: write failed: %s", path,
                strerror(saved));
  return ATTN_OK;
}
