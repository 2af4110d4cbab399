"""The profile without an M7: a laptop or a Raspberry-Pi-class board with the arm on a USB
serial adapter (`edgevla bundle --target host`).

The firmware's host build (the same C core as the M7's: interpolation at 1 kHz, limits,
watchdog) runs as the graph's ``mcu`` actor and drives the real Feetech bus on
``servo_device`` at 1 Mbaud; the executor talks to it over a pty exactly as it talks to the M7
over RPMsg. What the host cannot give is the M7's independence: the firmware is a process of
the same machine, so a kernel that stalls it stalls the arm's 1 kHz loop, and a host that dies
as a whole leaves the servos at their last goal with torque on (the watchdog and the torque-off
clock cover a lost executor or a stopped graph, not a lost machine).
"""

from __future__ import annotations

from typing import Any

from edgevla.deploy.bundle.graph_rtc import with_rtc

DEFAULT_SERVO_DEVICE = "/dev/ttyACM0"
TORQUE_OFF_MS = 3000   # held this long after the executor is lost or the graph stops, then torque off
SERVO_MISS_HOLD = 5    # read cycles (10 ms each) with a silent servo before the arm holds
WATCHDOG_MS = 300


def host_graph(policy: str, model_dir: str, fps: float, cameras: list[str], image_hw: list[int],
               calibration: str | None, servo_device: str = DEFAULT_SERVO_DEVICE,
               denoise_steps: int | None = None, rtc: bool = True) -> dict[str, Any]:
    """The host profile's actor graph (dict ready for YAML); no CPU pinning (unknown machine); a
    SmolVLA with real-time chunking unless ``rtc`` is false."""
    model = {"model": "${GRAPH_DIR}/" + model_dir, "threads": 2}
    if calibration:
        model["calibration"] = "${GRAPH_DIR}/" + calibration
    actors: dict[str, Any] = {
        "mcu": {"kind": "mcu_firmware", "rate_hz": 10, "realtime_priority": 20,
                "params": {"link_path": "${RUN_DIR}/mcu.link", "servo_device": servo_device,
                           "watchdog_ms": WATCHDOG_MS, "torque_off_ms": TORQUE_OFF_MS,
                           "servo_miss_hold": SERVO_MISS_HOLD}},
    }
    # a USB webcam shows up as two nodes (capture, then metadata): video0, video2, ...
    for i, c in enumerate(cameras):
        actors[f"cam_{c}"] = {"kind": "camera", "outputs": {"frames": f"frames/{c}"},
                              "rate_hz": fps,
                              "params": {"camera": c, "source": f"/dev/video{2 * i}",
                                         "width": image_hw[1], "height": image_hw[0]}}
    frames = {c: f"frames/{c}" for c in cameras}
    actors["vision"] = {"kind": "vision", "outputs": {"features": "policy/features"},
                        "inputs": {**frames, "state": "robot/state", "request": "policy/request"},
                        "params": dict(model)}
    if policy == "act":
        actors["decoder"] = {"kind": "act_decoder", "inputs": {"features": "policy/features"},
                             "outputs": {"chunks": "policy/chunks"}, "params": dict(model)}
    else:
        actors["prefill"] = {"kind": "prefill", "inputs": {"features": "policy/features"},
                             "outputs": {"prefix": "policy/prefix"}, "params": dict(model)}
        actors["denoise"] = {"kind": "denoise", "inputs": {"prefix": "policy/prefix"},
                             "outputs": {"chunks": "policy/chunks"},
                             "params": {**model, **({"denoise_steps": denoise_steps}
                                                    if denoise_steps else {})}}
    executor = {"mcu_port": "${RUN_DIR}/mcu.link", "strategy": "crossfade", "crossfade_ms": 300,
                "request_mode": "latency"}
    if calibration:
        executor["calibration"] = "${GRAPH_DIR}/" + calibration
    actors["executor"] = {"kind": "executor", "rate_hz": 100, "realtime_priority": 10,
                          "after": ["mcu"], "inputs": {"chunks": "policy/chunks"},
                          "outputs": {"commands": "robot/commands", "requests": "policy/request",
                                      "control": "executor/control", "robot_state": "robot/state"},
                          "params": executor}
    if rtc:
        with_rtc(actors)
    return {"name": f"{policy}-host",
            "description": f"{policy} on this machine, the arm's Feetech bus on {servo_device} "
                           f"through the host firmware (no M7)",
            "actors": actors}


def host_readme(policy: str, model_id: str, servo_device: str, calibration: str | None) -> str:
    cal = ("`calibration.json` — the arm's LeRobot calibration file: the model's units <-> "
           "servo counts, and the firmware's position limits." if calibration else
           "No calibration file: the model is in the sim's servo radians over the whole turn.")
    return f"""# edgevla host bundle — {policy} with the arm on USB, no M7

Model `{model_id}`. The firmware's host build drives the arm's Feetech bus on `{servo_device}`
(1 Mbaud, 8N1), the same C core as the M7's: 1 kHz interpolation, limits, watchdog.

## Contents
- `graph.yaml` — the actor graph (`edgevla run graph.yaml`; paths relative to it).
- `model/` — the model bundle.
- {cal}

## Run
    edgevla run graph.yaml        # needs `make -C mcu host` once (the mcu actor builds it if cc is there)
    edgevla status                # actors, and the arm: mode and faults as the firmware reports them
    edgevla stop                  # the arm holds, then torque goes off after {TORQUE_OFF_MS} ms

## Safety as built
- Torque goes on only after every servo has reported its position; the first command slews
  from there.
- The executor lost (crash, kill) -> the firmware's watchdog ({WATCHDOG_MS} ms) holds the arm;
  {TORQUE_OFF_MS} ms later torque goes off. `edgevla stop` does the same.
- A servo silent for {SERVO_MISS_HOLD} read cycles, or reporting overload, overheat or
  overcurrent -> the arm holds and refuses motion until re-enabled (restart the graph);
  `edgevla status` shows `SERVO_ERROR`.
- Not covered: the whole machine dying (the servos keep their last goal with torque on) and
  a kernel that stalls the firmware process. Keep a hand near the power switch.
"""
