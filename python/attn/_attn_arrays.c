/*
 * attn/_attn_arrays.c - arrays read in place: the buffer protocol for
 * numpy, the tensor attributes data_ptr / stride / shape / dtype for
 * PyTorch, __dlpack__ for anything else; and their attn_tensor views.
 */
#include "_attn.h"

#include <string.h>

/* ------------------------------------------------------------------------ */
/* Arrays                                                                   */
/* ------------------------------------------------------------------------ */
const char *const dt_names[] = {"float32", "bfloat16", "float16",
                                "bool",    "int32",    "unsupported"};

void arr_release(arr *a) {
  if (a->has_view) {
    PyBuffer_Release(&a->view);
    a->has_view = 0;
  }
  Py_CLEAR(a->capsule);
}

/* DLPack (v0.x unversioned capsules), the part a consumer reads. */
typedef struct {
  int32_t device_type;
  int32_t device_id;
} dl_device;
typedef struct {
  uint8_t code;
  uint8_t bits;
  uint16_t lanes;
} dl_dtype;
typedef struct {
  void *data;
  dl_device device;
  int32_t ndim;
  dl_dtype dtype;
  int64_t *shape;
  int64_t *strides;
  uint64_t byte_offset;
} dl_tensor;
typedef struct dl_managed {
  dl_tensor dl_tensor;
  void *manager_ctx;
  void (*deleter)(struct dl_managed *);
} dl_managed;

static int from_buffer(PyObject *obj, const char *name, int writable, arr *a) {
  int flags = PyBUF_RECORDS_RO | (writable ? PyBUF_WRITABLE : 0);
  if (PyObject_GetBuffer(obj, &a->view, flags) != 0) {
    if (writable) {
      PyErr_Clear();
      if (PyObject_GetBuffer(obj, &a->view, PyBUF_RECORDS_RO) == 0) {
        PyBuffer_Release(&a->view);
        PyErr_Format(PyExc_ValueError, "attn: %s is read-only", name);
        return -1;
      }
    }
    PyErr_Clear();
    PyErr_Format(PyExc_TypeError,
                 "attn: %s: cannot read this array's buffer (%s)", name,
                 Py_TYPE(obj)->tp_name);
    return -1;
  }
  a->has_view = 1;
  const char *f = a->view.format ? a->view.format : "B";
  int swapped = 0;
  if (*f == '<' || *f == '=' || *f == '@')
    ++f;
  else if (*f == '>' || *f == '!') {
    swapped = 1;
    ++f;
  }
  Py_ssize_t isz = a->view.itemsize;
  a->dtype = DT_OTHER;
  if (f[0] && !f[1]) {
    if (*f == 'f' && isz == 4)
      a->dtype = DT_F32;
    else if (*f == 'e' && isz == 2)
      a->dtype = DT_F16;
    else if (*f == '?' && isz == 1)
      a->dtype = DT_BOOL;
    else if ((*f == 'i' || *f == 'l') && isz == 4)
      a->dtype = DT_I32;
  }
  if (swapped && isz > 1)
    a->dtype = DT_OTHER;
  if (a->dtype == DT_OTHER) {
    PyErr_Format(PyExc_TypeError,
                 "attn: %s has element format '%s' (%zd bytes): expected "
                 "float32, float16, bfloat16 (torch), bool or int32 in "
                 "native byte order",
                 name, a->view.format ? a->view.format : "B", isz);
    return -1;
  }
  if (a->view.ndim > MAXDIM) {
    PyErr_Format(PyExc_ValueError, "attn: %s has %d dimensions (at most %d)",
                 name, a->view.ndim, MAXDIM);
    return -1;
  }
  a->ndim = a->view.ndim;
  a->data = a->view.buf;
  for (int d = 0; d < a->ndim; ++d) {
    Py_ssize_t st = a->view.strides ? a->view.strides[d] : 0;
    if (st % isz != 0) {
      PyErr_Format(PyExc_ValueError,
                   "attn: %s: stride %zd bytes of axis %d is not a multiple "
                   "of the element size %zd",
                   name, st, d, isz);
      return -1;
    }
    a->shape[d] = a->view.shape[d];
    a->stride[d] = st / isz;
  }
  return 0;
}

