/*
 * _attn_torch.cpp - attn._attn_torch: attn.torch's autograd node in C++.
 *
 * attn.torch wraps libattn in a torch.autograd.Function when an input
 * needs a gradient. In Python that costs about 5 us a call (the Function's
 * machinery, its Python forward, the saved tensors), half of a small
 * call's budget (issue 10: under 10 us above the C call). This module is
 * the same node as a torch::autograd::Function, for the calls whose
 * options are plain values: layouts bshd and bhsd; causal, window, scale
 * and softcap; no bias, mask, ALiBi, varlen, dropout or lse returned
 * (those keep the Python Function). It adds no binding of its own: both
 * passes call the CPython extension's run() (attn._attn.run), so every
 * check, message and exception is the extension's, and the results are
 * bitwise those of the Python Function. The outputs are allocated here
 * (cheaper than from Python): o like the Python path's (for bhsd, [b, h,
 * s, dv] over [b, s, h, dv] memory), dq, dk, dv like q, k, v.
 *
 * Built only where PyTorch's headers are importable at build time
 * (python/CMakeLists.txt); attn.torch falls back to the Python Function
 * when the module is absent.
 */
#include <torch/csrc/Exceptions.h>
#include <torch/csrc/autograd/custom_function.h>
#include <torch/csrc/autograd/python_variable.h>
#include <torch/extension.h>

#include <Python.h>

#include "_attn_args.h"

namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// attn._attn.run, looked up when the module is imported (a reference held
// for the life of the process, as the extension holds its own).
PyObject *g_run = nullptr;

constexpr int kArgs = A_COUNT; // run()'s positional arguments

struct Opts {
  int64_t layout, causal, wl, wr;
  double scale, softcap;
};

// run(mode, ...) on the given tensors (undefined ones: None); throws the
// extension's Python exception as a python_error.
void run(int mode, const Opts &o, const at::Tensor *t[]) {
  PyObject *a[kArgs];
  for (int i = 0; i < kArgs; ++i)
    a[i] = nullptr;
  bool ok = (a[A_MODE] = PyLong_FromLong(mode)) &&
            (a[A_LAYOUT] = PyLong_FromLongLong(o.layout)) &&
            (a[A_CAUSAL] = PyLong_FromLongLong(o.causal)) &&
            (a[A_WL] = PyLong_FromLongLong(o.wl)) &&
            (a[A_WR] = PyLong_FromLongLong(o.wr)) &&
            (a[A_SCALE] = PyFloat_FromDouble(o.scale)) &&
            (a[A_SOFTCAP] = PyFloat_FromDouble(o.softcap)) &&
            (a[A_THREADS] = PyLong_FromLong(0)) &&
            (a[A_DROP_P] = PyFloat_FromDouble(0.0)) &&
            (a[A_DROP_SEED] = PyLong_FromLong(0)) &&
            (a[A_REPEAT] = PyLong_FromLong(0));
  static const int slot[] = {A_Q,    A_K,  A_V,  A_O, A_LSE,
                             A_DOUT, A_DQ, A_DK, A_DV};
  for (int i = 0; ok && i < 9; ++i)
    if (t[i] && t[i]->defined())
      ok = (a[slot[i]] = THPVariable_Wrap(*t[i])) != nullptr;
  for (int i = 0; i < kArgs; ++i)
    if (!a[i])
      a[i] = Py_NewRef(Py_None);
  PyObject *r = ok ? PyObject_Vectorcall(g_run, a, kArgs, nullptr) : nullptr;
  for (int i = 0; i < kArgs; ++i)
    Py_DECREF(a[i]);
  if (!r)
    throw py::error_already_set();
  Py_DECREF(r);
}

// The options, kept on the node as one list (one entry of saved_data, a
// hash map: fewer entries, less time).
Opts opts_of(const AutogradContext *ctx) {
  const c10::List<double> v = ctx->saved_data.at("opts").toDoubleList();
  return Opts{static_cast<int64_t>(v[0]),
              static_cast<int64_t>(v[1]),
              static_cast<int64_t>(v[2]),
              static_cast<int64_t>(v[3]),
              v[4],
              v[5]};
}

