"""Shared fixtures. Lab tests (marker ``lab``) need root and network namespaces: they
skip elsewhere, but under ``CI=true`` a lab test that cannot run fails instead."""

from __future__ import annotations

import os
import shutil

import pytest

IN_CI = os.environ.get("CI", "").lower() == "true"
LAB_TOOLS = ("ip", "nft", "iptables", "turnserver", "dnsmasq", "openssl")


def lab_unavailable_reason() -> str | None:
    if os.geteuid() != 0:
        return "lab tests need root (network namespaces, nftables)"
    missing = [t for t in LAB_TOOLS if shutil.which(t) is None]
    if missing:
        return f"lab tests need {', '.join(missing)} (see .ci/run for the packages)"
    return None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # Tests marked ``slow`` (the replays, ~1 min each) start first, so that the xdist
    # workers do not end the run waiting on one of them (a stable sort: same order on
    # every worker, as xdist requires).
    items.sort(key=lambda item: "slow" not in item.keywords)
    reason = lab_unavailable_reason()
    if reason is None:
        return
    for item in items:
        if "lab" in item.keywords:
            if IN_CI:
                item.add_marker(pytest.mark.usefixtures("_lab_required_in_ci"))
            else:
                item.add_marker(pytest.mark.skip(reason=reason))


@pytest.fixture(scope="session", autouse=True)
def _private_data_home(tmp_path_factory: pytest.TempPathFactory) -> object:
    """Runs keep their pseudonyms (probe.pseudonym) and spools under $XDG_DATA_HOME:
    the tests' own folder, never the home of whoever runs them (subprocesses inherit
    it; a test that needs another sets its own)."""
    before = os.environ.get("XDG_DATA_HOME")
    os.environ["XDG_DATA_HOME"] = str(tmp_path_factory.mktemp("xdg-data"))
    yield None
    if before is None:
        os.environ.pop("XDG_DATA_HOME", None)
    else:
        os.environ["XDG_DATA_HOME"] = before


@pytest.fixture
def _lab_required_in_ci() -> None:
    pytest.fail(f"lab test cannot run under CI=true: {lab_unavailable_reason()}")


# The lab fixtures (``lab``, ``lab_module``) for every test that needs the lab.
from probe.lab.testing import lab, lab_module  # noqa: E402, F401
