/*
 * A program built against an earlier release's attn.h (with nothing of
 * today's include directory on its path) and linked against today's
 * libattn.so. Built twice (abi.cmake):
 *   abi_consumer_0_1  tests/abi/attn_0_1.h: calls the exported unsuffixed
 *                     0.1 entry points with the 0.1 attn_params layout;
 *   abi_consumer_0_2  tests/abi/attn_0_2.h (ABI_CONSUMER_0_2): calls the
 *                     _sized entry points through 0.2's inline wrappers,
 *                     passing 0.2's sizeof(attn_params).
 *
 *   abi_consumer_0_X OUT.bin
 *
 * Checks on its own that attn_params_init / attn_context_options_init write
 * no byte past its header's structs, that the defaults are that release's,
 * that a bad input still returns that release's status with a message, then
 * runs every case of abi_cases.h on every supported ISA (forward, backward) and
 * writes the statuses and outputs to OUT.bin for test_abi to compare bitwise
 * with the same calls made through today's header. Exit status 0 when its own
 * checks pass (the results are judged by test_abi).
 */
/* Today's include directory must not be on this program's path. */
#if defined(__has_include)
#if __has_include(<attn.h>)
#error "attn.h is on the include path of an old-header consumer (abi.cmake)"
#endif
#endif

#if defined(ABI_CONSUMER_0_2)
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

static void check_init_writes_only_0_1(void) {
  struct {
    attn_params p;
    unsigned char guard[512];
  } g;
  memset(&g, 0xA5, sizeof g);
  attn_params_init(&g.p);
  size_t bad = 0;
  for (size_t i = 0; i < sizeof g.guard; i++)
    bad += g.guard[i] != 0xA5;
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

  struct {
    attn_context_options o;
    unsigned char guard[64];
  } go;
  memset(&go, 0xA5, sizeof go);
  attn_context_options_init(&go.o);
  bad = 0;
  for (size_t i = 0; i < sizeof go.guard; i++)
    bad += go.guard[i] != 0xA5;
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
  check_init_writes_only_0_1();
  check_errors();

  FILE *f = fopen(argv[1], "wb");
  if (!f) {
    fprintf(stderr, CONSUMER ": cannot open %s\n", argv[1]);
    return 2;
  }
  const uint32_t magic = ABI_MAGIC;
  const uint64_t psize = sizeof(attn_params);
  put(f, &magic, sizeof magic);
  put(f, &psize, sizeof psize);
  int runs = 0;
  for (int c = 0; c < ABI_NUM_CASES; c++) {
    for (int isa = ATTN_ISA_GENERIC; isa <= ATTN_ISA_AVX512; isa++) {
      if (!attn_isa_supported((attn_isa)isa))
        continue;
      attn_params p;
      abi_bufs bf;
      attn_status sf, sb;
      attn_params_init(&p);
      abi_case_build(&abi_cases[c], &bf, &p, abi_case_seed(c));
      abi_case_run(&abi_cases[c], &bf, &p, (attn_isa)isa, &sf, &sb);
      CHECK(sf == ATTN_OK && sb == ATTN_OK,
            "case %s isa %s: forward %d, backward %d (%s)", abi_cases[c].name,
            attn_isa_name((attn_isa)isa), (int)sf, (int)sb, bf.why);
      const int32_t hdr[4] = {c, isa, (int32_t)sf, (int32_t)sb};
      const int64_t n[6] = {bf.n_o, bf.n_lse, bf.n_q,
                            bf.n_k, bf.n_v,   bf.n_bias};
      put(f, hdr, sizeof hdr);
      put(f, n, sizeof n);
      put(f, bf.o, (size_t)bf.n_o * 4);
      put(f, bf.lse, (size_t)bf.n_lse * 4);
      put(f, bf.dq, (size_t)bf.n_q * 4);
      put(f, bf.dk, (size_t)bf.n_k * 4);
      put(f, bf.dv, (size_t)bf.n_v * 4);
      if (bf.n_bias)
        put(f, bf.dbias, (size_t)bf.n_bias * 4);
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
