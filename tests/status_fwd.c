/*
 * test_status, the forward's validation: shapes, head ratios, overlaps,
 * overflows, scalars, windows, packed sequences, dtypes, strides, forced
 * ISAs, workspaces and error messages (see test_status.c).
 */
#include "status.h"

#include <float.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

static void test_shapes(void) {
  attn_params p;
  char what[128];
  for (int t = 0; t < 4; t++)
    for (int a = 0; a < 4; a++)
      for (int v = 0; v >= -1; v--) {
        attn_tensor *ts[4] = {&p.q, &p.k, &p.v, &p.o};
        static const char *const tn = "qkvo";
        base(&p);
        ts[t]->shape[a] = v;
        snprintf(what, sizeof what, "%c.shape[%d] = %d", tn[t], a, v);
        if (a == 3)
          /* a zero head_dim is both "a size is zero" and "head_dim out of
           * 1..256": attn.h allows either reading */
          expect2(what, &p, ATTN_ERR_INVALID_SHAPE, ATTN_ERR_HEAD_DIM);
        else
          expect(what, &p, ATTN_ERR_INVALID_SHAPE);
      }
  base(&p), p.v.shape[1] = SK - 1;
  expect("k/v seq differ", &p, ATTN_ERR_INVALID_SHAPE);
  base(&p), p.o.shape[1] = SQ - 1;
  expect("o/q seq differ", &p, ATTN_ERR_INVALID_SHAPE);
  base(&p), p.k.shape[0] = 1, p.v.shape[0] = 1;
  expect("k/v batch differs from q", &p, ATTN_ERR_INVALID_SHAPE);
  base(&p), p.o.shape[0] = 1;
  expect("o batch differs from q", &p, ATTN_ERR_INVALID_SHAPE);
  base(&p), p.v.shape[2] = 1;
  expect("v heads differ from k heads", &p, ATTN_ERR_INVALID_SHAPE);
  base(&p), p.o.shape[2] = 2;
  expect("o heads differ from q heads", &p, ATTN_ERR_INVALID_SHAPE);
  base(&p), p.o.shape[3] = DV - 1;
  expect("o head_dim differs from v", &p, ATTN_ERR_INVALID_SHAPE);
}

static void test_heads(void) {
  attn_params p;
  base(&p);
  p.q = attn_tensor_bshd(qbuf, ATTN_DTYPE_F32, B, SQ, 6, D);
  p.o = attn_tensor_bshd(obuf, ATTN_DTYPE_F32, B, SQ, 6, DV);
  p.k = attn_tensor_bshd(kbuf, ATTN_DTYPE_F32, B, SK, 4, D);
  p.v = attn_tensor_bshd(vbuf, ATTN_DTYPE_F32, B, SK, 4, DV);
  p.lse = NULL;
  expect("heads 6 / 4", &p, ATTN_ERR_HEAD_RATIO);
  CHECK(strstr(msg, "6") && strstr(msg, "4"),
        "head ratio message should name 6 and 4: \"%s\"", msg);
  p.q.shape[2] = p.o.shape[2] = 2;
  expect("heads 2 / 4 (kv > q)", &p, ATTN_ERR_HEAD_RATIO);
  p.q = attn_tensor_bshd(qbuf, ATTN_DTYPE_F32, B, SQ, 8, D);
  p.o = attn_tensor_bshd(obuf, ATTN_DTYPE_F32, B, SQ, 8, DV);
  expect("heads 8 / 4 ok", &p, ATTN_OK);

  base(&p), p.k.shape[3] = D - 1;
  p.k.stride[1] = HK * (D - 1), p.k.stride[2] = D - 1;
  expect("q/k head_dim differ", &p, ATTN_ERR_HEAD_DIM);
  base(&p);
  p.q = attn_tensor_bshd(qbuf, ATTN_DTYPE_F32, B, SQ, HQ, 257);
  p.k = attn_tensor_bshd(kbuf, ATTN_DTYPE_F32, B, SK, HK, 257);
  expect("head_dim 257", &p, ATTN_ERR_HEAD_DIM);
  base(&p);
  p.v = attn_tensor_bshd(vbuf, ATTN_DTYPE_F32, B, SK, HK, 257);
  p.o = attn_tensor_bshd(obuf, ATTN_DTYPE_F32, B, SQ, HQ, 257);
  expect("head_dim_v 257", &p, ATTN_ERR_HEAD_DIM);
  base(&p);
  p.q = attn_tensor_bshd(qbuf, ATTN_DTYPE_F32, B, SQ, HQ, 256);
  p.k = attn_tensor_bshd(kbuf, ATTN_DTYPE_F32, B, SK, HK, 256);
  p.v = attn_tensor_bshd(vbuf, ATTN_DTYPE_F32, B, SK, HK, 256);
  p.o = attn_tensor_bshd(obuf, ATTN_DTYPE_F32, B, SQ, HQ, 256);
  expect("head_dim 256 ok", &p, ATTN_OK);
  base(&p);
  p.q = attn_tensor_bshd(qbuf, ATTN_DTYPE_F32, B, SQ, HQ, 1);
  p.k = attn_tensor_bshd(kbuf, ATTN_DTYPE_F32, B, SK, HK, 1);
  p.v = attn_tensor_bshd(vbuf, ATTN_DTYPE_F32, B, SK, HK, 3);
  p.o = attn_tensor_bshd(obuf, ATTN_DTYPE_F32, B, SQ, HQ, 3);
  expect("head_dim 1, head_dim_v 3 ok", &p, ATTN_OK);
}

