/*
 * safetensors_write.c - the safetensors writer of the trainers' checkpoints
 * and a minimal reader of the same files (safetensors_write.h).
 */
#include "safetensors_write.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static int st_fail(char *err, size_t size, const char *fmt, ...) {
  if (err && size) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, size, fmt, ap);
    va_end(ap);
  }
  return -1;
}

static const char *dtype_name(stwrite_dtype d) {
  switch (d) {
  case STWRITE_F32:
    return "F32";
  case STWRITE_I32:
    return "I32";
  case STWRITE_I64:
    return "I64";
  case STWRITE_U8:
    return "U8";
  }
  return NULL;
}

static size_t dtype_size(stwrite_dtype d) {
  return d == STWRITE_U8 ? 1 : d == STWRITE_I64 ? 8 : 4;
}

static int name_ok(const char *s) {
  if (!s || !*s)
    return 0;
  for (; *s; s++)
    if (*s < 0x20 || *s > 0x7e || *s == '"' || *s == '\\')
      return 0;
  return 1;
}

/* A growing string. */
typedef struct sbuf {
  char *p;
  size_t n, cap;
  int oom;
} sbuf;

static void sb_add(sbuf *b, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  const int need = vsnprintf(NULL, 0, fmt, ap);
  va_end(ap);
  if (b->oom || need < 0)
    return;
  if (b->n + (size_t)need + 1 > b->cap) {
    size_t cap = b->cap ? b->cap * 2 : 1024;
    while (cap < b->n + (size_t)need + 1)
      cap *= 2;
    char *q = realloc(b->p, cap);
    if (!q) {
      b->oom = 1;
      return;
    }
    b->p = q;
    b->cap = cap;
  }
  va_start(ap, fmt);
  vsnprintf(b->p + b->n, b->cap - b->n, fmt, ap);
  va_end(ap);
  b->n += (size_t)need;
}

int stwrite_file(const char *path, const stwrite_tensor *t, int n,
                 const char *const *meta, int n_meta, char *err,
                 size_t err_size) {
  if (!path || (n > 0 && !t) || n < 0 || n_meta < 0 || (n_meta > 0 && !meta))
    return st_fail(err, err_size, "safetensors: bad arguments");
  sbuf h = {0};
  sb_add(&h, "{");
  if (n_meta > 0) {
    sb_add(&h, "\"__metadata__\":{");
    for (int i = 0; i < n_meta; i++) {
      if (!name_ok(meta[2 * i]) || !meta[2 * i + 1] ||
          (*meta[2 * i + 1] && !name_ok(meta[2 * i + 1]))) {
        free(h.p);
        return st_fail(err, err_size,
                       "%s: metadata pair %d has characters "
                       "this writer does not escape",
                       path, i);
      }
      sb_add(&h, "%s\"%s\":\"%s\"", i ? "," : "", meta[2 * i], meta[2 * i + 1]);
    }
    sb_add(&h, "}");
  }
  uint64_t off = 0;
  for (int i = 0; i < n; i++) {
    const char *dn = dtype_name(t[i].dtype);
    if (!name_ok(t[i].name) || strcmp(t[i].name, "__metadata__") == 0 || !dn ||
        t[i].ndim < 0 || t[i].ndim > 4 || !t[i].data) {
      free(h.p);
      return st_fail(err, err_size,
                     "%s: tensor %d (%s): bad name, dtype, "
                     "rank or data",
                     path, i, t[i].name ? t[i].name : "?");
    }
    for (int j = 0; j < i; j++)
      if (strcmp(t[j].name, t[i].name) == 0) {
        free(h.p);
        return st_fail(err, err_size, "%s: tensor name %s given twice", path,
                       t[i].name);
      }
    uint64_t count = 1;
    for (int d = 0; d < t[i].ndim; d++) {
      if (t[i].shape[d] < 0 ||
          (t[i].shape[d] > 0 &&
           count > (UINT64_MAX >> 4) / (uint64_t)t[i].shape[d])) {
        free(h.p);
        return st_fail(err, err_size, "%s: tensor %s: bad shape", path,
                       t[i].name);
      }
      count *= (uint64_t)t[i].shape[d];
    }
    const uint64_t bytes = count * dtype_size(t[i].dtype);
    sb_add(&h, "%s\"%s\":{\"dtype\":\"%s\",\"shape\":[",
           (i || n_meta) ? "," : "", t[i].name, dn);
    for (int d = 0; d < t[i].ndim; d++)
      sb_add(&h, "%s%" PRId64, d ? "," : "", t[i].shape[d]);
    sb_add(&h, "],\"data_offsets\":[%" PRIu64 ",%" PRIu64 "]}", off,
           off + bytes);
    off += bytes;
  }
  sb_add(&h, "}");
  while (!h.oom && (h.n % 8) != 0)
    sb_add(&h, " ");
  if (h.oom) {
    free(h.p);
    return st_fail(err, err_size, "%s: out of memory", path);
  }
  FILE *f = fopen(path, "wb");
  if (!f) {
    free(h.p);
    return st_fail(err, err_size, "%s: cannot be created", path);
  }
  unsigned char len[8];
  for (int i = 0; i < 8; i++)
    len[i] = (unsigned char)((uint64_t)h.n >> (8 * i));
  int ok = fwrite(len, 1, 8, f) == 8 && fwrite(h.p, 1, h.n, f) == h.n;
  for (int i = 0; ok && i < n; i++) {
    size_t count = 1;
    for (int d = 0; d < t[i].ndim; d++)
      count *= (size_t)t[i].shape[d];
    ok = fwrite(t[i].data, dtype_size(t[i].dtype), count, f) == count;
  }
  ok = (fclose(f) == 0) && ok;
  free(h.p);
  return ok ? 0 : st_fail(err, err_size, "%s: write failed", path);
}

