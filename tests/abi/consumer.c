/*
 * A program built against an earlier release's attn.h (with nothing of
 * today's include directory on its path) and linked against today's
 * libattn.so. Built three times (abi.cmake):
 *   abi_consumer_0_1  tests/abi/attn_0_1.h: calls the exported unsuffixed
 *                     0.1 entry points with the 0.1 attn_params layout;
 *   abi_consumer_0_2  tests/abi/attn_0_2.h (ABI_CONSUMER_0_2): calls the
 *                     _sized entry points through 0.2's inline wrappers,
 *                     passing 0.2's sizeof(attn_params);
 *   abi_consumer_0_3  tests/abi/attn_0_3.h (ABI_CONSUMER_0_3): the same
 *                     through 0.3's wrappers and 0.3's sizeof(attn_params),
 *                     and also runs the 0.3 cases (T5 table, RoPE, the
 *                     KV cache with its 0.3 sizeof(attn_kv_cache) and
 *                     sizeof(attn_rope));
 *   abi_consumer_0_4  tests/abi/attn_0_4.h (ABI_CONSUMER_0_4): the same
 *                     through 0.4's wrappers and 0.4's sizeof(attn_params)
 *                     (the 0.3 cases included).
 *
 *   abi_consumer_0_X OUT.bin
 *
 * Checks on its own that attn_params_init / attn_context_options_init (and
 * for 0.3 attn_rope_init, attn_kv_cache_init) write no byte past its
 * header's structs, that the defaults are that release's, that a bad input
 * still returns that release's status with a message, then runs every case
 * of abi_cases.h its header knows on every supported ISA and writes the
 * statuses and outputs to OUT.bin for test_abi to compare bitwise with the
 * same calls made through today's header. Exit status 0 when its own checks
 * pass (the results are judged by test_abi).
 */
/* Today's include directory must not be on this program's path. */
#if defined(__has_include)
#if __has_include(<attn.h>)
#error "attn.h is on the include path of an old-header consumer (abi.cmake)"
#endif
#endif

#if defined(ABI_CONSUMER_0_4)
#include "attn_0_4.h"
#define CONSUMER "consumer_0_4"
#elif defined(ABI_CONSUMER_0_3)
#include "attn_0_3.h"
#define CONSUMER "consumer_0_3"
#elif defined(ABI_CONSUMER_0_2)
#include "attn_0_2.h"
#define CONSUMER "consumer_0_2"
#else
#include "attn_0_1.h"
#define CONSUMER "consumer_0_1"
#endif

#include "abi_cases.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int failures;

#define CHECK(cond, ...)                                                       \
  do {                                                                         \
    if (!(cond)) {                                                             \
      failures++;                                                              \
      fprintf(stderr, CONSUMER ": FAIL: ");                                    \
      fprintf(stderr, __VA_ARGS__);                                            \
      fprintf(stderr, "\n");                                                   \
    }                                                                          \
  } while (0)

/* Bytes n .. total - 1 of obj (a guard after a struct) no longer 0xA5. */
static size_t guard_bad(const void *obj, size_t n, size_t total) {
  size_t bad = 0;
  for (size_t i = n; i < total; i++)
    bad += ((const unsigned char *)obj)[i] != 0xA5;
  return bad;
}