static void test_overlap(void) {
  attn_params p;
  base(&p), p.o.data = qbuf;
  expect("o.data == q.data", &p, ATTN_ERR_OVERLAP);
  base(&p), p.o.data = kbuf + B * SK * HK * D - 3;
  expect("o overlaps the end of k", &p, ATTN_ERR_OVERLAP);
  base(&p), p.o.data = vbuf + 1;
  expect("o overlaps v", &p, ATTN_ERR_OVERLAP);
  base(&p);
  p.bias = attn_tensor_contiguous(obuf + 3, ATTN_DTYPE_F32, B, HQ, SQ, SK);
  expect("o overlaps bias", &p, ATTN_ERR_OVERLAP);
  base(&p);
  p.mask = attn_tensor_contiguous(obuf, ATTN_DTYPE_BOOL, 1, 1, SQ, SK);
  expect("o overlaps mask", &p, ATTN_ERR_OVERLAP);
  base(&p), p.lse = qbuf + 2;
  expect("lse overlaps q", &p, ATTN_ERR_OVERLAP);
  base(&p), p.lse = obuf + 5;
  expect("lse overlaps o", &p, ATTN_ERR_OVERLAP);
  base(&p), p.o.stride[1] = 0;
  /* o's own elements alias: attn.h names no code for it */
  expect2("o seq stride 0 (self-aliasing output)", &p, ATTN_ERR_OVERLAP,
          ATTN_ERR_INVALID_STRIDE);
  /* inputs may alias each other (packed QKV, self-attention on one buffer) */
  base(&p), p.k.data = qbuf, p.v.data = qbuf;
  p.k.shape[1] = p.v.shape[1] = SQ;
  expect("k and v alias q (inputs may overlap)", &p, ATTN_OK);
  base(&p), p.o.data = obuf + 64; /* adjacent, not overlapping */
  expect("o elsewhere in its buffer ok", &p, ATTN_OK);
}

