/*
 * _attn_pos.c - positions (attn/positions.h), compiled masks and quantised
 * rows for the Python package (_positions.py, _mask.py, _api.py):
 *
 *   pos(op, ...)      one entry point, op as below (the module's method
 *                     table names it once);
 *   pos_extra_apply   run()'s optional last argument (_attn.c): position
 *                     offsets, the T5 relative bias, a compiled mask (or a
 *                     mask to compile) and quantised K/V.
 *
 * The library's symbols used here are looked up on first use (under the
 * GIL): a libattn without them raises RuntimeError here only.
 */
#include "_attn.h"

#include <dlfcn.h>
#include <string.h>

/* ------------------------------------------------------------------------ */
/* The library's symbols                                                    */
/* ------------------------------------------------------------------------ */
typedef attn_status (*rope_apply_fn)(const attn_rope *, size_t, attn_tensor,
                                     attn_tensor, const int64_t *, int64_t,
                                     const int64_t *, int);
typedef attn_status (*rope_freq_fn)(const attn_rope *, size_t, int64_t, float *,
                                    float *);
typedef attn_status (*sinusoidal_fn)(int64_t, int64_t, int64_t, double,
                                     float *);
typedef int64_t (*t5_fn)(int64_t, int64_t, int64_t, int);
typedef attn_status (*alibi_fn)(int64_t, float *);
typedef attn_status (*quant_fn)(attn_dtype, const float *, int64_t, void *);
typedef attn_status (*dequant_fn)(attn_dtype, const void *, int64_t, float *);
typedef attn_status (*mask_compile_fn)(const attn_params *, size_t,
                                       attn_mask **);
typedef void (*mask_free_fn)(attn_mask *);
typedef attn_status (*mask_counts_fn)(const attn_mask *, int64_t *, int64_t *,
                                      int64_t *);

static struct {
  rope_apply_fn rope_apply;
  rope_freq_fn rope_freq;
  sinusoidal_fn sinusoidal;
  t5_fn t5;
  alibi_fn alibi;
  quant_fn quant;
  dequant_fn dequant;
  mask_compile_fn mask_compile;
  mask_free_fn mask_free;
  mask_counts_fn mask_counts;
} sym;

/* *slot = the library's symbol name (looked up once); -1 with
 * RuntimeError when the loaded library lacks it. */
static int need(void *slot, const char *name) {
  void *f;
  memcpy(&f, slot, sizeof f);
  if (f)
    return 0;
  if (!lib.handle) {
    PyErr_Format(PyExc_RuntimeError, "attn: library not loaded");
    return -1;
  }
  f = dlsym(lib.handle, name);
  if (!f) {
    PyErr_Format(PyExc_RuntimeError,
                 "attn: the loaded libattn (%s) has no %s (a newer one is "
                 "needed)",
                 lib.version(), name);
    return -1;
  }
  memcpy(slot, &f, sizeof f);
  return 0;
}
#define NEED(field, name) need((void *)&sym.field, name)

/* Raises the library's status for a call that has no message channel:
 * what: the Python function; the status's own text follows. */
static void raise_plain(attn_status s, const char *what) {
  char msg[256];
  snprintf(msg, sizeof msg, "%s: %s", what, lib.strerror_(s));
  raise_status(s, msg);
}

/* ------------------------------------------------------------------------ */
/* Raw buffers (int64, uint8, f32 vectors the Python side made contiguous)  */
/* ------------------------------------------------------------------------ */
/* A C-contiguous buffer of items of itemsize bytes and format kind
 * ('i' signed, 'u' unsigned, 'f' float), at least min_items long;
 * writable for outputs. -1 with an exception. */
