#!/usr/bin/env bash
# Prepare the Python environment the CVM image is built from: exactly the distributions and versions
# hal/image.lock pins, installed with pip into a directory of their own (never the developer's venv).
#
#   hal/scripts/prepare-image-env.sh [DIR]     # default: ~/.cache/cube-hal/image-env-<lock digest>
#
# Prints the site-packages directory to pass to `cube-stack hal build --site-packages`. Idempotent: a
# directory that was completed for this lock is reused. Needs the package index (and a compiler: see
# below); the image build itself is offline.
#
# llama-cpp-python has no binary wheel on PyPI and is compiled here. The developer's venv builds it for
# the build machine's CPU (-march=native, AVX-512 on many hosts), which stops with SIGILL on another
# CPU; the image's copy is built for x86-64-v3 (AVX2, FMA, F16C, BMI2), which every EPYC that runs
# SEV-SNP (Milan, Genoa, Turin) and QEMU's TCG have, in a fixed build directory so that no random
# temporary path ends up in the library.
set -euo pipefail
cd "$(dirname "$0")/../.."
python=${PYTHON:-python3}
lock=hal/image.lock
# name==version for every [python] entry of the lock
mapfile -t pins < <("$python" - "$lock" <<'PY'
import sys, tomllib
lock = tomllib.load(open(sys.argv[1], "rb"))
for name, version in sorted(lock["python"].items()):
    print(f"{name}=={version}")
PY
)
# The directory is named by what it is made of: the pins and this script (its build flags), not the
# lock's comments or Debian part, so the tests find it with the same rule (tests/hal/image/image_kit.py).
digest=$( { printf '%s\n' "${pins[@]}"; cat "$0"; } | sha256sum | cut -c1-16)
dir=${1:-${XDG_CACHE_HOME:-$HOME/.cache}/cube-hal/image-env-$digest}
if [ -f "$dir/.complete" ]; then
  echo "$dir/site-packages"
  exit 0
fi
rm -rf "$dir"
mkdir -p "$dir/wheels" "$dir/build"
llama=""
others=()
for pin in "${pins[@]}"; do
  case "$pin" in
    llama-cpp-python==*) llama=$pin ;;
    *) others+=("$pin") ;;
  esac
done
export SOURCE_DATE_EPOCH
SOURCE_DATE_EPOCH=$("$python" -c "import tomllib,sys; print(tomllib.load(open('$lock','rb'))['source_date_epoch'])")
if [ -n "$llama" ]; then
  # From the sdist unpacked at a fixed place, with that place mapped to /cube-hal in every path the
  # compiler records (__FILE__ in ggml's assertions), so the library carries no build-machine path.
  "$python" -m pip download --quiet --no-deps --no-binary :all: -d "$dir/sdist" "$llama" >&2
  mkdir -p "$dir/src"
  tar -xzf "$dir"/sdist/*.tar.gz -C "$dir/src"
  CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON \
-DGGML_AVX512=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF \
-DCMAKE_C_FLAGS=-ffile-prefix-map=$dir=/cube-hal -DCMAKE_CXX_FLAGS=-ffile-prefix-map=$dir=/cube-hal" \
  "$python" -m pip wheel --quiet --no-cache-dir --no-deps -w "$dir/wheels" \
    -C build-dir="$dir/build/llama" "$dir"/src/*/ >&2
fi
"$python" -m pip download --quiet --no-deps --only-binary :all: --python-version 3.11 \
  --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux_2_28_x86_64 \
  --platform manylinux_2_34_x86_64 --platform linux_x86_64 --implementation cp --abi cp311 --abi abi3 --abi none \
  -d "$dir/wheels" "${others[@]}" >&2
"$python" -m pip install --quiet --no-deps --no-compile --no-index --target "$dir/site-packages" "$dir"/wheels/*.whl >&2
touch "$dir/.complete"
echo "$dir/site-packages"