static void test_overflow(void) {
  attn_params p;
  base(&p), p.q.stride[0] = INT64_MAX / 2;
  expect("q batch stride 2^62", &p, ATTN_ERR_OVERFLOW);
  base(&p), p.k.stride[1] = INT64_MAX / 3;
  expect("k seq stride * seq overflows", &p, ATTN_ERR_OVERFLOW);
  base(&p);
  p.q.shape[1] = p.o.shape[1] = (int64_t)1 << 40;
  p.q.shape[2] = p.o.shape[2] = (int64_t)1 << 22;
  expect2("q elements 2^63", &p, ATTN_ERR_OVERFLOW, ATTN_ERR_INVALID_SHAPE);
  base(&p);
  p.o.stride[0] = INT64_MAX;
  expect("o batch stride INT64_MAX", &p, ATTN_ERR_OVERFLOW);
  base(&p);
  p.bias = attn_tensor_contiguous(biasbuf, ATTN_DTYPE_F32, B, HQ, SQ, SK);
  p.bias.stride[0] = INT64_MAX - 5;
  expect("bias stride overflows", &p, ATTN_ERR_OVERFLOW);
}

static void test_scalars(void) {
  attn_params p;
  const float bad[3] = {NAN, INFINITY, -INFINITY};
  for (int i = 0; i < 3; i++) {
    char what[64];
    base(&p), p.scale = bad[i];
    snprintf(what, sizeof what, "scale %g", (double)bad[i]);
    expect(what, &p, ATTN_ERR_INVALID_SCALE);
    base(&p), p.softcap = bad[i];
    snprintf(what, sizeof what, "softcap %g", (double)bad[i]);
    expect(what, &p, ATTN_ERR_INVALID_SOFTCAP);
  }
  base(&p), p.softcap = -1.0f;
  expect("softcap -1", &p, ATTN_ERR_INVALID_SOFTCAP);
  base(&p), p.softcap = -FLT_MIN;
  expect("softcap -FLT_MIN", &p, ATTN_ERR_INVALID_SOFTCAP);
  base(&p), p.scale = -0.5f;
  expect("negative scale ok", &p, ATTN_OK);
  base(&p), p.scale = FLT_MAX;
  expect("scale FLT_MAX ok (finite)", &p, ATTN_OK);
  base(&p), p.softcap = 1e-30f;
  expect("tiny softcap ok", &p, ATTN_OK);

  base(&p), p.window_left = -2;
  expect("window_left -2", &p, ATTN_ERR_INVALID_WINDOW);
  base(&p), p.window_right = -2;
  expect("window_right -2", &p, ATTN_ERR_INVALID_WINDOW);
  base(&p), p.window_left = INT64_MIN;
  expect("window_left INT64_MIN", &p, ATTN_ERR_INVALID_WINDOW);
  base(&p), p.window_left = 0, p.window_right = 0;
  expect("window (0, 0) ok", &p, ATTN_OK);

  base(&p), p.causal = (attn_causal)3;
  expect("causal 3", &p, ATTN_ERR_INVALID_ARGUMENT);
  base(&p), p.causal = (attn_causal)-1;
  expect("causal -1", &p, ATTN_ERR_INVALID_ARGUMENT);
  base(&p), p.isa = (attn_isa)99;
  expect("isa 99", &p, ATTN_ERR_INVALID_ARGUMENT);
  base(&p), p.num_threads = -1;
  expect("num_threads -1", &p, ATTN_ERR_INVALID_ARGUMENT);
}

/* Huge windows must not overflow (UBSan watches) and equal no window. */
void status_window_extremes(void) {
  attn_params p;
  static float o_ref[B * SQ * HQ * DV], lse_ref[B * HQ * SQ];
  const int64_t big[3] = {INT64_MAX, INT64_MAX - 1, (int64_t)1 << 62};
  for (int c = 0; c < 3; c++) {
    base(&p), p.causal = (attn_causal)c;
    if (attn_forward(NULL, &p) != ATTN_OK) {
      CHECK(0, "reference call failed: %s", msg);
      return;
    }
    memcpy(o_ref, obuf, sizeof o_ref);
    memcpy(lse_ref, lsebuf, sizeof lse_ref);
    for (int i = 0; i < 3; i++) {
      double e = 0.0;
      base(&p), p.causal = (attn_causal)c;
      p.window_left = big[i], p.window_right = big[i];
      CHECK(attn_forward(NULL, &p) == ATTN_OK, "window %lld: %s",
            (long long)big[i], msg);
      for (size_t x = 0; x < sizeof o_ref / sizeof o_ref[0]; x++)
        e = fmax(e, fabs((double)obuf[x] - o_ref[x]));
      for (size_t x = 0; x < sizeof lse_ref / sizeof lse_ref[0]; x++)
        e = fmax(e, fabs((double)lsebuf[x] - lse_ref[x]));
      CHECK(e < 1e-5,
            "causal %d, window (%lld, %lld) differs from no window "
            "by %g",
            c, (long long)big[i], (long long)big[i], e);
    }
  }
}

