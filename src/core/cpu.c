/* CPU feature detection (once, cached) and ISA selection. */
#define _DEFAULT_SOURCE 1 /* syscall(2), for AMX's permission */
#include "core/internal.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#if defined(ATTN_HAVE_X86)
#include <cpuid.h>
#if defined(__linux__)
#include <sys/syscall.h>
#include <unistd.h>
#endif

static uint64_t xgetbv0(void) {
  uint32_t eax, edx;
  __asm__ volatile("xgetbv" : "=a"(eax), "=d"(edx) : "c"(0));
  return ((uint64_t)edx << 32) | eax;
}

/* AMX tile data is off in a Linux process until it asks for it (once, for
 * every thread of the process): arch_prctl(ARCH_REQ_XCOMP_PERM,
 * XFEATURE_XTILEDATA). Returns 1 when granted. */
static int amx_permission(void) {
#if defined(__linux__) && defined(SYS_arch_prctl)
  return syscall(SYS_arch_prctl, 0x1023 /* ARCH_REQ_XCOMP_PERM */,
                 18 /* XFEATURE_XTILEDATA */) == 0;
#else
  return 0;
#endif
}

/* bit 0: avx2+fma+f16c usable, bit 1: avx512 f/bw/dq/vl usable, bit 2:
 * avx512-bf16 usable as well, bit 3: AMX-TILE and AMX-BF16 usable too
 * (enabled in XCR0 and granted by the OS) */
static int detect(void) {
  unsigned a, b, c, d;
  if (!__get_cpuid(1, &a, &b, &c, &d))
    return 0;
  const int osxsave = (c >> 27) & 1, avx = (c >> 28) & 1, fma = (c >> 12) & 1,
            f16c = (c >> 29) & 1;
  if (!osxsave || !avx)
    return 0;
  const uint64_t xcr0 = xgetbv0();
  if ((xcr0 & 6) != 6) /* XMM and YMM state enabled by the OS */
    return 0;
  if (!__get_cpuid_count(7, 0, &a, &b, &c, &d))
    return 0;
  int flags = 0;
  const int avx2 = (b >> 5) & 1;
  if (avx2 && fma && f16c)
    flags |= 1;
  const int f = (b >> 16) & 1, dq = (b >> 17) & 1, bw = (b >> 30) & 1,
            vl = (b >> 31) & 1;
  if ((flags & 1) && f && dq && bw && vl && (xcr0 & 0xe0) == 0xe0)
    flags |= 2;
  const int amx = ((d >> 22) & 1) && ((d >> 24) & 1); /* bf16, tile */
  if ((flags & 2) && __get_cpuid_count(7, 1, &a, &b, &c, &d) && ((a >> 5) & 1))
    flags |= 4;
#if defined(ATTN_HAVE_AMX)
  if ((flags & 4) && amx && (xcr0 & 0x60000) == 0x60000 && amx_permission())
    flags |= 8;
#else
  (void)amx;
  (void)amx_permission;
#endif
  return flags;
}
#else
static int detect(void) { return 0; }
#endif

/* Global state (the only other pieces are cpu_count below and context.c's
 * default context): a cache of an immutable fact. Racing first callers
 * compute the same value. */
static atomic_int cpu_flags = -1;

static int flags(void) {
  int f = atomic_load_explicit(&cpu_flags, memory_order_relaxed);
  if (f < 0) {
    f = detect();
    atomic_store_explicit(&cpu_flags, f, memory_order_relaxed);
  }
  return f;
}

/* The online CPUs, read once per process: the first reading stays (a
 * compare-exchange), so a process sizes its work from one value even if
 * CPUs come and go. */
static atomic_int cpu_count = -1;

int attn_cpu_count(void) {
  int n = atomic_load_explicit(&cpu_count, memory_order_relaxed);
  if (n > 0)
    return n;
  const long c = sysconf(_SC_NPROCESSORS_ONLN);
  int want = c < 1 ? 1 : c > 4096 ? 4096 : (int)c, none = -1;
  if (!atomic_compare_exchange_strong(&cpu_count, &none, want))
    want = none; /* another thread's reading came first */
  return want;
}

