/*
 * _attn_layer_call.c - the layer's forward, backward and decode for the
 * Python package (see _attn_layer.c for the object and the entry point):
 * the argument tuples _layer.py passes, the arrays they hold, every
 * length the library cannot see checked here, the GIL released around the
 * call.
 */
#include "_attn_layer.h"

#include <string.h>

/* ------------------------------------------------------------------------ */
/* Calls                                                                    */
/* ------------------------------------------------------------------------ */
/* options tuple: (causal, window_left, window_right, scale, softcap, bias,
 * mask, kv_lens, sinks, dropout_p, dropout_seed, prefix_len, q_pos_offset,
 * k_pos_offset, cu_seqlens_q, cu_seqlens_k, threads) */
enum {
  O_CAUSAL,
  O_WL,
  O_WR,
  O_SCALE,
  O_SOFTCAP,
  O_BIAS,
  O_MASK,
  O_KV_LENS,
  O_SINKS,
  O_DROP_P,
  O_DROP_SEED,
  O_PREFIX,
  O_QPOS,
  O_KPOS,
  O_CU_Q,
  O_CU_K,
  O_THREADS,
  O_COUNT
};
enum { OA_BIAS, OA_MASK, OA_KV_LENS, OA_SINKS, OA_CU_Q, OA_CU_K, OA_COUNT };

/* Every array a call holds: x, y, value, out/dout, dx, dy, dvalue, dsinks,
 * and the options' */
enum { AX, AY, AVAL, AOUT, ADX, ADY, ADVAL, ADSINKS, A_N };
typedef struct held {
  arr a[A_N];
  int got[A_N];
  arr o[OA_COUNT];
  int ogot[OA_COUNT];
  Py_buffer act;
  int got_act;
} held;

static void held_release(held *h) {
  for (int i = 0; i < A_N; ++i)
    if (h->got[i])
      arr_release(&h->a[i]);
  for (int i = 0; i < OA_COUNT; ++i)
    if (h->ogot[i])
      arr_release(&h->o[i]);
  if (h->got_act)
    PyBuffer_Release(&h->act);
}

static int contiguous(const arr *a) {
  int64_t run = 1;
  for (int d = a->ndim - 1; d >= 0; --d) {
    if (a->shape[d] != 1 && a->stride[d] != run)
      return 0;
    run *= a->shape[d];
  }
  return 1;
}

/* Reads a [batch, seq, width] (or [seq, width]: batch 1) float32
 * C-contiguous operand into h->a[i]; *b and *s get its batch and length
 * (checked against them when already >= 0). */
static int operand(held *h, int i, PyObject *obj, const char *name, int out,
                   int64_t width, int64_t *b, int64_t *s) {
  arr *a = &h->a[i];
  if (arr_get(obj, name, out, a) != 0) {
    arr_release(a);
    return -1;
  }
  h->got[i] = 1;
  if (a->dtype != DT_F32) {
    PyErr_Format(PyExc_TypeError, "attn: %s must be float32, not %s", name,
                 dt_names[a->dtype]);
    return -1;
  }
  if (a->ndim != 2 && a->ndim != 3) {
    PyErr_Format(PyExc_ValueError,
                 "attn: %s must be [batch, seq, %lld] (or [seq, %lld]), got "
                 "%d axes",
                 name, (long long)width, (long long)width, a->ndim);
    return -1;
  }
  const int64_t ab = a->ndim == 3 ? a->shape[0] : 1;
  const int64_t as = a->shape[a->ndim - 2];
  if (a->shape[a->ndim - 1] != width || (*b >= 0 && ab != *b) ||
      (*s >= 0 && as != *s)) {
    PyErr_Format(PyExc_ValueError,
                 "attn: %s has shape [%lld, %lld, %lld], expected [%lld, "
                 "%lld, %lld] (-1: any)",
                 name, (long long)ab, (long long)as,
                 (long long)a->shape[a->ndim - 1], (long long)*b, (long long)*s,
                 (long long)width);
    return -1;
  }
  if (!contiguous(a)) {
    PyErr_Format(PyExc_ValueError, "attn: %s must be C-contiguous", name);
    return -1;
  }
  *b = ab;
  *s = as;
  return 0;
}

/* The options tuple into p (arrays held in h); batch: sequences for the
 * lengths of kv_lens (with cu_seqlens: their count) */