/* Two packed sequences: q rows {2, 4}, k rows {3, 4}. */
static void varlen_base(attn_params *p, int32_t cq[3], int32_t ck[3]) {
  base(p);
  p->q = attn_tensor_bshd(qbuf, ATTN_DTYPE_F32, 1, 6, HQ, D);
  p->o = attn_tensor_bshd(obuf, ATTN_DTYPE_F32, 1, 6, HQ, DV);
  p->k = attn_tensor_bshd(kbuf, ATTN_DTYPE_F32, 1, 7, HK, D);
  p->v = attn_tensor_bshd(vbuf, ATTN_DTYPE_F32, 1, 7, HK, DV);
  p->cu_seqlens_q = cq, p->cu_seqlens_k = ck, p->varlen_batch = 2;
  cq[0] = 0, cq[1] = 2, cq[2] = 6, ck[0] = 0, ck[1] = 3, ck[2] = 7;
}

static void test_seqlens(void) {
  attn_params p;
  int32_t cq[3] = {0, 2, 6}, ck[3] = {0, 3, 7};
  int32_t kvl[B] = {SK, 0};
  varlen_base(&p, cq, ck);
  expect("varlen ok", &p, ATTN_OK);
  varlen_base(&p, cq, ck), cq[1] = 0;
  expect("varlen with an empty query sequence ok", &p, ATTN_OK);
  varlen_base(&p, cq, ck), ck[1] = 0;
  expect("varlen with an empty key sequence ok", &p, ATTN_OK);
  varlen_base(&p, cq, ck), cq[1] = 5, cq[2] = 3;
  expect("cu_seqlens_q decreasing", &p, ATTN_ERR_INVALID_SEQLENS);
  varlen_base(&p, cq, ck), ck[1] = 8;
  expect("cu_seqlens_k decreasing", &p, ATTN_ERR_INVALID_SEQLENS);
  varlen_base(&p, cq, ck), cq[2] = 7;
  expect("cu_seqlens_q beyond q rows", &p, ATTN_ERR_INVALID_SEQLENS);
  varlen_base(&p, cq, ck), ck[2] = 8;
  expect("cu_seqlens_k beyond k rows", &p, ATTN_ERR_INVALID_SEQLENS);
  varlen_base(&p, cq, ck), cq[0] = -1;
  expect("cu_seqlens_q[0] = -1", &p, ATTN_ERR_INVALID_SEQLENS);
  varlen_base(&p, cq, ck), cq[1] = INT32_MIN;
  expect("cu_seqlens_q[1] = INT32_MIN", &p, ATTN_ERR_INVALID_SEQLENS);
  varlen_base(&p, cq, ck), p.cu_seqlens_k = NULL;
  expect("only cu_seqlens_q", &p, ATTN_ERR_INVALID_SEQLENS);
  varlen_base(&p, cq, ck), p.cu_seqlens_q = NULL;
  expect("only cu_seqlens_k", &p, ATTN_ERR_INVALID_SEQLENS);
  varlen_base(&p, cq, ck), p.varlen_batch = 0;
  expect("varlen_batch 0", &p, ATTN_ERR_INVALID_SEQLENS);
  varlen_base(&p, cq, ck), p.varlen_batch = -3;
  expect("varlen_batch -3", &p, ATTN_ERR_INVALID_SEQLENS);
  varlen_base(&p, cq, ck);
  p.q.shape[0] = p.o.shape[0] = p.k.shape[0] = p.v.shape[0] = 2;
  expect2("varlen with batch 2", &p, ATTN_ERR_INVALID_SHAPE,
          ATTN_ERR_INVALID_SEQLENS);
  varlen_base(&p, cq, ck), p.lse = lsebuf; /* [heads_q, total_q] fits */
  expect("varlen lse ok", &p, ATTN_OK);
  varlen_base(&p, cq, ck), p.lse = qbuf + 1;
  expect("varlen lse overlaps q", &p, ATTN_ERR_OVERLAP);

  base(&p), p.kv_lens = kvl;
  expect("kv_lens {seq_k, 0} ok", &p, ATTN_OK);
  kvl[1] = -1;
  expect("kv_lens -1", &p, ATTN_ERR_INVALID_SEQLENS);
  kvl[1] = SK + 1;
  expect("kv_lens seq_k + 1", &p, ATTN_ERR_INVALID_SEQLENS);
  kvl[1] = INT32_MAX;
  expect("kv_lens INT32_MAX", &p, ATTN_ERR_INVALID_SEQLENS);
  kvl[1] = 3;
}