int attn_cpu_has_avx2(void) { return (flags() & 1) != 0; }
int attn_cpu_has_avx512(void) { return (flags() & 2) != 0; }
int attn_cpu_has_avx512bf16(void) { return (flags() & 4) != 0; }
int attn_cpu_has_amxbf16(void) { return (flags() & 8) != 0; }

const char *attn_isa_name(attn_isa isa) {
  switch (isa) {
  case ATTN_ISA_AUTO:
    return "auto";
  case ATTN_ISA_GENERIC:
    return "generic";
  case ATTN_ISA_AVX2:
    return "avx2";
  case ATTN_ISA_AVX512:
    return "avx512";
  case ATTN_ISA_AVX512_BF16:
    return "avx512bf16";
  case ATTN_ISA_AMX_BF16:
    return "amxbf16";
  }
  return NULL;
}

attn_status attn_isa_parse(const char *name, attn_isa *out) {
  if (!name || !out)
    return ATTN_ERR_NULL_POINTER;
  static const attn_isa all[] = {ATTN_ISA_AUTO,        ATTN_ISA_GENERIC,
                                 ATTN_ISA_AVX2,        ATTN_ISA_AVX512,
                                 ATTN_ISA_AVX512_BF16, ATTN_ISA_AMX_BF16};
  for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) {
    if (strcmp(name, attn_isa_name(all[i])) == 0) {
      *out = all[i];
      return ATTN_OK;
    }
  }
  return ATTN_ERR_INVALID_ARGUMENT;
}

int attn_isa_supported(attn_isa isa) {
  switch (isa) {
  case ATTN_ISA_AUTO:
  case ATTN_ISA_GENERIC:
    return 1;
  case ATTN_ISA_AVX2:
    return attn_cpu_has_avx2();
  case ATTN_ISA_AVX512:
    return attn_cpu_has_avx512();
  case ATTN_ISA_AVX512_BF16:
    return attn_cpu_has_avx512bf16();
  case ATTN_ISA_AMX_BF16:
    return attn_cpu_has_amxbf16();
  }
  return 0;
}

static attn_isa widest(void) {
  if (attn_cpu_has_amxbf16())
    return ATTN_ISA_AMX_BF16;
  if (attn_cpu_has_avx512bf16())
    return ATTN_ISA_AVX512_BF16;
  if (attn_cpu_has_avx512())
    return ATTN_ISA_AVX512;
  if (attn_cpu_has_avx2())
    return ATTN_ISA_AVX2;
  return ATTN_ISA_GENERIC;
}

attn_status attn_isa_env(attn_isa *out, char *why, size_t why_size) {
  const char *env = getenv("ATTN_ISA");
  attn_isa isa = ATTN_ISA_AUTO;
  if (env && *env && attn_isa_parse(env, &isa) != ATTN_OK) {
    if (why && why_size)
      snprintf(why, why_size,
               "ATTN_ISA='%.64s%s' is not generic, avx2, avx512, avx512bf16, "
               "amxbf16 or auto",
               env, strlen(env) > 64 ? "..." : "");
    return ATTN_ERR_INVALID_ARGUMENT;
  }
  if (isa == ATTN_ISA_AUTO) {
    *out = widest();
    return ATTN_OK;
  }
  if (!attn_isa_supported(isa)) {
    if (why && why_size)
      snprintf(why, why_size,
               "ATTN_ISA='%s' names an instruction set this CPU lacks "
               "(the widest it has is %s)",
               env, attn_isa_name(widest()));
    return ATTN_ERR_UNSUPPORTED_ISA;
  }
  *out = isa;
  return ATTN_OK;
}

/* Tolerant: a bad or unsupported ATTN_ISA counts as unset. */
attn_isa attn_isa_best(void) {
  attn_isa isa;
  if (attn_isa_env(&isa, NULL, 0) != ATTN_OK)
    isa = widest();
  return isa;
}

attn_status attn_isa_resolve(const attn_context *ctx, attn_isa want,
                             attn_isa *out) {
  if (want == ATTN_ISA_AUTO)
    want = attn_context_isa(ctx);
  if (attn_isa_name(want) == NULL)
    return ATTN_ERR_INVALID_ARGUMENT;
  if (!attn_isa_supported(want))
    return ATTN_ERR_UNSUPPORTED_ISA;
  *out = want;
  return ATTN_OK;
}
