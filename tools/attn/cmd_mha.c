/*
 * cmd_mha.c - `attn mha`: the multi-head attention layer (attn/layer.h) on
 * .npy files, forward and, with --grad, backward. Weights come from a
 * directory of .npy files named like PyTorch's parameters (a dot becomes
 * an underscore: out_proj.weight -> out_proj_weight.npy); the layer's
 * shape follows from them and from --heads / --kv-heads.
 */
#include "attn/layer.h"

#include "args.h"
#include "cli.h"
#include "cmd_run.h"
#include "operands.h"
#include "paths.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

const char cmd_mha_help[] =
    "attn mha --x X.npy --weights DIR --heads H --out OUT.npy [options]\n"
    "    The multi-head attention layer (PyTorch's nn.MultiheadAttention,\n"
    "    batch_first, plus GQA/MQA and positions): out = attention(x Wq^T +\n"
    "    bq, s Wk^T + bk, v Wv^T + bv) Wo^T + bo. X is float32 [batch,\n"
    "    seq_q, E] or [seq_q, E]; OUT float32 of X's rank, last axis d_out.\n"
    "    DIR holds float32 .npy files named like PyTorch's parameters:\n"
    "      in_proj_weight [(H + 2 KV) d, E]  (fused, self-attention), or\n"
    "      q_proj_weight [H d, E], k_proj_weight [KV d, kdim],\n"
    "      v_proj_weight [KV dv, vdim];\n"
    "      out_proj_weight [d_out, H dv]                     (required);\n"
    "      in_proj_bias, or q_proj_bias / k_proj_bias / v_proj_bias, and\n"
    "      out_proj_bias: optional (absent = no bias; PyTorch's\n"
    "      in_proj_bias also serves separate weights, split in three);\n"
    "      pos_table [P, E] (and pos_table_kv [P, kdim]) for --positions\n"
    "      learned; rel_bias [buckets, H] for --positions t5.\n"
    "  --y Y.npy               cross-attention: key input [batch, seq_k, "
    "kdim]\n"
    "  --value V.npy           cross: separate value input (default: Y)\n"
    "  --heads H               query heads (required)\n"
    "  --kv-heads KV           key/value heads, divides H (default H; 1 = "
    "MQA)\n"
    "  --head-dim-v DV         fused weights only: value head dim (default "
    "d)\n"
    "  --positions none|sinusoidal|learned|alibi|t5   (default none)\n"
    "  --sinusoidal-base B     (default 10000)\n"
    "  --t5-max-distance N     (default 128)\n"
    "  --t5-unidirectional     decoder-style T5 buckets (default "
    "bidirectional)\n"
    "  --rope BASE, --rope-style half|interleaved, --rope-dims N,\n"
    "  --rope-scaling linear:F|ntk:F|yarn:F|llama3:F, --rope-original-max N\n"
    "                          RoPE on Q and K, as for attn run\n"
    "  --causal | --causal-top-left, --window L,R, --prefix N, --softcap C,\n"
    "  --scale S, --q-pos-offset N, --k-pos-offset N\n"
    "                          the attention's options, as for attn run\n"
    "  --kv-lens LENS.npy      int32 [batch]: keys past the length are "
    "padding\n"
    "  --grad DOUT.npy         also run the backward with dL/dout = DOUT\n"
    "  --grad-dir DIR          with --grad: writes dx.npy (dy.npy, "
    "dvalue.npy)\n"
    "                          and every parameter's gradient under its "
    "file name\n"
    "  --threads N, --isa generic|avx2|avx512|auto\n";

typedef struct mha_opts {
  const char *x, *y, *value, *weights, *out, *grad, *grad_dir, *kv_lens;
  const char *heads, *kv_heads, *head_dim_v, *positions, *sin_base, *t5_max;
  const char *scale, *window, *softcap, *prefix, *qoff, *koff, *threads, *isa;
  int causal, causal_top_left, t5_uni;
  run_opts rope; /* only its rope fields */
} mha_opts;

