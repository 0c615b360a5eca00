/*
 * cache_fuzz.c - libFuzzer target for the KV cache (attn.h, "KV caches and
 * decoding"): a small cache description carved out of the input, hostile
 * in every field (seq_lens outside 0..capacity, block tables pointing
 * outside the pool or at one page twice, n_new out of range, zero or
 * negative sizes), then an append and an attend.
 *
 * Checks: no crash or sanitizer report; a failed append writes nothing
 * (seq_lens and both pools byte for byte as before) and says why; a
 * successful append advances seq_lens by n_new; a successful attend gives
 * finite outputs (the inputs are finite) and LSE finite or -inf, bitwise
 * the same on 1 and 3 threads (the 3 in a caller workspace of
 * attn_kv_cache_attend_workspace_size's bytes; the query on a failing call
 * returns a status). q and the output f32 or bf16 (with a bf16
 * cache and head dims of 32 or 64: the bf16 dot-product decode); the
 * cache f32, bf16, f16, q8_0 or q4_0.
 */
#include "attn.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

typedef struct reader {
  const uint8_t *p;
  size_t n;
} reader;

static unsigned take(reader *r) {
  if (r->n == 0)
    return 0;
  r->n--;
  return *r->p++;
}

/* lo .. lo + span - 1 from one byte */
static int64_t pick(reader *r, int64_t lo, int64_t span) {
  return lo + (int64_t)(take(r) % (unsigned)span);
}

static void fill(float *x, int64_t n, reader *r) {
  for (int64_t i = 0; i < n; i++)
    x[i] = (float)((int)take(r) - 128) / 64.0f;
}

/* Bytes of n values of dt (quantised: whole blocks). */
static size_t nbytes(attn_dtype dt, int64_t n) {
  const int64_t blk = attn_dtype_block(dt);
  return (size_t)((n > 0 ? n : 0) + blk - 1) / (size_t)blk *
         attn_dtype_size(dt);
}

/* x to dt at out; a quantised n not a multiple of the block stays zero
 * (such a cache is refused: head dims must be whole blocks). */
