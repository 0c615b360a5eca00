/*
 * test_status, the helpers: attn_strerror, the defaults of the init
 * functions, contexts, versions, ISA names, ALiBi slopes, the FMA peak and
 * the storage conversions (see test_status.c).
 */
#include "status.h"

#include <float.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

static void test_strerror(void) {
  for (int s = 0; s >= -18; s--) {
    const char *t = attn_strerror((attn_status)s);
    CHECK(t && t[0], "attn_strerror(%d) empty", s);
  }
  const int unknown[4] = {1, -19, -1000, INT_MIN};
  for (int i = 0; i < 4; i++) {
    const char *t = attn_strerror((attn_status)unknown[i]);
    CHECK(t && t[0], "attn_strerror(%d) (unknown) empty", unknown[i]);
  }
  for (int a = 0; a >= -18; a--)
    for (int b = a - 1; b >= -18; b--)
      CHECK(strcmp(attn_strerror((attn_status)a),
                   attn_strerror((attn_status)b)) != 0,
            "attn_strerror(%d) == attn_strerror(%d)", a, b);
}

static void test_defaults(void) {
  attn_params p;
  attn_context_options opt;
  attn_context *ctx = NULL;
  memset(&p, 0x5A, sizeof p);
  attn_params_init(&p);
  CHECK(!p.q.data && !p.k.data && !p.v.data && !p.o.data && !p.lse,
        "params_init: operands attached");
  CHECK(p.scale == 0.0f && p.softcap == 0.0f && !p.alibi_slopes,
        "params_init: scale/softcap/alibi");
  CHECK(!p.bias.data && !p.mask.data, "params_init: bias/mask attached");
  CHECK(p.causal == ATTN_CAUSAL_NONE, "params_init: causal");
  CHECK(p.window_left == -1 && p.window_right == -1,
        "params_init: window (%lld, %lld), want (-1, -1)",
        (long long)p.window_left, (long long)p.window_right);
  CHECK(!p.kv_lens && !p.cu_seqlens_q && !p.cu_seqlens_k && p.varlen_batch == 0,
        "params_init: seqlens");
  CHECK(p.num_threads == 0 && p.isa == ATTN_ISA_AUTO, "params_init: exec");
  CHECK(!p.workspace && p.workspace_size == 0, "params_init: workspace");
  CHECK(!p.error_message && p.error_message_size == 0,
        "params_init: error_message");

  memset(&opt, 0x5A, sizeof opt);
  attn_context_options_init(&opt);
  CHECK(opt.num_threads == 0 && opt.isa == ATTN_ISA_AUTO,
        "context_options_init defaults");
  CHECK(attn_context_create(NULL, NULL) == ATTN_ERR_NULL_POINTER,
        "attn_context_create(NULL, ...)");
  CHECK(attn_context_create(&ctx, NULL) == ATTN_OK && ctx,
        "attn_context_create(&ctx, NULL)");
  CHECK(attn_context_isa(ctx) == attn_isa_best(),
        "default context isa %d, best %d", (int)attn_context_isa(ctx),
        (int)attn_isa_best());
  attn_context_free(ctx);
  attn_context_free(NULL);
  CHECK(attn_context_isa(NULL) == attn_isa_best(), "attn_context_isa(NULL)");
  opt.isa = ATTN_ISA_GENERIC;
  opt.num_threads = 2;
  ctx = NULL;
  CHECK(attn_context_create(&ctx, &opt) == ATTN_OK, "context generic");
  CHECK(attn_context_isa(ctx) == ATTN_ISA_GENERIC, "context isa generic");
  {
    attn_params q;
    base(&q);
    CHECK(attn_forward(ctx, &q) == ATTN_OK, "forward with context: %s", msg);
  }
  attn_context_free(ctx);
  opt.isa = (attn_isa)77;
  ctx = NULL;
  CHECK(attn_context_create(&ctx, &opt) == ATTN_ERR_INVALID_ARGUMENT,
        "context isa 77");
  attn_context_free(ctx);
  attn_context_options_init(&opt);
  opt.num_threads = -2;
  ctx = NULL;
  CHECK(attn_context_create(&ctx, &opt) == ATTN_ERR_INVALID_ARGUMENT,
        "context num_threads -2");
  attn_context_free(ctx);

  {
    char want[32];
    snprintf(want, sizeof want, "%d.%d.%d", ATTN_VERSION_MAJOR,
             ATTN_VERSION_MINOR, ATTN_VERSION_PATCH);
    CHECK(attn_version_number() == ATTN_VERSION_NUMBER, "version number %d",
          attn_version_number());
    CHECK(attn_version_string() && strcmp(attn_version_string(), want) == 0,
          "version string \"%s\", want \"%s\"",
          attn_version_string() ? attn_version_string() : "(null)", want);
  }

  CHECK(attn_dtype_size(ATTN_DTYPE_F32) == 4 &&
            attn_dtype_size(ATTN_DTYPE_BF16) == 2 &&
            attn_dtype_size(ATTN_DTYPE_F16) == 2 &&
            attn_dtype_size(ATTN_DTYPE_BOOL) == 1 &&
            attn_dtype_size(ATTN_DTYPE_Q8_0) == 34 &&
            attn_dtype_size(ATTN_DTYPE_Q4_0) == 18 &&
            attn_dtype_size((attn_dtype)6) == 0 &&
            attn_dtype_size((attn_dtype)-1) == 0,
        "attn_dtype_size");
  CHECK(attn_dtype_block(ATTN_DTYPE_F32) == 1 &&
            attn_dtype_block(ATTN_DTYPE_BOOL) == 1 &&
            attn_dtype_block(ATTN_DTYPE_Q8_0) == 32 &&
            attn_dtype_block(ATTN_DTYPE_Q4_0) == 32 &&
            attn_dtype_block((attn_dtype)6) == 0,
        "attn_dtype_block");
  {
    attn_tensor t = attn_tensor_bshd(qbuf, ATTN_DTYPE_F16, 2, 3, 4, 5);
    CHECK(t.data == qbuf && t.dtype == ATTN_DTYPE_F16 && t.shape[0] == 2 &&
              t.shape[1] == 3 && t.shape[2] == 4 && t.shape[3] == 5 &&
              t.stride[0] == 60 && t.stride[1] == 20 && t.stride[2] == 5 &&
              t.stride[3] == 1,
          "attn_tensor_bshd");
    t = attn_tensor_bhsd(qbuf, ATTN_DTYPE_F32, 2, 3, 4, 5);
    CHECK(t.shape[0] == 2 && t.shape[1] == 3 && t.shape[2] == 4 &&
              t.shape[3] == 5 && t.stride[0] == 60 && t.stride[1] == 5 &&
              t.stride[2] == 15 && t.stride[3] == 1,
          "attn_tensor_bhsd");
    t = attn_tensor_contiguous(maskbuf, ATTN_DTYPE_BOOL, 2, 3, 4, 5);
    CHECK(t.stride[0] == 60 && t.stride[1] == 20 && t.stride[2] == 5 &&
              t.stride[3] == 1 && t.shape[3] == 5 && t.dtype == ATTN_DTYPE_BOOL,
          "attn_tensor_contiguous");
  }
}

