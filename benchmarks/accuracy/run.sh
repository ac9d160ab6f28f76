#!/usr/bin/env bash
# Regenerate benchmarks/accuracy/measured.json.
#
# Creates the dedicated virtual environment .venv-accuracy at the repository root if
# it is missing, installs the pinned requirements, then runs measure.py as a module
# from the repository root. Arguments are passed on to measure.py, e.g.
# `run.sh --only llama-2-7b` or `run.sh --check-fake`.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
venv="$root/.venv-accuracy"
python="${PYTHON:-python3}"

if [ ! -x "$venv/bin/python" ]; then
    "$python" -m venv "$venv"
fi
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$here/requirements.txt"
cd "$root"
exec "$venv/bin/python" -m benchmarks.accuracy.measure "$@"