static void to_dtype(const float *x, int64_t n, attn_dtype dt, void *out) {
  if (dt == ATTN_DTYPE_Q8_0 || dt == ATTN_DTYPE_Q4_0) {
    if (n > 0 && n % attn_dtype_block(dt) == 0 &&
        attn_quantize_row(dt, x, n, out) != ATTN_OK)
      abort();
    return;
  }
  for (int64_t i = 0; i < n; i++) {
    if (dt == ATTN_DTYPE_F32)
      ((float *)out)[i] = x[i];
    else if (dt == ATTN_DTYPE_BF16)
      ((uint16_t *)out)[i] = attn_f32_to_bf16(x[i]);
    else
      ((uint16_t *)out)[i] = attn_f32_to_f16(x[i]);
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  reader r = {data, size};
  static const attn_dtype dts[3] = {ATTN_DTYPE_F32, ATTN_DTYPE_BF16,
                                    ATTN_DTYPE_F16};
  attn_kv_cache c;
  attn_kv_cache_init(&c);
  /* f32, bf16 or f16 (byte % 3); bytes 250 .. 255 (once also those):
   * q8_0 or q4_0, the quantised decode */
  const unsigned dtb = take(&r);
  c.dtype = dtb >= 250 ? ((dtb & 1) ? ATTN_DTYPE_Q4_0 : ATTN_DTYPE_Q8_0)
                       : dts[dtb % 3];
  c.num_seqs = pick(&r, 1, 3);
  c.heads_kv = pick(&r, 1, 2);
  /* 1 .. 16; bytes 248 .. 255 (once 9 .. 16): 32 or 64, whole bf16
   * vector pairs, which the decode's bf16 dot products need */
  const unsigned hd = take(&r);
  c.head_dim = hd >= 248 ? 32 << (hd & 1) : 1 + (int64_t)(hd % 16);
  c.head_dim_v = pick(&r, 0, 9); /* 0 = head_dim */
  const int64_t dv = c.head_dim_v ? c.head_dim_v : c.head_dim;
  const int paged = (int)pick(&r, 0, 2);
  int64_t rows;
  int32_t table[3 * 4];
  if (paged) {
    c.page_size = pick(&r, 1, 4);
    c.num_pages = pick(&r, 1, 8);
    c.blocks_per_seq = pick(&r, 1, 4);
    for (int i = 0; i < 12; i++)
      table[i] = (int32_t)pick(&r, -1, 11); /* -1 and >= num_pages: bad */
    c.block_table = table;
    rows = c.num_pages * c.page_size;
  } else {
    c.capacity = pick(&r, 0, 12);
    rows = c.num_seqs * c.capacity;
  }
  int32_t lens[3];
  for (int s = 0; s < 3; s++)
    lens[s] = (int32_t)pick(&r, -1, 14);
  c.seq_lens = lens;
  const int64_t nk = rows * c.heads_kv * c.head_dim,
                nv = rows * c.heads_kv * dv;
  const size_t kbytes = nbytes(c.dtype, nk), vbytes = nbytes(c.dtype, nv);
  void *kp = calloc(kbytes + 1, 1);
  void *vp = calloc(vbytes + 1, 1);
  float *tmp = malloc(sizeof(float) * (size_t)(nk + nv + 1));
  fill(tmp, nk + nv, &r);
  to_dtype(tmp, nk, c.dtype, kp);
  to_dtype(tmp + nk, nv, c.dtype, vp);
  c.k = kp;
  c.v = vp;
  char why[256];
  c.error_message = why;
  c.error_message_size = sizeof why;

  /* append: n_new from -1 .. seq_new (seq_new 0 .. 3) */
  const int64_t seq_new = pick(&r, 0, 4);
  int32_t nn[3];
  for (int s = 0; s < 3; s++)
    nn[s] = (int32_t)pick(&r, -1, (int64_t)seq_new + 2);
  const int64_t nnew = c.num_seqs * seq_new * c.heads_kv;
  float *kn = malloc(sizeof(float) * (size_t)(nnew * (c.head_dim + dv) + 1));
  fill(kn, nnew * (c.head_dim + dv), &r);
  attn_tensor kt = attn_tensor_bshd(kn, ATTN_DTYPE_F32, c.num_seqs, seq_new,
                                    c.heads_kv, c.head_dim);
  attn_tensor vt = attn_tensor_bshd(kn + nnew * c.head_dim, ATTN_DTYPE_F32,
                                    c.num_seqs, seq_new, c.heads_kv, dv);
  attn_rope rope;
  attn_rope_init(&rope);
  const int use_rope = (int)pick(&r, 0, 2) && c.head_dim % 2 == 0;
  void *k0 = malloc(kbytes + 1);
  void *v0 = malloc(vbytes + 1);
  memcpy(k0, kp, kbytes);
  memcpy(v0, vp, vbytes);
  int32_t lens0[3];
  memcpy(lens0, lens, sizeof lens);
  why[0] = '\0';
  const attn_status sa = attn_kv_cache_append(
      NULL, &c, kt, vt, pick(&r, 0, 2) ? nn : NULL, use_rope ? &rope : NULL);
  if (sa != ATTN_OK) {
    if (sa > 0 || memcmp(lens0, lens, sizeof lens) != 0 ||
        memcmp(k0, kp, kbytes) != 0 || memcmp(v0, vp, vbytes) != 0)
      abort(); /* a failed append wrote something */
    if (sa != ATTN_ERR_ABI && why[0] == '\0')
      abort(); /* no reason given */
  }

  /* attend: heads_q = heads_kv * group, seq_q 1..3 */
  const int64_t hq = c.heads_kv * pick(&r, 1, 2), sq = pick(&r, 1, 3);
  const int64_t nq = c.num_seqs * sq * hq;
  float *q = malloc(sizeof(float) * (size_t)(nq * c.head_dim));
  float *o1 = malloc(sizeof(float) * (size_t)(nq * dv));
  float *o3 = malloc(sizeof(float) * (size_t)(nq * dv));
  float lse1[3 * 3 * 4], lse3[3 * 3 * 4];
  fill(q, nq * c.head_dim, &r);
  attn_params p;
  attn_params_init(&p);
  p.lse = lse1;
  p.causal = (attn_causal)pick(&r, 0, 3);
  /* q and o f32, or (the last byte, so that older inputs keep their
   * meaning) bf16: with a bf16 cache, the bf16 dot-product decode */
  const attn_dtype qdt = pick(&r, 0, 2) ? ATTN_DTYPE_BF16 : ATTN_DTYPE_F32;
  uint16_t *q16 = malloc(sizeof(uint16_t) * (size_t)(nq * c.head_dim));
  to_dtype(q, nq * c.head_dim, ATTN_DTYPE_BF16, q16);
  p.q = attn_tensor_bshd(qdt == ATTN_DTYPE_F32 ? (void *)q : (void *)q16, qdt,
                         c.num_seqs, sq, hq, c.head_dim);
  p.o = attn_tensor_bshd(o1, qdt, c.num_seqs, sq, hq, dv);
  const size_t obytes = attn_dtype_size(qdt) * (size_t)(nq * dv);
  p.num_threads = 1;
  char pwhy[256];
  p.error_message = pwhy;
  p.error_message_size = sizeof pwhy;
  const attn_status s1 = attn_kv_cache_attend(NULL, &c, &p, NULL);
  if (s1 == ATTN_OK) {
    for (int64_t i = 0; i < nq * dv; i++)
      if (!isfinite(qdt == ATTN_DTYPE_F32
                        ? o1[i]
                        : attn_bf16_to_f32(((const uint16_t *)o1)[i])))
        abort();
    for (int64_t i = 0; i < nq; i++)
      if (isnan(lse1[i]) || lse1[i] == INFINITY)
        abort();
    p.o.data = o3;
    p.lse = lse3;
    p.num_threads = 3;
    /* 3 threads in a caller workspace of the size the query gives */
    size_t wsn = 0;
    if (attn_kv_cache_attend_workspace_size(NULL, &c, &p, NULL, &wsn) !=
        ATTN_OK)
      abort();
    void *ws = malloc(wsn ? wsn : 1);
    if (ws == NULL)
      abort();
    p.workspace = ws;
    p.workspace_size = wsn;
    if (attn_kv_cache_attend(NULL, &c, &p, NULL) != ATTN_OK ||
        memcmp(o1, o3, obytes) != 0 ||
        memcmp(lse1, lse3, sizeof(float) * (size_t)nq) != 0)
      abort(); /* thread counts differ */
    p.workspace = NULL;
    p.workspace_size = 0;
    free(ws);
  } else if (s1 > 0) {
    abort();
  } else {
    /* the size query on the same call: a status, never a crash */
    size_t wsn = 0;
    if (attn_kv_cache_attend_workspace_size(NULL, &c, &p, NULL, &wsn) > 0)
      abort();
  }
  free(q);
  free(q16);
  free(o1);
  free(o3);
  free(k0);
  free(v0);
  free(kn);
  free(tmp);
  free(kp);
  free(vp);
  return 0;
}
