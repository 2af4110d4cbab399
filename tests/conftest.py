"""Shared test settings: offline hub, headless GL, short private run directories."""

from __future__ import annotations

import os
import tempfile

import pytest
from hypothesis import settings
from hypothesis_budget import example_cap

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("MUJOCO_GL", "egl")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

# `make mutation`'s first pass caps the examples of properties without their own count too
# (those with one take it through hypothesis_budget.examples)
if example_cap():
    settings.register_profile("capped", max_examples=example_cap(), deadline=None)
    settings.load_profile("capped")


def _ci() -> bool:
    return os.environ.get("CI", "").lower() == "true"


# In CI every test runs: a skip there (a missing toolchain, an extra that failed to install, a
# project import that broke) is a failure, so nothing passes by not running.
@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    if _ci() and rep.skipped and not hasattr(rep, "wasxfail"):
        rep.outcome = "failed"
        rep.longrepr = f"skipped in CI (CI=true), which counts as a failure: {rep.longrepr}"


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector):
    outcome = yield
    rep = outcome.get_result()
    if _ci() and rep.outcome == "skipped":
        rep.outcome = "failed"
        rep.longrepr = f"module skipped in CI (CI=true), which counts as a failure: {rep.longrepr}"


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