static int raw_get(PyObject *o, const char *name, char kind, int itemsize,
                   int writable, Py_buffer *b) {
  int flags =
      PyBUF_C_CONTIGUOUS | PyBUF_FORMAT | (writable ? PyBUF_WRITABLE : 0);
  if (PyObject_GetBuffer(o, b, flags) != 0) {
    PyErr_Clear();
    PyErr_Format(PyExc_TypeError,
                 "attn: %s must be a %sC-contiguous array (numpy, or a torch "
                 "tensor's .numpy())",
                 name, writable ? "writable " : "");
    return -1;
  }
  const char *f = b->format ? b->format : "B";
  if (*f == '<' || *f == '=' || *f == '@')
    ++f;
  int ok = b->itemsize == itemsize && f[0] && !f[1];
  if (ok) {
    if (kind == 'i')
      ok = f[0] == 'q' || f[0] == 'l' || f[0] == 'n';
    else if (kind == 'u')
      ok = f[0] == 'B';
    else
      ok = f[0] == 'f';
  }
  if (!ok) {
    PyErr_Format(PyExc_TypeError, "attn: %s must be %s, got format '%s'", name,
                 kind == 'i'   ? "int64"
                 : kind == 'u' ? "uint8"
                               : "float32",
                 b->format ? b->format : "B");
    PyBuffer_Release(b);
    return -1;
  }
  return 0;
}

/* ------------------------------------------------------------------------ */
/* RoPE                                                                     */
/* ------------------------------------------------------------------------ */

/* rope_apply(x, y, rope, positions, pos_offset, pos_offsets, inverse) */
static PyObject *op_rope_apply(PyObject *const *args, Py_ssize_t n) {
  if (n != 7)
    return PyErr_Format(PyExc_TypeError, "attn: rope_apply: 7 arguments");
  attn_rope r;
  if (NEED(rope_apply, "attn_rope_apply_sized") ||
      attn_py_read_rope(args[2], &r))
    return NULL;
  long long off = PyLong_AsLongLong(args[4]);
  int inverse = PyObject_IsTrue(args[6]);
  if ((off == -1 && PyErr_Occurred()) || inverse < 0)
    return NULL;
  arr x, y;
  Py_buffer pb, ob;
  int gx = 0, gy = 0, gp = 0, go = 0;
  PyObject *result = NULL;
  attn_tensor tx, ty;
  if (arr_get(args[0], "x", 0, &x)) {
    arr_release(&x);
    goto done;
  }
  gx = 1;
  if (arr_get(args[1], "out", 1, &y)) {
    arr_release(&y);
    goto done;
  }
  gy = 1;
  if (qkv_tensor(&x, "x", LAYOUT_BSHD, &tx) ||
      qkv_tensor(&y, "out", LAYOUT_BSHD, &ty))
    goto done;
  const int64_t rows = tx.shape[0] * tx.shape[1];
  if (args[3] != Py_None) {
    if (raw_get(args[3], "positions", 'i', 8, 0, &pb))
      goto done;
    gp = 1;
    if (pb.len / 8 != rows) {
      PyErr_Format(PyExc_ValueError,
                   "attn: positions has %lld entries, expected batch * seq = "
                   "%lld",
                   (long long)(pb.len / 8), (long long)rows);
      goto done;
    }
  }
  if (args[5] != Py_None) {
    if (raw_get(args[5], "pos_offsets", 'i', 8, 0, &ob))
      goto done;
    go = 1;
    if (ob.len / 8 != tx.shape[0]) {
      PyErr_Format(PyExc_ValueError,
                   "attn: pos_offsets has %lld entries, expected batch = %lld",
                   (long long)(ob.len / 8), (long long)tx.shape[0]);
      goto done;
    }
  }
  attn_status s;
  const int64_t *pos = gp ? pb.buf : NULL, *offs = go ? ob.buf : NULL;
  Py_BEGIN_ALLOW_THREADS;
  s = sym.rope_apply(&r, sizeof r, tx, ty, pos, off, offs, inverse);
  Py_END_ALLOW_THREADS;
  if (s != ATTN_OK)
    raise_plain(s, "attn.rope_apply");
  else
    result = Py_NewRef(Py_None);
done:
  if (gx)
    arr_release(&x);
  if (gy)
    arr_release(&y);
  if (gp)
    PyBuffer_Release(&pb);
  if (go)
    PyBuffer_Release(&ob);
  return result;
}

