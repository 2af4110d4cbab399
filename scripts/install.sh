#!/usr/bin/env bash
# Idempotent install into .venv: apt packages only when missing, pip only when
# pyproject.toml / constraints.txt changed since the last successful install.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=.venv
STAMP=$VENV/.edgevla-installed
PY=${PYTHON:-python3}

APT_PKGS=(
  # firmware: M7 cross toolchain and emulator (issue 4)
  gcc-arm-none-eabi libnewlib-arm-none-eabi qemu-system-arm
  # torchcodec decodes LeRobot videos through Debian's FFmpeg 5.1 shared libraries
  libavcodec59 libavformat59 libavutil57 libswscale6 libswresample4 libavdevice59 libavfilter8
  # MuJoCo offscreen rendering
  libegl1 libgl1-mesa-dri libosmesa6
)

missing=()
for p in "${APT_PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "[install] apt: ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  else
    echo "[install] warning: missing apt packages (not root, skipping): ${missing[*]}" >&2
  fi
fi

hash_now=$(cat pyproject.toml constraints.txt scripts/install.sh | sha256sum | cut -d' ' -f1)
if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$hash_now" ]; then
  exit 0
fi

[ -x $VENV/bin/python ] || $PY -m venv $VENV
PIP="$VENV/bin/python -m pip --disable-pip-version-check -q"
# Every install goes through constraints.txt: an unpinned torch would pull GBs of CUDA wheels.
echo "[install] pip: edgevla[train,dev] (constrained)"
$PIP install -c constraints.txt -e ".[train,dev]" 2> >(grep -v "is ignored: it is neither" >&2)
# lerobot 0.4.4 is the last release for Python 3.11; its metadata wants deps we pin ourselves.
$PIP install -c constraints.txt --no-deps "lerobot==0.4.4"
# Every Python process of the environment imports torchvision (and so lerobot) cleanly, not only
# the project's commands: a .pth line installs the fix-up before torchvision's first import
# (training/torch_setup.py says why it is needed).
site=$($VENV/bin/python -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")
echo "import edgevla.training.torch_setup as _evla_ts; _evla_ts.install_import_hook()" \
  > "$site/edgevla_torchvision.pth"
echo "$hash_now" > "$STAMP"
echo "[install] done"
