#!/usr/bin/env bash
# quant_refcheck.sh QUANT_TOOL - runs tests/quant_refcheck.py with the gguf
# venv ($KVCHAT_GGUF_VENV, default ~/.cache/kvchat/venv-gguf, made by
# scripts/gguf-venv) and SmolLM2 from the models folder when it is there.
# Exits 77 (skipped) when the venv or its gguf package is missing.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
venv=${KVCHAT_GGUF_VENV:-$HOME/.cache/kvchat/venv-gguf}
py=$venv/bin/python
if [ ! -x "$py" ] || ! "$py" -c 'import gguf.quants, numpy' 2>/dev/null; then
  echo "quant_refcheck: no gguf venv at $venv (scripts/gguf-venv makes it): skipped"
  exit 77
fi
models=${KVCHAT_MODEL_DIR:-${XDG_DATA_HOME:-$HOME/.local/share}/kvchat/models}
model=$models/SmolLM2-135M-Instruct.Q4_1.gguf
[ -f "$model" ] || model=
exec "$py" "$here/quant_refcheck.py" "$1" ${model:+"$model"}
