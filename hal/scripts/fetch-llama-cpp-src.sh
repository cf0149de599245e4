#!/usr/bin/env bash
# Fetch llama.cpp's sources as the installed llama-cpp-python ships them (its source distribution,
# vendor/llama.cpp/), for the build-time GGUF conversion of the embedding model
# (`python -m cube_stack.hal.embedding_model`): the converter must match the llama.cpp that serves
# the GGUF, so it comes from the same release, never from llama.cpp's main branch.
# Idempotent: a complete copy is left alone. Prints the directory as its last line.
#   PYTHON=...          the interpreter whose llama-cpp-python to match (default python3 on PATH;
#                       without one, the release hal/image.lock pins)
#   CUBE_LLAMA_CPP_SRC  unpack here instead of ~/.cache/cube-hal/llama-cpp-python-<version>
set -euo pipefail

python=${PYTHON:-python3}
# The installed release; in a fresh environment (before the project is installed) the one the image
# locks, which is what the project installs today.
version=$("$python" -c 'import importlib.metadata as m; print(m.version("llama-cpp-python"))' 2>/dev/null) ||
  version=$("$python" -c 'import sys, tomllib; print(tomllib.load(open(sys.argv[1], "rb"))["python"]["llama-cpp-python"])' \
    "$(dirname "$0")/../image.lock")
dest=${CUBE_LLAMA_CPP_SRC:-${XDG_CACHE_HOME:-$HOME/.cache}/cube-hal/llama-cpp-python-$version}

if [ ! -f "$dest/.complete" ]; then
    parent=$(dirname "$dest")
    mkdir -p "$parent"
    work=$(mktemp -d "$parent/.fetch-XXXXXX")
    trap 'rm -rf "$work"' EXIT
    # --no-binary: the wheel has no converter; --no-deps: only this one archive.
    "$python" -m pip download --quiet --no-deps --no-binary :all: \
        "llama-cpp-python==$version" -d "$work/download" >&2
    archive=("$work"/download/*.tar.gz)
    mkdir "$work/src"
    tar -xzf "${archive[0]}" -C "$work/src" --strip-components=1
    if [ ! -f "$work/src/vendor/llama.cpp/convert_hf_to_gguf.py" ]; then
        echo "$0: ${archive[0]##*/} has no vendor/llama.cpp/convert_hf_to_gguf.py" >&2
        exit 1
    fi
    touch "$work/src/.complete"
    if [ ! -f "$dest/.complete" ]; then  # else another run finished first: keep its copy
        rm -rf "$dest"                   # an incomplete earlier attempt
        mv "$work/src" "$dest"
    fi
fi
echo "$dest"