static const char **mha_slot(mha_opts *o, const char *name) {
  const struct {
    const char *name;
    const char **slot;
  } table[] = {
      {"--x", &o->x},
      {"--y", &o->y},
      {"--value", &o->value},
      {"--weights", &o->weights},
      {"--out", &o->out},
      {"--grad", &o->grad},
      {"--grad-dir", &o->grad_dir},
      {"--kv-lens", &o->kv_lens},
      {"--heads", &o->heads},
      {"--kv-heads", &o->kv_heads},
      {"--head-dim-v", &o->head_dim_v},
      {"--positions", &o->positions},
      {"--sinusoidal-base", &o->sin_base},
      {"--t5-max-distance", &o->t5_max},
      {"--scale", &o->scale},
      {"--window", &o->window},
      {"--softcap", &o->softcap},
      {"--prefix", &o->prefix},
      {"--q-pos-offset", &o->qoff},
      {"--k-pos-offset", &o->koff},
      {"--threads", &o->threads},
      {"--isa", &o->isa},
      {"--rope", &o->rope.rope},
      {"--rope-style", &o->rope.rope_style},
      {"--rope-dims", &o->rope.rope_dims},
      {"--rope-scaling", &o->rope.rope_scaling},
      {"--rope-original-max", &o->rope.rope_omp},
  };
  for (size_t i = 0; i < sizeof table / sizeof table[0]; i++)
    if (strcmp(name, table[i].name) == 0)
      return table[i].slot;
  return NULL;
}

static void parse(int argc, char **argv, mha_opts *o) {
  args a = args_start(argc, argv);
  memset(o, 0, sizeof *o);
  while (args_next(&a)) {
    const char **slot = mha_slot(o, a.name);
    if (args_is(&a, "--help")) {
      fputs(cmd_mha_help, stdout);
      exit(0);
    } else if (slot) {
      args_set_once(slot, args_value(&a), a.name);
    } else if (args_is(&a, "--causal")) {
      args_flag(&a);
      o->causal = 1;
    } else if (args_is(&a, "--causal-top-left")) {
      args_flag(&a);
      o->causal_top_left = 1;
    } else if (args_is(&a, "--t5-unidirectional")) {
      args_flag(&a);
      o->t5_uni = 1;
    } else {
      args_unknown(&a, "mha");
    }
  }
  if (!o->x || !o->weights || !o->heads || !o->out)
    cli_fail(CLI_EXIT_USAGE, "mha: missing %s (try attn mha --help)",
             !o->x         ? "--x"
             : !o->weights ? "--weights"
             : !o->heads   ? "--heads"
                           : "--out");
  if (o->value && !o->y)
    cli_fail(CLI_EXIT_USAGE, "--value needs --y (cross-attention)");
  if (!!o->grad != !!o->grad_dir)
    cli_fail(CLI_EXIT_USAGE, "--grad and --grad-dir go together");
  if (o->causal && o->causal_top_left)
    cli_fail(CLI_EXIT_USAGE, "--causal and --causal-top-left exclude each "
                             "other");
}

/* ---------------------------------------------------------------------- */
/* Weights                                                                */
/* ---------------------------------------------------------------------- */

/* DIR/NAME.npy with '.' in name as '_'; NULL when there is no such file. */
static char *weight_path(const char *dir, const char *name, int must) {
  const size_t n = strlen(dir) + strlen(name) + 8;
  char *p = cli_calloc((int64_t)n, 1, "a path");
  struct stat st;
  snprintf(p, n, "%s/%s.npy", dir, name);
  for (char *c = p + strlen(dir) + 1; *c; c++)
    if (*c == '.' && strcmp(c, ".npy") != 0)
      *c = '_';
  if (stat(p, &st) != 0) {
    if (must)
      cli_fail(CLI_EXIT_RUNTIME, "%s: no such weight file", p);
    return NULL;
  }
  return p;
}

