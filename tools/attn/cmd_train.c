/*
 * cmd_train.c - `attn train encdec|vit`: trains the encoder-decoder
 * Transformer (src/model/encdec.h) on numbers -> English words, or the ViT
 * (src/model/vit.h) on scikit-learn's digits, from scratch, and writes
 * into --out: the checkpoint (model.safetensors), the loss curve
 * (loss.png), a summary (summary.json) and attention pictures. With
 * --parity DIR it also writes what tests/model/ref_*.py need to replay the
 * run in PyTorch: the initial weights, every batch and every loss.
 */
#include "encdec.h"
#include "safetensors_write.h"
#include "vit.h"

#include "args.h"
#include "cli.h"
#include "train_pictures.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

const char cmd_train_help[] =
    "attn train encdec|vit [--steps N] [--threads T] [--out DIR] [options]\n"
    "    Trains a model from scratch on libattn's layers: encdec, the\n"
    "    encoder-decoder Transformer of \"Attention Is All You Need\" on\n"
    "    numbers in digits -> English words (greedy decoding through the KV\n"
    "    cache, exact match on held-out numbers); vit, a Vision Transformer\n"
    "    on scikit-learn's 8x8 digits (held-out accuracy). Writes into DIR\n"
    "    (default train-encdec / train-vit): model.safetensors, loss.png,\n"
    "    summary.json and attention pictures (encdec: cross_attention.png;\n"
    "    vit: cls_attention.png). Progress on stderr when it is a terminal.\n"
    "  --steps N        optimiser steps (default encdec 1500, vit 2000)\n"
    "  --threads T      threads for attention and BLAS (default 0: all)\n"
    "  --out DIR        output directory (created if missing)\n"
    "  --seed S         weights, batches and dropout (default 1)\n"
    "  --batch B        examples per step (default 64)\n"
    "  --lr LR          peak learning rate (default 1e-3)\n"
    "  --warmup W       linear warm-up steps (default 200), then cosine\n"
    "                   decay to a tenth of the peak at the last step\n"
    "  --d-model D, --heads H, --layers L, --d-ff F   model size (defaults:\n"
    "                   encdec 64/4/2/256 (L encoder and L decoder layers),\n"
    "                   vit 64/4/3/128)\n"
    "  --dropout P      (default encdec 0, vit 0.1)\n"
    "  --weight-decay W AdamW's (default 0.01; 0.05 for vit)\n"
    "  --clip C         gradient-norm clipping (default 1; 0 = off)\n"
    "  --data FILE      vit: scikit-learn's digits.csv.gz (default: found\n"
    "                   through python3's scikit-learn, or $ATTN_DIGITS)\n"
    "  --eval N         encdec: held-out numbers decoded (default 2000)\n"
    "  --parity DIR     also write DIR/init.safetensors, batches.safetensors\n"
    "                   and parity.json (hyper-parameters, parameter list,\n"
    "                   every loss) for tests/model/ref_*.py; turns dropout\n"
    "                   and augmentation off\n"
    "  --quiet          no progress bar\n";

typedef struct train_opts {
  int vit;
  long long steps, batch, warmup, d_model, heads, layers, d_ff, eval;
  unsigned long long seed;
  double lr, dropout, wd, clip;
  int threads, quiet;
  const char *out, *data, *parity;
} train_opts;

/* ---------------------------------------------------------------------- */
/* Options                                                                */
/* ---------------------------------------------------------------------- */

