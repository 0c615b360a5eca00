/*
 * gen_npy.c - writes and inspects .npy files for the CLI tests (so that the
 * tests need no Python). Uses the library's reader and writer (attn/io.h).
 *
 *   gen_npy rand f32|f16 SEED PATH D0 [D1 ...]   uniform [-1, 1)
 *   gen_npy fill f32|bool VALUE PATH D0 [D1 ...] every element = VALUE
 *   gen_npy i32 PATH V0 [V1 ...]                 1-D int32 values
 *   gen_npy f32v PATH V0 [V1 ...]                1-D float32 values
 *   gen_npy bad KIND PATH                        a malformed file, KIND:
 *       magic truncated header-len dtype big-endian fortran 5d trailing
 *       syntax empty version dup-key missing-key huge-dim negative-dim
 *       object structured truncated-header huge-shape 9d
 *   gen_npy prefixmask PATH SQ SK N QOFF KOFF    bool [1, 1, SQ, SK]: the
 *       prefix-LM mask of attn.h, query i at position i + SK - SQ + QOFF,
 *       key j at j + KOFF, visible when kpos < N or kpos <= qpos
 *   gen_npy head N                               the first N bytes of a
 *       valid 2x3 float32 file to stdout (for pipes)
 *   gen_npy shape PATH                           prints "<descr> D0xD1..."
 *   gen_npy transpose12 IN OUT                   swaps axes 1 and 2 (4-D f32)
 *   gen_npy compare A B TOL                      same shape, max |a-b| <= TOL
 *   gen_npy t5 dense|sum TABLE N MAXD BIDIR SQ SK QOFF IN OUT   T5 table as
 *                                                a dense bias / dense grad
 *                                                summed per bucket
 *   gen_npy finite PATH                          every f32 element finite
 *   gen_npy rope BASE STYLE DIMS SCALING OFFS INV IN OUT
 *       RoPE by the C API (attn_rope_apply) of a 4-D float32 [batch, seq,
 *       heads, dim] array: row s of batch b at position s + OFFS[b]
 *       (OFFS: one integer, or one per batch, comma-separated); STYLE half
 *       or interleaved; SCALING none or KIND:F (linear, ntk, yarn,
 *       llama3); INV 1 = the inverse rotation
 *
 * Exit status 0 on success, 1 on a failed check or error, 2 on bad usage.
 */
#include "attn/io.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int usage(void) {
  fprintf(stderr, "usage: gen_npy rand|fill|i32|f32v|bad|shape|transpose12|"
                  "compare|finite|prefixmask|head|rope|t5 ... (see "
                  "gen_npy.c)\n");
  return 2;
}

static int parse_dims(int n, char **s, int64_t *shape) {
  if (n < 1 || n > ATTN_NPY_MAX_DIMS)
    return -1;
  for (int i = 0; i < n; i++) {
    char *end;
    long long v = strtoll(s[i], &end, 10);
    if (end == s[i] || *end != '\0' || v < 0)
      return -1;
    shape[i] = v;
  }
  return 0;
}

static int64_t count_of(int n, const int64_t *shape) {
  int64_t c = 1;
  for (int i = 0; i < n; i++)
    c *= shape[i];
  return c;
}

static int write_or_report(const char *path, attn_npy_dtype dt,
                           const void *data, int ndim, const int64_t *shape) {
  char err[512];
  if (attn_npy_write(path, dt, ndim, shape, data, err, sizeof err) != ATTN_OK) {
    fprintf(stderr, "gen_npy: %s\n", err);
    return 1;
  }
  return 0;
}

static int read_or_report(const char *path, attn_npy *a) {
  char err[512];
  if (attn_npy_read(path, a, err, sizeof err) != ATTN_OK) {
    fprintf(stderr, "gen_npy: %s\n", err);
    return 1;
  }
  return 0;
}

