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


# Tiny random-weight bundles (tiny_bundle builds each once per session): (policy, stats, path)
@pytest.fixture(scope="module")
def act():
    from edgevla.deploy.export.smolvla_local import tiny_bundle, tiny_stats

    policy, path = tiny_bundle("act")
    return policy, tiny_stats(policy), path


@pytest.fixture(scope="module")
def smolvla():
    from edgevla.deploy.export.smolvla_local import tiny_bundle, tiny_stats

    policy, path = tiny_bundle("smolvla")
    return policy, tiny_stats(policy), path
