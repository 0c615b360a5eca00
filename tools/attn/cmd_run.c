/*
 * cmd_run.c - `attn run`: attention on .npy files (attn_forward). Its
 * options are shared with `attn grad` (cmd_run.h).
 */
#include "cmd_run.h"

#include "cli.h"
#include "cmd_linear.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char cmd_run_help[] =
    "attn run --q Q.npy --k K.npy --v V.npy --out O.npy [options]\n"
    "    Q [batch, seq_q, heads_q, dim], K [batch, seq_k, heads_kv, dim],\n"
    "    V [batch, seq_k, heads_kv, dim_v] (bshd; bhsd swaps seq and heads).\n"
    "    Inputs float32 or float16 .npy; O is float32 [batch, seq_q, heads_q,\n"
    "    dim_v] in the layout of the inputs.\n"
    "  --lse LSE.npy           write float32 log-sum-exp [batch, heads_q, "
    "seq_q]\n"
    "                          ([1, heads_q, total_q] with --cu-seqlens-*)\n"
    "  --layout bshd|bhsd      axis order of Q, K, V, O (default bshd)\n"
    "  --scale S               score scale, finite, nonzero (default "
    "1/sqrt(dim))\n"
    "  --causal                causal mask, bottom-right aligned "
    "(FlashAttention)\n"
    "  --causal-top-left       causal mask, top-left aligned (PyTorch)\n"
    "  --linear                linear attention (Katharopoulos et al. 2020):\n"
    "                          weights phi(q) . phi(k), phi = elu + 1, no\n"
    "                          softmax; with --causal* its causal form;\n"
    "                          combines only with --layout, --dtype,\n"
    "                          --threads (any other flag: usage error)\n"
    "  --window L,R            sliding window from the diagonal, -1 = "
    "unbounded\n"
    "  --prefix N              prefix-LM mask: every query sees the first N "
    "keys,\n"
    "                          causal after them (N >= 0; not with "
    "--causal*)\n"
    "  --q-pos-offset N        added to every query position (default 0)\n"
    "  --k-pos-offset N        added to every key position (default 0);\n"
    "                          causal, window, prefix and ALiBi read "
    "positions\n"
    "  --rope BASE             rotate Q and K by RoPE (base > 1, e.g. 10000)\n"
    "                          before attention, at the positions of the "
    "call:\n"
    "                          query i at i + seq_k - seq_q (seq_k: the\n"
    "                          effective key count with --kv-lens), key j "
    "at j,\n"
    "                          plus --q-pos-offset / --k-pos-offset; per\n"
    "                          sequence with --cu-seqlens-*. grad: dQ and dK\n"
    "                          are w.r.t. the unrotated Q and K\n"
    "  --rope-style half|interleaved\n"
    "                          pairs (x[i], x[i + dims/2]) (GPT-NeoX, Llama;\n"
    "                          default) or (x[2i], x[2i + 1]) (GPT-J)\n"
    "  --rope-dims N           rotate only the first N dims (even; 0 = all)\n"
    "  --rope-scaling linear:F|ntk:F|yarn:F|llama3:F\n"
    "                          context extension as Hugging Face defines it:\n"
    "                          positions / F; base * F^(d/(d-2)); YaRN "
    "(cos, sin\n"
    "                          times 0.1 ln F + 1); Llama 3.1's bands\n"
    "  --rope-original-max N   yarn, llama3: the original context (default "
    "8192)\n"
    "  --relative-bias TABLE.npy\n"
    "                          T5 bucketed relative-position bias: float32\n"
    "                          [N, heads_q], s += TABLE[bucket(kpos - qpos), "
    "h]\n"
    "  --buckets N             buckets of the table (default: its rows)\n"
    "  --max-distance D        distances >= D share the last bucket "
    "(default 128)\n"
    "  --bidirectional         half the buckets per direction (T5 "
    "encoder);\n"
    "                          default: keys after the query share bucket 0\n"
    "  --sinks SINKS.npy       float32 [heads_q]: a sink logit per head "
    "that\n"
    "                          joins every row's softmax denominator with "
    "no\n"
    "                          value (GPT-OSS); grad: --dsinks DS.npy\n"
    "  --softcap C             s = C * tanh(s / C); 0 = off\n"
    "  --dropout P             dropout on the probabilities (training), P in\n"
    "                          [0, 1): kept ones scaled by 1 / (1 - P)\n"
    "  --seed S                dropout's seed, 0 .. 2^64 - 1 (default 0); the\n"
    "                          same S gives the same mask in run and grad\n"
    "  --alibi SLOPES.npy      float32 [heads_q] ALiBi slopes\n"
    "  --bias BIAS.npy         float32, up to 4-D, broadcastable (numpy "
    "rules)\n"
    "                          to [batch, heads_q, seq_q, seq_k]\n"
    "  --mask MASK.npy         bool, same broadcasting; true = may attend\n"
    "  --global IDX.npy        int32 token indices: those queries see every "
    "key\n"
    "                          and every query sees those keys (Longformer; "
    "use\n"
    "                          with --window for the local part)\n"
    "  --sparse strided:L | fixed:L,C\n"
    "                          Child et al. (2019), causal by construction; "
    "with\n"
    "                          p the query's position (i + seq_k - seq_q) "
    "and\n"
    "                          j <= p: strided: p-L <= j, or (p-j) mod L = "
    "0;\n"
    "                          fixed: j/L = p/L, or j mod L >= L-C\n"
    "  --block-mask MAP.npy --block-size BQ,BK\n"
    "                          bool [ceil(seq_q/BQ), ceil(seq_k/BK)]: only "
    "blocks\n"
    "                          marked true may attend\n"
    "  --kv-lens LENS.npy      int32 [batch]; keys at index >= length are "
    "padding\n"
    "  --cu-seqlens-q CQ.npy   int32 [batch+1] cumulative query offsets\n"
    "  --cu-seqlens-k CK.npy   int32 [batch+1] cumulative key offsets; Q, K, "
    "V,\n"
    "                          O are then 3-D [total, heads, dim] (bhsd:\n"
    "                          [heads, total, dim]); --bias, --mask and\n"
    "                          --kv-lens are then per sequence: [batch,\n"
    "                          heads_q, longest seq_q, longest seq_k]\n"
    "  --dtype f32|bf16|f16    round Q, K, V to this storage type first\n"
    "  --kv-quant q8_0|q4_0    K and V quantised (GGUF blocks of 32 along\n"
    "                          head_dim, after --dtype and --rope) before\n"
    "                          attending; head dims multiples of 32; grad:\n"
    "                          straight-through (dK, dV for the dequantised\n"
    "                          K, V)\n"
    "  --threads N             worker threads (0 = all, default; at most "
    "256)\n"
    "  --isa generic|avx2|avx512|auto\n";