static void test_dtypes(void) {
  attn_params p;
  base(&p), p.q.dtype = (attn_dtype)7;
  expect("q dtype 7", &p, ATTN_ERR_INVALID_DTYPE);
  base(&p), p.q.dtype = (attn_dtype)-1;
  expect("q dtype -1", &p, ATTN_ERR_INVALID_DTYPE);
  base(&p), p.q.dtype = ATTN_DTYPE_BOOL;
  expect("q dtype bool", &p, ATTN_ERR_INVALID_DTYPE);
  base(&p), p.v.dtype = ATTN_DTYPE_BOOL;
  expect("v dtype bool", &p, ATTN_ERR_INVALID_DTYPE);
  base(&p), p.o.dtype = ATTN_DTYPE_BOOL;
  expect("o dtype bool", &p, ATTN_ERR_INVALID_DTYPE);
  base(&p), p.o.dtype = (attn_dtype)42;
  expect("o dtype 42", &p, ATTN_ERR_INVALID_DTYPE);
  /* attn.h: Q, K, V and O may each have any storage dtype */
  base(&p), p.k.dtype = ATTN_DTYPE_BF16;
  expect("k bf16 with q f32 ok", &p, ATTN_OK);
  base(&p), p.v.dtype = ATTN_DTYPE_F16;
  expect("v f16 with q f32 ok", &p, ATTN_OK);
  base(&p);
  p.q.dtype = p.k.dtype = p.v.dtype = ATTN_DTYPE_BF16;
  p.o.dtype = ATTN_DTYPE_F16;
  expect("bf16 in, f16 out ok", &p, ATTN_OK);

  /* bias */
  base(&p);
  p.bias = attn_tensor_contiguous(biasbuf, ATTN_DTYPE_BF16, B, HQ, SQ, SK);
  expect("bias bf16", &p, ATTN_ERR_INVALID_DTYPE);
  p.bias.dtype = ATTN_DTYPE_BOOL;
  expect("bias bool", &p, ATTN_ERR_INVALID_DTYPE);
  p.bias.dtype = (attn_dtype)9;
  expect("bias dtype 9", &p, ATTN_ERR_INVALID_DTYPE);
  p.bias = attn_tensor_contiguous(biasbuf, ATTN_DTYPE_F32, B, HQ, SQ, SK + 1);
  expect("bias seq_k + 1", &p, ATTN_ERR_INVALID_SHAPE);
  p.bias = attn_tensor_contiguous(biasbuf, ATTN_DTYPE_F32, B, HQ, 2, SK);
  expect("bias seq_q 2 (neither 1 nor 5)", &p, ATTN_ERR_INVALID_SHAPE);
  p.bias = attn_tensor_contiguous(biasbuf, ATTN_DTYPE_F32, B + 1, 1, SQ, SK);
  expect("bias batch 3", &p, ATTN_ERR_INVALID_SHAPE);
  p.bias = attn_tensor_contiguous(biasbuf, ATTN_DTYPE_F32, B, HK, SQ, SK);
  expect("bias heads = kv heads", &p, ATTN_ERR_INVALID_SHAPE);
  p.bias = attn_tensor_contiguous(biasbuf, ATTN_DTYPE_F32, B, HQ, 0, SK);
  expect("bias seq_q 0", &p, ATTN_ERR_INVALID_SHAPE);
  p.bias = attn_tensor_contiguous(biasbuf, ATTN_DTYPE_F32, B, HQ, SQ, SK);
  p.bias.stride[3] = -1;
  expect("bias stride -1", &p, ATTN_ERR_INVALID_STRIDE);
  p.bias = attn_tensor_contiguous(biasbuf, ATTN_DTYPE_F32, 1, 1, 1, SK);
  expect("bias [1,1,1,sk] ok", &p, ATTN_OK);
  p.bias = attn_tensor_contiguous(biasbuf, ATTN_DTYPE_F32, B, 1, SQ, 1);
  expect("bias [b,1,sq,1] ok", &p, ATTN_OK);
  p.bias = attn_tensor_contiguous(biasbuf, ATTN_DTYPE_F32, B, HQ, SQ, SK);
  p.bias.stride[0] = 0, p.bias.stride[1] = 0;
  expect("bias stride-0 axes ok", &p, ATTN_OK);

  /* mask */
  base(&p);
  p.mask = attn_tensor_contiguous(maskbuf, ATTN_DTYPE_F32, B, HQ, SQ, SK);
  expect("mask f32", &p, ATTN_ERR_INVALID_DTYPE);
  p.mask.dtype = ATTN_DTYPE_F16;
  expect("mask f16", &p, ATTN_ERR_INVALID_DTYPE);
  p.mask = attn_tensor_contiguous(maskbuf, ATTN_DTYPE_BOOL, B, HQ, SQ, SK - 1);
  expect("mask seq_k - 1", &p, ATTN_ERR_INVALID_SHAPE);
  p.mask = attn_tensor_contiguous(maskbuf, ATTN_DTYPE_BOOL, 1, 3, SQ, SK);
  expect("mask heads 3", &p, ATTN_ERR_INVALID_SHAPE);
  p.mask = attn_tensor_contiguous(maskbuf, ATTN_DTYPE_BOOL, 1, 1, SQ, SK);
  p.mask.stride[2] = -SK;
  expect("mask stride negative", &p, ATTN_ERR_INVALID_STRIDE);
  p.mask = attn_tensor_contiguous(maskbuf, ATTN_DTYPE_BOOL, 1, HQ, 1, SK);
  expect("mask [1,hq,1,sk] ok", &p, ATTN_OK);
}

