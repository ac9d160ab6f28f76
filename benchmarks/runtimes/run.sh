#!/usr/bin/env bash
# Regenerate benchmarks/runtimes/measured_llamacpp.json (llama.cpp on the CPU).
#
# Creates .venv-runtimes at the repository root if missing, installs the pinned
# requirements (llama-cpp-python builds llama.cpp from source: 15-25 minutes on two
# cores), writes GGUF files with real model shapes and random weights to
# ${GGUF_DIR:-/tmp/nnmem-gguf} (about 26 GB), quantizes them with llama.cpp's own
# quantizer, then loads each on the CPU over a grid of contexts and records the
# buffer sizes llama.cpp logs. Set PYTHON_VENV to reuse an environment that already
# has the requirements.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
venv="${PYTHON_VENV:-$root/.venv-runtimes}"
gguf_dir="${GGUF_DIR:-/tmp/nnmem-gguf}"

if [ ! -x "$venv/bin/python" ]; then
    "${PYTHON:-python3}" -m venv "$venv"
fi
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$here/requirements.txt"
cd "$root"
nice "$venv/bin/python" -m benchmarks.runtimes.make_gguf --out "$gguf_dir" \
    --only llama-3.2-1b --ftypes Q8_0 Q6_K Q5_K_M Q4_K_M Q4_K_S Q4_0 Q3_K_M Q2_K
nice "$venv/bin/python" -m benchmarks.runtimes.make_gguf --out "$gguf_dir" \
    --only qwen2.5-0.5b gemma-3-1b --ftypes Q8_0 Q4_K_M Q4_0 Q6_K Q2_K
nice "$venv/bin/python" -m benchmarks.runtimes.make_gguf --out "$gguf_dir" \
    --only qwen3-30b-a3b-2l --ftypes Q8_0 Q4_K_M MXFP4_MOE
nice "$venv/bin/python" -m benchmarks.runtimes.measure_llamacpp --gguf "$gguf_dir" "$@"
