"""pytest fixtures for tests that need the censorship lab (imported by tests/conftest.py).

* ``lab_module``: one lab per test module (up once, down at the end of the module, even
  after failures), built from the shipped targets (``configs/targets/*.toml``) or, while
  none exist, from ``tests/lab/mini_targets.toml``. Override the targets for a module with
  ``pytestmark = pytest.mark.lab_targets(["path.toml", ...])``.
  Labs left by a killed test run (their owner process is gone) are removed first.
* ``lab``: the module's lab with no censor rule in place; every rule applied in the test
  is removed after it (``lab.clear_rules()``).

Tests using them must carry ``@pytest.mark.lab`` (root, namespaces; see tests/conftest.py).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from probe.lab.lab import REPO_ROOT, Lab, cleanup_stale, shipped_targets

MINI_TARGETS = REPO_ROOT / "tests" / "lab" / "mini_targets.toml"


def default_targets() -> list[Path]:
    return shipped_targets() or [MINI_TARGETS]


@pytest.fixture(scope="module")
def lab_module(request: pytest.FixtureRequest) -> Iterator[Lab]:
    marker = request.node.get_closest_marker("lab_targets")
    targets = [Path(p) for p in marker.args[0]] if marker else default_targets()
    cleanup_stale()  # labs of earlier test runs that were killed before their teardown
    with Lab(targets=targets) as lab:
        yield lab


@pytest.fixture
def lab(lab_module: Lab) -> Iterator[Lab]:
    lab_module.clear_rules()
    yield lab_module
    lab_module.clear_rules()
