/*
 * operands.c - see operands.h.
 */
#include "operands.h"

#include "cli.h"

#include <string.h>

static void npy_release(void *a) { attn_npy_free(a); }

const attn_npy *operands_read(const char *path) {
  attn_npy *a = cli_calloc(1, sizeof *a, "array");
  char err[512];
  if (attn_npy_read(path, a, err, sizeof err) != ATTN_OK)
    cli_fail(CLI_EXIT_RUNTIME, "%s", err);
  cli_defer(npy_release, a);
  return a;
}

/* a's data as float32: itself, or a converted copy of float16 data. */
static float *as_float(const attn_npy *a, const char *path) {
  if (a->dtype == ATTN_NPY_F32)
    return a->data;
  if (a->dtype != ATTN_NPY_F16)
    cli_fail(CLI_EXIT_RUNTIME,
             "%s: dtype %s, expected float32 (<f4) or float16 (<f2)", path,
             attn_npy_dtype_descr(a->dtype));
  float *f = cli_calloc(a->count, sizeof(float), path);
  const uint16_t *h = a->data;
  for (int64_t i = 0; i < a->count; i++)
    f[i] = attn_f16_to_f32(h[i]);
  return f;
}

static void require_dtype(const attn_npy *a, const char *path,
                          attn_npy_dtype dt, const char *what) {
  if (a->dtype != dt)
    cli_fail(CLI_EXIT_RUNTIME, "%s: dtype %s, expected %s (%s)", path,
             attn_npy_dtype_descr(a->dtype), what, attn_npy_dtype_descr(dt));
}

static void require_1d(const attn_npy *a, const char *path, int64_t n,
                       const char *what) {
  if (a->ndim != 1 || a->shape[0] != n)
    cli_fail(CLI_EXIT_RUNTIME,
             "%s: %s must have shape [%lld], got %d-D [%lld%s]", path, what,
             (long long)n, a->ndim, (long long)a->shape[0],
             a->ndim > 1 ? ", ..." : "");
}

/* Logical [batch, seq, heads, dim] of a Q/K/V/dO array in the layout. */
static void qkv_dims(const attn_npy *a, const char *path, const char *name,
                     int varlen, int bhsd, int64_t d[4]) {
  int want = varlen ? 3 : 4;
  if (a->ndim != want)
    cli_fail(CLI_EXIT_RUNTIME, "%s: %s must be %d-D %s, got %d-D", path, name,
             want,
             varlen ? (bhsd ? "[heads, total, dim]" : "[total, heads, dim]")
             : bhsd ? "[batch, heads, seq, dim]"
                    : "[batch, seq, heads, dim]",
             a->ndim);
  const int64_t *s = a->shape;
  if (varlen) {
    d[0] = 1;
    d[1] = bhsd ? s[1] : s[0];
    d[2] = bhsd ? s[0] : s[1];
    d[3] = s[2];
  } else {
    d[0] = s[0];
    d[1] = bhsd ? s[2] : s[1];
    d[2] = bhsd ? s[1] : s[2];
    d[3] = s[3];
  }
}

static attn_tensor qkv_tensor(void *data, attn_dtype dt, int bhsd,
                              const int64_t d[4]) {
  return bhsd ? attn_tensor_bhsd(data, dt, d[0], d[1], d[2], d[3])
              : attn_tensor_bshd(data, dt, d[0], d[1], d[2], d[3]);
}

/* count float32 values stored as dt: themselves, or a rounded copy. */
static void *convert(float *f, int64_t count, attn_dtype dt) {
  if (dt == ATTN_DTYPE_F32)
    return f;
  uint16_t *h = cli_calloc(count, sizeof(uint16_t), "converted input");
  for (int64_t i = 0; i < count; i++)
    h[i] =
        dt == ATTN_DTYPE_BF16 ? attn_f32_to_bf16(f[i]) : attn_f32_to_f16(f[i]);
  return h;
}

/* A view of a bias/mask array broadcast against target = [b, hq, sq, sk]:
 * numpy rules (right-aligned; an axis matches or has size 1, which gets
 * stride 0). */