/* rope_frequencies(rope, head_dim, out f32 [dims / 2]) -> mscale */
static PyObject *op_rope_freq(PyObject *const *args, Py_ssize_t n) {
  if (n != 3)
    return PyErr_Format(PyExc_TypeError, "attn: rope_frequencies: 3 args");
  attn_rope r;
  if (NEED(rope_freq, "attn_rope_frequencies_sized") ||
      attn_py_read_rope(args[0], &r))
    return NULL;
  long long hd = PyLong_AsLongLong(args[1]);
  if (hd == -1 && PyErr_Occurred())
    return NULL;
  Py_buffer b;
  if (raw_get(args[2], "out", 'f', 4, 1, &b))
    return NULL;
  int64_t d = r.dims ? r.dims : hd;
  if (d < 0 || b.len / 4 < d / 2) {
    PyBuffer_Release(&b);
    return PyErr_Format(PyExc_ValueError, "attn: rope_frequencies: out too "
                                          "short");
  }
  float ms = 0;
  attn_status s = sym.rope_freq(&r, sizeof r, hd, b.buf, &ms);
  PyBuffer_Release(&b);
  if (s != ATTN_OK) {
    raise_plain(s, "attn.rope_frequencies");
    return NULL;
  }
  return PyFloat_FromDouble(ms);
}

/* sinusoidal(n, d_model, pos0, base, out f32 [n * d_model]) */
static PyObject *op_sinusoidal(PyObject *const *args, Py_ssize_t n) {
  if (n != 5)
    return PyErr_Format(PyExc_TypeError, "attn: sinusoidal_table: 5 args");
  if (NEED(sinusoidal, "attn_sinusoidal_table"))
    return NULL;
  long long rows = PyLong_AsLongLong(args[0]);
  long long dm = PyLong_AsLongLong(args[1]);
  long long p0 = PyLong_AsLongLong(args[2]);
  double base = PyFloat_AsDouble(args[3]);
  if (PyErr_Occurred())
    return NULL;
  Py_buffer b;
  if (raw_get(args[4], "out", 'f', 4, 1, &b))
    return NULL;
  if (rows < 1 || dm < 1 || b.len / 4 / rows < dm) {
    PyBuffer_Release(&b);
    return PyErr_Format(PyExc_ValueError,
                        "attn: sinusoidal_table: n (%lld) and d_model (%lld) "
                        "must be >= 1",
                        rows, dm);
  }
  attn_status s;
  Py_BEGIN_ALLOW_THREADS;
  s = sym.sinusoidal(rows, dm, p0, base, b.buf);
  Py_END_ALLOW_THREADS;
  PyBuffer_Release(&b);
  if (s != ATTN_OK) {
    raise_plain(s, "attn.sinusoidal_table");
    return NULL;
  }
  Py_RETURN_NONE;
}

/* t5_bucket(rel int64 [n], out int64 [n], buckets, max_distance, bidir) */
static PyObject *op_t5(PyObject *const *args, Py_ssize_t n) {
  if (n != 5)
    return PyErr_Format(PyExc_TypeError, "attn: t5_bucket: 5 arguments");
  if (NEED(t5, "attn_t5_bucket"))
    return NULL;
  long long nb = PyLong_AsLongLong(args[2]);
  long long md = PyLong_AsLongLong(args[3]);
  int bidir = PyObject_IsTrue(args[4]);
  if (PyErr_Occurred() || bidir < 0)
    return NULL;
  if (nb < 1 || md < 1 || (bidir && nb < 2))
    return PyErr_Format(PyExc_ValueError,
                        "attn: t5_bucket: buckets (%lld) must be >= 1 (>= 2 "
                        "when bidirectional) and max_distance (%lld) >= 1",
                        nb, md);
  Py_buffer rb, ob;
  if (raw_get(args[0], "rel", 'i', 8, 0, &rb))
    return NULL;
  if (raw_get(args[1], "out", 'i', 8, 1, &ob)) {
    PyBuffer_Release(&rb);
    return NULL;
  }
  const int64_t *rel = rb.buf;
  int64_t *out = ob.buf;
  const Py_ssize_t cnt = rb.len / 8 < ob.len / 8 ? rb.len / 8 : ob.len / 8;
  for (Py_ssize_t i = 0; i < cnt; ++i)
    out[i] = sym.t5(rel[i], nb, md, bidir);
  PyBuffer_Release(&rb);
  PyBuffer_Release(&ob);
  Py_RETURN_NONE;
}

