"""Finds and loads the extension (attn._attn) and the library (libattn.so.0).

The extension (python/attn/_attn.c) does not link libattn: it dlopens it,
so one extension serves any libattn 0.4+ on the machine. Where each is
looked for, in order:

extension
  1. ``attn/_attn*.so`` beside this file (an installed wheel, or a build
     that put it there);
  2. ``$ATTN_EXTENSION`` (a path to the built module);
  3. ``python/attn/_attn*.so`` in the build directory of ``$ATTN_LIBRARY``
     (CMake builds it there when it finds Python's headers);
  4. compiled now with ``$CC`` (or ``cc``) from ``_attn.c`` and
     ``include/attn.h`` of this source tree into ``$ATTN_CACHE_DIR``
     (default ``~/.cache/libattn``), once per source version.

library
  1. ``$ATTN_LIBRARY`` (a path to libattn.so.0 / libattn.so);
  2. ``libattn.so.0`` beside this file (the wheel bundles it);
  3. ``libattn.so.0`` two directories above the extension (a CMake build
     directory: ``BUILD/python/attn/_attn*.so`` -> ``BUILD/libattn.so.0``);
  4. ``build/libattn.so.0`` of this source tree;
  5. the system's (``libattn.so.0`` through the dynamic loader).

``attn._attn_torch`` (attn.torch's autograd node in C++, optional) is
looked for beside this file, then beside the extension.
"""

import glob
import hashlib
import importlib.machinery
import importlib.util
import os
import subprocess
import sys
import sysconfig

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE_ROOT = os.path.dirname(os.path.dirname(HERE))  # python/attn -> repo


def _suffixes():
    return importlib.machinery.EXTENSION_SUFFIXES


def _find_in(directory):
    for suf in _suffixes():
        p = os.path.join(directory, "_attn" + suf)
        if os.path.isfile(p):
            return p
    hits = sorted(p for p in glob.glob(os.path.join(directory, "_attn*.so"))
                  if not os.path.basename(p).startswith("_attn_"))
    return hits[0] if hits else None


def _load_module_from(path):
    loader = importlib.machinery.ExtensionFileLoader("attn._attn", path)
    spec = importlib.util.spec_from_file_location("attn._attn", path,
                                                  loader=loader)
    mod = importlib.util.module_from_spec(spec)
    loader.exec_module(mod)
    sys.modules["attn._attn"] = mod
    return mod


def _compile(why):
    srcs = [os.path.join(HERE, n)
            for n in ("_attn.c", "_attn_arrays.c", "_attn_linear.c",
                      "_attn_cache.c", "_attn_pos.c", "_attn_layer.c",
                      "_attn_layer_call.c",
                      "_attn.h", "_attn_args.h", "_attn_layer.h")]
    src = srcs[0]
    inc = os.environ.get("ATTN_INCLUDE", os.path.join(SOURCE_ROOT, "include"))
    header = os.path.join(inc, "attn.h")
    if not (all(os.path.isfile(p) for p in srcs) and os.path.isfile(header)):
        raise ImportError(
            "attn: the extension attn._attn is not built (%s) and cannot be "
            "compiled here: no %s or %s. Build the project with CMake (it "
            "builds BUILD/python/attn/_attn*.so) and set ATTN_LIBRARY=BUILD/"
            "libattn.so.0, or pip install ." % (why, src, header))
    h = hashlib.sha256()
    for p in srcs + [header] + sorted(glob.glob(os.path.join(inc, "attn", "*.h"))):
        with open(p, "rb") as f:
            h.update(f.read())
    h.update(sys.version.encode())
    cache = os.environ.get("ATTN_CACHE_DIR",
                           os.path.join(os.path.expanduser("~"), ".cache",
                                        "libattn"))
    suffix = sysconfig.get_config_var("EXT_SUFFIX") or ".so"
    out = os.path.join(cache, h.hexdigest()[:16], "_attn" + suffix)
    if not os.path.isfile(out):
        os.makedirs(os.path.dirname(out), exist_ok=True)
        cc = os.environ.get("CC", "cc")
        tmp = out + ".%d.tmp" % os.getpid()
        cmd = [cc, "-std=c11", "-O2", "-fPIC", "-shared", "-I", inc, "-I",
               sysconfig.get_paths()["include"],
               *[p for p in srcs if p.endswith(".c")], "-o", tmp, "-ldl"]
        r = subprocess.run(cmd, capture_output=True, text=True)
        if r.returncode != 0:
            raise ImportError("attn: compiling the extension failed (%s):\n%s"
                              % (" ".join(cmd), r.stderr[-2000:]))
        os.replace(tmp, out)
    return out


def load_extension():
    """The extension module attn._attn, found or built as above."""
    try:
        from . import _attn  # noqa: F401  (beside this file)
        return _attn, HERE
    except ImportError as e:
        why = str(e)
    path = os.environ.get("ATTN_EXTENSION")
    if not path and os.environ.get("ATTN_LIBRARY"):
        d = os.path.dirname(os.path.abspath(os.environ["ATTN_LIBRARY"]))
        path = _find_in(os.path.join(d, "python", "attn"))
    if not path:
        path = _compile(why)
    return _load_module_from(path), os.path.dirname(os.path.abspath(path))


def load_torch_module(ext_dir):
    """attn._attn_torch (attn.torch's autograd node in C++), from beside
    this file or beside the extension; None where it was not built (CMake
    builds it only where PyTorch's headers were found). Imported after
    torch, which attn.torch imports first."""
    for d in dict.fromkeys((HERE, ext_dir)):
        for suf in _suffixes():
            path = os.path.join(d, "_attn_torch" + suf)
            if not os.path.isfile(path):
                continue
            name = "attn._attn_torch"
            loader = importlib.machinery.ExtensionFileLoader(name, path)
            spec = importlib.util.spec_from_file_location(name, path,
                                                          loader=loader)
            mod = importlib.util.module_from_spec(spec)
            try:
                loader.exec_module(mod)
            except ImportError:
                return None  # built against another torch: the Python path
            sys.modules[name] = mod
            return mod
    return None


def library_path(ext_dir):
    """The libattn to dlopen (see the module docstring)."""
    env = os.environ.get("ATTN_LIBRARY")
    if env:
        if not os.path.isfile(env):
            raise ImportError("attn: ATTN_LIBRARY=%s: no such file" % env)
        return os.path.abspath(env)
    for cand in (os.path.join(HERE, "libattn.so.0"),
                 os.path.join(ext_dir, "..", "..", "libattn.so.0"),
                 os.path.join(SOURCE_ROOT, "build", "libattn.so.0")):
        if os.path.isfile(cand):
            return os.path.abspath(cand)
    return "libattn.so.0"