static attn_tensor broadcast(const attn_npy *a, void *data, const char *path,
                             const char *name, attn_dtype dt,
                             const int64_t target[4]) {
  static const char *const axis[4] = {"batch", "heads_q", "seq_q", "seq_k"};
  if (a->ndim < 1 || a->ndim > 4)
    cli_fail(CLI_EXIT_RUNTIME, "%s: %s must have 1 to 4 dimensions, got %d",
             path, name, a->ndim);
  attn_tensor t;
  memset(&t, 0, sizeof t);
  t.data = data;
  t.dtype = dt;
  int off = 4 - a->ndim;
  int64_t s = 1;
  for (int i = 3; i >= 0; i--) {
    t.shape[i] = i < off ? 1 : a->shape[i - off];
    if (t.shape[i] != 1 && t.shape[i] != target[i])
      cli_fail(CLI_EXIT_RUNTIME,
               "%s: %s axis %s has size %lld, expected %lld or 1 "
               "(broadcast to [%lld, %lld, %lld, %lld])",
               path, name, axis[i], (long long)t.shape[i], (long long)target[i],
               (long long)target[0], (long long)target[1], (long long)target[2],
               (long long)target[3]);
    t.stride[i] = t.shape[i] == 1 ? 0 : s;
    s *= t.shape[i];
  }
  return t;
}

/* Q, K, V and the output O. */
static void load_qkv(const operand_spec *spec, attn_params *p, operands *ops) {
  const char *const path[3] = {spec->q, spec->k, spec->v};
  static const char *const name[3] = {"Q", "K", "V"};
  const attn_npy *a[3];
  float *f[3];
  int64_t *d[3] = {ops->qd, ops->kd, ops->vd};
  attn_tensor *t[3] = {&p->q, &p->k, &p->v};
  for (int i = 0; i < 3; i++)
    a[i] = operands_read(path[i]);
  for (int i = 0; i < 3; i++)
    f[i] = as_float(a[i], path[i]);
  for (int i = 0; i < 3; i++)
    qkv_dims(a[i], path[i], name[i], ops->varlen, ops->bhsd, d[i]);
  for (int i = 0; i < 3; i++)
    *t[i] = qkv_tensor(convert(f[i], a[i]->count, ops->dtype), ops->dtype,
                       ops->bhsd, d[i]);
  ops->q = a[0];
  ops->k = a[1];
  ops->v = a[2];
  const int64_t *qd = ops->qd;
  int64_t *od = ops->od;
  od[0] = qd[0];
  od[1] = qd[1];
  od[2] = qd[2];
  od[3] = ops->vd[3];
  int64_t n = cli_mul(cli_mul(cli_mul(od[0], od[1], CLI_EXIT_RUNTIME, "O"),
                              od[2], CLI_EXIT_RUNTIME, "O"),
                      od[3], CLI_EXIT_RUNTIME, "O");
  float *out = cli_calloc(n, sizeof(float), "O");
  p->o = qkv_tensor(out, ATTN_DTYPE_F32, ops->bhsd, od);
  ops->seqs = qd[0];
  ops->max_sq = qd[1];
  ops->max_sk = ops->kd[1];
}

/* cu_seqlens: bias, mask and kv_lens are then per sequence, [sequences,
 * heads_q, longest query sequence, longest key sequence]. */
static void load_varlen(const operand_spec *spec, attn_params *p,
                        operands *ops) {
  const attn_npy *cq = operands_read(spec->cu_q);
  const attn_npy *ck = operands_read(spec->cu_k);
  require_dtype(cq, spec->cu_q, ATTN_NPY_I32, "int32");
  require_dtype(ck, spec->cu_k, ATTN_NPY_I32, "int32");
  if (cq->ndim != 1 || cq->shape[0] < 2)
    cli_fail(CLI_EXIT_RUNTIME,
             "%s: cu_seqlens_q must be 1-D [batch+1] with at least 2 entries",
             spec->cu_q);
  require_1d(ck, spec->cu_k, cq->shape[0],
             "cu_seqlens_k (same length as cu_seqlens_q)");
  p->cu_seqlens_q = cq->data;
  p->cu_seqlens_k = ck->data;
  p->varlen_batch = cq->shape[0] - 1;
  const int32_t *cuq = cq->data, *cuk = ck->data;
  int64_t mq = 0, mk = 0;
  for (int64_t b = 0; b < p->varlen_batch; b++) {
    int64_t lq = (int64_t)cuq[b + 1] - cuq[b],
            lk = (int64_t)cuk[b + 1] - cuk[b];
    mq = lq > mq ? lq : mq;
    mk = lk > mk ? lk : mk;
  }
  ops->seqs = p->varlen_batch;
  ops->max_sq = mq;
  ops->max_sk = mk;
}