/* alibi(heads, out f32 [heads]) */
static PyObject *op_alibi(PyObject *const *args, Py_ssize_t n) {
  if (n != 2)
    return PyErr_Format(PyExc_TypeError, "attn: alibi_slopes: 2 arguments");
  if (NEED(alibi, "attn_alibi_slopes"))
    return NULL;
  long long h = PyLong_AsLongLong(args[0]);
  if (h == -1 && PyErr_Occurred())
    return NULL;
  Py_buffer b;
  if (raw_get(args[1], "out", 'f', 4, 1, &b))
    return NULL;
  if (h < 1 || b.len / 4 < h) {
    PyBuffer_Release(&b);
    return PyErr_Format(PyExc_ValueError,
                        "attn: alibi_slopes: heads (%lld) must be >= 1", h);
  }
  attn_status s = sym.alibi(h, b.buf);
  PyBuffer_Release(&b);
  if (s != ATTN_OK) {
    raise_plain(s, "attn.alibi_slopes");
    return NULL;
  }
  Py_RETURN_NONE;
}

/* ------------------------------------------------------------------------ */
/* Quantised rows                                                           */
/* ------------------------------------------------------------------------ */
static int64_t block_bytes(long dt) {
  return dt == ATTN_DTYPE_Q8_0 ? 34 : dt == ATTN_DTYPE_Q4_0 ? 18 : 0;
}

/* quantize(dtype, x f32 [n], out uint8) or dequantize(dtype, src uint8,
 * out f32 [n]); n a multiple of 32, contiguous both. */
static PyObject *op_quant(PyObject *const *args, Py_ssize_t n, int back) {
  if (n != 3)
    return PyErr_Format(PyExc_TypeError, "attn: quantize: 3 arguments");
  if (back ? NEED(dequant, "attn_dequantize_row")
           : NEED(quant, "attn_quantize_row"))
    return NULL;
  long dt = PyLong_AsLong(args[0]);
  if (dt == -1 && PyErr_Occurred())
    return NULL;
  const int64_t bb = block_bytes(dt);
  if (!bb)
    return PyErr_Format(PyExc_ValueError, "attn: not a quantised dtype");
  Py_buffer fb, qb;
  if (raw_get(args[back ? 2 : 1], back ? "out" : "x", 'f', 4, back, &fb))
    return NULL;
  if (raw_get(args[back ? 1 : 2], back ? "data" : "out", 'u', 1, !back, &qb)) {
    PyBuffer_Release(&fb);
    return NULL;
  }
  const int64_t vals = fb.len / 4;
  PyObject *result = NULL;
  if (vals % 32 != 0 || (int64_t)qb.len != vals / 32 * bb) {
    PyErr_Format(PyExc_ValueError,
                 "attn: %lld values need %lld bytes of blocks, got %lld",
                 (long long)vals, (long long)(vals / 32 * bb),
                 (long long)qb.len);
    goto done;
  }
  attn_status s;
  Py_BEGIN_ALLOW_THREADS;
  s = back ? sym.dequant((attn_dtype)dt, qb.buf, vals, fb.buf)
           : sym.quant((attn_dtype)dt, fb.buf, vals, qb.buf);
  Py_END_ALLOW_THREADS;
  if (s != ATTN_OK)
    raise_plain(s, back ? "attn.dequantize" : "attn.quantize");
  else
    result = Py_NewRef(Py_None);
done:
  PyBuffer_Release(&fb);
  PyBuffer_Release(&qb);
  return result;
}

/* A quantised K or V: uint8 [..., head_dim / 32 * block bytes] in layout
 * (bshd, bhsd or thd) as the logical [b, s, h, head_dim] attn_tensor whose
 * strides count blocks. */
