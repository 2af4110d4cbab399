"""Actor kinds by name, imported lazily so a graph only loads what it uses."""

from __future__ import annotations

import importlib

from edgevla.actors.runtime.actor import Actor

KINDS: dict[str, str] = {
    # synthetic / test kinds (no models): the skeleton graph and the runtime tests
    "synthetic_camera": "edgevla.actors.kinds.synthetic:SyntheticCamera",
    "dummy_stage": "edgevla.actors.kinds.synthetic:DummyStage",
    "dummy_policy": "edgevla.actors.kinds.synthetic:DummyPolicy",
    "counter_sink": "edgevla.actors.kinds.synthetic:CounterSink",
    # the real graph
    "camera": "edgevla.actors.kinds.camera:CameraActor",
    "vision": "edgevla.actors.kinds.stages:VisionActor",
    "prefill": "edgevla.actors.kinds.stages:PrefillActor",
    "denoise": "edgevla.actors.kinds.stages:DenoiseActor",
    "act_decoder": "edgevla.actors.kinds.stages:ActDecoderActor",
    "policy": "edgevla.actors.kinds.stages:PolicyActor",
    "executor": "edgevla.actors.executor.actor:ExecutorActor",
    "sim": "edgevla.training.sim.actor:SimPlantActor",
    "recorder": "edgevla.actors.recording.recorder:RecorderActor",
    "mcu_firmware": "edgevla.actors.kinds.mcu:McuFirmwareActor",
}


def resolve(kind: str) -> type[Actor]:
    if kind not in KINDS:
        raise KeyError(f"unknown actor kind {kind!r}; known: {', '.join(sorted(KINDS))}")
    module, cls = KINDS[kind].split(":")
    return getattr(importlib.import_module(module), cls)
