/*
 * _attn_cache.c - KV caches and decoding (attn/kv_cache.h) for the Python
 * package (attn.KVCache, _cache.py, owns the storage as numpy arrays and
 * passes its description on every call). The symbols are optional (0.3 on;
 * q8_0/q4_0 storage 0.4 on): a library without them raises here only.
 */
#include "_attn.h"

#include <string.h>

/* Writable C-contiguous bytes of a numpy storage array. */
static int storage(PyObject *o, const char *name, Py_buffer *b) {
  if (PyObject_GetBuffer(o, b, PyBUF_WRITABLE | PyBUF_C_CONTIGUOUS) != 0) {
    PyErr_Clear();
    PyErr_Format(PyExc_TypeError,
                 "attn: %s must be a writable C-contiguous buffer", name);
    return -1;
  }
  return 0;
}

/* cache tuple: (dtype, num_seqs, heads_kv, head_dim, head_dim_v, capacity,
 * k, v, seq_lens, page_size, num_pages, blocks_per_seq, block_table) */
enum {
  C_DT,
  C_NS,
  C_HK,
  C_D,
  C_DV,
  C_CAP,
  C_K,
  C_V,
  C_LENS,
  C_PAGE,
  C_NP,
  C_BPS,
  C_TABLE,
  C_COUNT
};
int attn_py_read_rope(PyObject *t, attn_rope *r) {
  if (!PyTuple_Check(t) || PyTuple_GET_SIZE(t) != 11) {
    PyErr_Format(PyExc_TypeError, "attn: rope: an 11-tuple");
    return -1;
  }
  if (!lib.rope_init) {
    PyErr_Format(PyExc_RuntimeError, "attn: the loaded libattn has no RoPE");
    return -1;
  }
  memset(r, 0, sizeof *r);
  lib.rope_init(r, sizeof *r);
  r->base = PyFloat_AsDouble(PyTuple_GET_ITEM(t, 0));
  r->style = (attn_rope_style)PyLong_AsLong(PyTuple_GET_ITEM(t, 1));
  r->dims = PyLong_AsLongLong(PyTuple_GET_ITEM(t, 2));
  r->scaling = (attn_rope_scaling)PyLong_AsLong(PyTuple_GET_ITEM(t, 3));
  double *d[7] = {&r->factor,          &r->original_max_position,
                  &r->low_freq_factor, &r->high_freq_factor,
                  &r->beta_fast,       &r->beta_slow,
                  &r->mscale};
  for (int i = 0; i < 7; ++i)
    *d[i] = PyFloat_AsDouble(PyTuple_GET_ITEM(t, 4 + i));
  return PyErr_Occurred() ? -1 : 0;
}

/* cache(mode, cache, rope, ...):
 *   mode 0 append: k_new, v_new, n_new
 *   mode 1 attend: q, o, lse, causal, window_left, window_right, scale,
 *                  softcap, sinks, threads */