/* IEEE half from float, round to nearest even (normal range only). */
static uint16_t to_half(float f) {
  uint32_t x;
  memcpy(&x, &f, 4);
  uint32_t sign = (x >> 16) & 0x8000u;
  int32_t e = (int32_t)((x >> 23) & 0xff) - 127 + 15;
  uint32_t m = x & 0x7fffffu;
  if (e <= 0)
    return (uint16_t)sign; /* flush tiny values to zero */
  if (e >= 31)
    return (uint16_t)(sign | 0x7c00u);
  uint32_t h = sign | (uint32_t)e << 10 | m >> 13;
  uint32_t rest = m & 0x1fffu;
  if (rest > 0x1000u || (rest == 0x1000u && (h & 1u)))
    h++;
  return (uint16_t)h;
}

static int cmd_rand(int argc, char **argv) {
  int64_t shape[ATTN_NPY_MAX_DIMS];
  if (argc < 6 || parse_dims(argc - 5, argv + 5, shape) != 0)
    return usage();
  int half = strcmp(argv[2], "f16") == 0;
  if (!half && strcmp(argv[2], "f32") != 0)
    return usage();
  uint64_t s = strtoull(argv[3], NULL, 10) * 0x9E3779B97F4A7C15ULL + 7;
  int ndim = argc - 5;
  int64_t n = count_of(ndim, shape);
  void *buf = malloc(n ? (size_t)n * 4 : 1);
  if (buf == NULL)
    return 1;
  for (int64_t i = 0; i < n; i++) {
    s ^= s >> 12;
    s ^= s << 25;
    s ^= s >> 27;
    uint64_t r = s * 0x2545F4914F6CDD1DULL;
    float f = (float)((double)(r >> 40) / 8388608.0 - 1.0);
    if (half)
      ((uint16_t *)buf)[i] = to_half(f);
    else
      ((float *)buf)[i] = f;
  }
  int rc = write_or_report(argv[4], half ? ATTN_NPY_F16 : ATTN_NPY_F32, buf,
                           ndim, shape);
  free(buf);
  return rc;
}

static int cmd_fill(int argc, char **argv) {
  int64_t shape[ATTN_NPY_MAX_DIMS];
  if (argc < 6 || parse_dims(argc - 5, argv + 5, shape) != 0)
    return usage();
  int is_bool = strcmp(argv[2], "bool") == 0;
  if (!is_bool && strcmp(argv[2], "f32") != 0)
    return usage();
  double v = strtod(argv[3], NULL);
  int ndim = argc - 5;
  int64_t n = count_of(ndim, shape);
  void *buf = malloc(n ? (size_t)n * 4 : 1);
  if (buf == NULL)
    return 1;
  for (int64_t i = 0; i < n; i++) {
    if (is_bool)
      ((unsigned char *)buf)[i] = v != 0.0;
    else
      ((float *)buf)[i] = (float)v;
  }
  int rc = write_or_report(argv[4], is_bool ? ATTN_NPY_BOOL : ATTN_NPY_F32, buf,
                           ndim, shape);
  free(buf);
  return rc;
}

static int cmd_values(int argc, char **argv, int is_int) {
  if (argc < 3)
    return usage();
  int64_t n = argc - 3;
  void *buf = malloc(n ? (size_t)n * 4 : 1);
  if (buf == NULL)
    return 1;
  for (int64_t i = 0; i < n; i++) {
    if (is_int)
      ((int32_t *)buf)[i] = (int32_t)strtol(argv[3 + i], NULL, 10);
    else
      ((float *)buf)[i] = strtof(argv[3 + i], NULL);
  }
  int64_t shape[1] = {n};
  int rc = write_or_report(argv[2], is_int ? ATTN_NPY_I32 : ATTN_NPY_F32, buf,
                           1, shape);
  free(buf);
  return rc;
}

/* Writes preamble (version major.0) + header text (padded) + nbytes zeros. */
static int write_raw(const char *path, int major, const char *header,
                     size_t nbytes, int pad) {
  FILE *f = fopen(path, "wb");
  if (f == NULL) {
    perror(path);
    return 1;
  }
  size_t hlen = strlen(header);
  size_t pre = major == 1 ? 10 : 12;
  size_t padn = pad ? (64 - (pre + hlen + 1) % 64) % 64 : 0;
  size_t total = hlen + padn + 1;
  fwrite("\x93NUMPY", 1, 6, f);
  fputc(major, f);
  fputc(0, f);
  fputc((int)(total & 0xff), f);
  fputc((int)((total >> 8) & 0xff), f);
  if (major != 1) {
    fputc((int)((total >> 16) & 0xff), f);
    fputc((int)((total >> 24) & 0xff), f);
  }
  fputs(header, f);
  for (size_t i = 0; i < padn; i++)
    fputc(' ', f);
  fputc('\n', f);
  for (size_t i = 0; i < nbytes; i++)
    fputc(0, f);
  return fclose(f) == 0 ? 0 : 1;
}