static void test_isa_names(void) {
  static const char *const names[6] = {"auto",   "generic",    "avx2",
                                       "avx512", "avx512bf16", "amxbf16"};
  for (int i = 0; i < 6; i++) {
    attn_isa out = (attn_isa)-1;
    const char *n = attn_isa_name((attn_isa)i);
    CHECK(n && strcmp(n, names[i]) == 0, "attn_isa_name(%d) = %s", i,
          n ? n : "(null)");
    CHECK(attn_isa_parse(names[i], &out) == ATTN_OK && out == (attn_isa)i,
          "attn_isa_parse(\"%s\")", names[i]);
  }
  {
    attn_isa out = ATTN_ISA_AVX2;
    attn_status s;
    CHECK(attn_isa_name((attn_isa)6) == NULL &&
              attn_isa_name((attn_isa)-1) == NULL,
          "attn_isa_name of unknown values");
    CHECK(attn_isa_parse("sse9", &out) == ATTN_ERR_INVALID_ARGUMENT,
          "attn_isa_parse(\"sse9\")");
    CHECK(attn_isa_parse("", &out) == ATTN_ERR_INVALID_ARGUMENT,
          "attn_isa_parse(\"\")");
    s = attn_isa_parse(NULL, &out);
    CHECK(s == ATTN_ERR_NULL_POINTER || s == ATTN_ERR_INVALID_ARGUMENT,
          "attn_isa_parse(NULL) = %d", (int)s);
    s = attn_isa_parse("generic", NULL);
    CHECK(s == ATTN_ERR_NULL_POINTER, "attn_isa_parse(name, NULL) = %d",
          (int)s);
  }
  CHECK(attn_isa_supported(ATTN_ISA_AUTO) == 1, "AUTO supported");
  CHECK(attn_isa_supported(ATTN_ISA_GENERIC) == 1, "GENERIC supported");
  CHECK(attn_isa_supported((attn_isa)9) == 0, "isa 9 unsupported");
  {
    attn_isa best = attn_isa_best();
    CHECK(best != ATTN_ISA_AUTO && attn_isa_supported(best),
          "attn_isa_best = %d", (int)best);
    if (!getenv("ATTN_ISA"))
      CHECK(best == (attn_isa_supported(ATTN_ISA_AMX_BF16) ? ATTN_ISA_AMX_BF16
                     : attn_isa_supported(ATTN_ISA_AVX512_BF16)
                         ? ATTN_ISA_AVX512_BF16
                     : attn_isa_supported(ATTN_ISA_AVX512) ? ATTN_ISA_AVX512
                     : attn_isa_supported(ATTN_ISA_AVX2)   ? ATTN_ISA_AVX2
                                                           : ATTN_ISA_GENERIC),
            "attn_isa_best is not the widest supported");
    printf("isas: generic %d, avx2 %d, avx512 %d, avx512bf16 %d, amxbf16 %d; "
           "best %s\n",
           attn_isa_supported(ATTN_ISA_GENERIC),
           attn_isa_supported(ATTN_ISA_AVX2),
           attn_isa_supported(ATTN_ISA_AVX512),
           attn_isa_supported(ATTN_ISA_AVX512_BF16),
           attn_isa_supported(ATTN_ISA_AMX_BF16), attn_isa_name(best));
  }
}