/* ---------------------------------------------------------------------- */
/* Parsing                                                                */
/* ---------------------------------------------------------------------- */

/* The field of o that holds the value of option name, or NULL. */
static const char **value_slot(run_opts *o, const char *name) {
  const struct {
    const char *name;
    const char **slot;
  } table[] = {
      {"--q", &o->q},
      {"--k", &o->k},
      {"--v", &o->v},
      {"--out", &o->out},
      {"--lse", &o->lse},
      {"--layout", &o->layout},
      {"--scale", &o->scale},
      {"--window", &o->window},
      {"--prefix", &o->prefix},
      {"--q-pos-offset", &o->q_pos_offset},
      {"--k-pos-offset", &o->k_pos_offset},
      {"--rope", &o->rope},
      {"--rope-style", &o->rope_style},
      {"--rope-dims", &o->rope_dims},
      {"--rope-scaling", &o->rope_scaling},
      {"--rope-original-max", &o->rope_omp},
      {"--relative-bias", &o->rel_bias},
      {"--sinks", &o->sinks},
      {"--buckets", &o->buckets},
      {"--max-distance", &o->max_distance},
      {"--softcap", &o->softcap},
      {"--dropout", &o->dropout},
      {"--seed", &o->seed},
      {"--alibi", &o->alibi},
      {"--bias", &o->bias},
      {"--mask", &o->mask},
      {"--kv-lens", &o->kv_lens},
      {"--cu-seqlens-q", &o->cu_q},
      {"--cu-seqlens-k", &o->cu_k},
      {"--dtype", &o->dtype},
      {"--kv-quant", &o->kv_quant},
      {"--global", &o->global},
      {"--sparse", &o->sparse},
      {"--block-mask", &o->block_mask},
      {"--block-size", &o->block_size},
      {"--threads", &o->threads},
      {"--isa", &o->isa},
  };
  for (size_t i = 0; i < sizeof table / sizeof table[0]; i++) {
    if (strcmp(table[i].name, name) == 0)
      return table[i].slot;
  }
  return NULL;
}

