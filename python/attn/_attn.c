/*
 * attn/_attn.c - the CPython extension under `import attn`.
 *
 * It reads arrays without copying (the buffer protocol for numpy, the
 * tensor attributes data_ptr / stride / shape / dtype for PyTorch, and
 * __dlpack__ for anything else), fills one attn_params and calls
 * attn_forward_sized / attn_backward_sized (or attn_merge_sized) with the
 * GIL released. The library is not linked: load(path) dlopens libattn.so.0
 * once and looks up the _sized entry points, so the same extension runs
 * the library of a wheel, of a build directory (ATTN_LIBRARY) or of the
 * system. The argument order of run() is fixed by python/attn/_api.py.
 *
 * Everything the C API takes as a bare pointer (lse, alibi slopes,
 * kv_lens, cu_seqlens, sinks, dsinks) is checked here for dtype,
 * contiguity and length, because the library cannot see how long the
 * caller's buffer is. The rest (shapes against each other, strides,
 * overlap, values) is the library's job and comes back as its message.
 */
#include "_attn.h" /* Python.h first, as CPython asks */
#include "_attn_args.h"

#include <dlfcn.h>
#include <stdint.h>
#include <string.h>
#include <time.h>

/* ------------------------------------------------------------------------ */
/* The library, loaded at run time                                          */
/* ------------------------------------------------------------------------ */
struct attn_py_lib lib;

static PyObject *py_load(PyObject *self, PyObject *arg) {
  (void)self;
  const char *path = PyUnicode_AsUTF8(arg);
  if (!path)
    return NULL;
  if (lib.handle) /* first load wins: one library per process */
    Py_RETURN_FALSE;
  void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
  if (!h)
    return PyErr_Format(PyExc_ImportError, "attn: cannot load %s: %s", path,
                        dlerror());
  struct {
    const char *name;
    void **slot;
  } syms[] = {
      {"attn_params_init_sized", (void **)&lib.params_init},
      {"attn_forward_sized", (void **)&lib.forward},
      {"attn_backward_sized", (void **)&lib.backward},
      {"attn_strerror", (void **)&lib.strerror_},
      {"attn_version_string", (void **)&lib.version},
      {"attn_merge_params_init_sized", (void **)&lib.merge_init},
      {"attn_merge_sized", (void **)&lib.merge},
      {"attn_merge_backward_sized", (void **)&lib.merge_backward},
  };
  for (size_t i = 0; i < sizeof syms / sizeof syms[0]; ++i) {
    void *f = dlsym(h, syms[i].name);
    if (!f) {
      dlclose(h);
      return PyErr_Format(PyExc_ImportError,
                          "attn: %s has no symbol %s (a libattn older than "
                          "0.4?)",
                          path, syms[i].name);
    }
    memcpy(syms[i].slot, &f, sizeof f);
  }
  /* optional symbols: linear attention (0.5) */
  void *f = dlsym(h, "attn_linear_params_init_sized");
  memcpy(&lib.linear_init, &f, sizeof f);
  f = dlsym(h, "attn_linear_forward_sized");
  memcpy(&lib.linear_forward, &f, sizeof f);
  f = dlsym(h, "attn_linear_backward_sized");
  memcpy(&lib.linear_backward, &f, sizeof f);
  /* and the KV cache (0.3) */
  f = dlsym(h, "attn_kv_cache_init_sized");
  memcpy(&lib.cache_init, &f, sizeof f);
  f = dlsym(h, "attn_rope_init_sized");
  memcpy(&lib.rope_init, &f, sizeof f);
  f = dlsym(h, "attn_kv_cache_append_sized");
  memcpy(&lib.cache_append, &f, sizeof f);
  f = dlsym(h, "attn_kv_cache_attend_sized");
  memcpy(&lib.cache_attend, &f, sizeof f);
  lib.handle = h;
  Py_RETURN_TRUE;
}

static PyObject *py_set_error_factory(PyObject *self, PyObject *arg) {
  (void)self;
  Py_XSETREF(lib.error_factory, Py_NewRef(arg));
  Py_RETURN_NONE;
}