struct Attention : public torch::autograd::Function<Attention> {
  static at::Tensor forward(AutogradContext *ctx, const at::Tensor &q,
                            const at::Tensor &k, const at::Tensor &v,
                            int64_t layout, int64_t causal, int64_t wl,
                            int64_t wr, double scale, double softcap) {
    TORCH_CHECK_VALUE(
        q.dim() == 4 && v.dim() == 4 && (layout == 0 || layout == 1),
        "attn: the C++ node takes 4-D q, k, v in layout bshd or bhsd");
    const Opts o{layout, causal, wl, wr, scale, softcap};
    // bshd: q [b, s, h, d]; bhsd: q [b, h, s, d]
    const int64_t b = q.size(0), dv = v.size(3);
    const int64_t h = layout ? q.size(1) : q.size(2);
    const int64_t s = layout ? q.size(2) : q.size(1);
    at::Tensor out =
        layout ? at::empty_strided({b, h, s, dv}, {s * h * dv, dv, h * dv, 1},
                                   q.options())
               : at::empty({b, s, h, dv}, q.options());
    at::Tensor lse = at::empty({b, h, s}, q.options().dtype(at::kFloat));
    const at::Tensor *t[9] = {&q, &k, &v, &out, &lse};
    run(0, o, t);
    ctx->save_for_backward({q, k, v, out});
    ctx->saved_data["lse"] = lse;
    // small integers: exact in a double
    ctx->saved_data["opts"] = std::vector<double>{static_cast<double>(layout),
                                                  static_cast<double>(causal),
                                                  static_cast<double>(wl),
                                                  static_cast<double>(wr),
                                                  scale,
                                                  softcap};
    return out;
  }

  static variable_list backward(AutogradContext *ctx, variable_list grads) {
    const variable_list s = ctx->get_saved_variables();
    const at::Tensor &q = s[0], &k = s[1], &v = s[2], &out = s[3];
    const at::Tensor lse = ctx->saved_data.at("lse").toTensor();
    at::Tensor dout = grads[0];
    if (dout.scalar_type() != q.scalar_type())
      dout = dout.to(q.scalar_type());
    at::Tensor dq = at::empty_like(q), dk = at::empty_like(k),
               dv = at::empty_like(v);
    const at::Tensor *t[9] = {&q, &k, &v, &out, &lse, &dout, &dq, &dk, &dv};
    {
      py::gil_scoped_acquire gil; // the engine's thread holds no GIL
      try {
        run(1, opts_of(ctx), t);
      } catch (py::error_already_set &e) {
        // the form the autograd engine hands back to Python as it was
        e.restore();
        python_error err;
        err.persist();
        throw err;
      }
    }
    return {dq,           dk,           dv,
            at::Tensor(), at::Tensor(), at::Tensor(),
            at::Tensor(), at::Tensor(), at::Tensor()};
  }
};

at::Tensor attention(const at::Tensor &q, const at::Tensor &k,
                     const at::Tensor &v, int64_t layout, int64_t causal,
                     int64_t wl, int64_t wr, double scale, double softcap) {
  return Attention::apply(q, k, v, layout, causal, wl, wr, scale, softcap);
}

// torch.empty (stride null) or torch.empty_strided from C: the extension's
// outputs for torch tensors (_attn_arrays.c, arr_empty), a few
// microseconds less than calling torch from Python. dt: the extension's
// DT_F32 (0), DT_BF16 (1), DT_F16 (2). A new reference, or null with a
// Python exception.
PyObject *empty(int ndim, const int64_t *shape, const int64_t *stride, int dt) {
  try {
    const auto o = at::TensorOptions().dtype(dt == 0   ? at::kFloat
                                             : dt == 1 ? at::kBFloat16
                                                       : at::kHalf);
    const at::IntArrayRef sh(shape, static_cast<size_t>(ndim));
    return THPVariable_Wrap(
        stride ? at::empty_strided(
                     sh, at::IntArrayRef(stride, static_cast<size_t>(ndim)), o)
               : at::empty(sh, o));
  } catch (const c10::OutOfMemoryError &e) {
    PyErr_SetString(PyExc_MemoryError, e.what_without_backtrace());
  } catch (const std::exception &e) {
    PyErr_SetString(PyExc_RuntimeError, e.what());
  }
  return nullptr;
}

using empty_fn = PyObject *(*)(int, const int64_t *, const int64_t *, int);

} // namespace

PYBIND11_MODULE(_attn_torch, m) {
  m.doc() = "attn.torch's autograd node in C++ (see _attn_torch.cpp)";
  py::object ext = py::module_::import("attn._attn");
  g_run = py::object(ext.attr("run")).release().ptr();
  static empty_fn fn = empty; // the capsule points at this pointer
  m.attr("empty_capsule") =
      py::capsule(reinterpret_cast<void *>(&fn), "attn._attn_torch.empty");
  m.def("attention", &attention,
        "out = attention(q, k, v, layout, causal, "
        "window_left, window_right, scale, softcap), through autograd");
}