/* The array DIR/name.npy (float32, 1-D or 2-D), or NULL when absent. */
static const attn_npy *weight_read(const char *dir, const char *name,
                                   int must) {
  const char *path = weight_path(dir, name, must);
  const attn_npy *a;
  if (!path)
    return NULL;
  a = operands_read(path);
  if (a->dtype != ATTN_NPY_F32 || a->ndim < 1 || a->ndim > 2)
    cli_fail(CLI_EXIT_RUNTIME, "%s: expected a 1-D or 2-D float32 array", path);
  return a;
}

static int64_t rows(const attn_npy *a) { return a->shape[0]; }
static int64_t cols(const attn_npy *a) {
  return a->ndim == 2 ? a->shape[1] : 1;
}

static int64_t div_exact(int64_t a, int64_t b, const char *what) {
  if (b <= 0 || a % b != 0 || a / b < 1)
    cli_fail(CLI_EXIT_RUNTIME,
             "%s: %lld rows do not split into %lld equal head blocks", what,
             (long long)a, (long long)b);
  return a / b;
}

/* The layer's config from the weight files and the flags. */
static void config_from_weights(const mha_opts *o, attn_layer_config *c,
                                int64_t E) {
  const attn_npy *fw = weight_read(o->weights, "in_proj_weight", 0);
  const attn_npy *ow = weight_read(o->weights, "out_proj.weight", 1);
  c->d_model = E;
  c->heads_q = args_int("--heads", o->heads, 1, 65536);
  c->heads_kv =
      o->kv_heads ? args_int("--kv-heads", o->kv_heads, 1, 65536) : c->heads_q;
  c->cross = o->y != NULL;
  if (fw) {
    if (c->cross)
      cli_fail(CLI_EXIT_USAGE, "in_proj_weight (fused) is for "
                               "self-attention: give q/k/v_proj_weight for "
                               "--y");
    c->fused_qkv = 1;
    c->head_dim_v =
        o->head_dim_v ? args_int("--head-dim-v", o->head_dim_v, 1, 256) : 0;
    if (c->head_dim_v)
      c->head_dim = div_exact(rows(fw) - c->heads_kv * c->head_dim_v,
                              c->heads_q + c->heads_kv, "in_proj_weight");
    else
      c->head_dim =
          div_exact(rows(fw), c->heads_q + 2 * c->heads_kv, "in_proj_weight");
    c->bias_q = c->bias_k = c->bias_v =
        weight_path(o->weights, "in_proj_bias", 0) != NULL;
  } else {
    const attn_npy *qw = weight_read(o->weights, "q_proj_weight", 1);
    const attn_npy *kw = weight_read(o->weights, "k_proj_weight", 1);
    const attn_npy *vw = weight_read(o->weights, "v_proj_weight", 1);
    const int inb = weight_path(o->weights, "in_proj_bias", 0) != NULL;
    if (o->head_dim_v)
      cli_fail(CLI_EXIT_USAGE, "--head-dim-v is for fused weights (separate "
                               "ones give it by their shape)");
    c->head_dim = div_exact(rows(qw), c->heads_q, "q_proj_weight");
    c->head_dim_v = div_exact(rows(vw), c->heads_kv, "v_proj_weight");
    if (c->cross) {
      c->kdim = cols(kw);
      c->vdim = cols(vw);
    }
    (void)kw;
    c->bias_q = inb || weight_path(o->weights, "q_proj_bias", 0);
    c->bias_k = inb || weight_path(o->weights, "k_proj_bias", 0);
    c->bias_v = inb || weight_path(o->weights, "v_proj_bias", 0);
  }
  c->d_out = rows(ow);
  c->bias_out = weight_path(o->weights, "out_proj.bias", 0) != NULL;
}