/* Press et al. (2022), reference code get_slopes(n). */
static double alibi_ref(int64_t n, int64_t i) {
  int64_t cp = 1;
  while (cp * 2 <= n)
    cp *= 2;
  if (i < cp)
    return pow(2.0, -8.0 * (double)(i + 1) / (double)cp);
  return pow(2.0, -8.0 * (double)(2 * (i - cp) + 1) / (double)(2 * cp));
}

static void test_alibi(void) {
  float s[300];
  for (int64_t n = 1; n <= 260; n++) {
    double worst = 0.0;
    CHECK(attn_alibi_slopes(n, s) == ATTN_OK, "attn_alibi_slopes(%lld)",
          (long long)n);
    for (int64_t i = 0; i < n; i++) {
      double want = alibi_ref(n, i);
      double e = fabs((double)s[i] - want) / want;
      if (e > worst)
        worst = e;
    }
    CHECK(worst < 1e-6, "alibi slopes n = %lld: relative error %g",
          (long long)n, worst);
  }
  {
    attn_status st = attn_alibi_slopes(0, s);
    CHECK(st == ATTN_ERR_INVALID_SHAPE || st == ATTN_ERR_INVALID_ARGUMENT,
          "attn_alibi_slopes(0) = %d", (int)st);
    st = attn_alibi_slopes(-4, s);
    CHECK(st == ATTN_ERR_INVALID_SHAPE || st == ATTN_ERR_INVALID_ARGUMENT,
          "attn_alibi_slopes(-4) = %d", (int)st);
    CHECK(attn_alibi_slopes(8, NULL) == ATTN_ERR_NULL_POINTER,
          "attn_alibi_slopes(8, NULL)");
  }
}

