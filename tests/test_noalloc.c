/*
 * test_noalloc: attn.h says of attn_params.workspace "optional caller memory:
 * then no allocation at all". Linked with -Wl,--wrap=malloc (and calloc,
 * realloc, aligned_alloc, posix_memalign), this counts the library's heap
 * allocations during attn_forward calls given a large enough workspace.
 *
 * Masks: none, causal, prefix-LM with position offsets, and Child et al.'s
 * strided (with ALiBi) and fixed patterns, which run as two calls merged
 * (src/kernels/sparse_split.c) out of the same workspace (all but the first
 * two left out with ATTN_TEST_NEW_OPTIONS=0).
 *
 * One thread and several threads are reported separately (starting threads
 * may need memory the library cannot take from the workspace; the header
 * makes no exception for it). Last line: "N passed, N failed".
 */
#include "alloc_count.h"
#include "attn.h"
#include "test_common.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static long n_pass, n_fail;

/* Allocations made by one attn_forward call with a workspace; causal 3:
 * prefix-LM with position offsets instead (the 0.2 options); 4: strided
 * L = 16 with ALiBi; 5: fixed L = 20, C = 4. */
static long allocs_in_call(int threads, attn_isa isa, int causal, int varlen) {
  enum { SQ = 100, SK = 140, HQ = 4, HK = 2, D = 64 };
  static float q[SQ * HQ * D], k[SK * HK * D], v[SK * HK * D], o[SQ * HQ * D];
  static float lse[HQ * SQ];
  static int32_t cq[3] = {0, 40, SQ}, ck[3] = {0, 70, SK};
  static int64_t qoffs[2] = {3, -7};
  static const float slopes[HQ] = {0.5f, 0.25f, 0.125f, 0.0625f};
  attn_params p;
  size_t bytes = 0;
  void *ws;
  long n;
  tc_rng r = {7};
  for (int i = 0; i < SQ * HQ * D; i++)
    q[i] = (float)tc_normal(&r);
  for (int i = 0; i < SK * HK * D; i++)
    k[i] = (float)tc_normal(&r), v[i] = (float)tc_normal(&r);
  attn_params_init(&p);
  p.q = attn_tensor_bshd(q, ATTN_DTYPE_F32, 1, SQ, HQ, D);
  p.k = attn_tensor_bshd(k, ATTN_DTYPE_F32, 1, SK, HK, D);
  p.v = attn_tensor_bshd(v, ATTN_DTYPE_F32, 1, SK, HK, D);
  p.o = attn_tensor_bshd(o, ATTN_DTYPE_F32, 1, SQ, HQ, D);
  p.lse = lse;
  if (causal == 3) {
    p.prefix_len = 30;
    p.q_pos_offset = -2;
    p.k_pos_offset = 5;
    p.q_pos_offsets = qoffs;
  } else if (causal == 4) {
    p.sparse_kind = ATTN_SPARSE_STRIDED;
    p.sparse_l = 16;
    p.alibi_slopes = slopes;
  } else if (causal == 5) {
    p.sparse_kind = ATTN_SPARSE_FIXED;
    p.sparse_l = 20;
    p.sparse_c = 4;
  } else {
    p.causal = (attn_causal)causal;
  }
  p.num_threads = threads;
  p.isa = isa;
  if (varlen) {
    p.cu_seqlens_q = cq;
    p.cu_seqlens_k = ck;
    p.varlen_batch = 2;
  }
  if (attn_forward_workspace_size(NULL, &p, &bytes) != ATTN_OK)
    return -1;
  ws = malloc(bytes + 64);
  p.workspace = (void *)(((uintptr_t)ws + 63) & ~(uintptr_t)63);
  p.workspace_size = bytes;
  attn_forward(NULL, &p); /* warm-up: one-time CPU detection etc. */
  atomic_store(&n_allocs, 0);
  atomic_store(&counting, 1);
  if (attn_forward(NULL, &p) != ATTN_OK)
    atomic_store(&n_allocs, -1000000);
  atomic_store(&counting, 0);
  n = atomic_load(&n_allocs);
  free(ws);
  return n;
}

int main(void) {
  setvbuf(stdout, NULL, _IOLBF, 0); /* keep output if a sanitizer aborts */
  static const attn_isa isas[5] = {ATTN_ISA_GENERIC, ATTN_ISA_AVX2,
                                   ATTN_ISA_AVX512, ATTN_ISA_AVX512_BF16,
                                   ATTN_ISA_AMX_BF16};
  static const int threads[3] = {1, 2, 4};
  static const int masks[5] = {ATTN_CAUSAL_NONE, ATTN_CAUSAL_BOTTOM_RIGHT, 3, 4,
                               5};
  /* ATTN_TEST_NEW_OPTIONS=0 leaves out the 0.2 options */
  const int n_masks = tc_env_ll("ATTN_TEST_NEW_OPTIONS", 1) != 0 ? 5 : 2;
  for (int i = 0; i < 5; i++) {
    if (!attn_isa_supported(isas[i])) {
      printf("isa %s: not supported on this CPU, skipped\n",
             attn_isa_name(isas[i]));
      continue;
    }
    for (int t = 0; t < 3; t++)
      for (int c = 0; c < n_masks; c++)
        for (int vl = 0; vl < 2; vl++) {
          long n = allocs_in_call(threads[t], isas[i], masks[c], vl);
          if (n == 0) {
            n_pass++;
          } else {
            n_fail++;
            printf("FAIL: isa %s, %d thread(s), mask %d (3: prefix-LM, "
                   "4: strided, 5: fixed), "
                   "varlen %d: %ld heap allocation(s) inside attn_forward "
                   "with a caller workspace\n",
                   attn_isa_name(isas[i]), threads[t], masks[c], vl, n);
          }
        }
  }
  printf("%ld passed, %ld failed\n", n_pass, n_fail);
  return n_fail ? 1 : 0;
}