static void check_init_writes_only_own(void) {
  struct {
    attn_params p;
    unsigned char guard[512];
  } g;
  memset(&g, 0xA5, sizeof g);
  attn_params_init(&g.p);
  size_t bad = guard_bad(&g, sizeof g.p, sizeof g);
  CHECK(bad == 0,
        "attn_params_init wrote %zu of the %zu bytes "
        "after this header's attn_params (%zu bytes)",
        bad, sizeof g.guard, sizeof g.p);
  CHECK(g.p.q.data == NULL && g.p.lse == NULL && g.p.bias.data == NULL &&
            g.p.mask.data == NULL && g.p.kv_lens == NULL &&
            g.p.cu_seqlens_q == NULL && g.p.dbias.data == NULL &&
            g.p.error_message == NULL,
        "attn_params_init left a pointer set");
  CHECK(g.p.window_left == -1 && g.p.window_right == -1,
        "default window (%lld, %lld), want (-1, -1)",
        (long long)g.p.window_left, (long long)g.p.window_right);
  CHECK(g.p.causal == ATTN_CAUSAL_NONE && g.p.isa == ATTN_ISA_AUTO &&
            g.p.scale == 0.0f && g.p.softcap == 0.0f && g.p.num_threads == 0 &&
            g.p.varlen_batch == 0,
        "attn_params_init: a scalar default differs from the release's");
  CHECK(g.p.mask.dtype == ATTN_DTYPE_BOOL && g.p.bias.dtype == ATTN_DTYPE_F32,
        "attn_params_init: mask/bias dtype defaults differ");
#if ATTN_VERSION_NUMBER >= 200
  CHECK(g.p.q_pos_offset == 0 && g.p.k_pos_offset == 0 &&
            g.p.q_pos_offsets == NULL && g.p.k_pos_offsets == NULL &&
            g.p.prefix_len == -1 && g.p.compiled_mask == NULL,
        "attn_params_init: a 0.2 default differs from the release's");
#endif
#if ATTN_VERSION_NUMBER >= 300
  CHECK(g.p.rel_bias == NULL && g.p.rel_buckets == 32 &&
            g.p.rel_max_distance == 128 && g.p.rel_bidirectional == 0 &&
            g.p.drel_bias == NULL,
        "attn_params_init: a 0.3 default differs from the release's");

  struct {
    attn_rope r;
    unsigned char guard[64];
  } gr;
  memset(&gr, 0xA5, sizeof gr);
  attn_rope_init(&gr.r);
  bad = guard_bad(&gr, sizeof gr.r, sizeof gr);
  CHECK(bad == 0, "attn_rope_init wrote %zu bytes past the struct", bad);
  CHECK(gr.r.base == 10000.0 && gr.r.style == ATTN_ROPE_HALF &&
            gr.r.dims == 0 && gr.r.scaling == ATTN_ROPE_SCALING_NONE &&
            gr.r.factor == 1.0 && gr.r.original_max_position == 8192.0 &&
            gr.r.low_freq_factor == 1.0 && gr.r.high_freq_factor == 4.0 &&
            gr.r.beta_fast == 32.0 && gr.r.beta_slow == 1.0 &&
            gr.r.mscale == 0.0,
        "attn_rope_init: a default differs from the release's");

  struct {
    attn_kv_cache c;
    unsigned char guard[64];
  } gc;
  memset(&gc, 0xA5, sizeof gc);
  attn_kv_cache_init(&gc.c);
  bad = guard_bad(&gc, sizeof gc.c, sizeof gc);
  CHECK(bad == 0, "attn_kv_cache_init wrote %zu bytes past the struct", bad);
  CHECK(gc.c.k == NULL && gc.c.v == NULL && gc.c.seq_lens == NULL &&
            gc.c.block_table == NULL && gc.c.error_message == NULL &&
            gc.c.page_size == 0 && gc.c.head_dim_v == 0,
        "attn_kv_cache_init: a default differs from the release's");
#endif

  struct {
    attn_context_options o;
    unsigned char guard[64];
  } go;
  memset(&go, 0xA5, sizeof go);
  attn_context_options_init(&go.o);
  bad = guard_bad(&go, sizeof go.o, sizeof go);
  CHECK(bad == 0, "attn_context_options_init wrote %zu bytes past the struct",
        bad);
  CHECK(go.o.num_threads == 0 && go.o.isa == ATTN_ISA_AUTO,
        "attn_context_options_init defaults differ");
}

