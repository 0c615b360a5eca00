/*
 * cmd_ring.c - `attn ring`: ring attention over MPI (libattn_ring) on .npy
 * files, under mpirun. Rank 0 reads the files (and applies --rope to the
 * whole sequence), sends every rank its slice, every rank runs
 * attn_ring_forward (and attn_ring_backward with --dout), rank 0 gathers
 * the results and writes them. Takes run's options (cmd_run.h) and grad's
 * --dout/--dq/--dk/--dv/--dsinks/--drelative-bias. Built when MPI is found.
 *
 * Errors: usage errors happen the same on every rank (each exits 2);
 * a file rank 0 cannot read aborts the job (MPI_Abort, exit 1); the
 * library's errors are agreed by every rank (exit 1). Only rank 0 prints.
 */
#include "cli.h"
#include "cmd_run.h"

#include "attn/ring.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char cmd_ring_help[] =
    "mpirun -np R attn ring [run's options] --out O.npy [--lse LSE.npy]\n"
    "          [--ring-layout contiguous|zigzag]\n"
    "          [--dout DO.npy --dq DQ.npy --dk DK.npy --dv DV.npy\n"
    "           [--dsinks DS.npy] [--drelative-bias DR.npy]]\n"
    "    Ring attention over MPI (context parallelism): the sequence split\n"
    "    over the R ranks, K/V slices passed round the ring, results equal\n"
    "    to `attn run` (with --dout: `attn grad`, --out then optional).\n"
    "    Rank 0 reads the files, scatters the slices, gathers and writes.\n"
    "    --ring-layout: contiguous slices, or zig-zag (2R chunks, rank r\n"
    "    holds r and 2R-1-r: balanced under a causal mask); default zigzag\n"
    "    with --causal*, else contiguous. Not with --bias, --mask,\n"
    "    --dropout, --kv-quant.\n";

typedef struct ring_cli {
  run_opts run;
  const char *layout;
  const char *dout, *dq, *dk, *dv, *dsinks, *drel;
} ring_cli;

/* 0 while parsing, and on a library error every rank agrees on (every
 * rank fails the same: finalize at exit), 1 otherwise after parsing (a
 * failure on one rank: abort the job). */
static int g_phase = -1;

static void at_exit_mpi(void) {
  int fin = 0;
  MPI_Finalized(&fin);
  if (fin || g_phase < 0)
    return;
  if (g_phase == 0)
    MPI_Finalize();
  else
    MPI_Abort(MPI_COMM_WORLD, CLI_EXIT_RUNTIME);
}

static void parse(int argc, char **argv, ring_cli *o) {
  args a = args_start(argc, argv);
  memset(o, 0, sizeof *o);
  while (args_next(&a)) {
    if (args_is(&a, "--help")) {
      cli_print_help();
      cli_cleanup();
      exit(0);
    }
    const struct {
      const char *name;
      const char **slot;
    } own[] = {{"--ring-layout", &o->layout},
               {"--dout", &o->dout},
               {"--dq", &o->dq},
               {"--dk", &o->dk},
               {"--dv", &o->dv},
               {"--dsinks", &o->dsinks},
               {"--drelative-bias", &o->drel}};
    int taken = 0;
    for (size_t i = 0; i < sizeof own / sizeof own[0] && !taken; i++) {
      if (args_is(&a, own[i].name)) {
        args_set_once(own[i].slot, args_value(&a), a.name);
        taken = 1;
      }
    }
    if (!taken && !run_opts_take(&o->run, &a))
      args_unknown(&a, "ring");
  }
  const int grad = o->dout || o->dq || o->dk || o->dv;
  run_opts_require(&o->run, "ring", !grad);
  if (grad && (!o->dout || !o->dq || !o->dk || !o->dv))
    cli_fail(CLI_EXIT_USAGE, "ring: missing required option %s",
             !o->dout ? "--dout"
             : !o->dq ? "--dq"
             : !o->dk ? "--dk"
                      : "--dv");
  if ((o->dsinks || o->drel) && !grad)
    cli_fail(CLI_EXIT_USAGE, "ring: %s needs --dout",
             o->dsinks ? "--dsinks" : "--drelative-bias");
  if (o->dsinks && !o->run.sinks)
    cli_fail(CLI_EXIT_USAGE, "ring: --dsinks needs --sinks");
  if (o->drel && !o->run.rel_bias)
    cli_fail(CLI_EXIT_USAGE, "ring: --drelative-bias needs --relative-bias");
  const char *bad = o->run.bias       ? "--bias"
                    : o->run.mask     ? "--mask"
                    : o->run.dropout  ? "--dropout"
                    : o->run.kv_quant ? "--kv-quant"
                                      : NULL;
  if (bad != NULL)
    cli_fail(CLI_EXIT_USAGE, "ring: %s is not supported over the ring", bad);
  if (o->layout && strcmp(o->layout, "contiguous") != 0 &&
      strcmp(o->layout, "zigzag") != 0)
    cli_fail(CLI_EXIT_USAGE,
             "--ring-layout: expected contiguous or zigzag, got '%s'",
             o->layout);
  cli_path files[40];
  int n = 0;
  run_opts_paths(&o->run, files, &n);
  const cli_path add[] = {
      {"--dq", o->dq, 1},         {"--dk", o->dk, 1},
      {"--dv", o->dv, 1},         {"--dout", o->dout, 0},
      {"--dsinks", o->dsinks, 1}, {"--drelative-bias", o->drel, 1}};
  for (size_t i = 0; i < sizeof add / sizeof add[0]; i++)
    files[n++] = add[i];
  paths_check_distinct(files, n);
}