static int quant_tensor(PyObject *o, const char *name, long dt, int layout,
                        Py_buffer *b, attn_tensor *t) {
  if (PyObject_GetBuffer(o, b, PyBUF_STRIDED_RO | PyBUF_FORMAT) != 0) {
    PyErr_Clear();
    PyErr_Format(PyExc_TypeError,
                 "attn: %s must be a uint8 array (numpy, or a torch "
                 "tensor's .numpy()) of quantised blocks",
                 name);
    return -1;
  }
  const char *f = b->format ? b->format : "B";
  const int want = layout == LAYOUT_THD ? 3 : 4;
  const int64_t bb = block_bytes(dt);
  if (b->itemsize != 1 || strcmp(f, "B") != 0) {
    PyErr_Format(PyExc_TypeError, "attn: %s must be uint8, got format '%s'",
                 name, f);
    goto fail;
  }
  if (b->ndim != want) {
    PyErr_Format(PyExc_ValueError, "attn: %s must be %d-D, got %d-D", name,
                 want, b->ndim);
    goto fail;
  }
  const int64_t last = b->shape[want - 1];
  if (last < 1 || last % bb != 0 || b->strides[want - 1] != 1) {
    PyErr_Format(PyExc_ValueError,
                 "attn: %s: the last axis (%lld bytes) must hold whole "
                 "%lld-byte blocks, contiguously (head_dim / 32 * %lld)",
                 name, (long long)last, (long long)bb, (long long)bb);
    goto fail;
  }
  static const int perm[3][4] = {{0, 1, 2, 3}, {0, 2, 1, 3}, {-1, 0, 1, 2}};
  t->data = b->buf;
  t->dtype = (attn_dtype)dt;
  for (int d = 0; d < 4; ++d) {
    const int s = perm[layout][d];
    if (d == 3) {
      t->shape[3] = last / bb * 32;
      t->stride[3] = 1;
      continue;
    }
    const Py_ssize_t st = s < 0 ? 0 : b->strides[s];
    if (st % bb != 0 || st < 0) {
      PyErr_Format(PyExc_ValueError,
                   "attn: %s: stride %zd bytes of axis %d is not a "
                   "non-negative multiple of the block size %lld",
                   name, st, s, (long long)bb);
      goto fail;
    }
    t->shape[d] = s < 0 ? 1 : b->shape[s];
    t->stride[d] = st / bb;
  }
  return 0;
fail:
  PyBuffer_Release(b);
  return -1;
}

/* ------------------------------------------------------------------------ */
/* Compiled masks: a capsule around a mask_box                             */
/* ------------------------------------------------------------------------ */
typedef struct mask_box {
  attn_mask *m; /* NULL before compile and after close */
  int busy;     /* calls using it now (the GIL guards this count) */
} mask_box;

static const char *const box_name = "attn.mask";

static void box_destroy(PyObject *cap) {
  mask_box *b = PyCapsule_GetPointer(cap, box_name);
  if (!b)
    return;
  if (b->m && sym.mask_free)
    sym.mask_free(b->m);
  PyMem_Free(b);
}

static mask_box *box_of(PyObject *cap) {
  mask_box *b = PyCapsule_GetPointer(cap, box_name);
  if (!b) {
    PyErr_Clear();
    PyErr_Format(PyExc_TypeError, "attn: compiled_mask must be an attn.Mask "
                                  "(attn.compile_mask)");
  }
  return b;
}

static PyObject *op_mask_new(Py_ssize_t n) {
  if (n != 0)
    return PyErr_Format(PyExc_TypeError, "attn: mask_new: no arguments");
  if (NEED(mask_compile, "attn_mask_compile_sized") ||
      NEED(mask_free, "attn_mask_free") ||
      NEED(mask_counts, "attn_mask_tile_counts"))
    return NULL;
  mask_box *b = PyMem_Calloc(1, sizeof *b);
  if (!b)
    return PyErr_NoMemory();
  PyObject *cap = PyCapsule_New(b, box_name, box_destroy);
  if (!cap)
    PyMem_Free(b);
  return cap;
}

static PyObject *op_mask_counts(PyObject *const *args, Py_ssize_t n) {
  if (n != 1)
    return PyErr_Format(PyExc_TypeError, "attn: tile_counts: 1 argument");
  mask_box *b = box_of(args[0]);
  if (!b)
    return NULL;
  if (!b->m)
    return PyErr_Format(PyExc_ValueError, "attn: the Mask is closed");
  int64_t f = 0, p = 0, e = 0;
  attn_status s = sym.mask_counts(b->m, &f, &p, &e);
  if (s != ATTN_OK) {
    raise_plain(s, "attn.Mask.tile_counts");
    return NULL;
  }
  return Py_BuildValue("(LLL)", (long long)f, (long long)p, (long long)e);
}

static PyObject *op_mask_close(PyObject *const *args, Py_ssize_t n) {
  if (n != 1)
    return PyErr_Format(PyExc_TypeError, "attn: close: 1 argument");
  mask_box *b = box_of(args[0]);
  if (!b)
    return NULL;
  if (b->busy)
    return PyErr_Format(PyExc_RuntimeError,
                        "attn: the Mask is in use by %d running call(s): "
                        "close it after they return",
                        b->busy);
  if (b->m)
    sym.mask_free(b->m);
  b->m = NULL;
  Py_RETURN_NONE;
}