static void test_peak(void) {
  double g = 0.0;
  CHECK(attn_fma_peak_gflops(1, 0.01, NULL) == ATTN_ERR_NULL_POINTER,
        "attn_fma_peak_gflops(NULL)");
  CHECK(attn_fma_peak_gflops(1, 0.02, &g) == ATTN_OK && g > 0.0 && isfinite(g),
        "attn_fma_peak_gflops: %g", g);
  {
    double g16 = -1.0;
    const attn_status s16 = attn_bf16_peak_gflops(1, 0.02, &g16);
    CHECK(attn_isa_supported(ATTN_ISA_AVX512_BF16)
              ? s16 == ATTN_OK && g16 > 0.0 && isfinite(g16)
              : s16 == ATTN_ERR_UNSUPPORTED_ISA && g16 == -1.0,
          "attn_bf16_peak_gflops: %d, %g", (int)s16, g16);
    CHECK(attn_bf16_peak_gflops(1, 0.01, NULL) == ATTN_ERR_NULL_POINTER,
          "attn_bf16_peak_gflops(NULL)");
  }
}

/* ---------------------------------------------------------------------- */
/* Conversions                                                            */
/* ---------------------------------------------------------------------- */
static int same_f32(float a, float b) {
  if (isnan(a) || isnan(b))
    return isnan(a) && isnan(b);
  return tc_f32_bits(a) == tc_f32_bits(b);
}

static int is_nan16(uint16_t h, int bf16) {
  return bf16 ? ((h & 0x7F80u) == 0x7F80u && (h & 0x7Fu))
              : ((h & 0x7C00u) == 0x7C00u && (h & 0x3FFu));
}

