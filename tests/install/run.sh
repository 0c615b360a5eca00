#!/bin/sh
# Install smoke test: installs a built tree into a temporary prefix, checks the
# installed files, then builds and runs an outside consumer program
# (tests/install/consumer) four ways:
#   1. cc + pkg-config (shared),   2. cc + pkg-config --static (libattn.a),
#   3. CMake find_package(attn) -> attn::attn,
#   4. CMake find_package(attn) -> attn::attn_static;
# and, when libattn_layer was built, the layer's header, libraries, SONAME
# and pkg-config attn-layer with tests/install/layer_consumer.c (shared and
# static), and that libattn.so itself does not need BLAS.
#
#   sh tests/install/run.sh [BUILD_DIR]      (default: build; must be built)
#
# Prints "N passed, N failed"; exit status 0 only when nothing failed.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
build=${1:-build}
case $build in /*) ;; *) build=$(pwd)/$build ;; esac

if [ ! -f "$build/CMakeCache.txt" ]; then
  echo "install: $build is not a configured CMake build dir" >&2
  exit 2
fi

tmp=$(mktemp -d "${TMPDIR:-/tmp}/attn-install.XXXXXX")
trap 'rm -rf "$tmp"' EXIT INT TERM
prefix=$tmp/prefix

passed=0
failed=0
pass() { passed=$((passed + 1)); echo "PASS $1"; }
fail() { failed=$((failed + 1)); echo "FAIL $1"; }
# check NAME CMD... : runs CMD, logs its output to $tmp/log, counts it
check() {
  name=$1
  shift
  if "$@" >"$tmp/log" 2>&1; then
    pass "$name"
  else
    fail "$name"
    sed 's/^/    | /' "$tmp/log"
  fi
}
cache() { sed -n "s/^$1:[A-Z]*=//p" "$build/CMakeCache.txt"; }

# Use the tree's own compiler, and its sanitizer flags if it was built with
# them (libattn.a then references the ASan/UBSan runtimes).
CC=$(cache CMAKE_C_COMPILER)
[ -n "$CC" ] || CC=cc
export CC
san=""
if [ "$(cache ATTN_SANITIZE)" = "ON" ]; then
  san="-fsanitize=address,undefined"
fi

# ---------------------------------------------------------------- install
if cmake --install "$build" --prefix "$prefix" >"$tmp/log" 2>&1; then
  pass "cmake --install $build --prefix <tmp>/prefix"
else
  fail "cmake --install"
  sed 's/^/    | /' "$tmp/log"
  echo "$passed passed, $failed failed"
  exit 1
fi

libdir=""
for d in "$prefix/lib" "$prefix/lib64" "$prefix"/lib/*-linux-gnu; do
  if [ -f "$d/pkgconfig/attn.pc" ]; then libdir=$d; break; fi
done
[ -n "$libdir" ] || libdir=$prefix/lib

# ---------------------------------------------------------------- files
for f in "$prefix/include/attn.h" "$libdir/libattn.so" "$libdir/libattn.a" \
         "$libdir/pkgconfig/attn.pc" "$libdir/cmake/attn/attnConfig.cmake" \
         "$libdir/cmake/attn/attnConfigVersion.cmake"; do
  if [ -f "$f" ]; then pass "installed ${f#"$prefix"/}"; else fail "missing ${f#"$prefix"/}"; fi
done
tools=$(cache ATTN_BUILD_TOOLS)
if [ "$tools" = "OFF" ]; then
  echo "SKIP bin/attn (ATTN_BUILD_TOOLS=OFF)"
elif [ -x "$prefix/bin/attn" ]; then
  pass "installed bin/attn"
  # The installed CLI must start from the prefix (no build-tree RPATH needed).
  check "bin/attn --version runs" env LD_LIBRARY_PATH="$libdir" \
    "$prefix/bin/attn" --version
else
  fail "missing bin/attn"
fi

# SONAME must be the versioned one: libattn.so -> libattn.so.0 -> libattn.so.0.4.0 (the project version)
soname=""
if command -v readelf >/dev/null 2>&1; then
  soname=$(readelf -d "$libdir/libattn.so" 2>/dev/null | sed -n 's/.*(SONAME).*\[\(.*\)\].*/\1/p')
elif command -v objdump >/dev/null 2>&1; then
  soname=$(objdump -p "$libdir/libattn.so" 2>/dev/null | awk '$1 == "SONAME" {print $2}')
fi
if [ "$soname" = "libattn.so.0" ]; then
  pass "SONAME libattn.so.0"
else
  fail "SONAME is '$soname', want libattn.so.0"
fi
if [ -f "$libdir/libattn.so.0" ]; then pass "installed libattn.so.0"; else fail "missing libattn.so.0"; fi