static int read_options(PyObject *t, const pylayer *pl, held *h, attn_params *p,
                        int64_t batch, int *varlen) {
  if (!PyTuple_Check(t) || PyTuple_GET_SIZE(t) != O_COUNT) {
    PyErr_Format(PyExc_TypeError, "attn: layer options: a %d-tuple",
                 (int)O_COUNT);
    return -1;
  }
  memset(p, 0, sizeof *p);
  lib.params_init(p, sizeof *p);
  p->causal = (attn_causal)PyLong_AsLong(PyTuple_GET_ITEM(t, O_CAUSAL));
  p->window_left = PyLong_AsLongLong(PyTuple_GET_ITEM(t, O_WL));
  p->window_right = PyLong_AsLongLong(PyTuple_GET_ITEM(t, O_WR));
  p->scale = (float)PyFloat_AsDouble(PyTuple_GET_ITEM(t, O_SCALE));
  p->softcap = (float)PyFloat_AsDouble(PyTuple_GET_ITEM(t, O_SOFTCAP));
  p->dropout_p = (float)PyFloat_AsDouble(PyTuple_GET_ITEM(t, O_DROP_P));
  p->dropout_seed =
      PyLong_AsUnsignedLongLongMask(PyTuple_GET_ITEM(t, O_DROP_SEED));
  p->prefix_len = PyLong_AsLongLong(PyTuple_GET_ITEM(t, O_PREFIX));
  p->q_pos_offset = PyLong_AsLongLong(PyTuple_GET_ITEM(t, O_QPOS));
  p->k_pos_offset = PyLong_AsLongLong(PyTuple_GET_ITEM(t, O_KPOS));
  long threads = PyLong_AsLong(PyTuple_GET_ITEM(t, O_THREADS));
  if (PyErr_Occurred())
    return -1;
  if (threads < 0 || threads > 1 << 20) {
    PyErr_Format(PyExc_ValueError, "attn: threads must be in 0..2^20");
    return -1;
  }
  p->num_threads = (int)threads;
  static const int idx[OA_COUNT] = {O_BIAS,  O_MASK, O_KV_LENS,
                                    O_SINKS, O_CU_Q, O_CU_K};
  static const char *const names[OA_COUNT] = {
      "bias", "mask", "kv_lens", "sinks", "cu_seqlens_q", "cu_seqlens_k"};
  for (int i = 0; i < OA_COUNT; ++i) {
    PyObject *o = PyTuple_GET_ITEM(t, idx[i]);
    if (o == Py_None)
      continue;
    if (arr_get(o, names[i], 0, &h->o[i]) != 0) {
      arr_release(&h->o[i]);
      return -1;
    }
    h->ogot[i] = 1;
  }
  *varlen = h->ogot[OA_CU_Q] || h->ogot[OA_CU_K];
  if (*varlen) {
    if (!h->ogot[OA_CU_Q] || !h->ogot[OA_CU_K]) {
      PyErr_Format(PyExc_ValueError,
                   "attn: cu_seqlens_q and cu_seqlens_k go together");
      return -1;
    }
    const int64_t nq = h->o[OA_CU_Q].ndim == 1 ? h->o[OA_CU_Q].shape[0] : -1;
    if (nq < 2) {
      PyErr_Format(PyExc_ValueError, "attn: cu_seqlens_q must be 1-D with at "
                                     "least 2 entries [batch + 1]");
      return -1;
    }
    if (vec_check(&h->o[OA_CU_Q], "cu_seqlens_q", DT_I32, nq, "batch + 1") ||
        vec_check(&h->o[OA_CU_K], "cu_seqlens_k", DT_I32, nq,
                  "the length of cu_seqlens_q"))
      return -1;
    if (batch != 1) {
      PyErr_Format(PyExc_ValueError,
                   "attn: with cu_seqlens the batch axis must be 1 (the "
                   "sequences are packed along seq), got %lld",
                   (long long)batch);
      return -1;
    }
    p->cu_seqlens_q = h->o[OA_CU_Q].data;
    p->cu_seqlens_k = h->o[OA_CU_K].data;
    p->varlen_batch = nq - 1;
    batch = nq - 1;
  }
  if (h->ogot[OA_KV_LENS]) {
    if (vec_check(&h->o[OA_KV_LENS], "kv_lens", DT_I32, batch, "[batch]"))
      return -1;
    p->kv_lens = h->o[OA_KV_LENS].data;
  }
  if (h->ogot[OA_SINKS]) {
    if (vec_check(&h->o[OA_SINKS], "sinks", DT_F32, pl->heads_q, "[heads]"))
      return -1;
    p->sinks = h->o[OA_SINKS].data;
  }
  if (h->ogot[OA_BIAS] &&
      bm_tensor(&h->o[OA_BIAS], "bias", DT_F32, &p->bias) != 0)
    return -1;
  if (h->ogot[OA_MASK] &&
      bm_tensor(&h->o[OA_MASK], "mask", DT_BOOL, &p->mask) != 0)
    return -1;
  return 0;
}