/* The kinds of cmd_bad added for the library reader (attn/io.h). */
static int bad_more(const char *kind, const char *path) {
  if (strcmp(kind, "negative-dim") == 0)
    return write_raw(
        path, 1, "{'descr': '<f4', 'fortran_order': False, 'shape': (2, -3), }",
        24, 1);
  if (strcmp(kind, "object") == 0)
    return write_raw(path, 1,
                     "{'descr': '|O', 'fortran_order': False, 'shape': (3,), }",
                     24, 1);
  if (strcmp(kind, "structured") == 0)
    return write_raw(path, 1,
                     "{'descr': [('a', '<f4'), ('b', '<f4')], "
                     "'fortran_order': False, 'shape': (3,), }",
                     24, 1);
  if (strcmp(kind, "truncated-header") == 0) {
    /* the header says 118 bytes, the file ends inside the dict */
    FILE *f = fopen(path, "wb");
    if (f == NULL)
      return 1;
    fwrite("\x93NUMPY\x01\x00\x76\x00{'descr': '<f4', 'fortran", 1, 35, f);
    return fclose(f) == 0 ? 0 : 1;
  }
  if (strcmp(kind, "huge-shape") == 0) /* 4 TiB declared, no data */
    return write_raw(path, 1,
                     "{'descr': '<f4', 'fortran_order': False, "
                     "'shape': (1099511627776,), }",
                     0, 1);
  if (strcmp(kind, "9d") == 0)
    return write_raw(path, 1,
                     "{'descr': '<f4', 'fortran_order': False, "
                     "'shape': (1, 1, 1, 1, 1, 1, 1, 2, 3), }",
                     24, 1);
  return usage();
}

static int cmd_bad(int argc, char **argv) {
  if (argc != 4)
    return usage();
  const char *kind = argv[2], *path = argv[3];
  const char *ok =
      "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }";
  if (strcmp(kind, "magic") == 0) {
    FILE *f = fopen(path, "wb");
    if (f == NULL)
      return 1;
    fputs("\x93NUMPZ\x01\x00this is not an npy file\n", f);
    return fclose(f) == 0 ? 0 : 1;
  }
  if (strcmp(kind, "empty") == 0) {
    FILE *f = fopen(path, "wb");
    return f != NULL && fclose(f) == 0 ? 0 : 1;
  }
  if (strcmp(kind, "truncated") == 0)
    return write_raw(path, 1, ok, 23, 1); /* 24 needed */
  if (strcmp(kind, "trailing") == 0)
    return write_raw(path, 1, ok, 25, 1);
  if (strcmp(kind, "header-len") == 0) {
    /* header length field far beyond the end of the file */
    FILE *f = fopen(path, "wb");
    if (f == NULL)
      return 1;
    fwrite("\x93NUMPY\x02\x00\xff\xff\x00\x00{'descr': '<f4'", 1, 27, f);
    return fclose(f) == 0 ? 0 : 1;
  }
  if (strcmp(kind, "dtype") == 0)
    return write_raw(
        path, 1, "{'descr': '<f8', 'fortran_order': False, 'shape': (2, 3), }",
        48, 1);
  if (strcmp(kind, "big-endian") == 0)
    return write_raw(
        path, 1, "{'descr': '>f4', 'fortran_order': False, 'shape': (2, 3), }",
        24, 1);
  if (strcmp(kind, "fortran") == 0)
    return write_raw(
        path, 1, "{'descr': '<f4', 'fortran_order': True, 'shape': (2, 3), }",
        24, 1);
  if (strcmp(kind, "5d") == 0)
    return write_raw(path, 1,
                     "{'descr': '<f4', 'fortran_order': False, "
                     "'shape': (1, 1, 1, 2, 3), }",
                     24, 1);
  if (strcmp(kind, "syntax") == 0)
    return write_raw(path, 1,
                     "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3}",
                     24, 1);
  if (strcmp(kind, "version") == 0)
    return write_raw(path, 9, ok, 24, 1);
  if (strcmp(kind, "dup-key") == 0)
    return write_raw(path, 1,
                     "{'descr': '<f4', 'descr': '<f4', 'fortran_order': "
                     "False, 'shape': (2, 3), }",
                     24, 1);
  if (strcmp(kind, "missing-key") == 0)
    return write_raw(path, 1, "{'descr': '<f4', 'shape': (2, 3), }", 24, 1);
  if (strcmp(kind, "huge-dim") == 0)
    return write_raw(path, 1,
                     "{'descr': '<f4', 'fortran_order': False, "
                     "'shape': (4294967296, 4294967296, 4), }",
                     24, 1);
  return bad_more(kind, path);
}