int run_opts_take(run_opts *o, args *a) {
  const char **slot = value_slot(o, a->name);
  if (slot != NULL) {
    args_set_once(slot, args_value(a), a->name);
  } else if (args_is(a, "--causal")) {
    args_flag(a);
    o->causal = 1;
  } else if (args_is(a, "--causal-top-left")) {
    args_flag(a);
    o->causal_top_left = 1;
  } else if (args_is(a, "--bidirectional")) {
    args_flag(a);
    o->bidirectional = 1;
  } else {
    return 0;
  }
  return 1;
}

void run_opts_require(const run_opts *o, const char *cmd, int need_out) {
  if (o->q == NULL || o->k == NULL || o->v == NULL ||
      (need_out && o->out == NULL))
    cli_fail(CLI_EXIT_USAGE, "%s: missing required option %s", cmd,
             o->q == NULL   ? "--q"
             : o->k == NULL ? "--k"
             : o->v == NULL ? "--v"
                            : "--out");
}

/* --causal, --causal-top-left, --prefix, --window, --*-pos-offset. */
static void apply_masks(const run_opts *o, attn_params *p) {
  if (o->causal && o->causal_top_left)
    cli_fail(CLI_EXIT_USAGE,
             "--causal and --causal-top-left are mutually exclusive");
  if (o->prefix != NULL && (o->causal || o->causal_top_left))
    cli_fail(CLI_EXIT_USAGE,
             "--prefix and --%s are mutually exclusive (the prefix-LM mask "
             "is already causal after the prefix)",
             o->causal ? "causal" : "causal-top-left");
  p->causal = o->causal            ? ATTN_CAUSAL_BOTTOM_RIGHT
              : o->causal_top_left ? ATTN_CAUSAL_TOP_LEFT
                                   : ATTN_CAUSAL_NONE;
  if (o->prefix != NULL) {
    p->prefix_len = args_int("--prefix", o->prefix, INT64_MIN, INT64_MAX);
    if (p->prefix_len < 0)
      cli_fail(CLI_EXIT_USAGE,
               "--prefix: the prefix length must be >= 0, got %s", o->prefix);
  }
  if (o->q_pos_offset != NULL)
    p->q_pos_offset =
        args_int("--q-pos-offset", o->q_pos_offset, INT64_MIN, INT64_MAX);
  if (o->k_pos_offset != NULL)
    p->k_pos_offset =
        args_int("--k-pos-offset", o->k_pos_offset, INT64_MIN, INT64_MAX);
}

/* --window L,R: each -1 (unbounded) or >= 0. */
static void apply_window(const char *w, attn_params *p) {
  const char *comma = strchr(w, ',');
  char left[64];
  size_t n = comma ? (size_t)(comma - w) : 0;
  if (comma == NULL || n == 0 || n >= sizeof left || comma[1] == '\0')
    cli_fail(CLI_EXIT_USAGE,
             "--window: expected L,R (integers, -1 = unbounded), got '%s'", w);
  memcpy(left, w, n);
  left[n] = '\0';
  p->window_left = args_int("--window", left, INT64_MIN, INT64_MAX);
  p->window_right = args_int("--window", comma + 1, INT64_MIN, INT64_MAX);
  if (p->window_left < -1 || p->window_right < -1)
    cli_fail(CLI_EXIT_USAGE,
             "--window: each bound must be -1 (unbounded) or >= 0, got '%s'",
             w);
}

