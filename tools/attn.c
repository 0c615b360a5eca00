/*
 * attn.c - the `attn` command line: run (.npy in, .npy out), bench, peak.
 *
 * Errors: exactly one line "attn: <reason>" on stderr; exit status 2 for
 * usage errors (bad flags or values), 1 for runtime errors (files, shapes,
 * library errors). Nothing else is ever written to stderr.
 */
#define _POSIX_C_SOURCE 200809L

#include "attn.h"
#include "npy.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#define EXIT_USAGE 2
#define EXIT_RUNTIME 1

static const char usage_text[] =
    "usage: attn <command> [options]\n"
    "\n"
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
    "  --window L,R            sliding window from the diagonal, -1 = "
    "unbounded\n"
    "  --softcap C             s = C * tanh(s / C); 0 = off\n"
    "  --alibi SLOPES.npy      float32 [heads_q] ALiBi slopes\n"
    "  --bias BIAS.npy         float32, up to 4-D, broadcastable (numpy "
    "rules)\n"
    "                          to [batch, heads_q, seq_q, seq_k]\n"
    "  --mask MASK.npy         bool, same broadcasting; true = may attend\n"
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
    "  --threads N             worker threads (0 = all, default)\n"
    "  --isa generic|avx2|avx512|auto\n"
    "\n"
    "attn grad [run's options] --dout DO.npy --dq DQ.npy --dk DK.npy\n"
    "          --dv DV.npy [--dbias DB.npy] [--out O.npy]\n"
    "    Gradients of sum(dO * O) (attn_backward): runs the forward for O and\n"
    "    LSE, then writes float32 dQ, dK, dV of the shapes of Q, K, V (and\n"
    "    dBias of the shape of --bias's array). DO has O's shape.\n"
    "\n"
    "attn bench [options]      time attn_forward on pseudo-random data\n"
    "  --batch B (1) --heads H (8) --kv-heads HK (= heads) --seq N (4096,\n"
    "  both) --seq-q N --seq-k N --dim D (64) --dim-v DV (= dim) --causal\n"
    "  --dtype f32|bf16|f16 --threads N (0 = all) --isa ISA --repeat R (5)\n"
    "  --warmup W (1) --check / --no-check (check is on by default)\n"
    "  --peak GFLOPS (default: measured in the same run) --json\n"
    "\n"
    "attn peak [--threads N] [--seconds S (1.0)] [--json]\n"
    "    measured f32 FMA peak in GFLOP/s\n"
    "\n"
    "attn --help | --version\n"
    "\n"
    "Exit status: 0 ok, 1 runtime or library error, 2 usage error.\n";

/* ---------------------------------------------------------------------- */
/* Failure and resource tracking                                          */
/* ---------------------------------------------------------------------- */

enum {
  ARR_Q,
  ARR_K,
  ARR_V,
  ARR_ALIBI,
  ARR_BIAS,
  ARR_MASK,
  ARR_KV_LENS,
  ARR_CU_Q,
  ARR_CU_K,
  ARR_DOUT,
  ARR_COUNT
};

/* Every allocation lives here, so fail() can release it before exiting. */
static npy_array g_arr[ARR_COUNT];
static void *g_bufs[16];

static void cleanup(void) {
  for (int i = 0; i < ARR_COUNT; i++)
    npy_free(&g_arr[i]);
  for (size_t i = 0; i < sizeof g_bufs / sizeof g_bufs[0]; i++) {
    free(g_bufs[i]);
    g_bufs[i] = NULL;
  }
}

/* Prints "attn: <reason>" as exactly one line and exits with code. */
static void fail(int code, const char *fmt, ...) {
  char msg[1024];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  if (n < 0)
    snprintf(msg, sizeof msg, "error");
  for (char *c = msg; *c; c++) {
    if ((unsigned char)*c < 0x20 || (unsigned char)*c == 0x7f)
      *c = ' ';
  }
  fflush(stdout);
  fprintf(stderr, "attn: %s\n", msg);
  cleanup();
  exit(code);
}

/* A tracked, zeroed allocation of count elements of size bytes. */
static void *xcalloc(int64_t count, size_t size, const char *what) {
  if (count < 0 || (count > 0 && (uint64_t)count > SIZE_MAX / size))
    fail(EXIT_RUNTIME, "%s: size overflows", what);
  size_t bytes = (size_t)count * size;
  for (size_t i = 0; i < sizeof g_bufs / sizeof g_bufs[0]; i++) {
    if (g_bufs[i] == NULL) {
      g_bufs[i] = calloc(bytes ? bytes : 1, 1);
      if (g_bufs[i] == NULL)
        fail(EXIT_RUNTIME, "%s: out of memory (%zu bytes)", what, bytes);
      return g_bufs[i];
    }
  }
  fail(EXIT_RUNTIME, "internal error: too many buffers");
  return NULL;
}

/* a * b, or fail on overflow (both >= 0). */
static int64_t mul64(int64_t a, int64_t b, const char *what) {
  if (a < 0 || b < 0 || (b != 0 && a > INT64_MAX / b))
    fail(EXIT_RUNTIME, "%s: size overflows 64 bits", what);
  return a * b;
}

/* ---------------------------------------------------------------------- */
/* Argument parsing                                                       */
/* ---------------------------------------------------------------------- */

typedef struct args {
  int argc;
  char **argv;
  int i;           /* index of the current argument              */
  char name[64];   /* the current option, "--name"                */
  const char *inl; /* value given as --name=value, or NULL        */
} args;

/* Advances to the next option; returns 0 at the end. */
static int args_next(args *a) {
  if (++a->i >= a->argc)
    return 0;
  const char *s = a->argv[a->i];
  if (strncmp(s, "--", 2) != 0 || s[2] == '\0')
    fail(EXIT_USAGE, "unexpected argument '%s' (try attn --help)", s);
  const char *eq = strchr(s, '=');
  size_t n = eq ? (size_t)(eq - s) : strlen(s);
  if (n >= sizeof a->name)
    fail(EXIT_USAGE, "unknown option '%.40s...'", s);
  memcpy(a->name, s, n);
  a->name[n] = '\0';
  a->inl = eq ? eq + 1 : NULL;
  return 1;
}