# ---------------------------------------------------------------- pkg-config
export PKG_CONFIG_PATH="$libdir/pkgconfig"
ver=$(pkg-config --modversion attn 2>/dev/null || true)
if [ "$ver" = "$(sed -n "s/^project(attn VERSION \([0-9.]*\).*/\1/p" "$(dirname "$0")/../../CMakeLists.txt")" ]; then pass "pkg-config --modversion attn = $ver"; else fail "pkg-config --modversion attn = '$ver'"; fi

incdir=$(pkg-config --variable=includedir attn 2>/dev/null || true)
if [ -f "$incdir/attn.h" ] && [ "$(cd "$incdir" && pwd -P)" = "$(cd "$prefix/include" && pwd -P)" ]; then
  pass "attn.pc includedir is the install prefix's"
else
  fail "attn.pc includedir is '$incdir', not under the install prefix (attn.pc must be relocatable: prefix=\${pcfiledir}/../..)"
fi

src=$here/consumer/main.c
# shared: the library is found through LD_LIBRARY_PATH like any prefix install
# shellcheck disable=SC2046,SC2086
check "pkg-config shared build" \
  $CC $san -std=c11 -o "$tmp/consumer_pc" "$src" $(pkg-config --cflags --libs attn) -lm
check "pkg-config shared run" env LD_LIBRARY_PATH="$libdir" "$tmp/consumer_pc"
if [ -x "$tmp/consumer_pc" ] && command -v ldd >/dev/null 2>&1; then
  if LD_LIBRARY_PATH="$libdir" ldd "$tmp/consumer_pc" | grep -q "$libdir/libattn.so.0"; then
    pass "pkg-config shared binary loads <prefix>/libattn.so.0"
  else
    fail "pkg-config shared binary does not load <prefix>/libattn.so.0"
    LD_LIBRARY_PATH="$libdir" ldd "$tmp/consumer_pc" | sed 's/^/    | /'
  fi
fi

# static: pkg-config --static adds Libs.private (-lpthread -lm); -l:libattn.a
# picks the archive even though libattn.so sits next to it.
static_libs=$(pkg-config --static --libs attn | sed 's/-lattn\([[:space:]]\|$\)/-l:libattn.a\1/')
# shellcheck disable=SC2046,SC2086
check "pkg-config --static build" \
  $CC $san -std=c11 -o "$tmp/consumer_static" "$src" $(pkg-config --cflags attn) $static_libs
check "pkg-config --static run" env -u LD_LIBRARY_PATH "$tmp/consumer_static"
if [ -x "$tmp/consumer_static" ]; then
  if readelf -d "$tmp/consumer_static" 2>/dev/null | grep -q 'NEEDED.*libattn'; then
    fail "static binary still needs libattn.so"
  else
    pass "static binary has no libattn.so dependency"
  fi
fi

# ---------------------------------------------------------------- CMake
for kind in shared static; do
  if [ $kind = static ]; then opt=ON; else opt=OFF; fi
  bdir=$tmp/cmake-$kind
  check "find_package(attn) $kind configure" \
    cmake -S "$here/consumer" -B "$bdir" -DCMAKE_PREFIX_PATH="$prefix" \
      -DCMAKE_C_COMPILER="$CC" -DCMAKE_C_FLAGS="$san" \
      -DCMAKE_EXE_LINKER_FLAGS="$san" -DCONSUMER_STATIC=$opt \
      -DCMAKE_BUILD_TYPE=Release
  check "find_package(attn) $kind build" cmake --build "$bdir"
  # CMake puts the imported library's directory in the build RPATH
  check "find_package(attn) $kind run" env -u LD_LIBRARY_PATH "$bdir/consumer"
done

# ---------------------------------------------------------------- layer
# libattn_layer (built when OpenBLAS was found): header, libraries, SONAME,
# pkg-config attn-layer (shared and static) and an outside consumer; and
# libattn itself must not need BLAS (users of the kernels alone never link
# it).
if [ "$(cache ATTN_HAVE_LAYER)" = "ON" ] || [ -f "$libdir/pkgconfig/attn-layer.pc" ]; then
  for f in "$prefix/include/attn/layer.h" "$libdir/libattn_layer.so" \
           "$libdir/libattn_layer.a" "$libdir/pkgconfig/attn-layer.pc"; do
    if [ -f "$f" ]; then pass "installed ${f#"$prefix"/}"; else fail "missing ${f#"$prefix"/}"; fi
  done
  lsoname=$(readelf -d "$libdir/libattn_layer.so" 2>/dev/null | sed -n 's/.*(SONAME).*\[\(.*\)\].*/\1/p')
  if [ "$lsoname" = "libattn_layer.so.0" ]; then
    pass "SONAME libattn_layer.so.0"
  else
    fail "libattn_layer SONAME is '$lsoname', want libattn_layer.so.0"
  fi
  if readelf -d "$libdir/libattn.so" 2>/dev/null | grep -qi 'NEEDED.*blas'; then
    fail "libattn.so needs BLAS"
  else
    pass "libattn.so does not need BLAS"
  fi
  lsrc=$here/layer_consumer.c
  # shellcheck disable=SC2046,SC2086
  check "pkg-config attn-layer shared build" \
    $CC $san -std=c11 -o "$tmp/layer_pc" "$lsrc" $(pkg-config --cflags --libs attn-layer) -lm
  check "pkg-config attn-layer shared run" env LD_LIBRARY_PATH="$libdir" "$tmp/layer_pc"
  lstatic=$(pkg-config --static --libs attn-layer | sed -e 's/-lattn_layer\([[:space:]]\|$\)/-l:libattn_layer.a\1/' -e 's/-lattn\([[:space:]]\|$\)/-l:libattn.a\1/')
  # shellcheck disable=SC2046,SC2086
  check "pkg-config --static attn-layer build" \
    $CC $san -std=c11 -o "$tmp/layer_static" "$lsrc" $(pkg-config --cflags attn-layer) $lstatic
  check "pkg-config --static attn-layer run" env -u LD_LIBRARY_PATH "$tmp/layer_static"
else
  echo "SKIP libattn_layer (not built: OpenBLAS not found)"
fi

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
