/*
 * _attn_linear.c - linear attention (attn/linear.h) for the Python
 * package: one forward or backward call of attn_linear_*_sized. The
 * symbols are optional (a library before 0.5 lacks them): the call then
 * raises, the rest of the package works.
 */
#include "_attn.h"

/* linear(mode, q, k, v, o, causal, threads, dout, dq, dk, dv) */
PyObject *py_linear(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
  (void)self;
  enum {
    L_MODE,
    L_Q,
    L_K,
    L_V,
    L_O,
    L_CAUSAL,
    L_THREADS,
    L_DOUT,
    L_DQ,
    L_DK,
    L_DV,
    L_COUNT
  };
  static const char *const names[L_COUNT] = {
      "mode",    "q",    "k",  "v",  "o", "causal",
      "threads", "dout", "dq", "dk", "dv"};
  if (!lib.handle)
    return PyErr_Format(PyExc_RuntimeError, "attn: library not loaded");
  if (!lib.linear_init || !lib.linear_forward || !lib.linear_backward)
    return PyErr_Format(PyExc_RuntimeError,
                        "attn: the loaded libattn (%s) has no linear "
                        "attention (0.5 or later needed)",
                        lib.version());
  if (nargs != L_COUNT)
    return PyErr_Format(PyExc_TypeError, "attn._attn.linear takes %d arguments",
                        (int)L_COUNT);
  long mode = PyLong_AsLong(args[L_MODE]);
  long causal = PyLong_AsLong(args[L_CAUSAL]);
  long threads = PyLong_AsLong(args[L_THREADS]);
  if (PyErr_Occurred())
    return NULL;
  if ((mode != 0 && mode != 1) || causal < 0 || causal > 2 || threads < 0 ||
      threads > 1 << 20)
    return PyErr_Format(PyExc_ValueError, "attn: bad mode/causal/threads");
  arr a[L_COUNT];
  int got[L_COUNT] = {0};
  PyObject *result = NULL;
  char msg[512];
  msg[0] = 0;
  attn_linear_params p;
  memset(&p, 0, sizeof p);
  lib.linear_init(&p, sizeof p);
  for (int i = L_Q; i < L_COUNT; ++i) {
    if (i == L_CAUSAL || i == L_THREADS || args[i] == Py_None)
      continue;
    if (mode == 0 && i >= L_DOUT)
      continue;
    const int out = (mode == 0 && i == L_O) || i >= L_DQ;
    if (arr_get(args[i], names[i], out, &a[i]) != 0)
      goto done;
    got[i] = 1;
  }
  if (!got[L_Q] || !got[L_K] || !got[L_V] || (mode == 0 && !got[L_O]) ||
      (mode == 1 && (!got[L_DOUT] || !got[L_DQ] || !got[L_DK] || !got[L_DV]))) {
    PyErr_Format(PyExc_ValueError, mode == 0
                                       ? "attn: q, k, v and o are required"
                                       : "attn: the backward needs q, k, v, "
                                         "dout, dq, dk and dv");
    goto done;
  }
  if (qkv_tensor(&a[L_Q], "q", 0, &p.q) || qkv_tensor(&a[L_K], "k", 0, &p.k) ||
      qkv_tensor(&a[L_V], "v", 0, &p.v))
    goto done;
  if (got[L_O] && qkv_tensor(&a[L_O], "o", 0, &p.o))
    goto done;
  if (mode == 1 && (qkv_tensor(&a[L_DOUT], "dout", 0, &p.dout) ||
                    qkv_tensor(&a[L_DQ], "dq", 0, &p.dq) ||
                    qkv_tensor(&a[L_DK], "dk", 0, &p.dk) ||
                    qkv_tensor(&a[L_DV], "dv", 0, &p.dv)))
    goto done;
  p.causal = (attn_causal)causal;
  p.num_threads = (int)threads;
  p.error_message = msg;
  p.error_message_size = sizeof msg;
  attn_status s;
  linear_fn fn = mode == 0 ? lib.linear_forward : lib.linear_backward;
  Py_BEGIN_ALLOW_THREADS;
  s = fn(NULL, &p, sizeof p);
  Py_END_ALLOW_THREADS;
  if (s != ATTN_OK) {
    raise_status(s, msg);
    goto done;
  }
  result = Py_NewRef(Py_None);
done:
  for (int i = 0; i < L_COUNT; ++i)
    if (got[i])
      arr_release(&a[i]);
  return result;
}