static int is_opt(const args *a, const char *name) {
  return strcmp(a->name, name) == 0;
}

static const char *args_value(args *a) {
  if (a->inl != NULL) {
    if (a->inl[0] == '\0')
      fail(EXIT_USAGE, "option %s requires a value", a->name);
    return a->inl;
  }
  if (a->i + 1 >= a->argc || strncmp(a->argv[a->i + 1], "--", 2) == 0 ||
      a->argv[a->i + 1][0] == '\0')
    fail(EXIT_USAGE, "option %s requires a value", a->name);
  return a->argv[++a->i];
}

static void args_flag(const args *a) {
  if (a->inl != NULL)
    fail(EXIT_USAGE, "option %s takes no value", a->name);
}

static void args_unknown(const args *a, const char *cmd) {
  fail(EXIT_USAGE, "unknown option '%s' for 'attn %s' (try attn --help)",
       a->name, cmd);
}

static long long parse_int(const char *opt, const char *s, long long lo,
                           long long hi) {
  char *end;
  errno = 0;
  long long v = strtoll(s, &end, 10);
  if (end == s || *end != '\0' || errno != 0)
    fail(EXIT_USAGE, "%s: '%s' is not an integer", opt, s);
  if (v < lo || v > hi)
    fail(EXIT_USAGE, "%s: %lld is out of range [%lld, %lld]", opt, v, lo, hi);
  return v;
}

static double parse_real(const char *opt, const char *s) {
  char *end;
  errno = 0;
  double v = strtod(s, &end);
  if (end == s || *end != '\0')
    fail(EXIT_USAGE, "%s: '%s' is not a number", opt, s);
  if (!isfinite(v) || errno == ERANGE)
    fail(EXIT_USAGE, "%s: '%s' is not a finite number", opt, s);
  return v;
}

static attn_isa parse_isa(const char *opt, const char *s) {
  attn_isa isa;
  if (attn_isa_parse(s, &isa) != ATTN_OK)
    fail(EXIT_USAGE,
         "%s: unknown ISA '%s' (expected generic, avx2, avx512 "
         "or auto)",
         opt, s);
  return isa;
}

static attn_dtype parse_dtype(const char *opt, const char *s) {
  if (strcmp(s, "f32") == 0)
    return ATTN_DTYPE_F32;
  if (strcmp(s, "bf16") == 0)
    return ATTN_DTYPE_BF16;
  if (strcmp(s, "f16") == 0)
    return ATTN_DTYPE_F16;
  fail(EXIT_USAGE, "%s: unknown dtype '%s' (expected f32, bf16 or f16)", opt,
       s);
  return ATTN_DTYPE_F32;
}

static const char *dtype_name(attn_dtype d) {
  return d == ATTN_DTYPE_BF16 ? "bf16" : d == ATTN_DTYPE_F16 ? "f16" : "f32";
}

/* Sets *slot to value unless it was already given. */
static void set_once(const char **slot, const char *value, const char *opt) {
  if (*slot != NULL)
    fail(EXIT_USAGE, "option %s given more than once", opt);
  *slot = value;
}

/* ---------------------------------------------------------------------- */
/* attn run                                                               */
/* ---------------------------------------------------------------------- */

typedef struct run_opts {
  const char *q, *k, *v, *out, *lse, *alibi, *bias, *mask, *kv_lens, *cu_q,
      *cu_k, *layout, *scale, *window, *softcap, *dtype, *threads, *isa;
  const char *dout, *dq, *dk, *dv, *dbias; /* attn grad only */
  int causal, causal_top_left;
} run_opts;

/* The field of o that holds the value of option name, or NULL; the
 * gradient options exist for `attn grad` only. */
static const char **run_value_slot(run_opts *o, const char *name, int grad) {
  const struct {
    const char *name;
    const char **slot;
  } gtable[] = {
      {"--dout", &o->dout}, {"--dq", &o->dq},       {"--dk", &o->dk},
      {"--dv", &o->dv},     {"--dbias", &o->dbias},
  };
  for (size_t i = 0; grad && i < sizeof gtable / sizeof gtable[0]; i++) {
    if (strcmp(gtable[i].name, name) == 0)
      return gtable[i].slot;
  }
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
      {"--softcap", &o->softcap},
      {"--alibi", &o->alibi},
      {"--bias", &o->bias},
      {"--mask", &o->mask},
      {"--kv-lens", &o->kv_lens},
      {"--cu-seqlens-q", &o->cu_q},
      {"--cu-seqlens-k", &o->cu_k},
      {"--dtype", &o->dtype},
      {"--threads", &o->threads},
      {"--isa", &o->isa},
  };
  for (size_t i = 0; i < sizeof table / sizeof table[0]; i++) {
    if (strcmp(table[i].name, name) == 0)
      return table[i].slot;
  }
  return NULL;
}

static void load(int slot, const char *path) {
  char err[512];
  if (npy_read(path, &g_arr[slot], err, sizeof err) != 0)
    fail(EXIT_RUNTIME, "%s", err);
}

/* Makes g_arr[slot] float32 (float16 is converted). */
static void require_float(int slot, const char *path) {
  npy_array *a = &g_arr[slot];
  if (a->dtype == NPY_DTYPE_F32)
    return;
  if (a->dtype != NPY_DTYPE_F16)
    fail(EXIT_RUNTIME,
         "%s: dtype %s, expected float32 (<f4) or float16 "
         "(<f2)",
         path, npy_dtype_descr(a->dtype));
  float *f = malloc(a->count ? (size_t)a->count * sizeof(float) : 1);
  if (f == NULL)
    fail(EXIT_RUNTIME, "%s: out of memory", path);
  const uint16_t *h = a->data;
  for (int64_t i = 0; i < a->count; i++)
    f[i] = attn_f16_to_f32(h[i]);
  free(a->data);
  a->data = f;
  a->dtype = NPY_DTYPE_F32;
  a->elem_size = sizeof(float);
}