static int cmd_prefixmask(int argc, char **argv) {
  if (argc != 8)
    return usage();
  int64_t sq = strtoll(argv[3], NULL, 10), sk = strtoll(argv[4], NULL, 10);
  int64_t n = strtoll(argv[5], NULL, 10), qoff = strtoll(argv[6], NULL, 10);
  int64_t koff = strtoll(argv[7], NULL, 10);
  if (sq < 1 || sk < 1 || sq > 4096 || sk > 4096)
    return usage();
  unsigned char *m = malloc((size_t)(sq * sk));
  if (m == NULL)
    return 1;
  for (int64_t i = 0; i < sq; i++) {
    for (int64_t j = 0; j < sk; j++) {
      int64_t qpos = i + sk - sq + qoff, kpos = j + koff;
      m[i * sk + j] = kpos < n || kpos <= qpos;
    }
  }
  int64_t shape[4] = {1, 1, sq, sk};
  int rc = write_or_report(argv[2], ATTN_NPY_BOOL, m, 4, shape);
  free(m);
  return rc;
}

/* The first n bytes of a valid [2, 3] float32 file, to stdout. */
static int cmd_head(int argc, char **argv) {
  if (argc != 3)
    return usage();
  float data[6] = {1, 2, 3, 4, 5, 6};
  int64_t shape[2] = {2, 3};
  unsigned char buf[256];
  size_t len = 0;
  if (attn_npy_encode(ATTN_NPY_F32, 2, shape, data, buf, sizeof buf, &len, NULL,
                      0) != ATTN_OK)
    return 1;
  long n = strtol(argv[2], NULL, 10);
  if (n < 0 || (size_t)n > len)
    n = (long)len;
  return fwrite(buf, 1, (size_t)n, stdout) == (size_t)n ? 0 : 1;
}

static int cmd_shape(int argc, char **argv) {
  attn_npy a;
  if (argc != 3)
    return usage();
  if (read_or_report(argv[2], &a))
    return 1;
  printf("%s ", attn_npy_dtype_descr(a.dtype));
  if (a.ndim == 0)
    printf("scalar");
  for (int i = 0; i < a.ndim; i++)
    printf("%s%lld", i ? "x" : "", (long long)a.shape[i]);
  printf("\n");
  attn_npy_free(&a);
  return 0;
}

static int cmd_transpose12(int argc, char **argv) {
  attn_npy a;
  if (argc != 4)
    return usage();
  if (read_or_report(argv[2], &a))
    return 1;
  if (a.dtype != ATTN_NPY_F32 || a.ndim != 4) {
    fprintf(stderr, "gen_npy: transpose12 needs a 4-D float32 array\n");
    attn_npy_free(&a);
    return 1;
  }
  const int64_t *s = a.shape;
  float *out = malloc(a.count ? (size_t)a.count * 4 : 1);
  const float *in = a.data;
  if (out == NULL) {
    attn_npy_free(&a);
    return 1;
  }
  for (int64_t i0 = 0; i0 < s[0]; i0++)
    for (int64_t i1 = 0; i1 < s[1]; i1++)
      for (int64_t i2 = 0; i2 < s[2]; i2++)
        for (int64_t i3 = 0; i3 < s[3]; i3++)
          out[((i0 * s[2] + i2) * s[1] + i1) * s[3] + i3] =
              in[((i0 * s[1] + i1) * s[2] + i2) * s[3] + i3];
  int64_t ns[4] = {s[0], s[2], s[1], s[3]};
  int rc = write_or_report(argv[3], ATTN_NPY_F32, out, 4, ns);
  free(out);
  attn_npy_free(&a);
  return rc;
}