/* ------------------------------------------------------------------------ */
/* run()'s extras                                                           */
/* ------------------------------------------------------------------------ */
/* The tuple _api.py passes (None for absent):
 *   (q_pos_offset, k_pos_offset, q_pos_offsets int64 [batch],
 *    k_pos_offsets int64 [batch], rel_bias f32 [buckets, heads_q],
 *    rel_buckets, rel_max_distance, rel_bidirectional, drel_bias f32,
 *    compiled_mask (a mask capsule), compile_into (a mask capsule: compile
 *    p into it instead of calling), kv_dtype (0 or ATTN_DTYPE_Q8_0/Q4_0),
 *    k uint8, v uint8) */
enum {
  X_QOFF,
  X_KOFF,
  X_QOFFS,
  X_KOFFS,
  X_REL,
  X_NB,
  X_MAXD,
  X_BIDIR,
  X_DREL,
  X_MASK,
  X_COMPILE,
  X_KVDT,
  X_KQ,
  X_VQ,
  X_COUNT
};

void pos_extra_release(pos_extra *ex) {
  for (int i = 0; i < 4; ++i)
    if (ex->got_buf[i])
      PyBuffer_Release(&ex->buf[i]);
  for (int i = 0; i < 2; ++i)
    if (ex->got_arr[i])
      arr_release(&ex->arr[i]);
  if (ex->box)
    ((mask_box *)ex->box)->busy--;
  memset(ex, 0, sizeof *ex);
}

int pos_extra_apply(PyObject *t, int mode, int layout, attn_params *p,
                    size_t psize, pos_extra *ex) {
  memset(ex, 0, sizeof *ex);
  if (t == Py_None)
    return 0;
  if (!PyTuple_Check(t) || PyTuple_GET_SIZE(t) != X_COUNT) {
    PyErr_Format(PyExc_TypeError, "attn: run extras: a %d-tuple", X_COUNT);
    return -1;
  }
  PyObject *it[X_COUNT];
  for (int i = 0; i < X_COUNT; ++i)
    it[i] = PyTuple_GET_ITEM(t, i);
  p->q_pos_offset = PyLong_AsLongLong(it[X_QOFF]);
  p->k_pos_offset = PyLong_AsLongLong(it[X_KOFF]);
  long long nb = PyLong_AsLongLong(it[X_NB]);
  long long md = PyLong_AsLongLong(it[X_MAXD]);
  int bidir = PyObject_IsTrue(it[X_BIDIR]);
  long kvdt = PyLong_AsLong(it[X_KVDT]);
  if (PyErr_Occurred() || bidir < 0)
    return -1;
  const int64_t batch = p->cu_seqlens_q ? p->varlen_batch : p->q.shape[0];
  const int64_t hq = p->q.shape[2];
  /* position offsets per sequence */
  for (int i = 0; i < 2; ++i) {
    PyObject *o = it[X_QOFFS + i];
    const char *nm = i ? "k_pos_offsets" : "q_pos_offsets";
    if (o == Py_None)
      continue;
    if (raw_get(o, nm, 'i', 8, 0, &ex->buf[i]))
      return -1;
    ex->got_buf[i] = 1;
    if (ex->buf[i].len / 8 != batch) {
      PyErr_Format(PyExc_ValueError,
                   "attn: %s has %lld entries, expected one per sequence "
                   "(%lld)",
                   nm, (long long)(ex->buf[i].len / 8), (long long)batch);
      return -1;
    }
    if (i)
      p->k_pos_offsets = ex->buf[i].buf;
    else
      p->q_pos_offsets = ex->buf[i].buf;
  }
  /* T5 relative bias */
  if (it[X_REL] != Py_None) {
    if (arr_get(it[X_REL], "rel_bias", 0, &ex->arr[0]))
      return -1;
    ex->got_arr[0] = 1;
    if (nb < 1) {
      PyErr_Format(PyExc_ValueError, "attn: rel_buckets (%lld) must be >= 1",
                   nb);
      return -1;
    }
    if (vec_check(&ex->arr[0], "rel_bias", DT_F32, nb * hq,
                  "[rel_buckets, heads_q]"))
      return -1;
    p->rel_bias = ex->arr[0].data;
    p->rel_buckets = nb;
    p->rel_max_distance = md;
    p->rel_bidirectional = bidir;
  }
  if (mode == 1 && it[X_DREL] != Py_None) {
    if (!p->rel_bias) {
      PyErr_Format(PyExc_ValueError, "attn: drel_bias needs rel_bias");
      return -1;
    }
    if (arr_get(it[X_DREL], "drel_bias", 1, &ex->arr[1]))
      return -1;
    ex->got_arr[1] = 1;
    if (vec_check(&ex->arr[1], "drel_bias", DT_F32, nb * hq,
                  "[rel_buckets, heads_q]"))
      return -1;
    p->drel_bias = ex->arr[1].data;
  }
  /* quantised K and V replace the placeholders run() read */
  if (kvdt != 0) {
    if (!block_bytes(kvdt)) {
      PyErr_Format(PyExc_ValueError, "attn: kv_dtype: not a quantised dtype");
      return -1;
    }
    if (quant_tensor(it[X_KQ], "k", kvdt, layout, &ex->buf[2], &p->k))
      return -1;
    ex->got_buf[2] = 1;
    if (quant_tensor(it[X_VQ], "v", kvdt, layout, &ex->buf[3], &p->v))
      return -1;
    ex->got_buf[3] = 1;
  }
  /* a compiled mask to use, or one to compile now */
  if (it[X_MASK] != Py_None) {
    mask_box *b = box_of(it[X_MASK]);
    if (!b)
      return -1;
    if (!b->m) {
      PyErr_Format(PyExc_ValueError, "attn: compiled_mask is closed");
      return -1;
    }
    p->compiled_mask = b->m;
    b->busy++;
    ex->box = b;
  }
  if (it[X_COMPILE] != Py_None) {
    mask_box *b = box_of(it[X_COMPILE]);
    if (!b)
      return -1;
    if (b->m) {
      PyErr_Format(PyExc_ValueError, "attn: this Mask is already compiled");
      return -1;
    }
    attn_mask *m = NULL;
    attn_status s;
    Py_BEGIN_ALLOW_THREADS;
    s = sym.mask_compile(p, psize, &m);
    Py_END_ALLOW_THREADS;
    if (s != ATTN_OK) {
      raise_status(s, p->error_message);
      return -1;
    }
    b->m = m;
    return 1;
  }
  return 0;
}

