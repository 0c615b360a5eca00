/*
 * cmd_merge.c - `attn merge`: partial attention results (O, LSE) computed
 * over disjoint key sets, as `attn run --lse` writes them, merged into the
 * result over all the keys (attn_merge).
 *
 * Parsing (the --part pairs), loading (shapes and dtypes of every file
 * against the first part's) and computing are separate functions. The files
 * of all parts are released by one cleanup, so any number of parts fits the
 * CLI's table of deferred releases.
 */
#include "args.h"
#include "cli.h"
#include "operands.h"
#include "paths.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char cmd_merge_help[] =
    "attn merge --part O1.npy,LSE1.npy --part O2.npy,LSE2.npy ... --out O.npy\n"
    "    merges partial results over disjoint key sets into the result over\n"
    "    all of them (LSE-weighted, in f32), as `attn run --lse` writes them:\n"
    "    O float32 or float16 [batch, seq_q, heads_q, dim_v] ([total_q,\n"
    "    heads_q, dim_v] packed), LSE float32 [batch, heads_q, seq_q] ([1,\n"
    "    heads_q, total_q] packed). O is written float32 with the parts'\n"
    "    shape. A part whose row saw no key (LSE -inf) adds nothing.\n"
    "  --lse LSE.npy           write the merged float32 log-sum-exp\n"
    "  --sinks SINKS.npy       float32 [heads_q]: a sink logit per head joins\n"
    "                          every row (when no part has it already)\n"
    "  --layout bshd|bhsd      axis order of the O files (default bshd)\n"
    "  --threads N             worker threads (0 = all, default; at most "
    "256)\n";

typedef struct merge_opts {
  int64_t n;         /* parts                                  */
  const char **o_in; /* [n] O files                            */
  const char **l_in; /* [n] LSE files                          */
  const char *out, *lse, *sinks, *layout;
  int threads, bhsd;
} merge_opts;

/* ---------------------------------------------------------------------- */
/* Parsing                                                                */
/* ---------------------------------------------------------------------- */

/* "O.npy,LSE.npy" into part k: one comma, a file on each side. */
static void take_part(merge_opts *o, const char *v) {
  const char *comma = strchr(v, ',');
  if (comma == NULL || comma == v || comma[1] == '\0' ||
      strchr(comma + 1, ',') != NULL)
    cli_fail(CLI_EXIT_USAGE,
             "--part: expected O.npy,LSE.npy (two files, one comma), got '%s'",
             v);
  const size_t n = (size_t)(comma - v);
  char *op = cli_calloc((int64_t)n + 1, 1, "--part");
  memcpy(op, v, n);
  o->o_in[o->n] = op;
  o->l_in[o->n] = comma + 1;
  o->n++;
}

static void parse(int argc, char **argv, merge_opts *o) {
  memset(o, 0, sizeof *o);
  o->o_in = cli_calloc(argc, sizeof(char *), "--part");
  o->l_in = cli_calloc(argc, sizeof(char *), "--part");
  args a = args_start(argc, argv);
  while (args_next(&a)) {
    if (args_is(&a, "--help")) {
      fputs(cmd_merge_help, stdout);
      cli_cleanup();
      exit(0);
    } else if (args_is(&a, "--part")) {
      take_part(o, args_value(&a));
    } else if (args_is(&a, "--out")) {
      args_set_once(&o->out, args_value(&a), "--out");
    } else if (args_is(&a, "--lse")) {
      args_set_once(&o->lse, args_value(&a), "--lse");
    } else if (args_is(&a, "--sinks")) {
      args_set_once(&o->sinks, args_value(&a), "--sinks");
    } else if (args_is(&a, "--layout")) {
      args_set_once(&o->layout, args_value(&a), "--layout");
    } else if (args_is(&a, "--threads")) {
      o->threads = args_threads(args_value(&a));
    } else {
      args_unknown(&a, "merge");
    }
  }
  if (o->n == 0)
    cli_fail(CLI_EXIT_USAGE, "missing --part O.npy,LSE.npy (at least one)");
  if (o->out == NULL)
    cli_fail(CLI_EXIT_USAGE, "missing --out O.npy");
  if (o->layout != NULL && strcmp(o->layout, "bhsd") == 0)
    o->bhsd = 1;
  else if (o->layout != NULL && strcmp(o->layout, "bshd") != 0)
    cli_fail(CLI_EXIT_USAGE,
             "--layout: unknown layout '%s' (expected bshd or bhsd)",
             o->layout);
  /* outputs distinct from each other and from every input */
  const int64_t np = 2 * o->n + 3;
  cli_path *list = cli_calloc(np, sizeof(cli_path), "paths");
  int k = 0;
  list[k++] = (cli_path){"--out", o->out, 1};
  list[k++] = (cli_path){"--lse", o->lse, 1};
  list[k++] = (cli_path){"--sinks", o->sinks, 0};
  for (int64_t c = 0; c < o->n; c++) {
    list[k++] = (cli_path){"--part", o->o_in[c], 0};
    list[k++] = (cli_path){"--part", o->l_in[c], 0};
  }
  paths_check_distinct(list, k);
}