static int cmd_compare(int argc, char **argv) {
  attn_npy a, b;
  if (argc != 5)
    return usage();
  double tol = strtod(argv[4], NULL);
  if (read_or_report(argv[2], &a))
    return 1;
  if (read_or_report(argv[3], &b)) {
    attn_npy_free(&a);
    return 1;
  }
  int rc = 0;
  if (a.dtype != ATTN_NPY_F32 || b.dtype != ATTN_NPY_F32 || a.ndim != b.ndim ||
      memcmp(a.shape, b.shape, sizeof a.shape) != 0) {
    fprintf(stderr, "gen_npy: compare: dtype or shape differ\n");
    rc = 1;
  } else {
    double maxd = 0.0;
    const float *x = a.data, *y = b.data;
    for (int64_t i = 0; i < a.count; i++) {
      double d;
      if (isinf(x[i]) && isinf(y[i]) && (x[i] > 0) == (y[i] > 0))
        d = 0.0;
      else
        d = fabs((double)x[i] - (double)y[i]);
      if (!(d <= maxd))
        maxd = isnan(d) ? INFINITY : d;
    }
    printf("max abs diff %.3e\n", maxd);
    rc = maxd <= tol ? 0 : 1;
  }
  attn_npy_free(&a);
  attn_npy_free(&b);
  return rc;
}

static int cmd_finite(int argc, char **argv) {
  attn_npy a;
  if (argc != 3)
    return usage();
  if (read_or_report(argv[2], &a))
    return 1;
  int rc = a.dtype == ATTN_NPY_F32 ? 0 : 1;
  const float *x = a.data;
  for (int64_t i = 0; rc == 0 && i < a.count; i++)
    if (!isfinite(x[i]))
      rc = 1;
  attn_npy_free(&a);
  return rc;
}

static int cmd_rope(int argc, char **argv) {
  attn_npy a;
  if (argc != 10)
    return usage();
  attn_rope r;
  attn_rope_init(&r);
  r.base = atof(argv[2]);
  r.style = strcmp(argv[3], "interleaved") == 0 ? ATTN_ROPE_INTERLEAVED
                                                : ATTN_ROPE_HALF;
  r.dims = atoll(argv[4]);
  static const char *const kinds[5] = {"none", "linear", "ntk", "yarn",
                                       "llama3"};
  for (int i = 1; i < 5; i++)
    if (strncmp(argv[5], kinds[i], strlen(kinds[i])) == 0 &&
        argv[5][strlen(kinds[i])] == ':') {
      r.scaling = (attn_rope_scaling)i;
      r.factor = atof(argv[5] + strlen(kinds[i]) + 1);
    }
  if (read_or_report(argv[8], &a))
    return 1;
  if (a.dtype != ATTN_NPY_F32 || a.ndim != 4) {
    fprintf(stderr, "gen_npy: rope needs a 4-D float32 array\n");
    attn_npy_free(&a);
    return 1;
  }
  int64_t offs[64], n = 0;
  for (const char *s = argv[6]; n < 64; n++) {
    char *end;
    offs[n] = strtoll(s, &end, 10);
    if (*end != ',') {
      n++;
      break;
    }
    s = end + 1;
  }
  const int64_t *sh = a.shape;
  attn_tensor x =
      attn_tensor_bshd(a.data, ATTN_DTYPE_F32, sh[0], sh[1], sh[2], sh[3]);
  attn_status st =
      n == 1 ? attn_rope_apply(&r, x, x, NULL, offs[0], NULL, atoi(argv[7]))
      : n == sh[0] ? attn_rope_apply(&r, x, x, NULL, 0, offs, atoi(argv[7]))
                   : ATTN_ERR_INVALID_SHAPE;
  int rc = 1;
  if (st != ATTN_OK)
    fprintf(stderr, "gen_npy: rope: %s\n", attn_strerror(st));
  else
    rc = write_or_report(argv[9], ATTN_NPY_F32, a.data, 4, sh);
  attn_npy_free(&a);
  return rc;
}