static void require_dtype(int slot, const char *path, npy_dtype dt,
                          const char *what) {
  if (g_arr[slot].dtype != dt)
    fail(EXIT_RUNTIME, "%s: dtype %s, expected %s (%s)", path,
         npy_dtype_descr(g_arr[slot].dtype), what, npy_dtype_descr(dt));
}

static void require_1d(int slot, const char *path, int64_t n,
                       const char *what) {
  const npy_array *a = &g_arr[slot];
  if (a->ndim != 1 || a->shape[0] != n)
    fail(EXIT_RUNTIME, "%s: %s must have shape [%lld], got %d-D [%lld%s]", path,
         what, (long long)n, a->ndim, (long long)a->shape[0],
         a->ndim > 1 ? ", ..." : "");
}

/* Logical [batch, seq, heads, dim] of a Q/K/V array in the given layout. */
static void qkv_dims(int slot, const char *path, const char *name, int varlen,
                     int bhsd, int64_t d[4]) {
  const npy_array *a = &g_arr[slot];
  int want = varlen ? 3 : 4;
  if (a->ndim != want)
    fail(EXIT_RUNTIME, "%s: %s must be %d-D %s, got %d-D", path, name, want,
         varlen
             ? (bhsd ? "[heads, total, dim]" : "[total, heads, dim]")
             : (bhsd ? "[batch, heads, seq, dim]" : "[batch, seq, heads, dim]"),
         a->ndim);
  if (varlen) {
    d[0] = 1;
    d[1] = bhsd ? a->shape[1] : a->shape[0];
    d[2] = bhsd ? a->shape[0] : a->shape[1];
    d[3] = a->shape[2];
  } else {
    d[0] = a->shape[0];
    d[1] = bhsd ? a->shape[2] : a->shape[1];
    d[2] = bhsd ? a->shape[1] : a->shape[2];
    d[3] = a->shape[3];
  }
}

static attn_tensor qkv_tensor(void *data, attn_dtype dt, int bhsd,
                              const int64_t d[4]) {
  return bhsd ? attn_tensor_bhsd(data, dt, d[0], d[1], d[2], d[3])
              : attn_tensor_bshd(data, dt, d[0], d[1], d[2], d[3]);
}

/* Copies (and rounds) a float32 array into a new buffer of dtype dt. */
static void *convert_input(const npy_array *a, attn_dtype dt) {
  if (dt == ATTN_DTYPE_F32)
    return a->data;
  uint16_t *h = xcalloc(a->count, sizeof(uint16_t), "converted input");
  const float *f = a->data;
  for (int64_t i = 0; i < a->count; i++)
    h[i] =
        dt == ATTN_DTYPE_BF16 ? attn_f32_to_bf16(f[i]) : attn_f32_to_f16(f[i]);
  return h;
}

/* A broadcast view of a bias/mask array against [b, hq, sq, sk]: numpy
 * rules (right-aligned; an axis matches or has size 1, which gets stride 0). */
static attn_tensor broadcast_tensor(int slot, const char *path,
                                    const char *name, attn_dtype dt,
                                    const int64_t target[4]) {
  const npy_array *a = &g_arr[slot];
  static const char *axis[4] = {"batch", "heads_q", "seq_q", "seq_k"};
  if (a->ndim < 1 || a->ndim > 4)
    fail(EXIT_RUNTIME, "%s: %s must have 1 to 4 dimensions, got %d", path, name,
         a->ndim);
  int64_t shape[4], stride[4];
  int off = 4 - a->ndim;
  for (int i = 0; i < 4; i++)
    shape[i] = i < off ? 1 : a->shape[i - off];
  int64_t s = 1;
  for (int i = 3; i >= 0; i--) {
    if (shape[i] != 1 && shape[i] != target[i])
      fail(EXIT_RUNTIME,
           "%s: %s axis %s has size %lld, expected %lld or 1 "
           "(broadcast to [%lld, %lld, %lld, %lld])",
           path, name, axis[i], (long long)shape[i], (long long)target[i],
           (long long)target[0], (long long)target[1], (long long)target[2],
           (long long)target[3]);
    stride[i] = shape[i] == 1 ? 0 : s;
    s *= shape[i];
  }
  attn_tensor t;
  memset(&t, 0, sizeof t);
  t.data = a->data;
  t.dtype = dt;
  for (int i = 0; i < 4; i++) {
    t.shape[i] = shape[i];
    t.stride[i] = stride[i];
  }
  return t;
}

static void write_f32(const char *path, const float *data, int ndim,
                      const int64_t *shape) {
  char err[512];
  if (npy_write_f32(path, data, ndim, shape, err, sizeof err) != 0)
    fail(EXIT_RUNTIME, "%s", err);
}

