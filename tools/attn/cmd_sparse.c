/*
 * cmd_sparse.c - the sparse-pattern options of `attn run` and `attn grad`
 * (cmd_run.h, run_sparse; attn/sparse.h):
 *   --global IDX.npy          int32 [n] token indices (any order, repeats
 *                             allowed: sorted and deduplicated here)
 *   --sparse strided:L | fixed:L,C
 *   --block-mask MAP.npy      bool [ceil(seq_q/BQ), ceil(seq_k/BK)] (or 4-D
 *                             [batch|1, heads_q|1, ..., ...])
 *   --block-size BQ,BK        required with --block-mask, and only with it
 * Out-of-range values and shapes are the library's errors (exit 1, its
 * message); malformed option values are usage errors (exit 2).
 */
#include "cmd_run.h"

#include "cli.h"

#include <stdlib.h>
#include <string.h>

static int cmp_i32(const void *a, const void *b) {
  const int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
  return (x > y) - (x < y);
}

static void apply_global(const char *path, attn_params *p) {
  const attn_npy *t = operands_read(path);
  if (t->dtype != ATTN_NPY_I32 || t->ndim != 1)
    cli_fail(CLI_EXIT_RUNTIME,
             "%s: the global token indices must be int32 [n] (1-D)", path);
  int32_t *g = cli_calloc(t->count > 0 ? t->count : 1, sizeof(int32_t),
                          "global indices");
  memcpy(g, t->data, (size_t)t->count * sizeof(int32_t));
  qsort(g, (size_t)t->count, sizeof(int32_t), cmp_i32);
  int64_t n = 0;
  for (int64_t i = 0; i < t->count; i++)
    if (n == 0 || g[i] != g[n - 1])
      g[n++] = g[i];
  p->global_idx = g;
  p->global_count = n;
}

/* "strided:L" or "fixed:L,C". */
static void apply_child(const char *s, attn_params *p) {
  const char *colon = strchr(s, ':');
  const size_t n = colon ? (size_t)(colon - s) : 0;
  const int strided = n == 7 && strncmp(s, "strided", 7) == 0;
  const int fixed = n == 5 && strncmp(s, "fixed", 5) == 0;
  if (!strided && !fixed)
    cli_fail(CLI_EXIT_USAGE,
             "--sparse: expected strided:L or fixed:L,C, got '%s'", s);
  const char *v = colon + 1;
  const char *comma = strchr(v, ',');
  if (strided) {
    if (comma != NULL)
      cli_fail(CLI_EXIT_USAGE, "--sparse: strided takes one number, L: '%s'",
               s);
    p->sparse_kind = ATTN_SPARSE_STRIDED;
    p->sparse_l = args_int("--sparse", v, 1, (long long)1 << 48);
    return;
  }
  char l[64];
  const size_t m = comma ? (size_t)(comma - v) : 0;
  if (comma == NULL || m == 0 || m >= sizeof l)
    cli_fail(CLI_EXIT_USAGE, "--sparse: fixed takes L,C, got '%s'", s);
  memcpy(l, v, m);
  l[m] = '\0';
  p->sparse_kind = ATTN_SPARSE_FIXED;
  p->sparse_l = args_int("--sparse", l, 1, (long long)1 << 48);
  p->sparse_c = args_int("--sparse", comma + 1, 1, p->sparse_l);
}

/* --block-size BQ,BK. */
static void apply_block_size(const char *s, attn_params *p) {
  const char *comma = strchr(s, ',');
  char a[64];
  const size_t n = comma ? (size_t)(comma - s) : 0;
  if (comma == NULL || n == 0 || n >= sizeof a || comma[1] == '\0')
    cli_fail(CLI_EXIT_USAGE, "--block-size: expected BQ,BK, got '%s'", s);
  memcpy(a, s, n);
  a[n] = '\0';
  p->block_q = args_int("--block-size", a, 1, INT64_MAX);
  p->block_k = args_int("--block-size", comma + 1, 1, INT64_MAX);
}

static void apply_block_mask(const char *path, attn_params *p) {
  const attn_npy *t = operands_read(path);
  if (t->dtype != ATTN_NPY_BOOL || (t->ndim != 2 && t->ndim != 4))
    cli_fail(CLI_EXIT_RUNTIME,
             "%s: the block mask must be bool [ceil(seq_q/BQ), ceil(seq_k/BK)] "
             "(or 4-D [batch|1, heads_q|1, ., .])",
             path);
  int64_t sh[4] = {1, 1, 1, 1};
  for (int i = 0; i < t->ndim; i++)
    sh[4 - t->ndim + i] = t->shape[i];
  p->block_mask = attn_tensor_contiguous(t->data, ATTN_DTYPE_BOOL, sh[0], sh[1],
                                         sh[2], sh[3]);
}

void run_sparse(const run_opts *o, attn_params *p) {
  if ((o->block_mask == NULL) != (o->block_size == NULL))
    cli_fail(CLI_EXIT_USAGE, "--block-mask and --block-size BQ,BK go together");
  if (o->global != NULL)
    apply_global(o->global, p);
  if (o->sparse != NULL)
    apply_child(o->sparse, p);
  if (o->block_size != NULL)
    apply_block_size(o->block_size, p);
  if (o->block_mask != NULL)
    apply_block_mask(o->block_mask, p);
}
