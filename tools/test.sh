#!/usr/bin/env bash
# The test command: sets up .venv on a fresh machine, then runs the whole suite on CPU.
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/setup.sh
exec .venv/bin/python -m pytest "${@:-tests}"
