"""probe.pseudonym: random per network, stable within a rotation period, then new."""

from __future__ import annotations

import json
import os
import re
import stat
from pathlib import Path

import pytest

from probe import pseudonym
from probe.pseudonym import ROTATION_S, pseudonym_for

NOW = 1_700_000_000.0


def test_same_network_same_period_same_pseudonym(tmp_path: Path) -> None:
    store = tmp_path / "p.json"
    first, note = pseudonym_for("AS36903", "MA", "mobile", path=store, now_s=NOW)
    assert note is None and re.fullmatch(pseudonym.PATTERN, first)
    again, _ = pseudonym_for("AS36903", "MA", "mobile", path=store, now_s=NOW + 3600)
    assert again == first
    assert stat.S_IMODE(os.stat(store).st_mode) == 0o600


def test_other_networks_get_unrelated_pseudonyms(tmp_path: Path) -> None:
    store = tmp_path / "p.json"
    names = {pseudonym_for(asn, "MA", kind, path=store, now_s=NOW)[0]
             for asn in ("AS36903", "AS6713") for kind in ("mobile", "fixed")}
    assert len(names) == 4


def test_never_derived_from_the_network(tmp_path: Path) -> None:
    # Two devices on the same network, same period: nothing in common.
    a, _ = pseudonym_for("AS36903", "MA", "mobile", path=tmp_path / "a.json", now_s=NOW)
    b, _ = pseudonym_for("AS36903", "MA", "mobile", path=tmp_path / "b.json", now_s=NOW)
    assert a != b


def test_rotation_for_everyone_at_the_same_instant_and_old_networks_are_forgotten(
        tmp_path: Path) -> None:
    store = tmp_path / "p.json"
    boundary = (pseudonym.period(NOW) + 1) * ROTATION_S
    before, _ = pseudonym_for("AS36903", "MA", "mobile", path=store, now_s=boundary - 1)
    pseudonym_for("AS6713", "MA", "fixed", path=store, now_s=boundary - 1)
    after, _ = pseudonym_for("AS36903", "MA", "mobile", path=store, now_s=boundary)
    assert after != before
    kept = json.loads(store.read_text())
    assert kept["period"] == pseudonym.period(boundary)
    assert list(kept["pseudonyms"]) == ["AS36903 MA mobile"]  # AS6713 is forgotten


def test_a_damaged_file_is_replaced(tmp_path: Path) -> None:
    store = tmp_path / "p.json"
    store.write_text("{not json")
    name, note = pseudonym_for("AS36903", "MA", "mobile", path=store, now_s=NOW)
    assert note is None and json.loads(store.read_text())["pseudonyms"] == {
        "AS36903 MA mobile": name}


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_unwritable_store_gives_a_one_time_pseudonym_and_says_so(tmp_path: Path) -> None:
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o500)
    try:
        a, note_a = pseudonym_for("AS36903", "MA", "mobile", path=folder / "x" / "p.json",
                                  now_s=NOW)
        b, _ = pseudonym_for("AS36903", "MA", "mobile", path=folder / "x" / "p.json",
                             now_s=NOW)
    finally:
        folder.chmod(0o700)
    assert a != b and note_a is not None and "not kept" in note_a


def test_unwritable_store_as_root_too(tmp_path: Path) -> None:
    # A path through a regular file cannot be created, even by root.
    blocker = tmp_path / "file"
    blocker.write_text("")
    a, note = pseudonym_for("AS36903", "MA", "mobile", path=blocker / "p.json", now_s=NOW)
    assert re.fullmatch(pseudonym.PATTERN, a) and note is not None
    assert str(tmp_path) not in note and "p.json" in note  # written into every line


def test_default_path_honours_xdg_data_home(tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    assert pseudonym.default_path() == tmp_path / "voip-probe" / "pseudonyms.json"


def test_every_measurement_of_a_run_carries_the_networks_pseudonym(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from dataclasses import replace

    from probe.results import read_results
    from probe.session import run_session
    from tests.test_session import cfg, net, one_endpoint_plan

    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    first = run_session(one_endpoint_plan(), cfg(tmp_path), tmp_path / "a", net=net())
    second = run_session(one_endpoint_plan(), cfg(tmp_path), tmp_path / "b", net=net())
    names = set()
    for outcome in (first, second):
        records = read_results(outcome.results_file).measurements
        assert records
        names |= {r["annotations"][pseudonym.ANNOTATION] for r in records}
    assert len(names) == 1 and re.fullmatch(pseudonym.PATTERN, names.pop())
    stored = json.loads((tmp_path / "data" / "voip-probe" / "pseudonyms.json").read_text())
    assert list(stored["pseudonyms"]) == ["AS0 ZZ unknown"]
    # Opted out: no pseudonym at all.
    off = run_session(one_endpoint_plan(), replace(cfg(tmp_path), pseudonym=False),
                      tmp_path / "c", net=net())
    assert all(pseudonym.ANNOTATION not in r["annotations"]
               for r in read_results(off.results_file).measurements)


def test_no_pseudonym_option_reaches_the_run_config() -> None:
    from probe.cli.options import ScanArgs
    from probe.cli.scan import build_config

    assert build_config(ScanArgs(network_type="mobile"), interactive=False).pseudonym
    assert not build_config(ScanArgs(network_type="mobile", no_pseudonym=True),
                            interactive=False).pseudonym