/* `attn run` (grad = 0) and `attn grad` (grad = 1). */
static int cmd_run(int argc, char **argv, int grad) {
  const char *cmd = grad ? "grad" : "run";
  run_opts o;
  memset(&o, 0, sizeof o);
  args a = {argc, argv, 1, {0}, NULL};
  while (args_next(&a)) {
    if (is_opt(&a, "--help")) {
      fputs(usage_text, stdout);
      return 0;
    }
    const char **slot = run_value_slot(&o, a.name, grad);
    if (slot != NULL) {
      set_once(slot, args_value(&a), a.name);
    } else if (is_opt(&a, "--causal")) {
      args_flag(&a);
      o.causal = 1;
    } else if (is_opt(&a, "--causal-top-left")) {
      args_flag(&a);
      o.causal_top_left = 1;
    } else {
      args_unknown(&a, cmd);
    }
  }

  /* --- option values (usage errors) --- */
  if (o.q == NULL || o.k == NULL || o.v == NULL || (!grad && o.out == NULL))
    fail(EXIT_USAGE, "%s: missing required option %s", cmd,
         o.q == NULL   ? "--q"
         : o.k == NULL ? "--k"
         : o.v == NULL ? "--v"
                       : "--out");
  if (grad && (!o.dout || !o.dq || !o.dk || !o.dv))
    fail(EXIT_USAGE, "grad: missing required option %s",
         !o.dout ? "--dout"
         : !o.dq ? "--dq"
         : !o.dk ? "--dk"
                 : "--dv");
  if (o.dbias && !o.bias)
    fail(EXIT_USAGE, "grad: --dbias needs --bias");
  if (o.causal && o.causal_top_left)
    fail(EXIT_USAGE, "--causal and --causal-top-left are mutually exclusive");
  if ((o.cu_q == NULL) != (o.cu_k == NULL))
    fail(EXIT_USAGE, "--cu-seqlens-q and --cu-seqlens-k must be given "
                     "together");
  int varlen = o.cu_q != NULL;
  int bhsd = 0;
  if (o.layout != NULL) {
    if (strcmp(o.layout, "bhsd") == 0)
      bhsd = 1;
    else if (strcmp(o.layout, "bshd") != 0)
      fail(EXIT_USAGE,
           "--layout: unknown layout '%s' (expected bshd or "
           "bhsd)",
           o.layout);
  }
  attn_params p;
  attn_params_init(&p);
  if (o.scale != NULL) {
    double s = parse_real("--scale", o.scale);
    if (s == 0.0)
      fail(EXIT_USAGE, "--scale: must be nonzero (omit it for the default "
                       "1/sqrt(dim))");
    if (fabs(s) > 3.4e38 || (float)s == 0.0f)
      fail(EXIT_USAGE, "--scale: '%s' is out of float range", o.scale);
    p.scale = (float)s;
  }
  if (o.softcap != NULL) {
    double c = parse_real("--softcap", o.softcap);
    if (fabs(c) > 3.4e38)
      fail(EXIT_USAGE, "--softcap: '%s' is out of float range", o.softcap);
    p.softcap = (float)c;
  }
  if (o.window != NULL) {
    const char *comma = strchr(o.window, ',');
    char left[64];
    size_t n = comma ? (size_t)(comma - o.window) : 0;
    if (comma == NULL || n == 0 || n >= sizeof left || comma[1] == '\0')
      fail(EXIT_USAGE,
           "--window: expected L,R (integers, -1 = unbounded), "
           "got '%s'",
           o.window);
    memcpy(left, o.window, n);
    left[n] = '\0';
    p.window_left = parse_int("--window", left, INT64_MIN, INT64_MAX);
    p.window_right = parse_int("--window", comma + 1, INT64_MIN, INT64_MAX);
  }
  attn_dtype dt = ATTN_DTYPE_F32;
  if (o.dtype != NULL)
    dt = parse_dtype("--dtype", o.dtype);
  if (o.threads != NULL)
    p.num_threads = (int)parse_int("--threads", o.threads, 0, INT_MAX);
  if (o.isa != NULL)
    p.isa = parse_isa("--isa", o.isa);
  p.causal = o.causal            ? ATTN_CAUSAL_BOTTOM_RIGHT
             : o.causal_top_left ? ATTN_CAUSAL_TOP_LEFT
                                 : ATTN_CAUSAL_NONE;

  /* --- inputs (runtime errors) --- */
  load(ARR_Q, o.q);
  load(ARR_K, o.k);
  load(ARR_V, o.v);
  require_float(ARR_Q, o.q);
  require_float(ARR_K, o.k);
  require_float(ARR_V, o.v);
  int64_t qd[4], kd[4], vd[4];
  qkv_dims(ARR_Q, o.q, "Q", varlen, bhsd, qd);
  qkv_dims(ARR_K, o.k, "K", varlen, bhsd, kd);
  qkv_dims(ARR_V, o.v, "V", varlen, bhsd, vd);
  int64_t od[4] = {qd[0], qd[1], qd[2], vd[3]};

  p.q = qkv_tensor(convert_input(&g_arr[ARR_Q], dt), dt, bhsd, qd);
  p.k = qkv_tensor(convert_input(&g_arr[ARR_K], dt), dt, bhsd, kd);
  p.v = qkv_tensor(convert_input(&g_arr[ARR_V], dt), dt, bhsd, vd);
  int64_t o_count =
      mul64(mul64(mul64(od[0], od[1], "O"), od[2], "O"), od[3], "O");
  float *out = xcalloc(o_count, sizeof(float), "O");
  p.o = qkv_tensor(out, ATTN_DTYPE_F32, bhsd, od);

  const int64_t heads_q = qd[2];
  int64_t seqs = qd[0], max_sq = qd[1], max_sk = kd[1];
  if (varlen) {
    load(ARR_CU_Q, o.cu_q);
    load(ARR_CU_K, o.cu_k);
    require_dtype(ARR_CU_Q, o.cu_q, NPY_DTYPE_I32, "int32");
    require_dtype(ARR_CU_K, o.cu_k, NPY_DTYPE_I32, "int32");
    const npy_array *cq = &g_arr[ARR_CU_Q];
    if (cq->ndim != 1 || cq->shape[0] < 2)
      fail(EXIT_RUNTIME,
           "%s: cu_seqlens_q must be 1-D [batch+1] with at "
           "least 2 entries",
           o.cu_q);
    require_1d(ARR_CU_K, o.cu_k, cq->shape[0],
               "cu_seqlens_k (same length as cu_seqlens_q)");
    p.cu_seqlens_q = cq->data;
    p.cu_seqlens_k = g_arr[ARR_CU_K].data;
    p.varlen_batch = cq->shape[0] - 1;
    /* Bias, mask and kv_lens are per sequence: [sequences, heads_q,
     * longest query sequence, longest key sequence]. */
    const int32_t *cuq = cq->data, *cuk = g_arr[ARR_CU_K].data;
    int64_t mq = 0, mk = 0;
    for (int64_t b = 0; b < p.varlen_batch; b++) {
      mq =
          (int64_t)cuq[b + 1] - cuq[b] > mq ? (int64_t)cuq[b + 1] - cuq[b] : mq;
      mk =
          (int64_t)cuk[b + 1] - cuk[b] > mk ? (int64_t)cuk[b + 1] - cuk[b] : mk;
    }
    seqs = p.varlen_batch;
    max_sq = mq;
    max_sk = mk;
  }
  if (o.alibi != NULL) {
    load(ARR_ALIBI, o.alibi);
    require_float(ARR_ALIBI, o.alibi);
    require_1d(ARR_ALIBI, o.alibi, heads_q, "ALiBi slopes [heads_q]");
    p.alibi_slopes = g_arr[ARR_ALIBI].data;
  }
  const int64_t target[4] = {seqs, heads_q, max_sq, max_sk};
  if (o.bias != NULL) {
    load(ARR_BIAS, o.bias);
    require_float(ARR_BIAS, o.bias);
    p.bias = broadcast_tensor(ARR_BIAS, o.bias, "bias", ATTN_DTYPE_F32, target);
  }
  if (o.mask != NULL) {
    load(ARR_MASK, o.mask);
    require_dtype(ARR_MASK, o.mask, NPY_DTYPE_BOOL, "bool");
    p.mask =
        broadcast_tensor(ARR_MASK, o.mask, "mask", ATTN_DTYPE_BOOL, target);
  }
  if (o.kv_lens != NULL) {
    load(ARR_KV_LENS, o.kv_lens);
    require_dtype(ARR_KV_LENS, o.kv_lens, NPY_DTYPE_I32, "int32");
    require_1d(ARR_KV_LENS, o.kv_lens, seqs, "kv lengths [batch]");
    p.kv_lens = g_arr[ARR_KV_LENS].data;
  }
  float *lse = NULL;
  int64_t lse_shape[3] = {qd[0], heads_q, qd[1]};
  if (o.lse != NULL) {
    lse = xcalloc(
        mul64(mul64(lse_shape[0], lse_shape[1], "LSE"), lse_shape[2], "LSE"),
        sizeof(float), "LSE");
    p.lse = lse;
  }

  if (grad && lse == NULL) { /* the backward reads the forward's LSE */
    lse = xcalloc(
        mul64(mul64(lse_shape[0], lse_shape[1], "LSE"), lse_shape[2], "LSE"),
        sizeof(float), "LSE");
    p.lse = lse;
  }

  char msg[512] = {0};
  p.error_message = msg;
  p.error_message_size = sizeof msg;
  attn_status st = attn_forward(NULL, &p);
  if (st != ATTN_OK)
    fail(EXIT_RUNTIME, "%s", msg[0] ? msg : attn_strerror(st));
  float *dq = NULL, *dk = NULL, *dv = NULL, *db = NULL;
  if (grad) {
    load(ARR_DOUT, o.dout);
    require_float(ARR_DOUT, o.dout);
    int64_t dd[4];
    qkv_dims(ARR_DOUT, o.dout, "dO", varlen, bhsd, dd);
    for (int i = 0; i < 4; i++)
      if (dd[i] != od[i])
        fail(EXIT_RUNTIME,
             "%s: dO must have O's shape (axis %d is %lld, O's "
             "%lld)",
             o.dout, i, (long long)dd[i], (long long)od[i]);
    p.dout = qkv_tensor(convert_input(&g_arr[ARR_DOUT], dt), dt, bhsd, dd);
    dq = xcalloc(g_arr[ARR_Q].count, sizeof(float), "dQ");
    dk = xcalloc(g_arr[ARR_K].count, sizeof(float), "dK");
    dv = xcalloc(g_arr[ARR_V].count, sizeof(float), "dV");
    p.dq = qkv_tensor(dq, ATTN_DTYPE_F32, bhsd, qd);
    p.dk = qkv_tensor(dk, ATTN_DTYPE_F32, bhsd, kd);
    p.dv = qkv_tensor(dv, ATTN_DTYPE_F32, bhsd, vd);
    if (o.dbias) {
      db = xcalloc(g_arr[ARR_BIAS].count, sizeof(float), "dBias");
      p.dbias = attn_tensor_contiguous(db, ATTN_DTYPE_F32, p.bias.shape[0],
                                       p.bias.shape[1], p.bias.shape[2],
                                       p.bias.shape[3]);
    }
    st = attn_backward(NULL, &p);
    if (st != ATTN_OK)
      fail(EXIT_RUNTIME, "%s", msg[0] ? msg : attn_strerror(st));
  }

  int64_t out_shape[4];
  if (varlen) {
    out_shape[0] = bhsd ? od[2] : od[1];
    out_shape[1] = bhsd ? od[1] : od[2];
    out_shape[2] = od[3];
  } else {
    out_shape[0] = od[0];
    out_shape[1] = bhsd ? od[2] : od[1];
    out_shape[2] = bhsd ? od[1] : od[2];
    out_shape[3] = od[3];
  }
  if (o.out != NULL)
    write_f32(o.out, out, varlen ? 3 : 4, out_shape);
  if (o.lse != NULL)
    write_f32(o.lse, lse, 3, lse_shape);
  if (grad) {
    write_f32(o.dq, dq, g_arr[ARR_Q].ndim, g_arr[ARR_Q].shape);
    write_f32(o.dk, dk, g_arr[ARR_K].ndim, g_arr[ARR_K].shape);
    write_f32(o.dv, dv, g_arr[ARR_V].ndim, g_arr[ARR_V].shape);
    if (db != NULL)
      write_f32(o.dbias, db, g_arr[ARR_BIAS].ndim, g_arr[ARR_BIAS].shape);
  }
  cleanup();
  return 0;
}