static void check_errors(void) {
  float buf[4 * 8 * 3];
  char why[128];
  attn_params p;
  attn_params_init(&p);
  memset(buf, 0, sizeof buf);
  memset(why, 'x', sizeof why);
  p.q = attn_tensor_bshd(buf, ATTN_DTYPE_F32, 1, 2, 3, 4);      /* 3 q heads */
  p.k = attn_tensor_bshd(buf + 24, ATTN_DTYPE_F32, 1, 2, 2, 4); /* 2 kv */
  p.v = attn_tensor_bshd(buf + 40, ATTN_DTYPE_F32, 1, 2, 2, 4);
  p.o = attn_tensor_bshd(buf + 56, ATTN_DTYPE_F32, 1, 2, 3, 4);
  p.error_message = why;
  p.error_message_size = sizeof why;
  attn_status s = attn_forward(NULL, &p);
  CHECK(s == ATTN_ERR_HEAD_RATIO, "head ratio 3/2: status %d, want %d", (int)s,
        (int)ATTN_ERR_HEAD_RATIO);
  CHECK(memchr(why, '\0', sizeof why) != NULL && why[0] != '\0' &&
            why[0] != 'x',
        "head ratio 3/2: no NUL-terminated message in error_message");
  s = attn_forward_check(&p);
  CHECK(s == ATTN_ERR_HEAD_RATIO, "attn_forward_check: status %d", (int)s);
  p.k.shape[2] = p.v.shape[2] = 3;
  p.k.shape[1] = p.v.shape[1] = 1;
  p.scale = INFINITY;
  s = attn_forward_check(&p);
  CHECK(s == ATTN_ERR_INVALID_SCALE, "infinite scale: status %d, want %d",
        (int)s, (int)ATTN_ERR_INVALID_SCALE);
#if ATTN_VERSION_NUMBER >= 300
  /* a T5 table with no bucket */
  float table[3];
  memset(table, 0, sizeof table);
  memset(why, 'x', sizeof why);
  p.scale = 0.0f;
  p.rel_bias = table;
  p.rel_buckets = 0;
  s = attn_forward_check(&p);
  CHECK(s == ATTN_ERR_INVALID_ARGUMENT && why[0] != 'x' &&
            memchr(why, '\0', sizeof why) != NULL,
        "rel_buckets 0: status %d, want %d with a message", (int)s,
        (int)ATTN_ERR_INVALID_ARGUMENT);
#endif
  CHECK(attn_version_number() / 10000 == ATTN_VERSION_MAJOR &&
            attn_version_number() >= ATTN_VERSION_NUMBER,
        "library version %d cannot serve a %d program", attn_version_number(),
        ATTN_VERSION_NUMBER);
}

static void put(FILE *f, const void *data, size_t bytes) {
  if (bytes && fwrite(data, 1, bytes, f) != bytes) {
    fprintf(stderr, CONSUMER ": write failed\n");
    exit(2);
  }
}

int main(int argc, char **argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: abi_" CONSUMER " OUT.bin\n");
    return 2;
  }
  check_init_writes_only_own();
  check_errors();

  FILE *f = fopen(argv[1], "wb");
  if (!f) {
    fprintf(stderr, CONSUMER ": cannot open %s\n", argv[1]);
    return 2;
  }
  const uint32_t magic = ABI_MAGIC;
  const uint64_t psize = sizeof(attn_params);
  const uint32_t ncases = ABI_NUM_CASES_ALL;
  put(f, &magic, sizeof magic);
  put(f, &psize, sizeof psize);
  put(f, &ncases, sizeof ncases);
  int runs = 0;
  for (int c = 0; c < ABI_NUM_CASES_ALL; c++) {
    for (int isa = ATTN_ISA_GENERIC; isa <= ATTN_ISA_AVX512; isa++) {
      if (!attn_isa_supported((attn_isa)isa))
        continue;
      attn_params p;
      abi_bufs bf;
      attn_status s1, s2;
      attn_params_init(&p);
      abi_build(c, &bf, &p);
      abi_run(c, &bf, &p, (attn_isa)isa, &s1, &s2);
      CHECK(s1 == ATTN_OK && s2 == ATTN_OK,
            "case %s isa %s: statuses %d, %d (%s)", abi_case_name(c),
            attn_isa_name((attn_isa)isa), (int)s1, (int)s2, bf.why);
      const int32_t hdr[4] = {c, isa, (int32_t)s1, (int32_t)s2};
      put(f, hdr, sizeof hdr);
      put(f, bf.n_out, sizeof bf.n_out);
      for (int t = 0; t < ABI_NUM_OUT; t++)
        put(f, bf.out[t], (size_t)bf.n_out[t] * 4);
      abi_bufs_free(&bf);
      runs++;
    }
  }
  if (fclose(f) != 0) {
    fprintf(stderr, CONSUMER ": write failed\n");
    return 2;
  }
  printf(CONSUMER ": libattn %s, header %d.%d, %zu-byte attn_params, %d "
                  "runs written, %d own check(s) failed\n",
         attn_version_string(), ATTN_VERSION_MAJOR, ATTN_VERSION_MINOR,
         sizeof(attn_params), runs, failures);
  return failures ? 1 : 0;
}
