#!/usr/bin/env bash
# Regenerate benchmarks/stacks/measured_stacks.json (CPU runs of the training stacks).
#
# Creates the virtual environment .venv-stacks at the repository root if it is missing,
# installs the pinned requirements, then runs measure.py as a module from the repository
# root. Arguments go to measure.py, e.g. `run.sh --only ddp` or `run.sh --list`.
# DeepSpeed's CPU accelerator compiles its shared-memory communication op on first use:
# a C++ compiler is needed (ninja comes with the requirements).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
venv="${STACKS_VENV:-$root/.venv-stacks}"
python="${PYTHON:-python3}"

if [ ! -x "$venv/bin/python" ]; then
    "$python" -m venv "$venv"
fi
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$here/requirements.txt"
cd "$root"
export DS_ACCELERATOR=cpu
exec "$venv/bin/python" -m benchmarks.stacks.measure "$@"