static void test_strides(void) {
  attn_params p;
  attn_tensor *ts[4] = {&p.q, &p.k, &p.v, &p.o};
  static const char *const tn = "qkvo";
  char what[64];
  for (int t = 0; t < 4; t++)
    for (int a = 0; a < 4; a++) {
      base(&p);
      ts[t]->stride[a] = -ts[t]->stride[a] - 1;
      snprintf(what, sizeof what, "%c.stride[%d] negative", tn[t], a);
      expect(what, &p, ATTN_ERR_INVALID_STRIDE);
    }
  base(&p), p.k.stride[0] = 0, p.v.stride[0] = 0;
  expect("k/v batch stride 0 (shared across batch) ok", &p, ATTN_OK);
  base(&p), p.q.stride[3] = 2;
  p.q.stride[2] = 2 * D, p.q.stride[1] = 2 * D * HQ, p.q.stride[0] = 0;
  expect("q head_dim stride 2, batch stride 0 ok", &p, ATTN_OK);
}

static void test_isa_forced(void) {
  static const attn_isa all[5] = {ATTN_ISA_GENERIC, ATTN_ISA_AVX2,
                                  ATTN_ISA_AVX512, ATTN_ISA_AVX512_BF16,
                                  ATTN_ISA_AMX_BF16};
  int tested = 0;
  for (int i = 0; i < 5; i++) {
    attn_params p;
    attn_context *ctx = NULL;
    attn_context_options opt;
    char what[64];
    base(&p), p.isa = all[i];
    snprintf(what, sizeof what, "forced isa %s", attn_isa_name(all[i]));
    if (attn_isa_supported(all[i])) {
      expect(what, &p, ATTN_OK);
      continue;
    }
    tested++;
    expect(what, &p, ATTN_ERR_UNSUPPORTED_ISA);
    attn_context_options_init(&opt);
    opt.isa = all[i];
    CHECK(attn_context_create(&ctx, &opt) == ATTN_ERR_UNSUPPORTED_ISA,
          "attn_context_create with unsupported isa %s", attn_isa_name(all[i]));
    attn_context_free(ctx);
  }
  if (!tested)
    printf("note: every ISA is supported here; UNSUPPORTED_ISA not "
           "exercised\n");
}