/* ------------------------------------------------------------------------ */
/* pos(op, ...)                                                             */
/* ------------------------------------------------------------------------ */
enum {
  OP_ROPE_APPLY,
  OP_ROPE_FREQ,
  OP_SINUSOIDAL,
  OP_T5,
  OP_ALIBI,
  OP_QUANTIZE,
  OP_DEQUANTIZE,
  OP_MASK_NEW,
  OP_MASK_COUNTS,
  OP_MASK_CLOSE
};

PyObject *py_pos(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
  (void)self;
  if (!lib.handle)
    return PyErr_Format(PyExc_RuntimeError, "attn: library not loaded");
  if (nargs < 1)
    return PyErr_Format(PyExc_TypeError, "attn._attn.pos: op missing");
  long op = PyLong_AsLong(args[0]);
  if (op == -1 && PyErr_Occurred())
    return NULL;
  PyObject *const *a = args + 1;
  const Py_ssize_t n = nargs - 1;
  switch (op) {
  case OP_ROPE_APPLY:
    return op_rope_apply(a, n);
  case OP_ROPE_FREQ:
    return op_rope_freq(a, n);
  case OP_SINUSOIDAL:
    return op_sinusoidal(a, n);
  case OP_T5:
    return op_t5(a, n);
  case OP_ALIBI:
    return op_alibi(a, n);
  case OP_QUANTIZE:
    return op_quant(a, n, 0);
  case OP_DEQUANTIZE:
    return op_quant(a, n, 1);
  case OP_MASK_NEW:
    return op_mask_new(n);
  case OP_MASK_COUNTS:
    return op_mask_counts(a, n);
  case OP_MASK_CLOSE:
    return op_mask_close(a, n);
  default:
    return PyErr_Format(PyExc_ValueError, "attn._attn.pos: unknown op %ld", op);
  }
}