/* ---------------------------------------------------------------------- */
/* Loading                                                                */
/* ---------------------------------------------------------------------- */

/* Every part's two arrays, released together. */
typedef struct part_files {
  int64_t n;
  attn_npy *o, *l; /* [n] */
} part_files;

static void files_release(void *arg) {
  part_files *f = arg;
  for (int64_t c = 0; c < f->n; c++) {
    attn_npy_free(&f->o[c]);
    attn_npy_free(&f->l[c]);
  }
}

static void read_into(const char *path, attn_npy *a) {
  char err[512];
  if (attn_npy_read(path, a, err, sizeof err) != ATTN_OK)
    cli_fail(CLI_EXIT_RUNTIME, "%s", err);
}

/* "[2, 3, 4]" */
static const char *shape_str(const attn_npy *a, char *buf, size_t n) {
  size_t at = (size_t)snprintf(buf, n, "[");
  for (int i = 0; i < a->ndim && at < n; i++)
    at += (size_t)snprintf(buf + at, n - at, "%s%lld", i ? ", " : "",
                           (long long)a->shape[i]);
  if (at < n)
    snprintf(buf + at, n - at, "]");
  return buf;
}

static int same_shape(const attn_npy *a, const attn_npy *b) {
  if (a->ndim != b->ndim)
    return 0;
  for (int i = 0; i < a->ndim; i++)
    if (a->shape[i] != b->shape[i])
      return 0;
  return 1;
}

/* Logical [batch, seq_q, heads, dim_v] of the first O file. */
static void o_dims(const merge_opts *o, const attn_npy *a, const char *path,
                   int64_t d[4]) {
  const int64_t *s = a->shape;
  if (a->ndim == 4) {
    d[0] = s[0];
    d[1] = o->bhsd ? s[2] : s[1];
    d[2] = o->bhsd ? s[1] : s[2];
    d[3] = s[3];
  } else if (a->ndim == 3) { /* packed: one batch of total_q rows */
    d[0] = 1;
    d[1] = o->bhsd ? s[1] : s[0];
    d[2] = o->bhsd ? s[0] : s[1];
    d[3] = s[2];
  } else {
    cli_fail(CLI_EXIT_RUNTIME, "%s: O must be 4-D %s or 3-D (packed), got %d-D",
             path,
             o->bhsd ? "[batch, heads, seq, dim]" : "[batch, seq, heads, dim]",
             a->ndim);
  }
  for (int i = 0; i < 4; i++)
    if (d[i] == 0)
      cli_fail(CLI_EXIT_RUNTIME, "%s: an empty array (a dimension is 0)", path);
}