/* --scale, --softcap. */
static void apply_scores(const run_opts *o, attn_params *p) {
  if (o->scale != NULL) {
    double s = args_real("--scale", o->scale);
    if (s == 0.0)
      cli_fail(CLI_EXIT_USAGE, "--scale: must be nonzero (omit it for the "
                               "default 1/sqrt(dim))");
    if (fabs(s) > 3.4e38 || (float)s == 0.0f)
      cli_fail(CLI_EXIT_USAGE, "--scale: '%s' is out of float range", o->scale);
    p->scale = (float)s;
  }
  if (o->softcap != NULL) {
    double c = args_real("--softcap", o->softcap);
    if (fabs(c) > 3.4e38)
      cli_fail(CLI_EXIT_USAGE, "--softcap: '%s' is out of float range",
               o->softcap);
    if (c < 0)
      cli_fail(CLI_EXIT_USAGE, "--softcap: must be >= 0 (0 = off), got '%s'",
               o->softcap);
    p->softcap = (float)c;
  }
}

/* --dropout P (a float in [0, 1)) and --seed S (an unsigned 64-bit
 * integer, decimal or 0x hex). */
static void apply_dropout(const run_opts *o, attn_params *p) {
  if (o->seed != NULL && o->dropout == NULL)
    cli_fail(CLI_EXIT_USAGE, "--seed needs --dropout P");
  if (o->dropout == NULL)
    return;
  const double d = args_real("--dropout", o->dropout);
  if (!(d >= 0.0 && (float)d < 1.0f))
    cli_fail(CLI_EXIT_USAGE,
             "--dropout: P must be in [0, 1) (as float32), got '%s'",
             o->dropout);
  p->dropout_p = (float)d;
  if (o->seed != NULL) {
    const char *s = o->seed;
    char *end = NULL;
    errno = 0;
    const unsigned long long v = strtoull(s, &end, 0);
    if (*s == '\0' || *s == '-' || *s == '+' || *s == ' ' || *end != '\0' ||
        errno == ERANGE)
      cli_fail(CLI_EXIT_USAGE,
               "--seed: expected an integer in 0 .. 2^64 - 1, got '%s'", s);
    p->dropout_seed = (uint64_t)v;
  }
}

void run_opts_apply(const run_opts *o, attn_params *p, operand_spec *spec) {
  memset(spec, 0, sizeof *spec);
  apply_masks(o, p);
  if ((o->cu_q == NULL) != (o->cu_k == NULL))
    cli_fail(CLI_EXIT_USAGE,
             "--cu-seqlens-q and --cu-seqlens-k must be given together");
  if (o->layout != NULL) {
    if (strcmp(o->layout, "bhsd") == 0)
      spec->bhsd = 1;
    else if (strcmp(o->layout, "bshd") != 0)
      cli_fail(CLI_EXIT_USAGE,
               "--layout: unknown layout '%s' (expected bshd or bhsd)",
               o->layout);
  }
  apply_scores(o, p);
  apply_dropout(o, p);
  if (o->window != NULL)
    apply_window(o->window, p);
  spec->dtype = ATTN_DTYPE_F32;
  if (o->dtype != NULL)
    spec->dtype = args_dtype("--dtype", o->dtype);
  if (o->kv_quant != NULL)
    (void)args_quant("--kv-quant", o->kv_quant); /* a usage error now */
  if (o->threads != NULL)
    p->num_threads = args_threads(o->threads);
  if (o->isa != NULL)
    p->isa = args_isa("--isa", o->isa);
  spec->q = o->q;
  spec->k = o->k;
  spec->v = o->v;
  spec->alibi = o->alibi;
  spec->bias = o->bias;
  spec->mask = o->mask;
  spec->kv_lens = o->kv_lens;
  spec->cu_q = o->cu_q;
  spec->cu_k = o->cu_k;
}

