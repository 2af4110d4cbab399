"""Text of the files a board bundle carries: systemd units, install script, README.

Kept as functions of the target so the units, the graph's CPU layout and the README agree.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from edgevla.deploy.bundle.manifest import BoardTarget, Manifest

PREFIX = "/opt/edgevla"


def systemd_units(t: "BoardTarget") -> dict[str, str]:
    m7 = f"""[Unit]
Description=edgevla: load and start the Cortex-M7 motor firmware (remoteproc)
DefaultDependencies=no
After=local-fs.target
Before=edgevla.service

[Service]
Type=oneshot
RemainAfterExit=yes
# Stop a firmware the bootloader may have started, then load ours from /lib/firmware.
ExecStartPre=-/bin/sh -c 'grep -q running /sys/class/remoteproc/{t.remoteproc}/state && echo stop > /sys/class/remoteproc/{t.remoteproc}/state || true'
ExecStart=/bin/sh -c 'echo {t.m7_firmware} > /sys/class/remoteproc/{t.remoteproc}/firmware && echo start > /sys/class/remoteproc/{t.remoteproc}/state'
# The RPMsg tty appears once the firmware announces its endpoint.
ExecStartPost=/bin/sh -c 'for i in $(seq 50); do [ -e {t.rpmsg_tty} ] && exit 0; sleep 0.1; done; echo "{t.rpmsg_tty} did not appear" >&2; exit 1'
ExecStop=/bin/sh -c 'echo stop > /sys/class/remoteproc/{t.remoteproc}/state'

[Install]
WantedBy=multi-user.target
"""
    supervisor = f"""[Unit]
Description=edgevla actor supervisor (cameras, policy stages, executor, M7 bridge)
Requires=edgevla-m7.service
After=edgevla-m7.service network.target

[Service]
Type=simple
WorkingDirectory={PREFIX}/bundle
Environment=HF_HUB_OFFLINE=1
Environment=OMP_WAIT_POLICY=PASSIVE
# The supervisor pins each actor to the cores named in graph.yaml; it itself stays on the
# I/O core so it never competes with the executor (core {','.join(map(str, t.rt_cores))}).
CPUAffinity={' '.join(map(str, t.io_cores))}
ExecStart={PREFIX}/venv/bin/edgevla run {PREFIX}/bundle
Restart=on-failure
RestartSec=2
# Real-time scheduling for the executor is requested per actor; allow it here.
LimitRTPRIO=90
LimitMEMLOCK=infinity

[Install]
WantedBy=multi-user.target
"""
    return {"edgevla-m7.service": m7, "edgevla.service": supervisor}


def install_script(t: "BoardTarget") -> str:
    return f"""#!/bin/sh
# Install this bundle on the board (run as root from the bundle directory).
set -eu
HERE=$(cd "$(dirname "$0")" && pwd)
mkdir -p {PREFIX}
rm -rf {PREFIX}/bundle && cp -r "$HERE" {PREFIX}/bundle
if [ -f "$HERE/firmware/{t.m7_firmware}" ]; then
    cp "$HERE/firmware/{t.m7_firmware}" /lib/firmware/{t.m7_firmware}
else
    echo "note: no firmware in this bundle; build mcu/ for the {t.name} port and copy it to /lib/firmware/{t.m7_firmware}"
fi
if [ ! -x {PREFIX}/venv/bin/edgevla ]; then
    python3 -m venv {PREFIX}/venv
    {PREFIX}/venv/bin/pip install edgevla   # the base install: no torch, no lerobot
fi
cp "$HERE"/systemd/*.service /etc/systemd/system/
systemctl daemon-reload
systemctl enable edgevla-m7.service edgevla.service
echo "installed; start with: systemctl start edgevla"
"""


def readme(m: "Manifest", t: "BoardTarget", firmware_included: bool) -> str:
    stages = "\n".join(
        f"| {name} | {spec.variants[spec.default].file} | {spec.variants[spec.default].backend} | "
        f"{spec.variants[spec.default].precision} | {', '.join(sorted(spec.variants))} |"
        for name, spec in m.stages.items())
    fw = ("`firmware/` holds the M7 image." if firmware_included else
          "No M7 image is included: build `mcu/` for this target and put it in "
          f"`/lib/firmware/{t.m7_firmware}`.")
    return f"""# edgevla board bundle — {m.policy} on {t.name}

Model `{m.model_id}`: {m.policy}, chunk {m.chunk_size} x {m.action_dim} at {m.fps:g} fps,
cameras {', '.join(m.cameras)} at {m.image_hw[1]}x{m.image_hw[0]}.

## Contents
- `graph.yaml` — the actor graph `edgevla run` starts (paths relative to it).
- `model/` — model bundle: `manifest.json` + stage files.
- `systemd/edgevla-m7.service` — loads `{t.m7_firmware}` into the Cortex-M7 through
  `/sys/class/remoteproc/{t.remoteproc}` and waits for `{t.rpmsg_tty}`.
- `systemd/edgevla.service` — the supervisor (`edgevla run`), restarted on failure.
- `install.sh` — copies all of it to `{PREFIX}` and enables both units.
- {fw}

## Stages
| stage | file | backend | precision | variants in bundle |
|---|---|---|---|---|
{stages}

Change a stage's precision or backend in `graph.yaml` (`params: precision: int8`,
`backend: litert`, `delegate: {t.npu_delegate or '<path to delegate .so>'}` for the NPU).

## CPU layout ({t.cores} cores)
- core(s) {', '.join(map(str, t.io_cores))}: supervisor, cameras, recorder
- core(s) {', '.join(map(str, t.rt_cores))}: executor + M7 bridge only (real-time priority)
- core(s) {', '.join(map(str, t.inference_cores))}: inference stages
For the hardest real-time isolation add `isolcpus={','.join(map(str, t.rt_cores))}` to the
kernel command line.

## Run
    sudo ./install.sh
    sudo systemctl start edgevla
    journalctl -u edgevla -f            # supervisor log
    edgevla status                      # per-actor rates, latency, drops

By hand, without systemd: `edgevla run {PREFIX}/bundle` (after starting the M7 unit).
"""