static void config_positions(const mha_opts *o, attn_layer_config *c,
                             attn_rope *rope) {
  const char *pos = o->positions ? o->positions : "none";
  static const char *const names[] = {"none", "sinusoidal", "learned",
                                      "rope", "alibi",      "t5"};
  int k = -1;
  for (int i = 0; i < 6; i++)
    if (i != 3 && strcmp(pos, names[i]) == 0)
      k = i;
  if (k < 0)
    cli_fail(CLI_EXIT_USAGE,
             "--positions: unknown scheme '%s' (none, "
             "sinusoidal, learned, alibi, t5; RoPE is "
             "--rope BASE)",
             pos);
  if (run_opts_rope(&o->rope, rope)) {
    if (k != 0)
      cli_fail(CLI_EXIT_USAGE, "--rope and --positions %s exclude each other",
               pos);
    k = ATTN_LAYER_POS_ROPE;
    c->rope = rope;
  }
  c->position = (attn_layer_position)k;
  if (o->sin_base) {
    if (k != ATTN_LAYER_POS_SINUSOIDAL)
      cli_fail(CLI_EXIT_USAGE, "--sinusoidal-base needs --positions "
                               "sinusoidal");
    c->sinusoidal_base = args_real("--sinusoidal-base", o->sin_base);
  }
  if ((o->t5_max || o->t5_uni) && k != ATTN_LAYER_POS_T5)
    cli_fail(CLI_EXIT_USAGE, "--t5-* options need --positions t5");
  if (o->t5_max)
    c->t5_max_distance = args_int("--t5-max-distance", o->t5_max, 1, 1 << 30);
  c->t5_bidirectional = !o->t5_uni;
  if (k == ATTN_LAYER_POS_LEARNED) {
    const attn_npy *t = weight_read(o->weights, "pos_table", 1);
    c->max_positions = rows(t);
  }
  if (k == ATTN_LAYER_POS_T5) {
    const attn_npy *t = weight_read(o->weights, "rel_bias", 1);
    c->t5_buckets = rows(t);
  }
}

/* Copies every parameter of L from its file (shapes checked). */
static void load_weights(const mha_opts *o, attn_layer *L) {
  for (int i = 0; i < attn_layer_num_params(L); i++) {
    attn_layer_param p;
    attn_layer_param_get(L, i, &p);
    const int bias = strstr(p.name, "bias") != NULL;
    const attn_npy *a = weight_read(o->weights, p.name, !bias);
    if (!a && strcmp(p.name, "rel_bias") != 0 && bias &&
        strncmp(p.name, "out", 3) != 0) {
      /* q/k/v_proj_bias from PyTorch's one in_proj_bias */
      attn_layer_param w[3];
      const attn_npy *in = weight_read(o->weights, "in_proj_bias", 1);
      attn_layer_param_find(L, "q_proj_weight", &w[0]);
      attn_layer_param_find(L, "k_proj_weight", &w[1]);
      attn_layer_param_find(L, "v_proj_weight", &w[2]);
      const int64_t total = w[0].shape[0] + w[1].shape[0] + w[2].shape[0];
      const int64_t off = p.name[0] == 'q'   ? 0
                          : p.name[0] == 'k' ? w[0].shape[0]
                                             : w[0].shape[0] + w[1].shape[0];
      if (in->count != total)
        cli_fail(CLI_EXIT_RUNTIME,
                 "in_proj_bias: %lld elements, expected the q, k and v "
                 "biases (%lld)",
                 (long long)in->count, (long long)total);
      memcpy(p.data, (const float *)in->data + off,
             (size_t)p.count * sizeof(float));
      continue;
    }
    if (!a)
      cli_fail(CLI_EXIT_RUNTIME, "%s/%s.npy: missing", o->weights, p.name);
    if (a->count != p.count || rows(a) != p.shape[0])
      cli_fail(CLI_EXIT_RUNTIME,
               "%s: shape [%lld, %lld] in the file, the layer needs "
               "[%lld, %lld]",
               p.name, (long long)rows(a), (long long)cols(a),
               (long long)p.shape[0], (long long)p.shape[1]);
    memcpy(p.data, a->data, (size_t)p.count * sizeof(float));
  }
}

/* ---------------------------------------------------------------------- */
/* Inputs and the call                                                    */
/* ---------------------------------------------------------------------- */