static void parse(int argc, char **argv, train_opts *o) {
  memset(o, 0, sizeof *o);
  if (argc < 3 || argv[2][0] == '-') {
    if (argc >= 3 && strcmp(argv[2], "--help") == 0) {
      fputs(cmd_train_help, stdout);
      exit(0);
    }
    cli_fail(CLI_EXIT_USAGE, "train: which model? encdec or vit (try attn "
                             "train --help)");
  }
  if (strcmp(argv[2], "vit") == 0)
    o->vit = 1;
  else if (strcmp(argv[2], "encdec") != 0)
    cli_fail(CLI_EXIT_USAGE, "train: unknown model '%s' (encdec or vit)",
             argv[2]);
  o->steps = o->vit ? 2000 : 1500;
  o->batch = 64;
  o->warmup = 200;
  o->seed = 1;
  o->lr = 1e-3;
  o->dropout = o->vit ? 0.1 : 0.0;
  o->wd = o->vit ? 0.05 : 0.01;
  o->clip = 1.0;
  o->eval = 2000;
  o->d_model = 64;
  o->heads = 4;
  o->layers = o->vit ? 3 : 2;
  o->d_ff = o->vit ? 128 : 256;
  o->out = o->vit ? "train-vit" : "train-encdec";
  args a = args_start(argc - 1, argv + 1); /* options after the model */
  while (args_next(&a)) {
    const char *n = a.name;
    if (args_is(&a, "--help")) {
      fputs(cmd_train_help, stdout);
      exit(0);
    } else if (args_is(&a, "--steps")) {
      o->steps = args_int(n, args_value(&a), 1, 10000000);
    } else if (args_is(&a, "--threads")) {
      o->threads = args_threads(args_value(&a));
    } else if (args_is(&a, "--out")) {
      o->out = args_value(&a);
    } else if (args_is(&a, "--seed")) {
      o->seed = (unsigned long long)args_int(n, args_value(&a), 0, INT64_MAX);
    } else if (args_is(&a, "--batch")) {
      o->batch = args_int(n, args_value(&a), 1, 4096);
    } else if (args_is(&a, "--lr")) {
      o->lr = args_real(n, args_value(&a));
      if (!(o->lr > 0 && o->lr <= 1))
        cli_fail(CLI_EXIT_USAGE, "--lr must be in (0, 1]");
    } else if (args_is(&a, "--warmup")) {
      o->warmup = args_int(n, args_value(&a), 0, 10000000);
    } else if (args_is(&a, "--d-model")) {
      o->d_model = args_int(n, args_value(&a), 2, 4096);
    } else if (args_is(&a, "--heads")) {
      o->heads = args_int(n, args_value(&a), 1, 256);
    } else if (args_is(&a, "--layers")) {
      o->layers = args_int(n, args_value(&a), 1, 64);
    } else if (args_is(&a, "--d-ff")) {
      o->d_ff = args_int(n, args_value(&a), 1, 65536);
    } else if (args_is(&a, "--dropout")) {
      o->dropout = args_real(n, args_value(&a));
      if (!(o->dropout >= 0 && o->dropout < 1))
        cli_fail(CLI_EXIT_USAGE, "--dropout must be in [0, 1)");
    } else if (args_is(&a, "--weight-decay")) {
      o->wd = args_real(n, args_value(&a));
      if (!(o->wd >= 0 && o->wd < 1))
        cli_fail(CLI_EXIT_USAGE, "--weight-decay must be in [0, 1)");
    } else if (args_is(&a, "--clip")) {
      o->clip = args_real(n, args_value(&a));
      if (!(o->clip >= 0))
        cli_fail(CLI_EXIT_USAGE, "--clip must be >= 0");
    } else if (args_is(&a, "--data")) {
      o->data = args_value(&a);
    } else if (args_is(&a, "--eval")) {
      o->eval = args_int(n, args_value(&a), 1, 1000000);
    } else if (args_is(&a, "--parity")) {
      o->parity = args_value(&a);
    } else if (args_is(&a, "--quiet")) {
      args_flag(&a);
      o->quiet = 1;
    } else {
      args_unknown(&a, "train");
    }
  }
  if (o->d_model % o->heads || o->d_model / o->heads > 256)
    cli_fail(CLI_EXIT_USAGE,
             "--d-model (%lld) must be a multiple of --heads (%lld) with a "
             "head dim of at most 256",
             o->d_model, o->heads);
  if (!o->vit && (o->d_model & 1))
    cli_fail(CLI_EXIT_USAGE, "encdec: --d-model must be even (sinusoidal "
                             "positions)");
  if (o->data && !o->vit)
    cli_fail(CLI_EXIT_USAGE, "--data is for vit");
  if (o->parity) {
    o->dropout = 0;
  }
}

