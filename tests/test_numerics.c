/*
 * test_numerics (test "numerics", issue 6): numerical edge cases of the
 * forward and the backward, on every ISA the CPU supports (p.isa set).
 *
 *   test_numerics [huge] [nonfinite] [accuracy]     (no argument: all)
 *
 * huge       Huge finite logits: scores of magnitude 6e9, 1e20, 7.5e37 and
 *            3e38 (q = +-A in one dimension, k in [-1, 1]; and through the
 *            bias). Softmax rows that saturate must come out exactly: one-hot,
 *            an exact two-way split when two keys tie, the mean when every
 *            visible key ties; O and LSE finite and equal to a double
 *            oracle (never o = 0, lse = -inf or NaN). Backward (fed the
 *            oracle's O and LSE rounded to f32, so that it is judged on its
 *            own): finite, and on rows that saturate one-hot (dS = 0) dQ and
 *            their share of dK zero, compared with the double oracle relative
 *            to the natural magnitude scale*|q|*|dO|*|V|. (Ties cannot be
 *            exact in a backward that reads an f32 LSE: there only finiteness
 *            is checked. With scores near 3e38 the true dK exceeds the f32
 *            range: there dK is not checked.)
 * nonfinite  The rule: -inf in the bias masks; any other non-finite value a
 *            row can see (NaN or +-inf in its Q row, in a K row it sees; NaN
 *            or +inf in a bias element it sees) makes that row's O and LSE
 *            NaN; a non-finite V element propagates through P.V (that column
 *            of the rows that see the key is not finite, LSE unchanged). Rows
 *            that cannot see the bad value (other batches, heads, rows masked
 *            by causal, window, kv_lens, the mask tensor) are bitwise equal to
 *            the run without it; keys beyond kv_lens may hold NaN and are
 *            never read. Backward: dQ of an affected row NaN (not finite for a
 *            bad V), dQ of the others bitwise equal to the clean run, dK/dV of
 *            keys an affected row sees not silently finite; and (checks
 *            labelled "extra") dK/dV of keys no affected row sees bitwise
 *            equal. The documented exception (docs/decisions.md,
 *            "Numerics"): inside a (query tile, key tile) block with a
 *            visible element, a bad V, K, Q or dO of a masked element may
 *            reach the block's other rows and keys through 0 * x (a masked
 *            P is an exact 0 inside the same matrix products); outside
 *            such blocks the bitwise checks hold.
 * accuracy   FlashAttention's rule err <= 2 * err(f32 peer) + 1e-6 against a
 *            double oracle, err = max |x - oracle|. The peer computes S = QK^T
 *            in f32, a stable softmax in f32 and sums P.V over keys in blocks
 *            of 512 (each block summed in f32, the blocks added in f32), as
 *            PyTorch's CPU SDPA does. q, k = 0.1 N(0,1), v = 1 + 0.1 N(0,1),
 *            d 64, one head: 4096 keys x 64 query rows, and 1,048,576 keys x 4
 *            rows (262,144 with ATTN_TEST_QUICK=1). Backward: multi-query
 *            attention (1 kv head, 32 query heads, seq 2048; 8 heads, seq 512
 *            with ATTN_TEST_QUICK=1), dO = 1 + 0.1 N(0,1), dK and dV against
 *            the double oracle; the peer sums over the query rows of all
 *            heads in blocks of 512.
 *
 * Sources (numerics.h): this file holds main, the tally and check();
 * numerics_common.c the problem and the double oracle; numerics_huge.c,
 * numerics_nonfinite.c and numerics_accuracy.c one section each.
 *
 * Failures print one line each (at most ATTN_NUMERICS_MAX_FAILS, default 40,
 * per section and ISA). Last lines: a table of checks and failures per
 * section and ISA, then "N passed, N failed".
 */
#define _POSIX_C_SOURCE 200809L

#include "numerics.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

/* ---------------------------------------------------------------------- */
/* Tally per section and ISA                                              */
/* ---------------------------------------------------------------------- */
static const char *const sec_name[SEC_COUNT] = {
    "huge forward",       "huge backward",   "nonfinite forward",
    "nonfinite backward", "nonfinite extra", "accuracy forward",
    "accuracy backward"};
static long tally_checks[SEC_COUNT][6],
    tally_fails[SEC_COUNT][6]; /* by isa value */
static long n_pass, n_fail;

void check(int sec, attn_isa isa, int ok, const char *fmt, ...) {
  tally_checks[sec][isa]++;
  if (ok) {
    n_pass++;
    return;
  }
  n_fail++;
  tally_fails[sec][isa]++;
  const long cap = (long)tc_env_ll("ATTN_NUMERICS_MAX_FAILS", 40);
  if (tally_fails[sec][isa] > cap) {
    if (tally_fails[sec][isa] == cap + 1)
      printf("FAIL: [%s, %s] more failures not shown\n", sec_name[sec],
             attn_isa_name(isa));
    return;
  }
  va_list ap;
  va_start(ap, fmt);
  printf("FAIL: [%s, %s] ", sec_name[sec], attn_isa_name(isa));
  vprintf(fmt, ap);
  printf("\n");
  va_end(ap);
}

/* ====================================================================== */
int main(int argc, char **argv) {
  int want[3] = {argc <= 1, argc <= 1, argc <= 1};
  for (int a = 1; a < argc; a++) {
    if (strcmp(argv[a], "huge") == 0)
      want[0] = 1;
    else if (strcmp(argv[a], "nonfinite") == 0)
      want[1] = 1;
    else if (strcmp(argv[a], "accuracy") == 0)
      want[2] = 1;
    else {
      fprintf(stderr, "usage: test_numerics [huge] [nonfinite] [accuracy]\n");
      return 2;
    }
  }
  const int quick = tc_env_ll("ATTN_TEST_QUICK", 0) != 0;
  printf("libattn %s; ISAs:", attn_version_string());
  for (int ii = 0; ii < 3; ii++)
    if (attn_isa_supported(all_isas[ii]))
      printf(" %s", attn_isa_name(all_isas[ii]));
  printf("\n");
  if (want[0])
    section_huge();
  if (want[1])
    section_nonfinite();
  if (want[2])
    section_accuracy(quick);

  printf("\n%-20s %-8s %7s %7s\n", "section", "isa", "checks", "failed");
  for (int s = 0; s < SEC_COUNT; s++)
    for (int ii = 0; ii < N_ISAS; ii++)
      if (tally_checks[s][all_isas[ii]])
        printf("%-20s %-8s %7ld %7ld\n", sec_name[s],
               attn_isa_name(all_isas[ii]), tally_checks[s][all_isas[ii]],
               tally_fails[s][all_isas[ii]]);
  printf("%ld passed, %ld failed\n", n_pass, n_fail);
  return n_fail ? 1 : 0;
}