static int torch_lookup(void) {
  if (lib.torch_tensor_type)
    return 0;
  PyObject *torch = PyImport_ImportModule("torch");
  if (!torch)
    return -1;
  const char *names[] = {"Tensor", "float32", "float16", "bfloat16",
                         "bool",   "int32",   "strided"};
  PyObject **slots[] = {&lib.torch_tensor_type, &lib.torch_f32,  &lib.torch_f16,
                        &lib.torch_bf16,        &lib.torch_bool, &lib.torch_i32,
                        &lib.torch_strided};
  PyObject *got[7] = {0};
  for (int i = 0; i < 7; ++i) {
    got[i] = PyObject_GetAttrString(torch, names[i]);
    if (!got[i]) {
      for (int j = 0; j < i; ++j)
        Py_DECREF(got[j]);
      Py_DECREF(torch);
      return -1;
    }
  }
  Py_DECREF(torch);
  for (int i = 0; i < 7; ++i)
    *slots[i] = got[i];
  return 0;
}

/* 1 when obj is a torch.Tensor (torch already imported), 0 if not, -1 on
 * error. */
static int is_torch(PyObject *obj) {
  if (!lib.torch_tensor_type) {
    PyObject *mods = PyImport_GetModuleDict();
    if (!PyDict_GetItemString(mods, "torch"))
      return 0;
    if (torch_lookup() != 0)
      return -1;
  }
  return PyObject_IsInstance(obj, lib.torch_tensor_type);
}

static int int_tuple(PyObject *t, const char *name, const char *what,
                     int64_t *out, int *n) {
  PyObject *seq = PySequence_Fast(t, "not a sequence");
  if (!seq) {
    PyErr_Format(PyExc_TypeError, "attn: %s: bad %s", name, what);
    return -1;
  }
  Py_ssize_t len = PySequence_Fast_GET_SIZE(seq);
  if (len > MAXDIM) {
    Py_DECREF(seq);
    PyErr_Format(PyExc_ValueError, "attn: %s has %zd dimensions (at most %d)",
                 name, len, MAXDIM);
    return -1;
  }
  for (Py_ssize_t i = 0; i < len; ++i) {
    long long v = PyLong_AsLongLong(PySequence_Fast_GET_ITEM(seq, i));
    if (v == -1 && PyErr_Occurred()) {
      Py_DECREF(seq);
      return -1;
    }
    out[i] = v;
  }
  *n = (int)len;
  Py_DECREF(seq);
  return 0;
}

static int from_torch(PyObject *obj, const char *name, arr *a) {
  PyObject *v = PyObject_GetAttr(obj, lib.s_is_cpu);
  if (!v)
    return -1;
  int cpu = PyObject_IsTrue(v);
  Py_DECREF(v);
  if (cpu != 1) {
    PyObject *dev = PyObject_GetAttr(obj, lib.s_device);
    PyErr_Format(PyExc_ValueError,
                 "attn: %s is on device %S; libattn runs on the CPU (move it "
                 "with .cpu())",
                 name, dev ? dev : Py_None);
    Py_XDECREF(dev);
    return -1;
  }
  v = PyObject_GetAttr(obj, lib.s_layout);
  if (!v)
    return -1;
  int strided = v == lib.torch_strided;
  if (!strided) {
    PyErr_Format(PyExc_ValueError,
                 "attn: %s has layout %S: only strided (dense) tensors", name,
                 v);
    Py_DECREF(v);
    return -1;
  }
  Py_DECREF(v);
  v = PyObject_GetAttr(obj, lib.s_dtype);
  if (!v)
    return -1;
  a->dtype = v == lib.torch_f32    ? DT_F32
             : v == lib.torch_f16  ? DT_F16
             : v == lib.torch_bf16 ? DT_BF16
             : v == lib.torch_bool ? DT_BOOL
             : v == lib.torch_i32  ? DT_I32
                                   : DT_OTHER;
  if (a->dtype == DT_OTHER) {
    PyErr_Format(PyExc_TypeError,
                 "attn: %s has dtype %S: expected torch.float32, "
                 "torch.float16, torch.bfloat16, torch.bool or torch.int32",
                 name, v);
    Py_DECREF(v);
    return -1;
  }
  Py_DECREF(v);
  v = PyObject_GetAttr(obj, lib.s_shape);
  if (!v)
    return -1;
  int nd = 0, ns = 0;
  int rc = int_tuple(v, name, "shape", a->shape, &nd);
  Py_DECREF(v);
  if (rc)
    return -1;
  v = PyObject_CallMethodNoArgs(obj, lib.s_stride);
  if (!v)
    return -1;
  rc = int_tuple(v, name, "stride", a->stride, &ns);
  Py_DECREF(v);
  if (rc)
    return -1;
  a->ndim = nd;
  v = PyObject_CallMethodNoArgs(obj, lib.s_data_ptr);
  if (!v)
    return -1;
  a->data = PyLong_AsVoidPtr(v);
  Py_DECREF(v);
  if (PyErr_Occurred())
    return -1;
  return 0;
}