PyObject *py_cache(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
  (void)self;
  if (!lib.handle)
    return PyErr_Format(PyExc_RuntimeError, "attn: library not loaded");
  if (!lib.cache_init || !lib.cache_append || !lib.cache_attend ||
      !lib.rope_init)
    return PyErr_Format(PyExc_RuntimeError,
                        "attn: the loaded libattn (%s) has no KV cache",
                        lib.version());
  if (nargs < 3)
    return PyErr_Format(PyExc_TypeError, "attn._attn.cache: bad arguments");
  long mode = PyLong_AsLong(args[0]);
  if (PyErr_Occurred())
    return NULL;
  if ((mode == 0 && nargs != 6) || (mode == 1 && nargs != 13) ||
      (mode != 0 && mode != 1))
    return PyErr_Format(PyExc_TypeError, "attn._attn.cache: bad arguments");
  PyObject *ct = args[1];
  if (!PyTuple_Check(ct) || PyTuple_GET_SIZE(ct) != C_COUNT)
    return PyErr_Format(PyExc_TypeError, "attn: cache: a 13-tuple");
  attn_kv_cache c;
  memset(&c, 0, sizeof c);
  lib.cache_init(&c, sizeof c);
  attn_rope rope;
  const int has_rope = args[2] != Py_None;
  if (has_rope && attn_py_read_rope(args[2], &rope) != 0)
    return NULL;
  c.dtype = (attn_dtype)PyLong_AsLong(PyTuple_GET_ITEM(ct, C_DT));
  c.num_seqs = PyLong_AsLongLong(PyTuple_GET_ITEM(ct, C_NS));
  c.heads_kv = PyLong_AsLongLong(PyTuple_GET_ITEM(ct, C_HK));
  c.head_dim = PyLong_AsLongLong(PyTuple_GET_ITEM(ct, C_D));
  c.head_dim_v = PyLong_AsLongLong(PyTuple_GET_ITEM(ct, C_DV));
  c.capacity = PyLong_AsLongLong(PyTuple_GET_ITEM(ct, C_CAP));
  c.page_size = PyLong_AsLongLong(PyTuple_GET_ITEM(ct, C_PAGE));
  c.num_pages = PyLong_AsLongLong(PyTuple_GET_ITEM(ct, C_NP));
  c.blocks_per_seq = PyLong_AsLongLong(PyTuple_GET_ITEM(ct, C_BPS));
  if (PyErr_Occurred())
    return NULL;

  Py_buffer kb, vb;
  arr lens, table, a[6];
  int got_k = 0, got_v = 0, got_lens = 0, got_table = 0, got[6] = {0};
  PyObject *result = NULL;
  char msg[512];
  msg[0] = 0;
  c.error_message = msg;
  c.error_message_size = sizeof msg;
  if (storage(PyTuple_GET_ITEM(ct, C_K), "cache k", &kb) != 0)
    goto done;
  got_k = 1;
  if (storage(PyTuple_GET_ITEM(ct, C_V), "cache v", &vb) != 0)
    goto done;
  got_v = 1;
  c.k = kb.buf;
  c.v = vb.buf;
  if (arr_get(PyTuple_GET_ITEM(ct, C_LENS), "seq_lens", 1, &lens) != 0)
    goto done;
  got_lens = 1;
  if (vec_check(&lens, "seq_lens", DT_I32, c.num_seqs, "[num_seqs]"))
    goto done;
  c.seq_lens = lens.data;
  if (PyTuple_GET_ITEM(ct, C_TABLE) != Py_None) {
    if (arr_get(PyTuple_GET_ITEM(ct, C_TABLE), "block_table", 0, &table) != 0)
      goto done;
    got_table = 1;
    if (vec_check(&table, "block_table", DT_I32, c.num_seqs * c.blocks_per_seq,
                  "[num_seqs, blocks_per_seq]"))
      goto done;
    c.block_table = table.data;
  }

  attn_status s;
  if (mode == 0) { /* append */
    attn_tensor kn, vn;
    for (int i = 0; i < 2; ++i) {
      if (arr_get(args[3 + i], i ? "v_new" : "k_new", 0, &a[i]) != 0)
        goto done;
      got[i] = 1;
    }
    if (qkv_tensor(&a[0], "k_new", 0, &kn) ||
        qkv_tensor(&a[1], "v_new", 0, &vn))
      goto done;
    const int32_t *n_new = NULL;
    if (args[5] != Py_None) {
      if (arr_get(args[5], "n_new", 0, &a[2]) != 0)
        goto done;
      got[2] = 1;
      if (vec_check(&a[2], "n_new", DT_I32, c.num_seqs, "[num_seqs]"))
        goto done;
      n_new = a[2].data;
    }
    Py_BEGIN_ALLOW_THREADS;
    s = lib.cache_append(NULL, &c, sizeof c, kn, vn, n_new,
                         has_rope ? &rope : NULL, sizeof rope);
    Py_END_ALLOW_THREADS;
  } else { /* attend */
    attn_params p;
    memset(&p, 0, sizeof p);
    lib.params_init(&p, PARAMS_SIZE);
    static const char *const names[3] = {"q", "o", "lse"};
    for (int i = 0; i < 3; ++i) {
      if (args[3 + i] == Py_None)
        continue;
      if (arr_get(args[3 + i], names[i], i > 0, &a[i]) != 0)
        goto done;
      got[i] = 1;
    }
    if (!got[0] || !got[1]) {
      PyErr_Format(PyExc_ValueError, "attn: q and o are required");
      goto done;
    }
    if (qkv_tensor(&a[0], "q", 0, &p.q) || qkv_tensor(&a[1], "o", 0, &p.o))
      goto done;
    if (got[2]) {
      if (vec_check(&a[2], "lse", DT_F32,
                    p.q.shape[0] * p.q.shape[2] * p.q.shape[1],
                    "[num_seqs, heads_q, seq_q]"))
        goto done;
      p.lse = a[2].data;
    }
    p.causal = (attn_causal)PyLong_AsLong(args[6]);
    p.window_left = PyLong_AsLongLong(args[7]);
    p.window_right = PyLong_AsLongLong(args[8]);
    p.scale = (float)PyFloat_AsDouble(args[9]);
    p.softcap = (float)PyFloat_AsDouble(args[10]);
    p.num_threads = (int)PyLong_AsLong(args[12]);
    if (PyErr_Occurred())
      goto done;
    if (args[11] != Py_None) {
      if (arr_get(args[11], "sinks", 0, &a[3]) != 0)
        goto done;
      got[3] = 1;
      if (vec_check(&a[3], "sinks", DT_F32, p.q.shape[2], "[heads_q]"))
        goto done;
      p.sinks = a[3].data;
    }
    p.error_message = msg;
    p.error_message_size = sizeof msg;
    Py_BEGIN_ALLOW_THREADS;
    s = lib.cache_attend(NULL, &c, sizeof c, &p, PARAMS_SIZE,
                         has_rope ? &rope : NULL, sizeof rope);
    Py_END_ALLOW_THREADS;
  }
  if (s != ATTN_OK) {
    raise_status(s, msg);
    goto done;
  }
  result = Py_NewRef(Py_None);
done:
  for (int i = 0; i < 6; ++i)
    if (got[i])
      arr_release(&a[i]);
  if (got_table)
    arr_release(&table);
  if (got_lens)
    arr_release(&lens);
  if (got_k)
    PyBuffer_Release(&kb);
  if (got_v)
    PyBuffer_Release(&vb);
  return result;
}
