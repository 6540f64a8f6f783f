#!/usr/bin/env bash
# The demo command: sets up .venv on a fresh machine, then runs the real ComfyUI with the digits model.
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/setup.sh
exec .venv/bin/python -m skip_tuning_lab.demo "$@"
