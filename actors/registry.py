"""Actor kinds by name, imported lazily so a graph only loads what it uses."""

from __future__ import annotations

import importlib

from edgevla.actors.actor import Actor

KINDS: dict[str, str] = {
    # synthetic / test kinds (no models): the skeleton graph and the runtime tests
    "synthetic_camera": "edgevla.actors.kinds_synthetic:SyntheticCamera",
    "dummy_stage": "edgevla.actors.kinds_synthetic:DummyStage",
    "dummy_policy": "edgevla.actors.kinds_synthetic:DummyPolicy",
    "counter_sink": "edgevla.actors.kinds_synthetic:CounterSink",
    # the real graph
    "camera": "edgevla.actors.camera:CameraActor",
    "vision": "edgevla.actors.stages:VisionActor",
    "prefill": "edgevla.actors.stages:PrefillActor",
    "denoise": "edgevla.actors.stages:DenoiseActor",
    "act_decoder": "edgevla.actors.stages:ActDecoderActor",
    "policy": "edgevla.actors.stages:PolicyActor",
    "executor": "edgevla.actors.executor_actor:ExecutorActor",
    "sim": "edgevla.training.sim_actor:SimPlantActor",
    "recorder": "edgevla.actors.recorder:RecorderActor",
    "mcu_firmware": "edgevla.actors.mcu_actor:McuFirmwareActor",
}


def resolve(kind: str) -> type[Actor]:
    if kind not in KINDS:
        raise KeyError(f"unknown actor kind {kind!r}; known: {', '.join(sorted(KINDS))}")
    module, cls = KINDS[kind].split(":")
    return getattr(importlib.import_module(module), cls)