static void test_conversions(void) {
  long bad_dec_bf = 0, bad_dec_h = 0, bad_rt_bf = 0, bad_rt_h = 0;
  long bad_enc_bf = 0, bad_enc_h = 0;
  uint32_t first_bf = 0, first_h = 0;
  for (uint32_t u = 0; u < 65536; u++) {
    const uint16_t h = (uint16_t)u;
    float fb = attn_bf16_to_f32(h), fh = attn_f16_to_f32(h);
    bad_dec_bf += !same_f32(fb, tc_bf16_to_f32(h));
    bad_dec_h += !same_f32(fh, tc_f16_to_f32(h));
    if (is_nan16(h, 1))
      bad_rt_bf += !is_nan16(attn_f32_to_bf16(fb), 1);
    else
      bad_rt_bf += attn_f32_to_bf16(fb) != h;
    if (is_nan16(h, 0))
      bad_rt_h += !is_nan16(attn_f32_to_f16(fh), 0);
    else
      bad_rt_h += attn_f32_to_f16(fh) != h;
  }
  CHECK(bad_dec_bf == 0, "attn_bf16_to_f32 wrong for %ld values", bad_dec_bf);
  CHECK(bad_dec_h == 0, "attn_f16_to_f32 wrong for %ld values", bad_dec_h);
  CHECK(bad_rt_bf == 0, "bf16 round trip wrong for %ld values", bad_rt_bf);
  CHECK(bad_rt_h == 0, "f16 round trip wrong for %ld values", bad_rt_h);

  /* f32 -> 16 bits over a dense sample of all f32 bit patterns */
  for (uint64_t u = 0; u <= 0xFFFFFFFFull; u += 4093) {
    for (uint32_t k = 0; k < 3; k++) {
      const uint32_t x = (uint32_t)u + k; /* neighbours hit ties too */
      const float f = tc_bits_f32(x);
      const uint16_t gb = attn_f32_to_bf16(f), wb = tc_f32_to_bf16(f);
      const uint16_t gh = attn_f32_to_f16(f), wh = tc_f32_to_f16(f);
      if (isnan(f) ? !is_nan16(gb, 1) : gb != wb)
        first_bf = bad_enc_bf++ ? first_bf : x;
      if (isnan(f) ? !is_nan16(gh, 0) : gh != wh)
        first_h = bad_enc_h++ ? first_h : x;
    }
  }
  /* every tie and its neighbours in the f16 normal and subnormal range */
  for (uint32_t h = 0; h < 0x7C00u; h++) {
    const float lo = tc_f16_to_f32((uint16_t)h);
    const float hi = tc_f16_to_f32((uint16_t)(h + 1));
    const float mid = (float)(((double)lo + (double)hi) / 2.0);
    const float vals[3] = {mid, nextafterf(mid, 0.0f),
                           nextafterf(mid, INFINITY)};
    for (int k = 0; k < 3; k++)
      for (int sgn = 0; sgn < 2; sgn++) {
        const float f = sgn ? -vals[k] : vals[k];
        if (attn_f32_to_f16(f) != tc_f32_to_f16(f))
          first_h = bad_enc_h++ ? first_h : tc_f32_bits(f);
      }
  }
  CHECK(bad_enc_bf == 0, "attn_f32_to_bf16 wrong for %ld values (first 0x%08x)",
        bad_enc_bf, (unsigned)first_bf);
  CHECK(bad_enc_h == 0, "attn_f32_to_f16 wrong for %ld values (first 0x%08x)",
        bad_enc_h, (unsigned)first_h);

  /* named cases */
  CHECK(attn_f32_to_bf16(tc_bits_f32(0x3F808000u)) == 0x3F80, "bf16 tie even");
  CHECK(attn_f32_to_bf16(tc_bits_f32(0x3F818000u)) == 0x3F82, "bf16 tie odd");
  CHECK(attn_f32_to_bf16(tc_bits_f32(0x3F808001u)) == 0x3F81, "bf16 above tie");
  CHECK(attn_f32_to_bf16(FLT_MAX) == 0x7F80, "bf16 FLT_MAX -> inf");
  CHECK(attn_f32_to_bf16(-INFINITY) == 0xFF80, "bf16 -inf");
  CHECK(is_nan16(attn_f32_to_bf16(tc_bits_f32(0x7F800001u)), 1),
        "bf16 signalling NaN with low payload stays NaN");
  CHECK(attn_f32_to_bf16(tc_bits_f32(0x00018000u)) == 0x0002,
        "bf16 subnormal tie");
  CHECK(attn_f32_to_bf16(tc_bits_f32(0x80000001u)) == 0x8000, "bf16 -tiny");
  CHECK(attn_f32_to_f16(65504.0f) == 0x7BFF, "f16 max");
  CHECK(attn_f32_to_f16(65519.996f) == 0x7BFF, "f16 just below 65520");
  CHECK(attn_f32_to_f16(65520.0f) == 0x7C00, "f16 65520 -> inf");
  CHECK(attn_f32_to_f16(-1e10f) == 0xFC00, "f16 -overflow");
  CHECK(attn_f32_to_f16(ldexpf(1.0f, -24)) == 0x0001, "f16 min subnormal");
  CHECK(attn_f32_to_f16(ldexpf(1.0f, -25)) == 0x0000, "f16 2^-25 ties to 0");
  CHECK(attn_f32_to_f16(ldexpf(1.5f, -25)) == 0x0001, "f16 above 2^-25");
  CHECK(attn_f32_to_f16(ldexpf(3.0f, -25)) == 0x0002, "f16 1.5 ulp tie");
  CHECK(attn_f32_to_f16(ldexpf(1023.0f, -24)) == 0x03FF, "f16 max subnormal");
  CHECK(attn_f32_to_f16(ldexpf(2047.0f, -25)) == 0x0400,
        "f16 subnormal rounds up to min normal");
  CHECK(attn_f32_to_f16(1.0f + ldexpf(1.0f, -11)) == 0x3C00, "f16 tie even");
  CHECK(attn_f32_to_f16(-0.0f) == 0x8000, "f16 -0");
  CHECK(is_nan16(attn_f32_to_f16(NAN), 0), "f16 NaN");
  CHECK(is_nan16(attn_f32_to_f16(tc_bits_f32(0x7F800001u)), 0),
        "f16 NaN with low payload stays NaN");
  CHECK(attn_f16_to_f32(0x0001) == ldexpf(1.0f, -24), "f16 decode subnormal");
  CHECK(attn_f16_to_f32(0x7C00) == INFINITY, "f16 decode inf");
  CHECK(attn_bf16_to_f32(0x0001) == tc_bits_f32(0x00010000u),
        "bf16 decode subnormal");
}

void status_helper_tests(void) {
  test_strerror();
  test_defaults();
  test_isa_names();
  test_alibi();
  test_peak();
  test_conversions();
}