/* A float32 [batch, seq, width] (or [seq, width]) input. */
static const attn_npy *read_input(const char *flag, const char *path,
                                  int64_t *batch, int64_t *seq) {
  const attn_npy *a = operands_read(path);
  if (a->dtype != ATTN_NPY_F32 || a->ndim < 2 || a->ndim > 3)
    cli_fail(CLI_EXIT_RUNTIME,
             "%s %s: expected float32 [batch, seq, width] "
             "or [seq, width]",
             flag, path);
  *batch = a->ndim == 3 ? a->shape[0] : 1;
  *seq = a->shape[a->ndim - 2];
  if (*batch < 1 || *seq < 1)
    cli_fail(CLI_EXIT_RUNTIME, "%s %s: empty array", flag, path);
  return a;
}

static void call_options(const mha_opts *o, attn_params *p, int64_t batch) {
  attn_params_init(p);
  if (o->causal)
    p->causal = ATTN_CAUSAL_BOTTOM_RIGHT;
  if (o->causal_top_left)
    p->causal = ATTN_CAUSAL_TOP_LEFT;
  if (o->scale)
    p->scale = (float)args_real("--scale", o->scale);
  if (o->softcap)
    p->softcap = (float)args_real("--softcap", o->softcap);
  if (o->prefix)
    p->prefix_len = args_int("--prefix", o->prefix, 0, INT64_MAX);
  if (o->qoff)
    p->q_pos_offset = args_int("--q-pos-offset", o->qoff, -((int64_t)1 << 48),
                               (int64_t)1 << 48);
  if (o->koff)
    p->k_pos_offset = args_int("--k-pos-offset", o->koff, -((int64_t)1 << 48),
                               (int64_t)1 << 48);
  if (o->window) {
    long long l, r;
    char tail;
    if (sscanf(o->window, "%lld,%lld%c", &l, &r, &tail) != 2)
      cli_fail(CLI_EXIT_USAGE, "--window: expected L,R, got '%s'", o->window);
    p->window_left = l;
    p->window_right = r;
  }
  if (o->threads)
    p->num_threads = args_threads(o->threads);
  if (o->isa)
    p->isa = args_isa("--isa", o->isa);
  if (o->kv_lens) {
    const attn_npy *k = operands_read(o->kv_lens);
    if (k->dtype != ATTN_NPY_I32 || k->ndim != 1 || k->shape[0] != batch)
      cli_fail(CLI_EXIT_RUNTIME, "--kv-lens %s: expected int32 [%lld]",
               o->kv_lens, (long long)batch);
    p->kv_lens = k->data;
  }
}

static void check_paths(const mha_opts *o) {
  cli_path list[6] = {{"--x", o->x, 0},
                      {"--y", o->y, 0},
                      {"--value", o->value, 0},
                      {"--grad", o->grad, 0},
                      {"--kv-lens", o->kv_lens, 0},
                      {"--out", o->out, 1}};
  paths_check_distinct(list, 6);
}

static void fail_status(attn_status st, const char *what, const char *msg) {
  if (st != ATTN_OK)
    cli_fail(CLI_EXIT_RUNTIME, "%s: %s", what,
             msg[0] ? msg : attn_strerror(st));
}

static void release_layer(void *l) { attn_layer_free(l); }