/* --rope-scaling KIND:F. */
static void apply_rope_scaling(const char *s, attn_rope *r) {
  static const struct {
    const char *name;
    attn_rope_scaling kind;
  } kinds[] = {{"linear", ATTN_ROPE_SCALING_LINEAR},
               {"ntk", ATTN_ROPE_SCALING_NTK},
               {"yarn", ATTN_ROPE_SCALING_YARN},
               {"llama3", ATTN_ROPE_SCALING_LLAMA3}};
  const char *colon = strchr(s, ':');
  size_t n = colon ? (size_t)(colon - s) : 0;
  int found = -1;
  for (int i = 0; colon && i < 4; i++)
    if (strlen(kinds[i].name) == n && strncmp(s, kinds[i].name, n) == 0)
      found = i;
  if (found < 0 || colon[1] == '\0')
    cli_fail(CLI_EXIT_USAGE,
             "--rope-scaling: expected linear:F, ntk:F, yarn:F or llama3:F, "
             "got '%s'",
             s);
  r->scaling = kinds[found].kind;
  r->factor = args_real("--rope-scaling", colon + 1);
  if (r->factor <= 0)
    cli_fail(CLI_EXIT_USAGE, "--rope-scaling: the factor must be > 0, got '%s'",
             colon + 1);
}

int run_opts_rope(const run_opts *o, attn_rope *r) {
  attn_rope_init(r);
  if (o->rope == NULL) {
    const char *extra = o->rope_style     ? "--rope-style"
                        : o->rope_dims    ? "--rope-dims"
                        : o->rope_scaling ? "--rope-scaling"
                        : o->rope_omp     ? "--rope-original-max"
                                          : NULL;
    if (extra != NULL)
      cli_fail(CLI_EXIT_USAGE, "%s needs --rope BASE", extra);
    return 0;
  }
  r->base = args_real("--rope", o->rope);
  if (!(r->base > 1.0))
    cli_fail(CLI_EXIT_USAGE, "--rope: the base must be > 1, got '%s'", o->rope);
  if (o->rope_style != NULL) {
    if (strcmp(o->rope_style, "interleaved") == 0)
      r->style = ATTN_ROPE_INTERLEAVED;
    else if (strcmp(o->rope_style, "half") != 0)
      cli_fail(CLI_EXIT_USAGE,
               "--rope-style: unknown style '%s' (expected half or "
               "interleaved)",
               o->rope_style);
  }
  if (o->rope_dims != NULL) {
    r->dims = args_int("--rope-dims", o->rope_dims, 0, 256);
    if (r->dims % 2 != 0)
      cli_fail(CLI_EXIT_USAGE,
               "--rope-dims: %lld is odd (pairs rotate; 0 = all dims)",
               (long long)r->dims);
  }
  if (o->rope_scaling != NULL)
    apply_rope_scaling(o->rope_scaling, r);
  if (o->rope_omp != NULL) {
    if (r->scaling != ATTN_ROPE_SCALING_YARN &&
        r->scaling != ATTN_ROPE_SCALING_LLAMA3)
      cli_fail(CLI_EXIT_USAGE,
               "--rope-original-max needs --rope-scaling yarn:F or llama3:F");
    r->original_max_position =
        (double)args_int("--rope-original-max", o->rope_omp, 1, INT64_MAX);
  }
  return 1;
}

void run_rel_bias(const run_opts *o, attn_params *p) {
  if (o->rel_bias == NULL) {
    const char *extra = o->buckets         ? "--buckets"
                        : o->max_distance  ? "--max-distance"
                        : o->bidirectional ? "--bidirectional"
                                           : NULL;
    if (extra != NULL)
      cli_fail(CLI_EXIT_USAGE, "%s needs --relative-bias TABLE.npy", extra);
    return;
  }
  const int64_t heads_q = p->q.shape[2];
  const attn_npy *t = operands_read(o->rel_bias);
  if (t->dtype != ATTN_NPY_F32)
    cli_fail(CLI_EXIT_RUNTIME, "%s: the relative-bias table must be float32",
             o->rel_bias);
  if (t->ndim != 2 || t->shape[1] != heads_q)
    cli_fail(CLI_EXIT_RUNTIME,
             "%s: the relative-bias table must be 2-D [buckets, heads_q = "
             "%lld]",
             o->rel_bias, (long long)heads_q);
  p->rel_buckets = t->shape[0];
  if (o->buckets != NULL &&
      args_int("--buckets", o->buckets, 1, 65536) != t->shape[0])
    cli_fail(CLI_EXIT_RUNTIME, "%s: the table has %lld rows, --buckets says %s",
             o->rel_bias, (long long)t->shape[0], o->buckets);
  if (o->max_distance != NULL)
    p->rel_max_distance =
        args_int("--max-distance", o->max_distance, 1, INT64_MAX);
  p->rel_bidirectional = o->bidirectional;
  p->rel_bias = t->data;
}