/* x, y, value of a call into c (shapes from the arrays). */
static int read_inputs(held *h, const pylayer *pl, PyObject *x, PyObject *y,
                       PyObject *value, attn_layer_call *c) {
  int64_t b = -1, sq = -1, sk = -1;
  if (operand(h, AX, x, "x", 0, pl->d_model, &b, &sq) != 0)
    return -1;
  c->x = h->a[AX].data;
  if (pl->cross) {
    if (y == Py_None) {
      PyErr_Format(PyExc_ValueError,
                   "attn: this layer is cross-attention: pass kv (the key "
                   "input [batch, seq_k, %lld])",
                   (long long)pl->kdim);
      return -1;
    }
    if (operand(h, AY, y, "kv", 0, pl->kdim, &b, &sk) != 0)
      return -1;
    c->y = h->a[AY].data;
    if (value != Py_None) {
      if (operand(h, AVAL, value, "value", 0, pl->vdim, &b, &sk) != 0)
        return -1;
      c->value = h->a[AVAL].data;
    } else if (pl->vdim != pl->kdim) {
      PyErr_Format(PyExc_ValueError,
                   "attn: vdim (%lld) differs from kdim (%lld): pass value",
                   (long long)pl->vdim, (long long)pl->kdim);
      return -1;
    }
  } else {
    if (y != Py_None || value != Py_None) {
      PyErr_Format(PyExc_ValueError,
                   "attn: this layer is self-attention (K and V come from "
                   "x): kv and value must be None (make a cross-attention "
                   "layer with cross=True)");
      return -1;
    }
    sk = sq;
  }
  c->batch = b;
  c->seq_q = sq;
  c->seq_k = sk;
  return 0;
}

static int read_activations(held *h, PyObject *o, attn_layer_call *c) {
  if (o == Py_None)
    return 0;
  if (PyObject_GetBuffer(o, &h->act, PyBUF_WRITABLE | PyBUF_C_CONTIGUOUS) !=
      0) {
    PyErr_Clear();
    PyErr_Format(PyExc_TypeError, "attn: activations must be a writable "
                                  "C-contiguous buffer");
    return -1;
  }
  h->got_act = 1;
  c->activations = h->act.buf;
  c->activations_size = (size_t)h->act.len;
  return 0;
}

/* forward(cap, x, y, value, out, options, activations)
 * backward(cap, x, y, value, dout, dx, dy, dvalue, options, activations,
 *          dsinks)
 * sizes(cap, x, y, value, options) -> (activations, workspace) */