static int from_dlpack(PyObject *obj, const char *name, arr *a) {
  PyObject *cap = PyObject_CallMethodNoArgs(obj, lib.s_dlpack);
  if (!cap)
    return -1;
  dl_managed *m = PyCapsule_GetPointer(cap, "dltensor");
  if (!m) {
    Py_DECREF(cap);
    return -1;
  }
  a->capsule = cap; /* its destructor calls the producer's deleter */
  dl_tensor *t = &m->dl_tensor;
  if (t->device.device_type != 1 /* kDLCPU */) {
    PyErr_Format(PyExc_ValueError,
                 "attn: %s is on DLPack device type %d; libattn runs on the "
                 "CPU",
                 name, (int)t->device.device_type);
    return -1;
  }
  int code = t->dtype.code, bits = t->dtype.bits;
  a->dtype = t->dtype.lanes != 1       ? DT_OTHER
             : code == 2 && bits == 32 ? DT_F32
             : code == 2 && bits == 16 ? DT_F16
             : code == 4 && bits == 16 ? DT_BF16
             : code == 6 && bits == 8  ? DT_BOOL
             : code == 0 && bits == 32 ? DT_I32
                                       : DT_OTHER;
  if (a->dtype == DT_OTHER) {
    PyErr_Format(PyExc_TypeError,
                 "attn: %s has DLPack dtype code %d, %d bits: expected "
                 "float32, float16, bfloat16, bool or int32",
                 name, code, bits);
    return -1;
  }
  if (t->ndim > MAXDIM || t->ndim < 0) {
    PyErr_Format(PyExc_ValueError, "attn: %s has %d dimensions (at most %d)",
                 name, (int)t->ndim, MAXDIM);
    return -1;
  }
  a->ndim = t->ndim;
  int64_t run = 1;
  for (int d = a->ndim - 1; d >= 0; --d) {
    a->shape[d] = t->shape[d];
    a->stride[d] = t->strides ? t->strides[d] : run;
    run *= t->shape[d];
  }
  a->data = (char *)t->data + t->byte_offset;
  return 0;
}

/* Fills a from obj (not None). writable: an output. */
int arr_get(PyObject *obj, const char *name, int writable, arr *a) {
  memset(a, 0, sizeof *a);
  if (PyObject_CheckBuffer(obj))
    return from_buffer(obj, name, writable, a);
  int t = is_torch(obj);
  if (t < 0)
    return -1;
  if (t)
    return from_torch(obj, name, a);
  if (PyObject_HasAttr(obj, lib.s_dlpack))
    return from_dlpack(obj, name, a);
  PyErr_Format(PyExc_TypeError,
               "attn: %s is a %s: expected a numpy array, a torch CPU tensor "
               "or an object with __dlpack__",
               name, Py_TYPE(obj)->tp_name);
  return -1;
}