/* t5 dense|sum TABLE BUCKETS MAXD BIDIR SQ SK QOFF IN OUT: the T5 bias of
 * TABLE [N, H] as a dense [1, H, SQ, SK] bias (dense; IN unused), or a
 * dense gradient IN [B|1, H, SQ, SK] summed into the buckets [N, H]
 * (sum). Query i sits at i + SK - SQ + QOFF, key j at j. */
static int cmd_t5(int argc, char **argv) {
  attn_npy t, in;
  if (argc != 12)
    return usage();
  const int dense = strcmp(argv[2], "dense") == 0;
  const int64_t nb = atoll(argv[4]), md = atoll(argv[5]);
  const int bi = atoi(argv[6]);
  const int64_t sq = atoll(argv[7]), sk = atoll(argv[8]), qoff = atoll(argv[9]);
  if (read_or_report(argv[3], &t))
    return 1;
  const int64_t h = t.shape[1];
  const float *tab = t.data;
  int rc = 1;
  if (dense) {
    const int64_t shape[4] = {1, h, sq, sk};
    float *out = calloc((size_t)(h * sq * sk) + 1, sizeof(float));
    for (int64_t x = 0; out && x < h; x++)
      for (int64_t i = 0; i < sq; i++)
        for (int64_t j = 0; j < sk; j++) {
          const int64_t b =
              attn_t5_bucket(j - (i + sk - sq + qoff), nb, md, bi);
          out[(x * sq + i) * sk + j] = tab[b * h + x];
        }
    if (out)
      rc = write_or_report(argv[11], ATTN_NPY_F32, out, 4, shape);
    free(out);
  } else if (read_or_report(argv[10], &in) == 0) {
    const int64_t shape[2] = {nb, h};
    float *out = calloc((size_t)(nb * h) + 1, sizeof(float));
    const float *g = in.data;
    for (int64_t b0 = 0; out && b0 < in.shape[0]; b0++)
      for (int64_t x = 0; x < h; x++)
        for (int64_t i = 0; i < sq; i++)
          for (int64_t j = 0; j < sk; j++) {
            const int64_t b =
                attn_t5_bucket(j - (i + sk - sq + qoff), nb, md, bi);
            out[b * h + x] += g[((b0 * h + x) * sq + i) * sk + j];
          }
    if (out)
      rc = write_or_report(argv[11], ATTN_NPY_F32, out, 2, shape);
    free(out);
    attn_npy_free(&in);
  }
  attn_npy_free(&t);
  return rc;
}

int main(int argc, char **argv) {
  if (argc < 2)
    return usage();
  const char *c = argv[1];
  if (strcmp(c, "rand") == 0)
    return cmd_rand(argc, argv);
  if (strcmp(c, "fill") == 0)
    return cmd_fill(argc, argv);
  if (strcmp(c, "i32") == 0)
    return cmd_values(argc, argv, 1);
  if (strcmp(c, "f32v") == 0)
    return cmd_values(argc, argv, 0);
  if (strcmp(c, "bad") == 0)
    return cmd_bad(argc, argv);
  if (strcmp(c, "shape") == 0)
    return cmd_shape(argc, argv);
  if (strcmp(c, "transpose12") == 0)
    return cmd_transpose12(argc, argv);
  if (strcmp(c, "compare") == 0)
    return cmd_compare(argc, argv);
  if (strcmp(c, "finite") == 0)
    return cmd_finite(argc, argv);
  if (strcmp(c, "prefixmask") == 0)
    return cmd_prefixmask(argc, argv);
  if (strcmp(c, "head") == 0)
    return cmd_head(argc, argv);
  if (strcmp(c, "rope") == 0)
    return cmd_rope(argc, argv);
  if (strcmp(c, "t5") == 0)
    return cmd_t5(argc, argv);
  return usage();
}