/* Header rank 0 sends: what the files said. */
enum {
  H_B,
  H_S,
  H_HQ,
  H_HKV,
  H_D,
  H_DV,
  H_VARLEN, /* varlen_batch, 0 = not packed */
  H_ALIBI,
  H_KVL,
  H_SINKS,
  H_BUCKETS, /* 0 = no T5 table */
  H_MAXDIST,
  H_N
};

/* Sends rank 0's arrays of the call (alibi, kv_lens, cu_seqlens, sinks,
 * rel_bias) to every rank; the others point p at their copies. */
static void share(attn_params *p, int64_t *h, int rank) {
  MPI_Bcast(h, H_N, MPI_INT64_T, 0, MPI_COMM_WORLD);
  const int64_t docs = h[H_VARLEN] ? h[H_VARLEN] : h[H_B];
  if (rank != 0) {
    if (h[H_ALIBI])
      p->alibi_slopes = cli_calloc(h[H_HQ], sizeof(float), "alibi");
    if (h[H_KVL])
      p->kv_lens = cli_calloc(docs, sizeof(int32_t), "kv_lens");
    if (h[H_VARLEN]) {
      int32_t *cu = cli_calloc(docs + 1, sizeof(int32_t), "cu_seqlens");
      p->cu_seqlens_q = p->cu_seqlens_k = cu;
      p->varlen_batch = h[H_VARLEN];
    }
    if (h[H_SINKS])
      p->sinks = cli_calloc(h[H_HQ], sizeof(float), "sinks");
    if (h[H_BUCKETS]) {
      p->rel_bias = cli_calloc(h[H_BUCKETS] * h[H_HQ], sizeof(float), "rel");
      p->rel_buckets = h[H_BUCKETS];
      p->rel_max_distance = h[H_MAXDIST];
    }
  }
  if (h[H_ALIBI])
    MPI_Bcast((void *)p->alibi_slopes, (int)h[H_HQ], MPI_FLOAT, 0,
              MPI_COMM_WORLD);
  if (h[H_KVL])
    MPI_Bcast((void *)p->kv_lens, (int)docs, MPI_INT32_T, 0, MPI_COMM_WORLD);
  if (h[H_VARLEN]) {
    MPI_Bcast((void *)p->cu_seqlens_q, (int)docs + 1, MPI_INT32_T, 0,
              MPI_COMM_WORLD);
    if (rank == 0 && memcmp(p->cu_seqlens_q, p->cu_seqlens_k,
                            (size_t)(docs + 1) * sizeof(int32_t)) != 0)
      cli_fail(CLI_EXIT_RUNTIME, "ring: --cu-seqlens-q and --cu-seqlens-k "
                                 "must be equal (self-attention)");
    p->cu_seqlens_k = p->cu_seqlens_q;
  }
  if (h[H_SINKS])
    MPI_Bcast((void *)p->sinks, (int)h[H_HQ], MPI_FLOAT, 0, MPI_COMM_WORLD);
  if (h[H_BUCKETS])
    MPI_Bcast((void *)p->rel_bias, (int)(h[H_BUCKETS] * h[H_HQ]), MPI_FLOAT, 0,
              MPI_COMM_WORLD);
}