/* Checks part c against the first part (its dims d) and points m at it. */
static void check_part(const merge_opts *o, const part_files *f, int64_t c,
                       const int64_t d[4], attn_tensor *ot) {
  const attn_npy *a = &f->o[c], *l = &f->l[c];
  char s1[128], s2[128];
  if (a->dtype != ATTN_NPY_F32 && a->dtype != ATTN_NPY_F16)
    cli_fail(CLI_EXIT_RUNTIME,
             "%s: dtype %s, expected float32 (<f4) or float16 (<f2)",
             o->o_in[c], attn_npy_dtype_descr(a->dtype));
  if (c > 0 && !same_shape(a, &f->o[0]))
    cli_fail(CLI_EXIT_RUNTIME, "%s: shape %s differs from %s's %s", o->o_in[c],
             shape_str(a, s1, sizeof s1), o->o_in[0],
             shape_str(&f->o[0], s2, sizeof s2));
  if (l->dtype != ATTN_NPY_F32)
    cli_fail(CLI_EXIT_RUNTIME, "%s: dtype %s, expected float32 (<f4)",
             o->l_in[c], attn_npy_dtype_descr(l->dtype));
  if (l->ndim != 3 || l->shape[0] != d[0] || l->shape[1] != d[2] ||
      l->shape[2] != d[1])
    cli_fail(CLI_EXIT_RUNTIME,
             "%s: LSE must be [batch, heads_q, seq_q] = [%lld, %lld, %lld] "
             "for %s, got %s",
             o->l_in[c], (long long)d[0], (long long)d[2], (long long)d[1],
             o->o_in[c], shape_str(l, s1, sizeof s1));
  const attn_dtype dt =
      a->dtype == ATTN_NPY_F16 ? ATTN_DTYPE_F16 : ATTN_DTYPE_F32;
  *ot = o->bhsd ? attn_tensor_bhsd(a->data, dt, d[0], d[1], d[2], d[3])
                : attn_tensor_bshd(a->data, dt, d[0], d[1], d[2], d[3]);
}

/* ---------------------------------------------------------------------- */
/* attn merge                                                             */
/* ---------------------------------------------------------------------- */

int cmd_merge(int argc, char **argv) {
  merge_opts o;
  parse(argc, argv, &o);
  cli_parsed(); /* parse-only mode (cli.h) ends here */
  part_files *f = cli_calloc(1, sizeof *f, "parts");
  f->o = cli_calloc(o.n, sizeof(attn_npy), "parts");
  f->l = cli_calloc(o.n, sizeof(attn_npy), "parts");
  f->n = o.n;
  cli_defer(files_release, f);
  attn_tensor *ot = cli_calloc(o.n, sizeof(attn_tensor), "parts");
  const float **lp = cli_calloc(o.n, sizeof(float *), "parts");
  int64_t d[4] = {0, 0, 0, 0};
  for (int64_t c = 0; c < o.n; c++) {
    read_into(o.o_in[c], &f->o[c]);
    read_into(o.l_in[c], &f->l[c]);
    if (c == 0)
      o_dims(&o, &f->o[0], o.o_in[0], d);
    check_part(&o, f, c, d, &ot[c]);
    lp[c] = f->l[c].data;
  }
  attn_merge_params m;
  attn_merge_params_init(&m);
  if (o.sinks != NULL) {
    const attn_npy *s = operands_read(o.sinks);
    if (s->dtype != ATTN_NPY_F32 || s->ndim != 1 || s->shape[0] != d[2])
      cli_fail(CLI_EXIT_RUNTIME,
               "%s: the sinks must be float32 [heads_q = %lld], one logit per "
               "query head",
               o.sinks, (long long)d[2]);
    m.sinks = s->data;
  }
  const int64_t rows = cli_mul(cli_mul(d[0], d[1], CLI_EXIT_RUNTIME, "O"), d[2],
                               CLI_EXIT_RUNTIME, "O");
  float *out = cli_calloc(cli_mul(rows, d[3], CLI_EXIT_RUNTIME, "O"),
                          sizeof(float), "O");
  float *lse = o.lse != NULL ? cli_calloc(rows, sizeof(float), "LSE") : NULL;
  char msg[512] = "";
  m.n_parts = o.n;
  m.o_parts = ot;
  m.lse_parts = lp;
  m.o = o.bhsd ? attn_tensor_bhsd(out, ATTN_DTYPE_F32, d[0], d[1], d[2], d[3])
               : attn_tensor_bshd(out, ATTN_DTYPE_F32, d[0], d[1], d[2], d[3]);
  m.lse = lse;
  m.num_threads = o.threads;
  m.error_message = msg;
  m.error_message_size = sizeof msg;
  const attn_status st = attn_merge(NULL, &m);
  if (st != ATTN_OK)
    cli_fail(CLI_EXIT_RUNTIME, "%s", msg[0] ? msg : attn_strerror(st));
  operands_write(o.out, out, f->o[0].ndim, f->o[0].shape);
  if (lse != NULL)
    operands_write(o.lse, lse, 3, f->l[0].shape);
  cli_cleanup();
  return 0;
}