void run_sinks(const run_opts *o, attn_params *p) {
  if (o->sinks == NULL)
    return;
  const int64_t heads_q = p->q.shape[2];
  const attn_npy *t = operands_read(o->sinks);
  if (t->dtype != ATTN_NPY_F32 || t->ndim != 1 || t->shape[0] != heads_q)
    cli_fail(CLI_EXIT_RUNTIME,
             "%s: the sinks must be float32 [heads_q = %lld], one logit per "
             "query head",
             o->sinks, (long long)heads_q);
  p->sinks = t->data;
}

/* A dense quantised copy ([batch, seq, heads, blocks]) of t. */
static attn_tensor quantised_copy(const attn_tensor *t, attn_dtype dt,
                                  const char *opt, const char *what) {
  const int64_t d = t->shape[3];
  if (d % 32 != 0)
    cli_fail(CLI_EXIT_RUNTIME,
             "%s: %s's head_dim (%lld) must be a multiple of 32 (GGUF "
             "blocks)",
             opt, what, (long long)d);
  const int64_t rows = t->shape[0] * t->shape[1] * t->shape[2];
  const size_t row_bytes = (size_t)(d / 32) * attn_dtype_size(dt);
  char *buf = cli_calloc(rows, row_bytes, "quantised K/V");
  float x[256];
  char *at = buf;
  for (int64_t b = 0; b < t->shape[0]; b++)
    for (int64_t s = 0; s < t->shape[1]; s++)
      for (int64_t h = 0; h < t->shape[2]; h++, at += row_bytes) {
        const int64_t o0 =
            b * t->stride[0] + s * t->stride[1] + h * t->stride[2];
        for (int64_t i = 0; i < d; i++) {
          const int64_t e = o0 + i * t->stride[3];
          const uint16_t *h16 = (const uint16_t *)t->data + e;
          x[i] = t->dtype == ATTN_DTYPE_F32    ? ((const float *)t->data)[e]
                 : t->dtype == ATTN_DTYPE_BF16 ? attn_bf16_to_f32(*h16)
                                               : attn_f16_to_f32(*h16);
        }
        attn_quantize_row(dt, x, d, at);
      }
  return attn_tensor_bshd(buf, dt, t->shape[0], t->shape[1], t->shape[2], d);
}

void run_kv_quant(const run_opts *o, attn_params *p) {
  if (o->kv_quant == NULL)
    return;
  const attn_dtype dt = args_quant("--kv-quant", o->kv_quant);
  p->k = quantised_copy(&p->k, dt, "--kv-quant", "K");
  p->v = quantised_copy(&p->v, dt, "--kv-quant", "V");
}

/* A zeroed tensor with t's shape, strides and dtype. */
static attn_tensor rope_copy_of(const attn_tensor *t) {
  int64_t n = 1; /* the loaded views are valid: no overflow */
  for (int i = 0; i < 4; i++)
    n += (t->shape[i] - 1) * t->stride[i];
  attn_tensor c = *t;
  c.data = cli_calloc(n, attn_dtype_size(t->dtype), "rotated Q/K");
  return c;
}

/* attn_rope_apply_qk on p (q, k read) into q_out, k_out. */
static void rope_call(const attn_rope *r, attn_params *p, attn_tensor q_out,
                      attn_tensor k_out, int inverse) {
  char msg[512] = {0};
  p->error_message = msg;
  p->error_message_size = sizeof msg;
  const attn_status st = attn_rope_apply_qk(r, p, q_out, k_out, inverse);
  if (st != ATTN_OK)
    cli_fail(CLI_EXIT_RUNTIME, "%s", msg[0] ? msg : attn_strerror(st));
  p->error_message = NULL;
  p->error_message_size = 0;
}