PyObject *layer_op_call(pylayer *pl, int kind, PyObject *const *a,
                        Py_ssize_t n) {
  static const Py_ssize_t want[3] = {7, 11, 5};
  if (n != want[kind])
    return PyErr_Format(PyExc_TypeError, "attn._attn.layer: bad arguments");
  held h;
  memset(&h, 0, sizeof h);
  PyObject *result = NULL;
  char msg[512];
  msg[0] = 0;
  attn_layer_call c;
  memset(&c, 0, sizeof c);
  attn_py_ll.call_init(&c, sizeof c);
  attn_params p;
  int varlen = 0;
  if (read_inputs(&h, pl, a[1], a[2], a[3], &c) != 0)
    goto done;
  const int opt_at = kind == 0 ? 5 : kind == 1 ? 8 : 4;
  if (read_options(a[opt_at], pl, &h, &p, c.batch, &varlen) != 0)
    goto done;
  c.options = &p;
  c.options_size = sizeof p;
  c.error_message = msg;
  c.error_message_size = sizeof msg;
  attn_status s = ATTN_OK;
  if (kind == 2) {
    size_t act = 0, ws = 0;
    Py_BEGIN_ALLOW_THREADS;
    s = attn_py_ll.buffer_sizes(pl->L, NULL, &c, sizeof c, &act, &ws);
    Py_END_ALLOW_THREADS;
    if (s != ATTN_OK)
      raise_status(s, msg);
    else
      result = Py_BuildValue("(nn)", (Py_ssize_t)act, (Py_ssize_t)ws);
    goto done;
  }
  int64_t b = c.batch, sq = c.seq_q, sk = c.seq_k;
  if (kind == 0) {
    if (operand(&h, AOUT, a[4], "out", 1, pl->d_out, &b, &sq) != 0)
      goto done;
    c.out = h.a[AOUT].data;
  } else {
    if (operand(&h, AOUT, a[4], "dout", 0, pl->d_out, &b, &sq) != 0)
      goto done;
    c.dout = h.a[AOUT].data;
    if (a[5] != Py_None) {
      if (operand(&h, ADX, a[5], "dx", 1, pl->d_model, &b, &sq) != 0)
        goto done;
      c.dx = h.a[ADX].data;
    }
    if (a[6] != Py_None) {
      if (!pl->cross) {
        PyErr_Format(PyExc_ValueError, "attn: dkv is for cross-attention");
        goto done;
      }
      if (operand(&h, ADY, a[6], "dkv", 1, pl->kdim, &b, &sk) != 0)
        goto done;
      c.dy = h.a[ADY].data;
    }
    if (a[7] != Py_None) {
      if (!c.value) {
        PyErr_Format(PyExc_ValueError, "attn: dvalue needs value");
        goto done;
      }
      if (operand(&h, ADVAL, a[7], "dvalue", 1, pl->vdim, &b, &sk) != 0)
        goto done;
      c.dvalue = h.a[ADVAL].data;
    }
    if (a[10] != Py_None) {
      if (!p.sinks) {
        PyErr_Format(PyExc_ValueError, "attn: dsinks needs sinks");
        goto done;
      }
      arr *ds = &h.a[ADSINKS];
      if (arr_get(a[10], "dsinks", 1, ds) != 0) {
        arr_release(ds);
        goto done;
      }
      h.got[ADSINKS] = 1;
      if (vec_check(ds, "dsinks", DT_F32, pl->heads_q, "[heads]"))
        goto done;
      p.dsinks = ds->data;
    }
  }
  if (read_activations(&h, a[kind == 0 ? 6 : 9], &c) != 0)
    goto done;
  const int excl = kind == 1 || !c.activations;
  if (layer_acquire(pl, excl) != 0)
    goto done;
  lcall_fn fn = kind == 0 ? attn_py_ll.forward : attn_py_ll.backward;
  Py_BEGIN_ALLOW_THREADS;
  s = fn(pl->L, NULL, &c, sizeof c);
  Py_END_ALLOW_THREADS;
  layer_release(pl, excl);
  if (s != ATTN_OK)
    raise_status(s, msg);
  else
    result = Py_NewRef(Py_None);
done:
  held_release(&h);
  return result;
}

/* ------------------------------------------------------------------------ */
/* Decoding through an attn.KVCache                                         */
/* ------------------------------------------------------------------------ */
/* cache tuple (_cache.KVCache._desc): (dtype, num_seqs, heads_kv, head_dim,
 * head_dim_v, capacity, k, v, seq_lens, page_size, num_pages,
 * blocks_per_seq, block_table) */
enum { KC_COUNT = 13 };

typedef struct cache_held {
  Py_buffer k, v;
  arr lens, table;
  int got_k, got_v, got_lens, got_table;
} cache_held;

static void cache_release(cache_held *ch) {
  if (ch->got_k)
    PyBuffer_Release(&ch->k);
  if (ch->got_v)
    PyBuffer_Release(&ch->v);
  if (ch->got_lens)
    arr_release(&ch->lens);
  if (ch->got_table)
    arr_release(&ch->table);
}

