"""Shared test settings: offline hub, headless GL, short private run directories."""

from __future__ import annotations

import os
import tempfile

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("MUJOCO_GL", "egl")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture
def run_base():
    """A short base dir for run directories (ipc socket paths must stay under ~100 bytes)."""
    with tempfile.TemporaryDirectory(prefix="ev") as d:
        yield d
