"""Training-side subcommands: dataset (record/info), train, eval, train-default.

Split in two modules so that recording and training evolve separately; both import torch,
lerobot and mujoco only inside their handlers.
"""

from __future__ import annotations

import importlib

_PARTS = ("edgevla.training.cli.dataset", "edgevla.training.cli.train")


def add_parser(sub) -> None:
    for name in _PARTS:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == name:
                continue
            raise
        module.add_parser(sub)