/* ---------------------------------------------------------------------- */
/* attn bench                                                             */
/* ---------------------------------------------------------------------- */

static double now_seconds(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Peak resident set size so far, MiB. On Linux VmHWM from /proc: unlike
 * ru_maxrss it is not inherited across exec from a large parent. */
static double maxrss_mib(void) {
  FILE *f = fopen("/proc/self/status", "r");
  if (f) {
    char line[256];
    long kib = -1;
    while (fgets(line, sizeof line, f))
      if (sscanf(line, "VmHWM: %ld kB", &kib) == 1)
        break;
    fclose(f);
    if (kib >= 0)
      return (double)kib / 1024.0;
  }
  struct rusage ru;
  if (getrusage(RUSAGE_SELF, &ru) != 0)
    return 0.0;
  return (double)ru.ru_maxrss / 1024.0; /* Linux: KiB */
}

/* xorshift64*, uniform in [-1, 1). */
static float rand_unit(uint64_t *s) {
  uint64_t x = *s;
  x ^= x >> 12;
  x ^= x << 25;
  x ^= x >> 27;
  *s = x;
  uint64_t r = x * 0x2545F4914F6CDD1DULL;
  return (float)((double)(r >> 40) * (1.0 / 8388608.0) - 1.0);
}

/* Random values, rounded to dt; stored in dt. */
static void *make_input(int64_t count, attn_dtype dt, uint64_t seed,
                        const char *what) {
  uint64_t s = seed * 0x9E3779B97F4A7C15ULL + 1;
  if (dt == ATTN_DTYPE_F32) {
    float *f = xcalloc(count, sizeof(float), what);
    for (int64_t i = 0; i < count; i++)
      f[i] = rand_unit(&s);
    return f;
  }
  uint16_t *h = xcalloc(count, sizeof(uint16_t), what);
  for (int64_t i = 0; i < count; i++) {
    float f = rand_unit(&s);
    h[i] = dt == ATTN_DTYPE_BF16 ? attn_f32_to_bf16(f) : attn_f32_to_f16(f);
  }
  return h;
}

static double load_elem(const void *base, attn_dtype dt, int64_t idx) {
  if (dt == ATTN_DTYPE_F32)
    return ((const float *)base)[idx];
  uint16_t h = ((const uint16_t *)base)[idx];
  return dt == ATTN_DTYPE_BF16 ? attn_bf16_to_f32(h) : attn_f16_to_f32(h);
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

static int cmd_bench(int argc, char **argv) {
  int64_t batch = 1, heads = 8, kv_heads = -1, seq = -1, seq_q = -1, seq_k = -1,
          dim = 64, dim_v = -1, threads = 0, repeat = 5, warmup = 1;
  int causal = 0, check = 1, json = 0;
  attn_dtype dt = ATTN_DTYPE_F32;
  attn_isa isa = ATTN_ISA_AUTO;
  double peak = 0.0;
  const int64_t big = (int64_t)1 << 40;
  args a = {argc, argv, 1, {0}, NULL};
  while (args_next(&a)) {
    if (is_opt(&a, "--help")) {
      fputs(usage_text, stdout);
      return 0;
    }
    const struct {
      const char *name;
      int64_t *var;
      int64_t lo, hi;
    } ints[] = {
        {"--batch", &batch, 1, big},
        {"--heads", &heads, 1, big},
        {"--kv-heads", &kv_heads, 1, big},
        {"--seq", &seq, 1, big},
        {"--seq-q", &seq_q, 1, big},
        {"--seq-k", &seq_k, 1, big},
        {"--dim", &dim, 1, big},
        {"--dim-v", &dim_v, 1, big},
        {"--threads", &threads, 0, INT_MAX},
        {"--repeat", &repeat, 1, 1000000},
        {"--warmup", &warmup, 0, 1000000},
    };
    int matched = 0;
    for (size_t t = 0; t < sizeof ints / sizeof ints[0]; t++) {
      if (is_opt(&a, ints[t].name)) {
        *ints[t].var =
            parse_int(a.name, args_value(&a), ints[t].lo, ints[t].hi);
        matched = 1;
        break;
      }
    }
    if (matched) {
      continue;
    } else if (is_opt(&a, "--dtype")) {
      dt = parse_dtype("--dtype", args_value(&a));
    } else if (is_opt(&a, "--isa")) {
      isa = parse_isa("--isa", args_value(&a));
    } else if (is_opt(&a, "--peak")) {
      peak = parse_real("--peak", args_value(&a));
      if (peak <= 0)
        fail(EXIT_USAGE, "--peak: must be positive");
    } else if (is_opt(&a, "--causal")) {
      args_flag(&a);
      causal = 1;
    } else if (is_opt(&a, "--check")) {
      args_flag(&a);
      check = 1;
    } else if (is_opt(&a, "--no-check")) {
      args_flag(&a);
      check = 0;
    } else if (is_opt(&a, "--json")) {
      args_flag(&a);
      json = 1;
    } else {
      args_unknown(&a, "bench");
    }
  }
  if (kv_heads > 0 && heads % kv_heads != 0)
    fail(EXIT_USAGE, "--heads (%lld) must be a multiple of --kv-heads (%lld)",
         (long long)heads, (long long)kv_heads);
  if (kv_heads < 0)
    kv_heads = heads;
  if (seq_q < 0)
    seq_q = seq > 0 ? seq : 4096;
  if (seq_k < 0)
    seq_k = seq > 0 ? seq : 4096;
  if (dim_v < 0)
    dim_v = dim;
  if (!attn_isa_supported(isa))
    fail(EXIT_RUNTIME, "ISA %s is not supported on this CPU",
         attn_isa_name(isa));
  attn_isa used_isa = isa == ATTN_ISA_AUTO ? attn_context_isa(NULL) : isa;

  int64_t nq = mul64(mul64(mul64(batch, seq_q, "Q"), heads, "Q"), dim, "Q");
  int64_t nk = mul64(mul64(mul64(batch, seq_k, "K"), kv_heads, "K"), dim, "K");
  int64_t nv =
      mul64(mul64(mul64(batch, seq_k, "V"), kv_heads, "V"), dim_v, "V");
  int64_t no = mul64(mul64(mul64(batch, seq_q, "O"), heads, "O"), dim_v, "O");
  void *q = make_input(nq, dt, 1, "Q");
  void *k = make_input(nk, dt, 2, "K");
  void *v = make_input(nv, dt, 3, "V");
  float *out = xcalloc(no, sizeof(float), "O");
  memset(out, 0, (size_t)no * sizeof(float)); /* touch every page */
  double rss_base = maxrss_mib();

  attn_params p;
  attn_params_init(&p);
  p.q = attn_tensor_bshd(q, dt, batch, seq_q, heads, dim);
  p.k = attn_tensor_bshd(k, dt, batch, seq_k, kv_heads, dim);
  p.v = attn_tensor_bshd(v, dt, batch, seq_k, kv_heads, dim_v);
  p.o = attn_tensor_bshd(out, ATTN_DTYPE_F32, batch, seq_q, heads, dim_v);
  p.causal = causal ? ATTN_CAUSAL_BOTTOM_RIGHT : ATTN_CAUSAL_NONE;
  p.num_threads = (int)threads;
  p.isa = isa;
  char msg[512] = {0};
  p.error_message = msg;
  p.error_message_size = sizeof msg;
  attn_status st = attn_forward_check(&p);
  if (st != ATTN_OK)
    fail(EXIT_RUNTIME, "%s", msg[0] ? msg : attn_strerror(st));

  int peak_measured = 0;
  if (peak == 0.0) {
    st = attn_fma_peak_gflops((int)threads, 0.5, &peak);
    if (st != ATTN_OK)
      fail(EXIT_RUNTIME, "measuring the FMA peak: %s", attn_strerror(st));
    peak_measured = 1;
  }

  double *times = xcalloc(repeat, sizeof(double), "timings");
  for (int64_t r = 0; r < warmup + repeat; r++) {
    double t0 = now_seconds();
    st = attn_forward(NULL, &p);
    double t1 = now_seconds();
    if (st != ATTN_OK)
      fail(EXIT_RUNTIME, "%s", msg[0] ? msg : attn_strerror(st));
    if (r >= warmup)
      times[r - warmup] = t1 - t0;
  }
  double rss_after = maxrss_mib();
  qsort(times, (size_t)repeat, sizeof(double), cmp_double);
  double median = repeat % 2
                      ? times[repeat / 2]
                      : 0.5 * (times[repeat / 2 - 1] + times[repeat / 2]);
  double flops = 2.0 * (double)batch * (double)heads * (double)seq_q *
                 (double)seq_k * (double)(dim + dim_v);
  if (causal)
    flops *= 0.5;
  double gflops = median > 0 ? flops / median * 1e-9 : 0.0;
  double share = peak > 0 ? gflops / peak : 0.0;

  /* Check sampled rows against a double-precision naive computation. */
  double max_err = 0.0;
  int rows = 0, check_ok = 1;
  if (check) {
    int64_t total = mul64(mul64(batch, heads, "rows"), seq_q, "rows");
    int n = total < 8 ? (int)total : 8;
    double *w = xcalloc(seq_k, sizeof(double), "check");
    double *acc = xcalloc(dim_v, sizeof(double), "check");
    double scale = 1.0 / sqrt((double)dim);
    int64_t group = heads / kv_heads;
    for (int sidx = 0; sidx < n; sidx++) {
      int64_t idx =
          n > 1
              ? (int64_t)((double)sidx * (double)(total - 1) / (double)(n - 1))
              : 0;
      int64_t b = idx / (heads * seq_q);
      int64_t h = idx / seq_q % heads;
      int64_t i = idx % seq_q;
      int64_t g = h / group;
      int64_t jmax = causal ? i + seq_k - seq_q : seq_k - 1;
      if (jmax > seq_k - 1)
        jmax = seq_k - 1;
      double m = -INFINITY, sum = 0.0;
      for (int64_t j = 0; j <= jmax; j++) {
        double s = 0.0;
        for (int64_t c = 0; c < dim; c++)
          s += load_elem(q, dt, ((b * seq_q + i) * heads + h) * dim + c) *
               load_elem(k, dt, ((b * seq_k + j) * kv_heads + g) * dim + c);
        w[j] = s * scale;
        if (w[j] > m)
          m = w[j];
      }
      for (int64_t c = 0; c < dim_v; c++)
        acc[c] = 0.0;
      for (int64_t j = 0; j <= jmax; j++) {
        double e = exp(w[j] - m);
        sum += e;
        for (int64_t c = 0; c < dim_v; c++)
          acc[c] += e * load_elem(v, dt,
                                  ((b * seq_k + j) * kv_heads + g) * dim_v + c);
      }
      for (int64_t c = 0; c < dim_v; c++) {
        double ref = sum > 0 ? acc[c] / sum : 0.0;
        double got = out[((b * seq_q + i) * heads + h) * dim_v + c];
        double e = fabs(got - ref);
        if (!(e <= max_err)) /* NaN propagates */
          max_err = isnan(e) ? INFINITY : e;
      }
      rows++;
    }
    double tol = dt == ATTN_DTYPE_F32 ? 1e-3 : 2e-2;
    check_ok = max_err <= tol;
  }

  char thr[32];
  if (threads == 0)
    snprintf(thr, sizeof thr, "all");
  else
    snprintf(thr, sizeof thr, "%lld", (long long)threads);
  if (json) {
    printf("{\"command\":\"bench\",\"batch\":%lld,\"heads\":%lld,"
           "\"kv_heads\":%lld,\"seq_q\":%lld,\"seq_k\":%lld,\"dim\":%lld,"
           "\"dim_v\":%lld,\"causal\":%s,\"dtype\":\"%s\",\"threads\":%lld,"
           "\"isa\":\"%s\",\"repeat\":%lld,\"warmup\":%lld,"
           "\"median_ms\":%.6f,\"min_ms\":%.6f,\"max_ms\":%.6f,"
           "\"gflops\":%.3f,\"peak_gflops\":%.3f,\"peak_measured\":%s,"
           "\"peak_share\":%.4f,\"maxrss_mib\":%.2f,\"extra_mib\":%.2f",
           (long long)batch, (long long)heads, (long long)kv_heads,
           (long long)seq_q, (long long)seq_k, (long long)dim, (long long)dim_v,
           causal ? "true" : "false", dtype_name(dt), (long long)threads,
           attn_isa_name(used_isa) ? attn_isa_name(used_isa) : "?",
           (long long)repeat, (long long)warmup, median * 1e3, times[0] * 1e3,
           times[repeat - 1] * 1e3, gflops, peak,
           peak_measured ? "true" : "false", share, rss_after,
           rss_after - rss_base);
    if (check)
      printf(",\"check\":\"%s\",\"check_rows\":%d,\"max_abs_err\":%.3e",
             check_ok ? "ok" : "FAILED", rows,
             isfinite(max_err) ? max_err : 1e308);
    printf("}\n");
  } else {
    printf("bench: batch %lld heads %lld kv_heads %lld seq_q %lld seq_k %lld "
           "dim %lld dim_v %lld%s dtype %s threads %s isa %s\n",
           (long long)batch, (long long)heads, (long long)kv_heads,
           (long long)seq_q, (long long)seq_k, (long long)dim, (long long)dim_v,
           causal ? " causal" : "", dtype_name(dt), thr,
           attn_isa_name(used_isa) ? attn_isa_name(used_isa) : "?");
    printf("time: median %.3f ms (min %.3f, max %.3f; %lld runs after %lld "
           "warm-up)\n",
           median * 1e3, times[0] * 1e3, times[repeat - 1] * 1e3,
           (long long)repeat, (long long)warmup);
    printf("speed: %.1f GFLOP/s, %.1f%% of FMA peak %.1f GFLOP/s (%s)\n",
           gflops, 100.0 * share, peak, peak_measured ? "measured" : "given");
    printf("memory: peak RSS %.1f MiB, %.1f MiB beyond inputs and output\n",
           rss_after, rss_after - rss_base);
    if (check) {
      printf("check: max abs error %.3e over %d sampled rows\n", max_err, rows);
      printf("check: %s\n", check_ok ? "ok" : "FAILED");
    }
  }
  fflush(stdout);
  cleanup();
  return check_ok ? 0 : EXIT_RUNTIME;
}

/* ---------------------------------------------------------------------- */
/* attn peak                                                              */
/* ---------------------------------------------------------------------- */

static int cmd_peak(int argc, char **argv) {
  int threads = 0, json = 0;
  double seconds = 1.0;
  args a = {argc, argv, 1, {0}, NULL};
  while (args_next(&a)) {
    if (is_opt(&a, "--help")) {
      fputs(usage_text, stdout);
      return 0;
    } else if (is_opt(&a, "--threads")) {
      threads = (int)parse_int("--threads", args_value(&a), 0, INT_MAX);
    } else if (is_opt(&a, "--seconds")) {
      seconds = parse_real("--seconds", args_value(&a));
      if (seconds <= 0 || seconds > 3600)
        fail(EXIT_USAGE, "--seconds: must be in (0, 3600]");
    } else if (is_opt(&a, "--json")) {
      args_flag(&a);
      json = 1;
    } else {
      args_unknown(&a, "peak");
    }
  }
  double g = 0.0;
  attn_status st = attn_fma_peak_gflops(threads, seconds, &g);
  if (st != ATTN_OK)
    fail(EXIT_RUNTIME, "measuring the FMA peak: %s", attn_strerror(st));
  const char *isa = attn_isa_name(attn_isa_best());
  if (json)
    printf("{\"command\":\"peak\",\"threads\":%d,\"seconds\":%.3f,"
           "\"isa\":\"%s\",\"peak_gflops\":%.3f}\n",
           threads, seconds, isa ? isa : "?", g);
  else {
    char thr[32];
    if (threads == 0)
      snprintf(thr, sizeof thr, "all");
    else
      snprintf(thr, sizeof thr, "%d", threads);
    printf("peak: %.1f GFLOP/s (f32 FMA, threads %s, isa %s)\n", g, thr,
           isa ? isa : "?");
  }
  return 0;
}

int main(int argc, char **argv) {
  if (argc < 2)
    fail(EXIT_USAGE, "missing command (try attn --help)");
  const char *cmd = argv[1];
  if (strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0 ||
      strcmp(cmd, "help") == 0) {
    fputs(usage_text, stdout);
    return 0;
  }
  if (strcmp(cmd, "--version") == 0 || strcmp(cmd, "version") == 0) {
    printf("%s\n", attn_version_string());
    return 0;
  }
  if (strcmp(cmd, "run") == 0)
    return cmd_run(argc, argv, 0);
  if (strcmp(cmd, "grad") == 0)
    return cmd_run(argc, argv, 1);
  if (strcmp(cmd, "bench") == 0)
    return cmd_bench(argc, argv);
  if (strcmp(cmd, "peak") == 0)
    return cmd_peak(argc, argv);
  fail(EXIT_USAGE, "unknown command '%s' (try attn --help)", cmd);
  return EXIT_USAGE;
}