static void test_workspace(void) {
  attn_params p;
  size_t bytes = 0;
  static unsigned char ws[1 << 22];
  static float o_ref[B * SQ * HQ * DV];
  base(&p);
  p.num_threads = 2;
  CHECK(attn_forward(NULL, &p) == ATTN_OK, "plain call: %s", msg);
  memcpy(o_ref, obuf, sizeof o_ref);
  CHECK(attn_forward_workspace_size(NULL, &p, &bytes) == ATTN_OK,
        "attn_forward_workspace_size: %s", msg);
  if (bytes > sizeof ws) {
    CHECK(0, "workspace of %zu bytes for a tiny problem", bytes);
    return;
  }
  p.workspace = ws;
  p.workspace_size = bytes;
  CHECK(attn_forward(NULL, &p) == ATTN_OK, "exact workspace: %s", msg);
  CHECK(memcmp(o_ref, obuf, sizeof o_ref) == 0, "workspace changes the result");
  if (bytes > 0) {
    /* attn_forward_check has no context, so it may not know the size */
    p.workspace_size = bytes - 1;
    expect_mode("workspace one byte short", &p, ATTN_ERR_WORKSPACE_TOO_SMALL,
                ATTN_ERR_WORKSPACE_TOO_SMALL, 0);
    p.workspace_size = 0;
    expect_mode("workspace size 0", &p, ATTN_ERR_WORKSPACE_TOO_SMALL,
                ATTN_ERR_WORKSPACE_TOO_SMALL, 0);
  } else {
    printf("note: workspace size is 0 here; WORKSPACE_TOO_SMALL untested\n");
  }
  base(&p);
  p.num_threads = 2;
  p.workspace = NULL, p.workspace_size = 12345;
  expect("workspace NULL with a size: ignored", &p, ATTN_OK);
}

static void test_messages(void) {
  attn_params p;
  char small[8];
  base(&p), p.q.data = NULL;
  memset(small, 'Z', sizeof small);
  p.error_message = small, p.error_message_size = 4;
  attn_forward(NULL, &p);
  CHECK(memchr(small, '\0', 4) != NULL, "error_message not NUL-terminated "
                                        "within its size");
  CHECK(small[4] == 'Z' && small[7] == 'Z',
        "error_message written beyond error_message_size");
  memset(small, 'Z', sizeof small);
  p.error_message_size = 0;
  attn_forward(NULL, &p);
  CHECK(small[0] == 'Z', "error_message written with size 0");
  base(&p), p.q.data = NULL, p.error_message_size = 1;
  memset(msg, 'Z', 4);
  attn_forward(NULL, &p);
  CHECK(msg[0] == '\0' && msg[1] == 'Z', "error_message size 1");
}

void status_fwd_tests(void) {
  test_shapes();
  test_heads();
  test_overlap();
  test_overflow();
  test_scalars();
  test_seqlens();
  test_dtypes();
  test_strides();
  test_isa_forced();
  test_workspace();
  test_messages();
}