typedef struct slice {
  int n;
  int64_t st[2], ln[2], rows;
} slice;

static slice slice_of(attn_ring_layout layout, int64_t S, int R, int r) {
  slice s;
  attn_ring_partition(layout, S, R, r, s.st, s.ln, &s.n);
  s.rows = s.ln[0] + (s.n > 1 ? s.ln[1] : 0);
  return s;
}

static size_t at(const attn_tensor *t, int64_t b, int64_t i, int64_t h) {
  return (size_t)(b * t->stride[0] + i * t->stride[1] + h * t->stride[2]);
}

/* Rows of s from view t into contiguous [B, rows, H, W] at dst (same
 * dtype), or (to_view) back from contiguous f32 src into f32 view t. */
static void move_rows(const attn_tensor *t, const slice *s, char *buf,
                      int to_view) {
  const size_t es = attn_dtype_size(t->dtype);
  const int64_t B = t->shape[0], H = t->shape[2], W = t->shape[3];
  for (int64_t b = 0; b < B; b++) {
    int64_t off = 0;
    for (int g = 0; g < s->n; g++) {
      for (int64_t i = 0; i < s->ln[g]; i++)
        for (int64_t h = 0; h < H; h++) {
          char *v = (char *)t->data + at(t, b, s->st[g] + i, h) * es;
          char *c = buf + (size_t)(((b * s->rows + off + i) * H + h) * W) * es;
          if (to_view)
            memcpy(v, c, (size_t)W * es);
          else
            memcpy(c, v, (size_t)W * es);
        }
      off += s->ln[g];
    }
  }
}

/* Rank 0 sends each rank its rows of global view g; every rank returns
 * its contiguous [B, rows, H, W] slice. */
static void *scatter(const attn_tensor *g, const int64_t *h, int64_t H,
                     int64_t W, attn_dtype dt, attn_ring_layout layout,
                     int rank, int R) {
  const size_t es = attn_dtype_size(dt);
  const slice mine = slice_of(layout, h[H_S], R, rank);
  const int64_t count = h[H_B] * mine.rows * H * W;
  char *local = cli_calloc(count, es, "slice");
  if (rank == 0) {
    for (int r = 1; r < R; r++) {
      const slice s = slice_of(layout, h[H_S], R, r);
      const int64_t n = h[H_B] * s.rows * H * W;
      char *buf = malloc((size_t)(n ? n : 1) * es);
      if (buf == NULL)
        cli_fail(CLI_EXIT_RUNTIME, "ring: out of memory (scatter)");
      move_rows(g, &s, buf, 0);
      MPI_Send(buf, (int)((size_t)n * es), MPI_BYTE, r, 1, MPI_COMM_WORLD);
      free(buf);
    }
    move_rows(g, &mine, local, 0);
  } else {
    MPI_Recv(local, (int)((size_t)count * es), MPI_BYTE, 0, 1, MPI_COMM_WORLD,
             MPI_STATUS_IGNORE);
  }
  return local;
}

/* Every rank's f32 [B, rows, H, W] slice (of S tokens) into rank 0's f32
 * view g. */