void run_rope_qk(const attn_rope *r, attn_params *p) {
  const attn_tensor q = rope_copy_of(&p->q), k = rope_copy_of(&p->k);
  rope_call(r, p, q, k, 0);
  p->q = q;
  p->k = k;
}

void run_rope_grads(const attn_rope *r, attn_params *p) {
  attn_params g = *p; /* the same call, its gradients as Q and K */
  g.q = p->dq;
  g.k = p->dk;
  rope_call(r, &g, p->dq, p->dk, 1);
}

void run_opts_paths(const run_opts *o, cli_path *list, int *n) {
  const cli_path add[] = {
      {"--out", o->out, 1},
      {"--lse", o->lse, 1},
      {"--q", o->q, 0},
      {"--k", o->k, 0},
      {"--v", o->v, 0},
      {"--alibi", o->alibi, 0},
      {"--bias", o->bias, 0},
      {"--mask", o->mask, 0},
      {"--kv-lens", o->kv_lens, 0},
      {"--cu-seqlens-q", o->cu_q, 0},
      {"--cu-seqlens-k", o->cu_k, 0},
      {"--relative-bias", o->rel_bias, 0},
      {"--sinks", o->sinks, 0},
      {"--global", o->global, 0},
      {"--block-mask", o->block_mask, 0},
  };
  for (size_t i = 0; i < sizeof add / sizeof add[0]; i++)
    list[(*n)++] = add[i];
}

/* ---------------------------------------------------------------------- */
/* attn run                                                               */
/* ---------------------------------------------------------------------- */

static void parse(int argc, char **argv, run_opts *o) {
  args a = args_start(argc, argv);
  memset(o, 0, sizeof *o);
  while (args_next(&a)) {
    if (args_is(&a, "--help")) {
      cli_print_help();
      cli_cleanup();
      exit(0);
    }
    if (args_is(&a, "--linear")) { /* cmd_linear.c reads argv */
      args_flag(&a);
      continue;
    }
    if (!run_opts_take(o, &a))
      args_unknown(&a, "run");
  }
}

void run_call(attn_status (*fn)(attn_context *, const attn_params *),
              attn_params *p) {
  char msg[512] = {0};
  p->error_message = msg;
  p->error_message_size = sizeof msg;
  const attn_status st = fn(NULL, p);
  if (st != ATTN_OK)
    cli_fail(CLI_EXIT_RUNTIME, "%s", msg[0] ? msg : attn_strerror(st));
  p->error_message = NULL;
  p->error_message_size = 0;
}

int cmd_run(int argc, char **argv) {
  run_opts o;
  parse(argc, argv, &o);
  run_opts_require(&o, "run", 1);
  const int linear = linear_requested(argc, argv, "run");
  attn_params p;
  attn_params_init(&p);
  operand_spec spec;
  run_opts_apply(&o, &p, &spec);
  attn_rope rope;
  const int with_rope = run_opts_rope(&o, &rope);
  cli_path files[32];
  int nfiles = 0;
  run_opts_paths(&o, files, &nfiles);
  paths_check_distinct(files, nfiles);
  cli_parsed(); /* parse-only mode (cli.h) ends here */

  operands ops;
  operands_load(&spec, &p, &ops);
  run_rel_bias(&o, &p);
  run_sinks(&o, &p);
  run_sparse(&o, &p);
  int64_t lse_shape[3];
  float *lse = o.lse != NULL ? operands_lse(&ops, &p, lse_shape) : NULL;
  if (with_rope)
    run_rope_qk(&rope, &p);
  run_kv_quant(&o, &p);
  if (linear)
    linear_forward(&p);
  else
    run_call(attn_forward, &p);

  int64_t out_shape[4];
  int out_ndim = operands_out_shape(&ops, out_shape);
  operands_write(o.out, p.o.data, out_ndim, out_shape);
  if (lse != NULL)
    operands_write(o.lse, lse, 3, lse_shape);
  cli_cleanup();
  return 0;
}