/* mkdir -p */
static void make_dir(const char *dir) {
  char *p = cli_calloc((int64_t)strlen(dir) + 1, 1, "a path");
  memcpy(p, dir, strlen(dir));
  for (char *c = p + 1; *c; c++)
    if (*c == '/') {
      *c = 0;
      if (mkdir(p, 0777) != 0 && errno != EEXIST)
        cli_fail(CLI_EXIT_RUNTIME, "%s: cannot create the directory (%s)", p,
                 strerror(errno));
      *c = '/';
    }
  if (mkdir(dir, 0777) != 0 && errno != EEXIST)
    cli_fail(CLI_EXIT_RUNTIME, "%s: cannot create the directory (%s)", dir,
             strerror(errno));
  struct stat st;
  if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode))
    cli_fail(CLI_EXIT_RUNTIME, "%s: not a directory", dir);
}

static char *path_in(const char *dir, const char *name) {
  const size_t n = strlen(dir) + strlen(name) + 2;
  char *p = cli_calloc((int64_t)n, 1, "a path");
  snprintf(p, n, "%s/%s", dir, name);
  return p;
}

static double now_s(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* ---------------------------------------------------------------------- */
/* The two models behind one interface                                    */
/* ---------------------------------------------------------------------- */

typedef struct job {
  const train_opts *o;
  encdec *ed;
  vit *vt;
  train_rng data_rng;
  int64_t b;
  /* encdec batch */
  int32_t *src, *src_len, *tgt_in, *tgt_out;
  /* vit data and batch */
  task_digits digits;
  int64_t *idx, n_train, *perm, perm_at;
  float *images;
  int32_t *labels;
  /* parity: every batch of the run */
  void *rec_a, *rec_b, *rec_c, *rec_d;
} job;

static train_param *job_params(job *j, int *n) {
  return j->vt ? vit_params(j->vt, n) : encdec_params(j->ed, n);
}

static void job_create(job *j, const train_opts *o) {
  char err[512];
  memset(j, 0, sizeof *j);
  j->o = o;
  j->b = o->batch;
  j->data_rng.s = o->seed * 0x9e3779b97f4a7c15ULL + 7;
  if (!o->vit) {
    encdec_config c;
    encdec_config_default(&c);
    c.d_model = o->d_model;
    c.heads = o->heads;
    c.d_ff = o->d_ff;
    c.n_enc = c.n_dec = o->layers;
    c.batch = o->batch;
    c.dropout = (float)o->dropout;
    c.threads = o->threads;
    if (encdec_create(&c, o->seed, &j->ed, err, sizeof err))
      cli_fail(CLI_EXIT_RUNTIME, "train: %s", err);
    cli_defer((void (*)(void *))encdec_free, j->ed);
    const int64_t S = c.max_src, T = c.max_tgt, B = o->batch;
    j->src = cli_calloc(B * S, sizeof *j->src, "a batch");
    j->src_len = cli_calloc(B, sizeof *j->src_len, "a batch");
    j->tgt_in = cli_calloc(B * T, sizeof *j->tgt_in, "a batch");
    j->tgt_out = cli_calloc(B * T, sizeof *j->tgt_out, "a batch");
    if (o->parity) {
      const int64_t n = o->steps * B;
      j->rec_a = cli_calloc(cli_mul(n, S, 1, "batches"), 4, "batches");
      j->rec_b = cli_calloc(n, 4, "batches");
      j->rec_c = cli_calloc(cli_mul(n, T, 1, "batches"), 4, "batches");
      j->rec_d = cli_calloc(cli_mul(n, T, 1, "batches"), 4, "batches");
    }
    return;
  }
  if (task_digits_load(o->data, &j->digits, err, sizeof err))
    cli_fail(CLI_EXIT_RUNTIME, "train: %s", err);
  cli_defer((void (*)(void *))task_digits_free, &j->digits);
  j->idx = cli_calloc(j->digits.n, sizeof *j->idx, "indices");
  task_digits_split(&j->digits, j->idx, &j->n_train);
  j->perm = cli_calloc(j->n_train, sizeof *j->perm, "indices");
  j->perm_at = j->n_train; /* shuffle at the first batch */
  vit_config c;
  vit_config_default(&c);
  c.d_model = o->d_model;
  c.heads = o->heads;
  c.d_ff = o->d_ff;
  c.layers = o->layers;
  c.batch = o->batch > j->digits.n ? j->digits.n : o->batch;
  c.dropout = (float)o->dropout;
  c.threads = o->threads;
  j->b = c.batch;
  if (vit_create(&c, o->seed, &j->vt, err, sizeof err))
    cli_fail(CLI_EXIT_RUNTIME, "train: %s", err);
  cli_defer((void (*)(void *))vit_free, j->vt);
  j->images = cli_calloc(j->b * TASK_DIGITS_PIXELS, sizeof(float), "a batch");
  j->labels = cli_calloc(j->b, sizeof(int32_t), "a batch");
  if (o->parity) {
    const int64_t n = cli_mul(o->steps, j->b, 1, "batches");
    j->rec_a = cli_calloc(cli_mul(n, 64, 1, "batches"), 4, "batches");
    j->rec_b = cli_calloc(n, 4, "batches");
  }
}

/* The next training batch (step t, 0-based). */
static void job_batch(job *j, int64_t t) {
  const int64_t B = j->b;
  if (j->ed) {
    const int64_t S = TASK_NUM_SRC_MAX, T = TASK_NUM_TGT_MAX;
    task_numbers_batch(&j->data_rng, 0, B, j->src, j->src_len, j->tgt_in,
                       j->tgt_out, NULL);
    if (j->rec_a) {
      memcpy((int32_t *)j->rec_a + t * B * S, j->src, (size_t)(B * S) * 4);
      memcpy((int32_t *)j->rec_b + t * B, j->src_len, (size_t)B * 4);
      memcpy((int32_t *)j->rec_c + t * B * T, j->tgt_in, (size_t)(B * T) * 4);
      memcpy((int32_t *)j->rec_d + t * B * T, j->tgt_out, (size_t)(B * T) * 4);
    }
    return;
  }
  /* epochs of the training images in a fresh order each */
  int64_t pick[4096];
  for (int64_t i = 0; i < B; i++) {
    if (j->perm_at == j->n_train) {
      for (int64_t k = 0; k < j->n_train; k++)
        j->perm[k] = j->idx[k];
      for (int64_t k = j->n_train - 1; k > 0; k--) {
        const int64_t r = train_rng_below(&j->data_rng, k + 1);
        const int64_t tmp = j->perm[k];
        j->perm[k] = j->perm[r];
        j->perm[r] = tmp;
      }
      j->perm_at = 0;
    }
    pick[i] = j->perm[j->perm_at++];
  }
  task_digits_batch(&j->digits, pick, B, j->o->parity ? NULL : &j->data_rng,
                    j->images, j->labels);
  if (j->rec_a) {
    memcpy((float *)j->rec_a + t * B * 64, j->images, (size_t)(B * 64) * 4);
    memcpy((int32_t *)j->rec_b + t * B, j->labels, (size_t)B * 4);
  }
}

static void job_step(job *j, double *loss) {
  char err[512];
  const int rc =
      j->ed ? encdec_train_step(j->ed, j->b, j->src, j->src_len, j->tgt_in,
                                j->tgt_out, loss, err, sizeof err)
            : vit_train_step(j->vt, j->b, j->images, j->labels, loss, err,
                             sizeof err);
  if (rc)
    cli_fail(CLI_EXIT_RUNTIME, "train: %s", err);
}

/* Held-out accuracy: exact match of greedy decodes, or image accuracy.
 * *example: one held-out example's index for the pictures. */
static double job_evaluate(job *j, int64_t *count, int64_t *example) {
  char err[512];
  int64_t right = 0, n = 0;
  *example = 0;
  if (j->ed) {
    const int64_t S = TASK_NUM_SRC_MAX, T = TASK_NUM_TGT_MAX, B = j->b;
    train_rng r = {777};
    int32_t *out = cli_calloc(B * T, sizeof *out, "a batch");
    for (int64_t done = 0; done < j->o->eval; done += B) {
      const int64_t b = j->o->eval - done < B ? j->o->eval - done : B;
      task_numbers_batch(&r, 1, b, j->src, j->src_len, j->tgt_in, j->tgt_out,
                         NULL);
      if (encdec_greedy(j->ed, b, j->src, j->src_len, out, NULL, err,
                        sizeof err))
        cli_fail(CLI_EXIT_RUNTIME, "train: %s", err);
      for (int64_t i = 0; i < b; i++) {
        int ok = 1;
        for (int64_t t = 0; t < T && j->tgt_out[i * T + t] >= 0; t++)
          ok &= out[i * T + t] == j->tgt_out[i * T + t];
        right += ok;
      }
      n += b;
    }
    (void)S;
  } else {
    const int64_t total = j->digits.n - j->n_train;
    int32_t *pred = cli_calloc(j->b, sizeof *pred, "predictions");
    for (int64_t done = 0; done < total; done += j->b) {
      const int64_t b = total - done < j->b ? total - done : j->b;
      task_digits_batch(&j->digits, j->idx + j->n_train + done, b, NULL,
                        j->images, j->labels);
      if (vit_predict(j->vt, b, j->images, NULL, pred, err, sizeof err))
        cli_fail(CLI_EXIT_RUNTIME, "train: %s", err);
      for (int64_t i = 0; i < b; i++)
        right += pred[i] == j->labels[i];
      n += b;
    }
    *example = j->idx[j->n_train];
  }
  *count = n;
  return n ? (double)right / (double)n : 0.0;
}

/* ---------------------------------------------------------------------- */
/* Files                                                                  */
/* ---------------------------------------------------------------------- */

static void write_checkpoint(job *j, const char *path, int64_t step) {
  int n, nm;
  train_param *p = job_params(j, &n);
  const char *const *meta =
      j->vt ? vit_meta(j->vt, &nm) : encdec_meta(j->ed, &nm);
  stwrite_tensor *t = cli_calloc(n, sizeof *t, "a tensor list");
  for (int i = 0; i < n; i++) {
    t[i].name = p[i].name;
    t[i].dtype = STWRITE_F32;
    t[i].ndim = p[i].ndim;
    t[i].shape[0] = p[i].shape[0];
    t[i].shape[1] = p[i].shape[1];
    t[i].data = p[i].data;
  }
  const char **kv = cli_calloc(2 * nm + 2, sizeof *kv, "metadata");
  char stepbuf[32];
  snprintf(stepbuf, sizeof stepbuf, "%lld", (long long)step);
  for (int i = 0; i < 2 * nm; i++)
    kv[i] = meta[i];
  kv[2 * nm] = "step";
  kv[2 * nm + 1] = stepbuf;
  char err[512];
  if (stwrite_file(path, t, n, kv, nm + 1, err, sizeof err))
    cli_fail(CLI_EXIT_RUNTIME, "train: %s", err);
}

static void write_parity(job *j, const train_adamw *hp, const double *losses,
                         const double *norms) {
  const train_opts *o = j->o;
  const int64_t n = o->steps, B = j->b;
  char err[512];
  stwrite_tensor t[4];
  memset(t, 0, sizeof t);
  if (j->ed) {
    const char *names[] = {"src", "src_len", "tgt_in", "tgt_out"};
    const int64_t width[] = {TASK_NUM_SRC_MAX, 0, TASK_NUM_TGT_MAX,
                             TASK_NUM_TGT_MAX};
    void *data[] = {j->rec_a, j->rec_b, j->rec_c, j->rec_d};
    for (int i = 0; i < 4; i++) {
      t[i].name = names[i];
      t[i].dtype = STWRITE_I32;
      t[i].ndim = width[i] ? 3 : 2;
      t[i].shape[0] = n;
      t[i].shape[1] = B;
      t[i].shape[2] = width[i];
      t[i].data = data[i];
    }
  } else {
    t[0] = (stwrite_tensor){"images", STWRITE_F32, 3, {n, B, 64, 0}, j->rec_a};
    t[1] = (stwrite_tensor){"labels", STWRITE_I32, 2, {n, B, 0, 0}, j->rec_b};
  }
  char *bp = path_in(o->parity, "batches.safetensors");
  if (stwrite_file(bp, t, j->ed ? 4 : 2, NULL, 0, err, sizeof err))
    cli_fail(CLI_EXIT_RUNTIME, "train: %s", err);
  char *jp = path_in(o->parity, "parity.json");
  FILE *f = fopen(jp, "w");
  if (!f)
    cli_fail(CLI_EXIT_RUNTIME, "%s: cannot be created", jp);
  int np, nm;
  train_param *p = job_params(j, &np);
  const char *const *meta =
      j->vt ? vit_meta(j->vt, &nm) : encdec_meta(j->ed, &nm);
  fprintf(f, "{\n  \"config\": {");
  for (int i = 0; i < nm; i++)
    fprintf(f, "%s\"%s\": \"%s\"", i ? ", " : "", meta[2 * i], meta[2 * i + 1]);
  fprintf(f,
          "},\n  \"steps\": %lld, \"batch\": %lld, \"lr\": %.17g, "
          "\"warmup\": %lld, \"min_lr_ratio\": 0.1,\n  \"beta1\": %.17g, "
          "\"beta2\": %.17g, \"eps\": %.17g, \"weight_decay\": %.17g, "
          "\"clip\": %.17g, \"label_smoothing\": 0.1,\n  \"params\": [",
          (long long)n, (long long)B, o->lr, o->warmup, hp->beta1, hp->beta2,
          hp->eps, hp->weight_decay, o->clip);
  for (int i = 0; i < np; i++)
    fprintf(f, "%s\n    {\"name\": \"%s\", \"decay\": %d}", i ? "," : "",
            p[i].name, p[i].decay);
  fprintf(f, "],\n  \"losses\": [");
  for (int64_t i = 0; i < n; i++)
    fprintf(f, "%s%.9g", i ? ", " : "", losses[i]);
  fprintf(f, "],\n  \"grad_norms\": [");
  for (int64_t i = 0; i < n; i++)
    fprintf(f, "%s%.9g", i ? ", " : "", norms[i]);
  fprintf(f, "]\n}\n");
  if (fclose(f) != 0)
    cli_fail(CLI_EXIT_RUNTIME, "%s: write failed", jp);
}

/* ---------------------------------------------------------------------- */
/* The loop                                                               */
/* ---------------------------------------------------------------------- */

static void progress(int64_t step, int64_t n, double loss, double t0) {
  const int width = 30, done = (int)(width * step / n);
  char bar[64];
  for (int i = 0; i < width; i++)
    bar[i] = i < done ? '#' : '.';
  bar[width] = 0;
  fprintf(stderr, "\r[%s] %lld/%lld  loss %.4f  %.1f s ", bar, (long long)step,
          (long long)n, loss, now_s() - t0);
  fflush(stderr);
}

int cmd_train(int argc, char **argv) {
  train_opts o;
  parse(argc, argv, &o);
  cli_parsed(); /* parse-only mode (cli.h) ends here */
  make_dir(o.out);
  if (o.parity)
    make_dir(o.parity);
  train_set_blas_threads(o.threads);
  job j;
  job_create(&j, &o);
  int np;
  train_param *params = job_params(&j, &np);
  int64_t count = 0;
  for (int i = 0; i < np; i++)
    count += params[i].count;
  train_adamw hp = {o.lr, 0.9, o.vit ? 0.999 : 0.98, o.vit ? 1e-8 : 1e-9, o.wd};
  train_optim opt;
  if (train_optim_init(&opt, &hp, params, np))
    cli_fail(CLI_EXIT_RUNTIME, "train: out of memory");
  cli_defer((void (*)(void *))train_optim_free, &opt);
  if (o.parity)
    write_checkpoint(&j, path_in(o.parity, "init.safetensors"), 0);
  double *losses = cli_calloc(o.steps, sizeof *losses, "the losses");
  double *norms = cli_calloc(o.steps, sizeof *norms, "the norms");
  const int bar = !o.quiet && isatty(2);
  const double t0 = now_s();
  double last_draw = 0;
  for (int64_t s = 0; s < o.steps; s++) {
    job_batch(&j, s);
    train_params_zero_grad(params, np);
    job_step(&j, &losses[s]);
    norms[s] = train_clip_grad_norm(params, np, o.clip);
    const double lr = train_lr_at(s + 1, o.warmup, o.steps, o.lr, 0.1);
    train_optim_step(&opt, params, np, lr);
    if (!isfinite(losses[s]))
      cli_fail(CLI_EXIT_RUNTIME,
               "train: the loss is not finite at step %lld"
               " (try a lower --lr)",
               (long long)s + 1);
    if (bar && (now_s() - last_draw > 0.1 || s + 1 == o.steps)) {
      progress(s + 1, o.steps, losses[s], t0);
      last_draw = now_s();
    }
  }
  const double train_s = now_s() - t0;
  if (bar)
    fputc('\n', stderr);
  int64_t n_eval, example;
  const double te = now_s();
  const double acc = job_evaluate(&j, &n_eval, &example);
  const double eval_s = now_s() - te;
  write_checkpoint(&j, path_in(o.out, "model.safetensors"), o.steps);
  train_loss_png(losses, o.steps, j.ed ? "encdec" : "vit",
                 path_in(o.out, "loss.png"));
  if (j.ed)
    train_encdec_png(j.ed, path_in(o.out, "cross_attention.png"));
  else
    train_vit_png(j.vt, &j.digits, example,
                  path_in(o.out, "cls_attention.png"));
  if (o.parity)
    write_parity(&j, &hp, losses, norms);
  double tail = 0;
  const int64_t k = o.steps < 50 ? o.steps : 50;
  for (int64_t i = o.steps - k; i < o.steps; i++)
    tail += losses[i] / (double)k;
  char *sp = path_in(o.out, "summary.json");
  FILE *f = fopen(sp, "w");
  if (!f)
    cli_fail(CLI_EXIT_RUNTIME, "%s: cannot be created", sp);
  fprintf(f,
          "{\"model\": \"%s\", \"task\": \"%s\", \"parameters\": %lld, "
          "\"steps\": %lld, \"batch\": %lld, \"threads\": %d, \"seed\": "
          "%llu,\n \"first_loss\": %.6f, \"final_loss\": %.6f, "
          "\"final_loss_mean_last_%lld\": %.6f,\n \"held_out_accuracy\": "
          "%.6f, \"held_out_examples\": %lld,\n \"train_seconds\": %.3f, "
          "\"examples_per_second\": %.1f, \"eval_seconds\": %.3f}\n",
          o.vit ? "vit" : "encdec",
          o.vit ? "sklearn digits 8x8, 20% held out"
                : "numbers 0..999999 in digits to English words, held-out "
                  "numbers, greedy decoding through the KV cache",
          (long long)count, o.steps, (long long)j.b, o.threads,
          (unsigned long long)o.seed, losses[0], losses[o.steps - 1],
          (long long)k, tail, acc, (long long)n_eval, train_s,
          (double)(o.steps * j.b) / train_s, eval_s);
  if (fclose(f) != 0)
    cli_fail(CLI_EXIT_RUNTIME, "%s: write failed", sp);
  printf("%s: %lld steps in %.1f s (%.0f examples/s), loss %.4f -> %.4f, "
         "held-out accuracy %.2f%% (%lld examples); wrote %s/\n",
         o.vit ? "vit" : "encdec", o.steps, train_s,
         (double)(o.steps * j.b) / train_s, losses[0], tail, 100.0 * acc,
         (long long)n_eval, o.out);
  cli_cleanup();
  return 0;
}