static PyObject *py_version(PyObject *self, PyObject *unused) {
  (void)self;
  (void)unused;
  if (!lib.handle)
    return PyErr_Format(PyExc_RuntimeError, "attn: library not loaded");
  return PyUnicode_FromString(lib.version());
}

static PyObject *py_params_size(PyObject *self, PyObject *unused) {
  (void)self;
  (void)unused;
  return PyLong_FromSize_t(PARAMS_SIZE);
}

/* Raises the exception the Python side builds for a library status. */
void raise_status(attn_status s, const char *msg) {
  const char *text = msg && msg[0] ? msg : lib.strerror_(s);
  if (!lib.error_factory) {
    PyErr_Format(PyExc_RuntimeError, "attn: %s", text);
    return;
  }
  PyObject *exc = PyObject_CallFunction(lib.error_factory, "is", (int)s, text);
  if (exc) {
    PyErr_SetObject((PyObject *)Py_TYPE(exc), exc);
    Py_DECREF(exc);
  }
}

/* ------------------------------------------------------------------------ */
/* run(): one forward or backward call                                      */
/* ------------------------------------------------------------------------ */
/* Arguments, in order (None = absent): _attn_args.h */
static const char *const arg_names[A_COUNT] = {"mode",
                                               "layout",
                                               "q",
                                               "k",
                                               "v",
                                               "o",
                                               "lse",
                                               "bias",
                                               "mask",
                                               "alibi",
                                               "kv_lens",
                                               "cu_seqlens_q",
                                               "cu_seqlens_k",
                                               "sinks",
                                               "causal",
                                               "window_left",
                                               "window_right",
                                               "scale",
                                               "softcap",
                                               "threads",
                                               "dropout_p",
                                               "dropout_seed",
                                               "dout",
                                               "dq",
                                               "dk",
                                               "dv",
                                               "dbias",
                                               "dsinks",
                                               "sparse",
                                               "repeat"};
/* which operands are written */
static int is_output(int i, int mode) {
  if (i == A_O)
    return mode == 0;
  if (i == A_LSE)
    return mode == 0;
  return i == A_DQ || i == A_DK || i == A_DV || i == A_DBIAS || i == A_DSINKS;
}