static int want_dtype(const arr *a, const char *name, int dt) {
  if (a->dtype == dt)
    return 0;
  PyErr_Format(PyExc_TypeError, "attn: %s must be %s, not %s", name,
               dt_names[dt], dt_names[a->dtype]);
  return -1;
}

static int64_t numel(const arr *a) {
  int64_t n = 1;
  for (int d = 0; d < a->ndim; ++d)
    n *= a->shape[d];
  return n;
}

static int c_contiguous(const arr *a) {
  int64_t run = 1;
  for (int d = a->ndim - 1; d >= 0; --d) {
    if (a->shape[d] != 1 && a->stride[d] != run)
      return 0;
    run *= a->shape[d];
  }
  return 1;
}

/* A bare-pointer operand: dtype dt, C-contiguous, exactly n elements. */
int vec_check(const arr *a, const char *name, int dt, int64_t n,
              const char *what) {
  if (want_dtype(a, name, dt))
    return -1;
  if (!c_contiguous(a)) {
    PyErr_Format(PyExc_ValueError, "attn: %s must be contiguous", name);
    return -1;
  }
  if (numel(a) != n) {
    PyErr_Format(PyExc_ValueError,
                 "attn: %s has %lld elements, expected %lld (%s)", name,
                 (long long)numel(a), (long long)n, what);
    return -1;
  }
  return 0;
}

static const char *const layout_names[] = {"'bshd' [batch, seq, heads, dim]",
                                           "'bhsd' [batch, heads, seq, dim]",
                                           "'thd' [total, heads, dim]"};

static attn_dtype to_attn_dtype(int dt) {
  return dt == DT_F32    ? ATTN_DTYPE_F32
         : dt == DT_F16  ? ATTN_DTYPE_F16
         : dt == DT_BF16 ? ATTN_DTYPE_BF16
                         : ATTN_DTYPE_BOOL;
}

/* Q, K, V, O and their gradients: the logical [b, s, h, d] view. */
int qkv_tensor(const arr *a, const char *name, int layout, attn_tensor *t) {
  if (a->dtype != DT_F32 && a->dtype != DT_F16 && a->dtype != DT_BF16) {
    PyErr_Format(PyExc_TypeError,
                 "attn: %s must be float32, float16 or bfloat16, not %s", name,
                 dt_names[a->dtype]);
    return -1;
  }
  int want = layout == LAYOUT_THD ? 3 : 4;
  if (a->ndim != want) {
    PyErr_Format(PyExc_ValueError,
                 "attn: %s must be %d-D for layout %s, got %d-D", name, want,
                 layout_names[layout], a->ndim);
    return -1;
  }
  static const int perm[3][4] = {{0, 1, 2, 3}, {0, 2, 1, 3}, {-1, 0, 1, 2}};
  t->data = a->data;
  t->dtype = to_attn_dtype(a->dtype);
  for (int d = 0; d < 4; ++d) {
    int s = perm[layout][d];
    t->shape[d] = s < 0 ? 1 : a->shape[s];
    t->stride[d] = s < 0 ? 0 : a->stride[s];
  }
  return 0;
}

/* Bias, mask, dbias: [b, hq, sq, sk] with 1 to 4 axes (missing leading
 * axes broadcast). */
int bm_tensor(const arr *a, const char *name, int dt, attn_tensor *t) {
  if (want_dtype(a, name, dt))
    return -1;
  if (a->ndim < 1 || a->ndim > 4) {
    PyErr_Format(PyExc_ValueError,
                 "attn: %s must have 1 to 4 axes [batch, heads_q, seq_q, "
                 "seq_k], got %d",
                 name, a->ndim);
    return -1;
  }
  int lead = 4 - a->ndim;
  t->data = a->data;
  t->dtype = to_attn_dtype(dt);
  for (int d = 0; d < 4; ++d) {
    t->shape[d] = d < lead ? 1 : a->shape[d - lead];
    t->stride[d] = d < lead ? 0 : a->stride[d - lead];
  }
  return 0;
}