/* ALiBi slopes, bias, mask and kv_lens. */
static void load_extras(const operand_spec *spec, attn_params *p,
                        operands *ops) {
  const int64_t heads_q = ops->qd[2];
  if (spec->alibi != NULL) {
    const attn_npy *a = operands_read(spec->alibi);
    p->alibi_slopes = as_float(a, spec->alibi);
    require_1d(a, spec->alibi, heads_q, "ALiBi slopes [heads_q]");
  }
  const int64_t target[4] = {ops->seqs, heads_q, ops->max_sq, ops->max_sk};
  if (spec->bias != NULL) {
    ops->bias = operands_read(spec->bias);
    p->bias = broadcast(ops->bias, as_float(ops->bias, spec->bias), spec->bias,
                        "bias", ATTN_DTYPE_F32, target);
  }
  if (spec->mask != NULL) {
    const attn_npy *m = operands_read(spec->mask);
    require_dtype(m, spec->mask, ATTN_NPY_BOOL, "bool");
    p->mask =
        broadcast(m, m->data, spec->mask, "mask", ATTN_DTYPE_BOOL, target);
  }
  if (spec->kv_lens != NULL) {
    const attn_npy *l = operands_read(spec->kv_lens);
    require_dtype(l, spec->kv_lens, ATTN_NPY_I32, "int32");
    require_1d(l, spec->kv_lens, ops->seqs, "kv lengths [batch]");
    p->kv_lens = l->data;
  }
}

void operands_load(const operand_spec *spec, attn_params *p, operands *ops) {
  memset(ops, 0, sizeof *ops);
  ops->varlen = spec->cu_q != NULL;
  ops->bhsd = spec->bhsd;
  ops->dtype = spec->dtype;
  load_qkv(spec, p, ops);
  if (ops->varlen)
    load_varlen(spec, p, ops);
  load_extras(spec, p, ops);
}

float *operands_lse(const operands *ops, attn_params *p, int64_t shape[3]) {
  shape[0] = ops->qd[0];
  shape[1] = ops->qd[2];
  shape[2] = ops->qd[1];
  int64_t n = cli_mul(cli_mul(shape[0], shape[1], CLI_EXIT_RUNTIME, "LSE"),
                      shape[2], CLI_EXIT_RUNTIME, "LSE");
  p->lse = cli_calloc(n, sizeof(float), "LSE");
  return p->lse;
}

void operands_load_grad(const operands *ops, const char *dout, int with_dbias,
                        attn_params *p) {
  const attn_npy *d = operands_read(dout);
  float *f = as_float(d, dout);
  int64_t dd[4];
  qkv_dims(d, dout, "dO", ops->varlen, ops->bhsd, dd);
  for (int i = 0; i < 4; i++) {
    if (dd[i] != ops->od[i])
      cli_fail(CLI_EXIT_RUNTIME,
               "%s: dO must have O's shape (axis %d is %lld, O's %lld)", dout,
               i, (long long)dd[i], (long long)ops->od[i]);
  }
  p->dout =
      qkv_tensor(convert(f, d->count, ops->dtype), ops->dtype, ops->bhsd, dd);
  float *dq = cli_calloc(ops->q->count, sizeof(float), "dQ");
  float *dk = cli_calloc(ops->k->count, sizeof(float), "dK");
  float *dv = cli_calloc(ops->v->count, sizeof(float), "dV");
  p->dq = qkv_tensor(dq, ATTN_DTYPE_F32, ops->bhsd, ops->qd);
  p->dk = qkv_tensor(dk, ATTN_DTYPE_F32, ops->bhsd, ops->kd);
  p->dv = qkv_tensor(dv, ATTN_DTYPE_F32, ops->bhsd, ops->vd);
  if (with_dbias && ops->bias != NULL) {
    float *db = cli_calloc(ops->bias->count, sizeof(float), "dBias");
    const int64_t *s = p->bias.shape;
    p->dbias =
        attn_tensor_contiguous(db, ATTN_DTYPE_F32, s[0], s[1], s[2], s[3]);
  }
}

int operands_out_shape(const operands *ops, int64_t shape[4]) {
  const int64_t *od = ops->od;
  if (ops->varlen) {
    shape[0] = ops->bhsd ? od[2] : od[1];
    shape[1] = ops->bhsd ? od[1] : od[2];
    shape[2] = od[3];
    return 3;
  }
  shape[0] = od[0];
  shape[1] = ops->bhsd ? od[2] : od[1];
  shape[2] = ops->bhsd ? od[1] : od[2];
  shape[3] = od[3];
  return 4;
}

void operands_write(const char *path, const float *data, int ndim,
                    const int64_t *shape) {
  char err[512];
  if (attn_npy_write(path, ATTN_NPY_F32, ndim, shape, data, err, sizeof err) !=
      ATTN_OK)
    cli_fail(CLI_EXIT_RUNTIME, "%s", err);
}