static double now_s(int cpu) {
  struct timespec ts;
  clock_gettime(cpu ? CLOCK_THREAD_CPUTIME_ID : CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* The sparse options' tuple (global_idx, kind, L, C, block_mask, block_q,
 * block_k) into p; the arrays it reads are kept in sp (released by the
 * caller where got says so). -1 with a Python exception set. */
static int sparse_options(PyObject *t, attn_params *p, arr sp[2], int got[2]) {
  if (!PyTuple_Check(t) || PyTuple_GET_SIZE(t) != 7) {
    PyErr_Format(PyExc_TypeError, "attn: sparse options: a 7-tuple");
    return -1;
  }
  long kind = PyLong_AsLong(PyTuple_GET_ITEM(t, 1));
  long long l = PyLong_AsLongLong(PyTuple_GET_ITEM(t, 2));
  long long c = PyLong_AsLongLong(PyTuple_GET_ITEM(t, 3));
  long long bq = PyLong_AsLongLong(PyTuple_GET_ITEM(t, 5));
  long long bk = PyLong_AsLongLong(PyTuple_GET_ITEM(t, 6));
  if (PyErr_Occurred())
    return -1;
  PyObject *g = PyTuple_GET_ITEM(t, 0), *bm = PyTuple_GET_ITEM(t, 4);
  if (g != Py_None) {
    if (arr_get(g, "global_idx", 0, &sp[0]) != 0)
      return -1;
    got[0] = 1;
    int64_t n = sp[0].ndim == 1 ? sp[0].shape[0] : -1;
    if (n < 1) {
      PyErr_Format(PyExc_ValueError,
                   "attn: global_idx must be a non-empty 1-D int32 array");
      return -1;
    }
    if (vec_check(&sp[0], "global_idx", DT_I32, n, "[count]"))
      return -1;
    p->global_idx = sp[0].data;
    p->global_count = n;
  }
  p->sparse_kind = (int)kind;
  p->sparse_l = l;
  p->sparse_c = c;
  if (bm != Py_None) {
    if (arr_get(bm, "block_mask", 0, &sp[1]) != 0)
      return -1;
    got[1] = 1;
    if (bm_tensor(&sp[1], "block_mask", DT_BOOL, &p->block_mask))
      return -1;
    p->block_q = bq;
    p->block_k = bk;
  }
  return 0;
}

static PyObject *py_run(PyObject *self, PyObject *const *args,
                        Py_ssize_t nargs) {
  (void)self;
  if (!lib.handle)
    return PyErr_Format(PyExc_RuntimeError, "attn: library not loaded");
  if (nargs != A_COUNT && nargs != A_COUNT + 1) /* + extras (_attn_pos.c) */
    return PyErr_Format(PyExc_TypeError, "attn._attn.run takes %d arguments",
                        (int)A_COUNT);
  long mode = PyLong_AsLong(args[A_MODE]);
  long layout = PyLong_AsLong(args[A_LAYOUT]);
  long causal = PyLong_AsLong(args[A_CAUSAL]);
  long long wl = PyLong_AsLongLong(args[A_WL]);
  long long wr = PyLong_AsLongLong(args[A_WR]);
  double scale = PyFloat_AsDouble(args[A_SCALE]);
  double softcap = PyFloat_AsDouble(args[A_SOFTCAP]);
  long threads = PyLong_AsLong(args[A_THREADS]);
  double drop_p = PyFloat_AsDouble(args[A_DROP_P]);
  unsigned long long seed = PyLong_AsUnsignedLongLongMask(args[A_DROP_SEED]);
  long repeat = PyLong_AsLong(args[A_REPEAT]);
  if (PyErr_Occurred())
    return NULL;
  if ((mode != 0 && mode != 1) || layout < 0 || layout > 2 || threads < 0 ||
      threads > 1 << 20)
    return PyErr_Format(PyExc_ValueError, "attn: bad mode/layout/threads");

  arr a[A_COUNT];
  int got[A_COUNT] = {0};
  PyObject *made[A_COUNT] = {0}; /* outputs run() allocated (arr_make) */
  PyObject *result = NULL;
  char msg[512];
  msg[0] = 0;
  attn_params p;
  memset(&p, 0, sizeof p);
  lib.params_init(&p, PARAMS_SIZE);
  for (int i = A_Q; i <= A_DSINKS; ++i) {
    if (i >= A_CAUSAL && i <= A_DROP_SEED)
      continue;
    if (args[i] == Py_None ||
        (mode == 0 && (i == A_O || i == A_LSE) &&
         (args[i] == Py_Ellipsis || (i == A_LSE && args[i] == Py_True))))
      continue; /* absent, or allocated below */
    if (mode == 0 && i >= A_DOUT)
      continue; /* the forward ignores the backward's operands */
    if (arr_get(args[i], arg_names[i], is_output(i, (int)mode), &a[i]) != 0) {
      arr_release(&a[i]);
      goto done;
    }
    got[i] = 1;
  }
  /* o (forward) or dq, dk, dv (backward) passed as None: allocated like q
   * (o: v's last axis), k, v, C-contiguous, and returned; o passed as
   * Ellipsis (attn.torch, layout bhsd): axes 1 and 2 swapped in memory, so
   * that the usual out.transpose(1, 2) is contiguous, as PyTorch's CPU
   * kernels do */
  for (int i = mode ? A_DQ : A_O; i <= (mode ? A_DV : A_O); ++i) {
    int src = mode ? A_Q + (i - A_DQ) : A_Q, nd = a[src].ndim;
    int swap = i == A_O && args[i] == Py_Ellipsis;
    if ((args[i] != Py_None && !swap) || !got[src] || !got[A_V])
      continue;
    int64_t sh[MAXDIM];
    memcpy(sh, a[src].shape, sizeof sh);
    if (nd == 0) /* not attention's operand: q's own check says so */
      sh[nd++] = 1;
    else if (mode == 0 && a[A_V].ndim > 0)
      sh[nd - 1] = a[A_V].shape[a[A_V].ndim - 1];
    if (arr_make(args[src], nd, sh, a[src].dtype,
                 swap && layout == 1 ? MAKE_SWAP12 : MAKE_LIKE, arg_names[i],
                 &made[i], &a[i]))
      goto done;
    got[i] = 1;
  }
  if (!got[A_Q] || !got[A_K] || !got[A_V] || !got[A_O]) {
    PyErr_Format(PyExc_ValueError, "attn: q, k, v and o are required");
    goto done;
  }
  if (qkv_tensor(&a[A_Q], "q", (int)layout, &p.q) ||
      qkv_tensor(&a[A_K], "k", (int)layout, &p.k) ||
      qkv_tensor(&a[A_V], "v", (int)layout, &p.v) ||
      qkv_tensor(&a[A_O], "o", (int)layout, &p.o))
    goto done;
  int64_t hq = p.q.shape[2];
  int64_t batch = p.q.shape[0];
  int64_t seq_q = p.q.shape[1];
  int varlen = got[A_CU_Q] || got[A_CU_K];
  if (varlen) {
    if (!got[A_CU_Q] || !got[A_CU_K]) {
      PyErr_Format(PyExc_ValueError,
                   "attn: cu_seqlens_q and cu_seqlens_k go together");
      goto done;
    }
    int64_t nq = a[A_CU_Q].ndim == 1 ? a[A_CU_Q].shape[0] : -1;
    if (nq < 2) {
      PyErr_Format(PyExc_ValueError,
                   "attn: cu_seqlens_q must be 1-D with at least 2 entries "
                   "[batch + 1]");
      goto done;
    }
    if (vec_check(&a[A_CU_Q], "cu_seqlens_q", DT_I32, nq, "batch + 1") ||
        vec_check(&a[A_CU_K], "cu_seqlens_k", DT_I32, nq,
                  "the length of cu_seqlens_q"))
      goto done;
    if (batch != 1) {
      PyErr_Format(PyExc_ValueError,
                   "attn: with cu_seqlens the batch axis of q must be 1 (or "
                   "use layout 'thd'), got %lld",
                   (long long)batch);
      goto done;
    }
    p.cu_seqlens_q = a[A_CU_Q].data;
    p.cu_seqlens_k = a[A_CU_K].data;
    p.varlen_batch = nq - 1;
    batch = nq - 1;
  }
  if (mode == 0 && (args[A_LSE] == Py_True || args[A_LSE] == Py_Ellipsis)) {
    /* return_lse: allocated, [heads_q, total_q] when varlen; Ellipsis: a
     * numpy array whatever q is (attn.torch keeps it for the backward) */
    int64_t sh[3] = {batch, hq, seq_q};
    if (arr_make(args[A_Q], 3 - varlen, sh + varlen, DT_F32,
                 args[A_LSE] == Py_Ellipsis ? MAKE_NUMPY : MAKE_LIKE, "lse",
                 &made[A_LSE], &a[A_LSE]))
      goto done;
    got[A_LSE] = 1;
  }
  if (got[A_LSE]) {
    if (vec_check(&a[A_LSE], "lse", DT_F32,
                  varlen ? hq * seq_q : batch * hq * seq_q,
                  varlen ? "[heads_q, total_q]" : "[batch, heads_q, seq_q]"))
      goto done;
    p.lse = a[A_LSE].data;
  }
  if (got[A_ALIBI]) {
    if (vec_check(&a[A_ALIBI], "alibi_slopes", DT_F32, hq, "[heads_q]"))
      goto done;
    p.alibi_slopes = a[A_ALIBI].data;
  }
  if (got[A_KV_LENS]) {
    if (vec_check(&a[A_KV_LENS], "kv_lens", DT_I32, batch, "[batch]"))
      goto done;
    p.kv_lens = a[A_KV_LENS].data;
  }
  if (got[A_SINKS]) {
    if (vec_check(&a[A_SINKS], "sinks", DT_F32, hq, "[heads_q]"))
      goto done;
    p.sinks = a[A_SINKS].data;
  }
  if (got[A_BIAS] && bm_tensor(&a[A_BIAS], "bias", DT_F32, &p.bias))
    goto done;
  if (got[A_MASK] && bm_tensor(&a[A_MASK], "mask", DT_BOOL, &p.mask))
    goto done;
  p.causal = (attn_causal)causal;
  p.window_left = wl;
  p.window_right = wr;
  p.scale = (float)scale;
  p.softcap = (float)softcap;
  p.num_threads = (int)threads;
  p.dropout_p = (float)drop_p;
  p.dropout_seed = seed;
  p.error_message = msg;
  p.error_message_size = sizeof msg;
  if (mode == 1) {
    if (!got[A_DOUT] || !got[A_DQ] || !got[A_DK] || !got[A_DV] || !got[A_LSE]) {
      PyErr_Format(PyExc_ValueError,
                   "attn: the backward needs dout, dq, dk, dv and lse");
      goto done;
    }
    if (qkv_tensor(&a[A_DOUT], "dout", (int)layout, &p.dout) ||
        qkv_tensor(&a[A_DQ], "dq", (int)layout, &p.dq) ||
        qkv_tensor(&a[A_DK], "dk", (int)layout, &p.dk) ||
        qkv_tensor(&a[A_DV], "dv", (int)layout, &p.dv))
      goto done;
    if (got[A_DBIAS]) {
      if (!got[A_BIAS]) {
        PyErr_Format(PyExc_ValueError, "attn: dbias needs bias");
        goto done;
      }
      if (a[A_DBIAS].ndim != a[A_BIAS].ndim) {
        PyErr_Format(PyExc_ValueError,
                     "attn: dbias must have exactly bias's shape");
        goto done;
      }
      if (bm_tensor(&a[A_DBIAS], "dbias", DT_F32, &p.dbias))
        goto done;
    }
    if (got[A_DSINKS]) {
      if (vec_check(&a[A_DSINKS], "dsinks", DT_F32, hq, "[heads_q]"))
        goto done;
      p.dsinks = a[A_DSINKS].data;
    }
  }

  size_t psize = PARAMS_SIZE;
  arr sp[2]; /* global_idx, block_mask */
  int sp_got[2] = {0, 0};
  if (args[A_SPARSE] != Py_None) {
    if (sparse_options(args[A_SPARSE], &p, sp, sp_got) != 0)
      goto done_sparse;
    psize = PARAMS_SIZE_SPARSE;
  }
  pos_extra ex; /* positions, T5 bias, compiled masks, quantised K/V */
  int ex_rc = pos_extra_apply(nargs > A_COUNT ? args[A_COUNT] : Py_None,
                              (int)mode, (int)layout, &p, psize, &ex);
  if (ex_rc != 0) { /* 1: a mask was compiled, no call */
    result = ex_rc > 0 ? Py_NewRef(Py_None) : NULL;
    goto done_extra;
  }

  attn_status s = ATTN_OK;
  double t0 = 0, t1 = 0;
  call_fn fn = mode == 0 ? lib.forward : lib.backward;
  Py_BEGIN_ALLOW_THREADS;
  if (repeat != 0) { /* timing: < 0 counts this thread's CPU time */
    long n = repeat < 0 ? -repeat : repeat;
    s = fn(NULL, &p, psize); /* warm up */
    t0 = now_s(repeat < 0);
    for (long r = 0; r < n && s == ATTN_OK; ++r)
      s = fn(NULL, &p, psize);
    t1 = now_s(repeat < 0);
  } else {
    s = fn(NULL, &p, psize);
  }
  Py_END_ALLOW_THREADS;
  if (s != ATTN_OK) {
    raise_status(s, msg);
    goto done_extra;
  }
  if (repeat != 0)
    result =
        PyFloat_FromDouble((t1 - t0) / (double)(repeat < 0 ? -repeat : repeat));
  else if (mode == 0) /* (o, lse or None), given or allocated */
    result = PyTuple_Pack(2, made[A_O] ? made[A_O] : args[A_O],
                          made[A_LSE] ? made[A_LSE] : args[A_LSE]);
  else /* (dq, dk, dv) */
    result = PyTuple_Pack(3, made[A_DQ] ? made[A_DQ] : args[A_DQ],
                          made[A_DK] ? made[A_DK] : args[A_DK],
                          made[A_DV] ? made[A_DV] : args[A_DV]);
done_extra:
  pos_extra_release(&ex);
done_sparse:
  for (int i = 0; i < 2; ++i)
    if (sp_got[i])
      arr_release(&sp[i]);
done:
  for (int i = 0; i < A_COUNT; ++i) {
    if (got[i])
      arr_release(&a[i]);
    Py_XDECREF(made[i]);
  }
  return result;
}

/* ------------------------------------------------------------------------ */
/* merge(o_parts, lse_parts, o, lse, sinks, threads)                        */
/* merge_backward(o_parts, lse_parts, o, lse, sinks, threads, dout, dlse,   */
/*                do_parts, dlse_parts, dsinks)                             */
/* ------------------------------------------------------------------------ */
#define MAX_PARTS 64

static PyObject *merge_impl(PyObject *const *args, Py_ssize_t nargs,
                            int backward) {
  if (!lib.handle)
    return PyErr_Format(PyExc_RuntimeError, "attn: library not loaded");
  if (nargs != (backward ? 11 : 6))
    return PyErr_Format(PyExc_TypeError, "attn._attn.merge: bad arguments");
  PyObject *op = PySequence_Fast(args[0], "o_parts must be a sequence");
  if (!op)
    return NULL;
  PyObject *lp = PySequence_Fast(args[1], "lse_parts must be a sequence");
  if (!lp) {
    Py_DECREF(op);
    return NULL;
  }
  PyObject *dop = NULL, *dlp = NULL, *result = NULL;
  Py_ssize_t n = PySequence_Fast_GET_SIZE(op);
  arr *parts = NULL; /* o, lse, do, dlse of each part */
  int *got = NULL;
  arr one[5]; /* o, lse, sinks, dout, dlse(in), dsinks */
  int got1[6] = {0};
  arr dsink;
  attn_tensor tparts[MAX_PARTS], dtparts[MAX_PARTS];
  const float *lptr[MAX_PARTS];
  float *dlptr[MAX_PARTS];
  char msg[512];
  msg[0] = 0;
  if (n < 1 || n > MAX_PARTS || PySequence_Fast_GET_SIZE(lp) != n) {
    PyErr_Format(PyExc_ValueError,
                 "attn: merge needs 1 to %d parts and as many LSEs as outputs",
                 MAX_PARTS);
    goto done;
  }
  if (backward) {
    dop = PySequence_Fast(args[8], "do_parts must be a sequence");
    if (!dop)
      goto done;
    if (PySequence_Fast_GET_SIZE(dop) != n) {
      PyErr_Format(PyExc_ValueError, "attn: do_parts must have %zd entries", n);
      goto done;
    }
    if (args[9] != Py_None) {
      dlp = PySequence_Fast(args[9], "dlse_parts must be a sequence");
      if (!dlp)
        goto done;
      if (PySequence_Fast_GET_SIZE(dlp) != n) {
        PyErr_Format(PyExc_ValueError, "attn: dlse_parts must have %zd entries",
                     n);
        goto done;
      }
    }
  }
  parts = PyMem_Calloc((size_t)n * 4, sizeof *parts);
  got = PyMem_Calloc((size_t)n * 4, sizeof *got);
  if (!parts || !got) {
    PyErr_NoMemory();
    goto done;
  }
  long threads = PyLong_AsLong(args[5]);
  if (threads == -1 && PyErr_Occurred())
    goto done;
  /* o (out forward, in backward) and lse */
  if (arr_get(args[2], "o", !backward, &one[0]))
    goto done;
  got1[0] = 1;
  attn_merge_params m;
  memset(&m, 0, sizeof m);
  lib.merge_init(&m, MERGE_SIZE);
  if (qkv_tensor(&one[0], "o", LAYOUT_BSHD, &m.o))
    goto done;
  int64_t b = one[0].shape[0], s = one[0].shape[1], h = one[0].shape[2];
  int64_t nlse = b * h * s;
  if (args[3] != Py_None) {
    if (arr_get(args[3], "lse", !backward, &one[1]))
      goto done;
    got1[1] = 1;
    if (vec_check(&one[1], "lse", DT_F32, nlse, "[batch, heads, seq_q]"))
      goto done;
    m.lse = one[1].data;
  }
  if (args[4] != Py_None) {
    if (arr_get(args[4], "sinks", 0, &one[2]))
      goto done;
    got1[2] = 1;
    if (vec_check(&one[2], "sinks", DT_F32, h, "[heads]"))
      goto done;
    m.sinks = one[2].data;
  }
  for (Py_ssize_t c = 0; c < n; ++c) {
    arr *pa = &parts[4 * c];
    if (arr_get(PySequence_Fast_GET_ITEM(op, c), "o_parts[i]", 0, &pa[0]))
      goto done;
    got[4 * c] = 1;
    if (qkv_tensor(&pa[0], "o_parts[i]", LAYOUT_BSHD, &tparts[c]))
      goto done;
    if (arr_get(PySequence_Fast_GET_ITEM(lp, c), "lse_parts[i]", 0, &pa[1]))
      goto done;
    got[4 * c + 1] = 1;
    if (vec_check(&pa[1], "lse_parts[i]", DT_F32, nlse,
                  "[batch, heads, seq_q]"))
      goto done;
    lptr[c] = pa[1].data;
    if (backward) {
      if (arr_get(PySequence_Fast_GET_ITEM(dop, c), "do_parts[i]", 1, &pa[2]))
        goto done;
      got[4 * c + 2] = 1;
      if (qkv_tensor(&pa[2], "do_parts[i]", LAYOUT_BSHD, &dtparts[c]))
        goto done;
      if (dlp) {
        if (arr_get(PySequence_Fast_GET_ITEM(dlp, c), "dlse_parts[i]", 1,
                    &pa[3]))
          goto done;
        got[4 * c + 3] = 1;
        if (vec_check(&pa[3], "dlse_parts[i]", DT_F32, nlse,
                      "[batch, heads, seq_q]"))
          goto done;
        dlptr[c] = pa[3].data;
      }
    }
  }
  m.n_parts = n;
  m.o_parts = tparts;
  m.lse_parts = lptr;
  m.num_threads = (int)threads;
  m.error_message = msg;
  m.error_message_size = sizeof msg;
  if (backward) {
    if (arr_get(args[6], "dout", 0, &one[3]))
      goto done;
    got1[3] = 1;
    if (qkv_tensor(&one[3], "dout", LAYOUT_BSHD, &m.dout))
      goto done;
    if (args[7] != Py_None) {
      if (arr_get(args[7], "dlse", 0, &one[4]))
        goto done;
      got1[4] = 1;
      if (vec_check(&one[4], "dlse", DT_F32, nlse, "[batch, heads, seq_q]"))
        goto done;
      m.dlse = one[4].data;
    }
    m.do_parts = dtparts;
    m.dlse_parts = dlp ? dlptr : NULL;
    if (args[10] != Py_None) {
      if (arr_get(args[10], "dsinks", 1, &dsink))
        goto done;
      got1[5] = 1;
      if (vec_check(&dsink, "dsinks", DT_F32, h, "[heads]"))
        goto done;
      m.dsinks = dsink.data;
    }
  }
  attn_status st;
  merge_fn fn = backward ? lib.merge_backward : lib.merge;
  Py_BEGIN_ALLOW_THREADS;
  st = fn(NULL, &m, MERGE_SIZE);
  Py_END_ALLOW_THREADS;
  if (st != ATTN_OK)
    raise_status(st, msg);
  else
    result = Py_NewRef(Py_None);
done:
  if (parts)
    for (Py_ssize_t i = 0; i < n * 4; ++i)
      if (got[i])
        arr_release(&parts[i]);
  for (int i = 0; i < 5; ++i)
    if (got1[i])
      arr_release(&one[i]);
  if (got1[5])
    arr_release(&dsink);
  PyMem_Free(parts);
  PyMem_Free(got);
  Py_XDECREF(dop);
  Py_XDECREF(dlp);
  Py_DECREF(op);
  Py_DECREF(lp);
  return result;
}

static PyObject *py_merge(PyObject *self, PyObject *const *args,
                          Py_ssize_t nargs) {
  (void)self;
  return merge_impl(args, nargs, 0);
}

static PyObject *py_merge_backward(PyObject *self, PyObject *const *args,
                                   Py_ssize_t nargs) {
  (void)self;
  return merge_impl(args, nargs, 1);
}

/* info(x) -> (data pointer, dtype name, shape, strides): what run() sees. */
static PyObject *py_info(PyObject *self, PyObject *obj) {
  (void)self;
  arr a;
  if (arr_get(obj, "x", 0, &a)) {
    arr_release(&a);
    return NULL;
  }
  PyObject *shape = PyTuple_New(a.ndim), *stride = PyTuple_New(a.ndim);
  for (int d = 0; shape && stride && d < a.ndim; ++d) {
    PyTuple_SET_ITEM(shape, d, PyLong_FromLongLong(a.shape[d]));
    PyTuple_SET_ITEM(stride, d, PyLong_FromLongLong(a.stride[d]));
  }
  PyObject *r = shape && stride
                    ? Py_BuildValue("(NsNN)", PyLong_FromVoidPtr(a.data),
                                    dt_names[a.dtype], shape, stride)
                    : NULL;
  arr_release(&a);
  return r;
}

/* attn._attn.layer (_attn_layer.c): the multi-head attention layer */
PyObject *py_layer(PyObject *self, PyObject *const *args, Py_ssize_t nargs);

/* set_torch_empty(capsule): attn._attn_torch's allocator for the outputs
 * of torch calls (None: back to torch.empty). */
static PyObject *py_set_torch_empty(PyObject *self, PyObject *cap) {
  (void)self;
  if (cap == Py_None) {
    lib.torch_make = NULL;
    Py_RETURN_NONE;
  }
  void *p = PyCapsule_GetPointer(cap, "attn._attn_torch.empty");
  if (!p)
    return NULL;
  memcpy(&lib.torch_make, p, sizeof lib.torch_make);
  Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"load", py_load, METH_O, "load(path): dlopen libattn once"},
    {"set_error_factory", py_set_error_factory, METH_O,
     "set_error_factory(f): f(status, message) builds the exception"},
    {"version", py_version, METH_NOARGS, "the loaded library's version"},
    {"set_torch_empty", py_set_torch_empty, METH_O,
     "set_torch_empty(capsule or None): the allocator of attn._attn_torch"},
    {"params_size", py_params_size, METH_NOARGS,
     "the attn_params size this extension passes (0.4's)"},
    {"run", (PyCFunction)(void (*)(void))py_run, METH_FASTCALL,
     "one attn_forward (mode 0) or attn_backward (mode 1) call"},
    {"merge", (PyCFunction)(void (*)(void))py_merge, METH_FASTCALL,
     "attn_merge"},
    {"cache", (PyCFunction)(void (*)(void))py_cache, METH_FASTCALL,
     "attn_kv_cache_append (mode 0) or attn_kv_cache_attend (1)"},
    {"linear", (PyCFunction)(void (*)(void))py_linear, METH_FASTCALL,
     "one attn_linear_forward (mode 0) or attn_linear_backward (1) call"},
    {"merge_backward", (PyCFunction)(void (*)(void))py_merge_backward,
     METH_FASTCALL, "attn_merge_backward"},
    {"pos", (PyCFunction)(void (*)(void))py_pos, METH_FASTCALL,
     "positions, quantised rows, compiled masks (_attn_pos.c)"},
    {"layer", (PyCFunction)(void (*)(void))py_layer, METH_FASTCALL,
     "the multi-head attention layer, libattn_layer (_attn_layer.c)"},
    {"info", py_info, METH_O,
     "info(x) -> (data pointer, dtype, shape, strides in elements)"},
    {NULL, NULL, 0, NULL}};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT,
                                    "_attn",
                                    "libattn's CPython binding (internal)",
                                    -1,
                                    methods,
                                    NULL,
                                    NULL,
                                    NULL,
                                    NULL};

PyMODINIT_FUNC PyInit__attn(void);
PyMODINIT_FUNC PyInit__attn(void) {
  struct {
    PyObject **slot;
    const char *name;
  } names[] = {{&lib.s_is_cpu, "is_cpu"}, {&lib.s_layout, "layout"},
               {&lib.s_dtype, "dtype"},   {&lib.s_shape, "shape"},
               {&lib.s_stride, "stride"}, {&lib.s_data_ptr, "data_ptr"},
               {&lib.s_device, "device"}, {&lib.s_dlpack, "__dlpack__"}};
  for (size_t i = 0; i < sizeof names / sizeof names[0]; ++i)
    if (!*names[i].slot &&
        !(*names[i].slot = PyUnicode_InternFromString(names[i].name)))
      return NULL;
  return PyModule_Create(&module);
}