static void gather(float *local, const attn_tensor *g, int64_t B, int64_t S,
                   int64_t H, int64_t W, attn_ring_layout layout, int rank,
                   int R) {
  if (rank != 0) {
    const slice s = slice_of(layout, S, R, rank);
    MPI_Send(local, (int)(B * s.rows * H * W), MPI_FLOAT, 0, 2, MPI_COMM_WORLD);
    return;
  }
  for (int r = 0; r < R; r++) {
    const slice s = slice_of(layout, S, R, r);
    const int64_t n = B * s.rows * H * W;
    float *buf = local;
    if (r != 0) {
      buf = malloc((size_t)(n ? n : 1) * sizeof(float));
      if (buf == NULL)
        cli_fail(CLI_EXIT_RUNTIME, "ring: out of memory (gather)");
      MPI_Recv(buf, (int)n, MPI_FLOAT, r, 2, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
    }
    move_rows(g, &s, (char *)buf, 1);
    if (r != 0)
      free(buf);
  }
}

static void ring_call(attn_status (*fn)(attn_context *, MPI_Comm,
                                        const attn_ring_opts *,
                                        const attn_params *),
                      const attn_ring_opts *ro, attn_params *p) {
  char msg[512] = {0};
  p->error_message = msg;
  p->error_message_size = sizeof msg;
  const attn_status st = fn(NULL, MPI_COMM_WORLD, ro, p);
  p->error_message = NULL;
  p->error_message_size = 0;
  if (st != ATTN_OK) {
    /* Every rank has the same status: rank 0 prints, then all finalize
     * together (at_exit_mpi). Finalizing first let rank 1 leave with its
     * exit code while rank 0 was still on its way to print, and mpirun
     * then killed rank 0 with the message unwritten (cli_ring's kv_lens
     * case, one run in a few on a loaded machine). */
    g_phase = 0;
    cli_fail(CLI_EXIT_RUNTIME, "%s", msg[0] ? msg : attn_strerror(st));
  }
}

static attn_status fwd(attn_context *c, MPI_Comm m, const attn_ring_opts *o,
                       const attn_params *p) {
  return attn_ring_forward(c, m, o, p);
}
static attn_status bwd(attn_context *c, MPI_Comm m, const attn_ring_opts *o,
                       const attn_params *p) {
  return attn_ring_backward(c, m, o, p);
}

int cmd_ring(int argc, char **argv) {
  MPI_Init(&argc, &argv);
  int rank = 0, R = 1;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &R);
  g_phase = 0;
  atexit(at_exit_mpi);
  if (rank != 0 && freopen("/dev/null", "w", stderr) == NULL)
    return CLI_EXIT_RUNTIME;
  ring_cli o;
  parse(argc, argv, &o);
  const int grad = o.dout != NULL;
  attn_params p;
  attn_params_init(&p);
  operand_spec spec;
  run_opts_apply(&o.run, &p, &spec);
  attn_rope rope;
  const int with_rope = run_opts_rope(&o.run, &rope);
  attn_ring_opts ro;
  attn_ring_opts_init(&ro);
  ro.layout =
      p.causal != ATTN_CAUSAL_NONE ? ATTN_RING_ZIGZAG : ATTN_RING_CONTIGUOUS;
  if (o.layout != NULL)
    ro.layout = strcmp(o.layout, "zigzag") == 0 ? ATTN_RING_ZIGZAG
                                                : ATTN_RING_CONTIGUOUS;
  g_phase = 1; /* from here a failure on rank 0 alone aborts the job */

  int64_t h[H_N] = {0};
  operands ops;
  int64_t lse_shape[3];
  float *glse = NULL;
  if (rank == 0) {
    operands_load(&spec, &p, &ops);
    run_rel_bias(&o.run, &p);
    run_sinks(&o.run, &p);
    glse = operands_lse(&ops, &p, lse_shape);
    if (with_rope)
      run_rope_qk(&rope, &p); /* the whole sequence, its positions */
    if (grad)
      operands_load_grad(&ops, o.dout, 0, &p);
    if (p.q.shape[1] != p.k.shape[1])
      cli_fail(CLI_EXIT_RUNTIME,
               "ring: Q and K must have the same sequence length "
               "(self-attention), got %lld and %lld",
               (long long)p.q.shape[1], (long long)p.k.shape[1]);
    const int64_t v[H_N] = {p.q.shape[0],
                            p.q.shape[1],
                            p.q.shape[2],
                            p.k.shape[2],
                            p.q.shape[3],
                            p.v.shape[3],
                            p.cu_seqlens_q ? p.varlen_batch : 0,
                            p.alibi_slopes != NULL,
                            p.kv_lens != NULL,
                            p.sinks != NULL,
                            p.rel_bias ? p.rel_buckets : 0,
                            p.rel_max_distance};
    memcpy(h, v, sizeof h);
  }
  share(&p, h, rank);
  const attn_dtype dt = spec.dtype;
  const slice mine = slice_of(ro.layout, h[H_S], R, rank);
  const int64_t B = h[H_B], n = mine.rows;
  attn_params lp = p; /* this rank's slice, the call's options */
  lp.q = attn_tensor_bshd(
      scatter(&p.q, h, h[H_HQ], h[H_D], dt, ro.layout, rank, R), dt, B, n,
      h[H_HQ], h[H_D]);
  lp.k = attn_tensor_bshd(
      scatter(&p.k, h, h[H_HKV], h[H_D], dt, ro.layout, rank, R), dt, B, n,
      h[H_HKV], h[H_D]);
  lp.v = attn_tensor_bshd(
      scatter(&p.v, h, h[H_HKV], h[H_DV], dt, ro.layout, rank, R), dt, B, n,
      h[H_HKV], h[H_DV]);
  float *lo = cli_calloc(B * n * h[H_HQ] * h[H_DV], sizeof(float), "O");
  float *llse = cli_calloc(B * h[H_HQ] * n, sizeof(float), "LSE");
  lp.o = attn_tensor_bshd(lo, ATTN_DTYPE_F32, B, n, h[H_HQ], h[H_DV]);
  lp.lse = llse;
  ring_call(fwd, &ro, &lp);
  if (grad) {
    lp.dout = attn_tensor_bshd(
        scatter(&p.dout, h, h[H_HQ], h[H_DV], dt, ro.layout, rank, R), dt, B, n,
        h[H_HQ], h[H_DV]);
    float *dq = cli_calloc(B * n * h[H_HQ] * h[H_D], sizeof(float), "dQ");
    float *dk = cli_calloc(B * n * h[H_HKV] * h[H_D], sizeof(float), "dK");
    float *dv = cli_calloc(B * n * h[H_HKV] * h[H_DV], sizeof(float), "dV");
    lp.dq = attn_tensor_bshd(dq, ATTN_DTYPE_F32, B, n, h[H_HQ], h[H_D]);
    lp.dk = attn_tensor_bshd(dk, ATTN_DTYPE_F32, B, n, h[H_HKV], h[H_D]);
    lp.dv = attn_tensor_bshd(dv, ATTN_DTYPE_F32, B, n, h[H_HKV], h[H_DV]);
    if (o.dsinks)
      lp.dsinks = cli_calloc(h[H_HQ], sizeof(float), "dSinks");
    if (o.drel)
      lp.drel_bias = cli_calloc(h[H_BUCKETS] * h[H_HQ], sizeof(float), "dRel");
    ring_call(bwd, &ro, &lp);
    gather(dq, &p.dq, B, h[H_S], h[H_HQ], h[H_D], ro.layout, rank, R);
    gather(dk, &p.dk, B, h[H_S], h[H_HKV], h[H_D], ro.layout, rank, R);
    gather(dv, &p.dv, B, h[H_S], h[H_HKV], h[H_DV], ro.layout, rank, R);
    p.dsinks = lp.dsinks; /* summed over the whole sequence already */
    p.drel_bias = lp.drel_bias;
  }
  gather(lo, &p.o, B, h[H_S], h[H_HQ], h[H_DV], ro.layout, rank, R);
  /* LSE [B, hq, S]: the same rows, as [B * hq, S, 1, 1] */
  const attn_tensor gl =
      attn_tensor_bshd(glse, ATTN_DTYPE_F32, B * h[H_HQ], h[H_S], 1, 1);
  gather(llse, &gl, B * h[H_HQ], h[H_S], 1, 1, ro.layout, rank, R);

  if (rank == 0) {
    if (grad && with_rope)
      run_rope_grads(&rope, &p);
    int64_t out_shape[4];
    const int out_ndim = operands_out_shape(&ops, out_shape);
    if (o.run.out != NULL)
      operands_write(o.run.out, p.o.data, out_ndim, out_shape);
    if (o.run.lse != NULL)
      operands_write(o.run.lse, glse, 3, lse_shape);
    if (grad) {
      operands_write(o.dq, p.dq.data, ops.q->ndim, ops.q->shape);
      operands_write(o.dk, p.dk.data, ops.k->ndim, ops.k->shape);
      operands_write(o.dv, p.dv.data, ops.v->ndim, ops.v->shape);
      if (o.dsinks != NULL)
        operands_write(o.dsinks, p.dsinks, 1, (int64_t[]){h[H_HQ]});
      if (o.drel != NULL)
        operands_write(o.drel, p.drel_bias, 2,
                       (int64_t[]){h[H_BUCKETS], h[H_HQ]});
    }
  }
  g_phase = 0; /* every rank got here: finalize together */
  MPI_Barrier(MPI_COMM_WORLD);
  cli_cleanup();
  return 0;
}
