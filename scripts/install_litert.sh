#!/usr/bin/env bash
# Idempotent install of the LiteRT conversion environment: litert-torch and ai-edge-quantizer
# beside a CPU torch of the project's version, from the package registry. It lives in the user's
# cache ($EDGEVLA_LITERT_VENV, else ${XDG_CACHE_HOME:-~/.cache}/edgevla/venv-litert: the path
# deploy/export/litert_vision.py looks in), outside the checkout, shared by every checkout.
# Its own environment because its pins clash with the project's (constraints-litert.txt says how);
# the exporter runs deploy/export/litert_convert.py in it. pip only when the pins changed.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=${EDGEVLA_LITERT_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/edgevla/venv-litert}
mkdir -p "$(dirname "$VENV")"
STAMP=$VENV/.edgevla-installed
PY=${PYTHON:-python3}
hash_now=$(cat constraints-litert.txt scripts/install_litert.sh | sha256sum | cut -d' ' -f1)
if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$hash_now" ]; then
  exit 0
fi
[ -x "$VENV/bin/python" ] || $PY -m venv "$VENV"
echo "[install] pip: LiteRT conversion environment (constrained, $VENV)"
# torch first and alone: with the converter in the same resolve pip may prefer a CUDA build
"$VENV/bin/python" -m pip --disable-pip-version-check -q install -c constraints-litert.txt torch
"$VENV/bin/python" -m pip --disable-pip-version-check -q install -c constraints-litert.txt \
  torch litert-torch ai-edge-quantizer
echo "$hash_now" > "$STAMP"
echo "[install] LiteRT conversion environment done"