/* Writes dx (dy, dvalue) and every parameter gradient into the dir. */
static void write_grads(const mha_opts *o, attn_layer *L,
                        const attn_layer_call *c, const attn_npy *xa,
                        const attn_npy *ya, const attn_npy *va) {
  const size_t n = strlen(o->grad_dir) + 64;
  char *path = cli_calloc((int64_t)n, 1, "a path");
  snprintf(path, n, "%s/dx.npy", o->grad_dir);
  operands_write(path, c->dx, xa->ndim, xa->shape);
  if (c->dy) {
    snprintf(path, n, "%s/dy.npy", o->grad_dir);
    operands_write(path, c->dy, ya->ndim, ya->shape);
  }
  if (c->dvalue) {
    snprintf(path, n, "%s/dvalue.npy", o->grad_dir);
    operands_write(path, c->dvalue, va->ndim, va->shape);
  }
  for (int i = 0; i < attn_layer_num_params(L); i++) {
    attn_layer_param p;
    attn_layer_param_get(L, i, &p);
    snprintf(path, n, "%s/%s.npy", o->grad_dir, p.name);
    for (char *ch = path + strlen(o->grad_dir) + 1; *ch; ch++)
      if (*ch == '.' && strcmp(ch, ".npy") != 0)
        *ch = '_';
    operands_write(path, p.grad, p.ndim, p.shape);
  }
}

int cmd_mha(int argc, char **argv) {
  mha_opts o;
  attn_layer_config cfg;
  attn_rope rope;
  attn_layer *L = NULL;
  attn_layer_call c;
  attn_params opt;
  char err[512] = "";
  int64_t B, Sq, By = 0, Sk = 0, bv, sv;
  parse(argc, argv, &o);
  check_paths(&o);
  cli_parsed(); /* parse-only mode (cli.h) ends here */
  const attn_npy *xa = read_input("--x", o.x, &B, &Sq);
  const attn_npy *ya = o.y ? read_input("--y", o.y, &By, &Sk) : NULL;
  const attn_npy *va =
      o.value ? read_input("--value", o.value, &bv, &sv) : NULL;
  if (ya && By != B)
    cli_fail(CLI_EXIT_RUNTIME, "--y: batch %lld, --x has %lld", (long long)By,
             (long long)B);
  if (va && (bv != B || sv != Sk))
    cli_fail(CLI_EXIT_RUNTIME,
             "--value: [%lld, %lld, .], --y is [%lld, "
             "%lld, .]",
             (long long)bv, (long long)sv, (long long)B, (long long)Sk);
  attn_layer_config_init(&cfg);
  config_from_weights(&o, &cfg, xa->shape[xa->ndim - 1]);
  config_positions(&o, &cfg, &rope);
  fail_status(attn_layer_create(&cfg, &L, err, sizeof err), "layer", err);
  cli_defer(release_layer, L);
  load_weights(&o, L);
  call_options(&o, &opt, B);
  attn_layer_call_init(&c);
  c.batch = B;
  c.seq_q = Sq;
  c.seq_k = Sk;
  c.x = xa->data;
  c.y = ya ? ya->data : NULL;
  c.value = va ? va->data : NULL;
  c.options = &opt;
  c.error_message = err;
  c.error_message_size = sizeof err;
  c.out = cli_calloc(cli_mul(B * Sq, cfg.d_out, CLI_EXIT_RUNTIME, "out"),
                     sizeof(float), "out");
  fail_status(attn_layer_forward(L, NULL, &c), "mha", err);
  {
    int64_t shape[3] = {B, Sq, cfg.d_out};
    const int nd = xa->ndim;
    if (nd == 2)
      shape[0] = Sq, shape[1] = cfg.d_out;
    operands_write(o.out, c.out, nd, shape);
  }
  if (o.grad) {
    const attn_npy *g = operands_read(o.grad);
    if (g->dtype != ATTN_NPY_F32 || g->count != B * Sq * cfg.d_out)
      cli_fail(CLI_EXIT_RUNTIME,
               "--grad %s: expected float32 of out's shape "
               "(%lld elements)",
               o.grad, (long long)(B * Sq * cfg.d_out));
    c.dout = g->data;
    c.dx = cli_calloc(xa->count, sizeof(float), "dx");
    if (ya)
      c.dy = cli_calloc(ya->count, sizeof(float), "dy");
    if (va)
      c.dvalue = cli_calloc(va->count, sizeof(float), "dvalue");
    fail_status(attn_layer_backward(L, NULL, &c), "mha backward", err);
    write_grads(&o, L, &c, xa, ya, va);
  }
  cli_cleanup();
  return 0;
}