static int read_cache(PyObject *t, attn_kv_cache *c, cache_held *ch) {
  if (!PyTuple_Check(t) || PyTuple_GET_SIZE(t) != KC_COUNT) {
    PyErr_Format(PyExc_TypeError, "attn: cache: a 13-tuple");
    return -1;
  }
  memset(c, 0, sizeof *c);
  lib.cache_init(c, sizeof *c);
  c->dtype = (attn_dtype)PyLong_AsLong(PyTuple_GET_ITEM(t, 0));
  int64_t *f[] = {&c->num_seqs, &c->heads_kv, &c->head_dim, &c->head_dim_v,
                  &c->capacity};
  for (int i = 0; i < 5; ++i)
    *f[i] = PyLong_AsLongLong(PyTuple_GET_ITEM(t, 1 + i));
  c->page_size = PyLong_AsLongLong(PyTuple_GET_ITEM(t, 9));
  c->num_pages = PyLong_AsLongLong(PyTuple_GET_ITEM(t, 10));
  c->blocks_per_seq = PyLong_AsLongLong(PyTuple_GET_ITEM(t, 11));
  if (PyErr_Occurred())
    return -1;
  const int flags = PyBUF_WRITABLE | PyBUF_C_CONTIGUOUS;
  Py_buffer *bufs[2] = {&ch->k, &ch->v};
  int *got[2] = {&ch->got_k, &ch->got_v};
  for (int i = 0; i < 2; ++i) {
    if (PyObject_GetBuffer(PyTuple_GET_ITEM(t, 6 + i), bufs[i], flags) != 0) {
      PyErr_Clear();
      PyErr_Format(PyExc_TypeError, "attn: the cache storage must be "
                                    "writable C-contiguous buffers");
      return -1;
    }
    *got[i] = 1;
  }
  c->k = ch->k.buf;
  c->v = ch->v.buf;
  if (arr_get(PyTuple_GET_ITEM(t, 8), "seq_lens", 1, &ch->lens) != 0) {
    arr_release(&ch->lens);
    return -1;
  }
  ch->got_lens = 1;
  if (vec_check(&ch->lens, "seq_lens", DT_I32, c->num_seqs, "[num_seqs]"))
    return -1;
  c->seq_lens = ch->lens.data;
  PyObject *bt = PyTuple_GET_ITEM(t, 12);
  if (bt != Py_None) {
    if (arr_get(bt, "block_table", 0, &ch->table) != 0) {
      arr_release(&ch->table);
      return -1;
    }
    ch->got_table = 1;
    if (vec_check(&ch->table, "block_table", DT_I32,
                  c->num_seqs * c->blocks_per_seq,
                  "[num_seqs, blocks_per_seq]"))
      return -1;
    c->block_table = ch->table.data;
  }
  return 0;
}

/* decode(cap, cache, x, out, options)
 * decode_workspace(cap, cache, x, options) -> bytes */
PyObject *layer_op_decode(pylayer *pl, int sizes, PyObject *const *a,
                          Py_ssize_t n) {
  if (n != (sizes ? 4 : 5))
    return PyErr_Format(PyExc_TypeError, "attn._attn.layer: bad arguments");
  held h;
  cache_held ch;
  memset(&h, 0, sizeof h);
  memset(&ch, 0, sizeof ch);
  PyObject *result = NULL;
  char msg[512];
  msg[0] = 0;
  attn_kv_cache kc;
  attn_layer_call c;
  memset(&c, 0, sizeof c);
  attn_py_ll.call_init(&c, sizeof c);
  attn_params p;
  int varlen = 0;
  if (read_cache(a[1], &kc, &ch) != 0)
    goto done;
  kc.error_message = msg;
  kc.error_message_size = sizeof msg;
  if (read_inputs(&h, pl, a[2], Py_None, Py_None, &c) != 0)
    goto done;
  if (read_options(a[sizes ? 3 : 4], pl, &h, &p, c.batch, &varlen) != 0)
    goto done;
  c.options = &p;
  c.options_size = sizeof p;
  c.error_message = msg;
  c.error_message_size = sizeof msg;
  attn_status s;
  if (sizes) {
    size_t bytes = 0;
    Py_BEGIN_ALLOW_THREADS;
    s = attn_py_ll.decode_ws(pl->L, NULL, &c, sizeof c, &kc, sizeof kc, &bytes);
    Py_END_ALLOW_THREADS;
    if (s != ATTN_OK)
      raise_status(s, msg);
    else
      result = PyLong_FromSize_t(bytes);
    goto done;
  }
  int64_t b = c.batch, sq = c.seq_q;
  if (operand(&h, AOUT, a[3], "out", 1, pl->d_out, &b, &sq) != 0)
    goto done;
  c.out = h.a[AOUT].data;
  if (layer_acquire(pl, 0) != 0) /* decode reads the layer only */
    goto done;
  Py_BEGIN_ALLOW_THREADS;
  s = attn_py_ll.decode(pl->L, NULL, &c, sizeof c, &kc, sizeof kc);
  Py_END_ALLOW_THREADS;
  layer_release(pl, 0);
  if (s != ATTN_OK)
    raise_status(s, msg);
  else
    result = Py_NewRef(Py_None);
done:
  held_release(&h);
  cache_release(&ch);
  return result;
}