/* ---- the minimal reader ------------------------------------------------- */

/* The header (NUL-terminated, *hlen bytes) and the file size. */
static char *read_header(const char *path, FILE **fp, uint64_t *hlen,
                         uint64_t *fsize, char *err, size_t err_size) {
  /* a regular file: O_NONBLOCK, so that a FIFO cannot block the open */
  int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
  struct stat st;
  if (fd < 0) {
    st_fail(err, err_size, "%s: cannot be opened: %s", path, strerror(errno));
    return NULL;
  }
  FILE *f = NULL;
  if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) ||
      (f = fdopen(fd, "rb")) == NULL) {
    close(fd);
    st_fail(err, err_size, "%s: not a regular file", path);
    return NULL;
  }
  unsigned char len[8];
  uint64_t n = 0;
  long end = -1;
  if (fread(len, 1, 8, f) == 8 && fseek(f, 0, SEEK_END) == 0)
    end = ftell(f);
  for (int i = 0; i < 8; i++)
    n |= (uint64_t)len[i] << (8 * i);
  if (end < 8 || n > (uint64_t)end - 8 || n > (100u << 20) ||
      fseek(f, 8, SEEK_SET) != 0) {
    fclose(f);
    st_fail(err, err_size, "%s: not a safetensors file (bad header length)",
            path);
    return NULL;
  }
  char *h = malloc((size_t)n + 1);
  if (!h || fread(h, 1, (size_t)n, f) != (size_t)n) {
    free(h);
    fclose(f);
    st_fail(err, err_size, "%s: truncated header", path);
    return NULL;
  }
  h[n] = 0;
  *fp = f;
  *hlen = n;
  *fsize = (uint64_t)end;
  return h;
}

int stwrite_read_f32(const char *path, const char *name, float *out,
                     int64_t count, char *err, size_t err_size) {
  FILE *f;
  uint64_t hlen, fsize;
  if (!name_ok(name) || !out || count < 0)
    return st_fail(err, err_size, "safetensors: bad arguments");
  char *h = read_header(path, &f, &hlen, &fsize, err, err_size);
  if (!h)
    return -1;
  char key[160];
  snprintf(key, sizeof key, "\"%s\":{\"dtype\":\"", name);
  const char *at = strstr(h, key);
  int rc = -1;
  if (!at) {
    rc = st_fail(err, err_size, "%s: no tensor %s", path, name);
    goto done;
  }
  at += strlen(key);
  if (strncmp(at, "F32\"", 4) != 0) {
    rc = st_fail(err, err_size, "%s: tensor %s is not F32", path, name);
    goto done;
  }
  const char *o = strstr(at, "\"data_offsets\":[");
  const char *close = strchr(at, '}');
  unsigned long long a, b;
  if (!o || !close || o > close || sscanf(o + 16, "%llu,%llu", &a, &b) != 2 ||
      a > b || b > fsize - 8 - hlen || (b - a) != (uint64_t)count * 4) {
    rc = st_fail(err, err_size,
                 "%s: tensor %s: bad offsets or not %" PRId64 " floats", path,
                 name, count);
    goto done;
  }
  if (fseek(f, (long)(8 + hlen + a), SEEK_SET) != 0 ||
      fread(out, 4, (size_t)count, f) != (size_t)count) {
    rc = st_fail(err, err_size, "%s: tensor %s: read failed", path, name);
    goto done;
  }
  rc = 0;
done:
  free(h);
  fclose(f);
  return rc;
}

int stwrite_read_meta(const char *path, const char *key, char *out, size_t size,
                      char *err, size_t err_size) {
  FILE *f;
  uint64_t hlen, fsize;
  if (!name_ok(key) || !out || !size)
    return st_fail(err, err_size, "safetensors: bad arguments");
  char *h = read_header(path, &f, &hlen, &fsize, err, err_size);
  if (!h)
    return -1;
  fclose(f);
  char pat[160];
  snprintf(pat, sizeof pat, "\"%s\":\"", key);
  const char *m = strstr(h, "\"__metadata__\":{");
  const char *at = m ? strstr(m, pat) : NULL;
  const char *mend = m ? strchr(m, '}') : NULL;
  if (!at || at > mend) {
    free(h);
    return st_fail(err, err_size, "%s: no metadata %s", path, key);
  }
  at += strlen(pat);
  const char *q = strchr(at, '"');
  if (!q || (size_t)(q - at) >= size) {
    free(h);
    return st_fail(err, err_size, "%s: metadata %s too long", path, key);
  }
  memcpy(out, at, (size_t)(q - at));
  out[q - at] = 0;
  free(h);
  return 0;
}
