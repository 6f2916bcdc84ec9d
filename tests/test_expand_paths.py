"""Which files a folder argument of compare/timeline/report/upload stands for."""

from __future__ import annotations

from pathlib import Path

import pytest

from probe.results import ResultsError, expand_paths


def test_folders_are_searched_but_hidden_parts_are_skipped(tmp_path: Path) -> None:
    root = tmp_path / ".data"  # a hidden folder given explicitly is searched
    for rel in ("a.jsonl", "sub/b.jsonl.gz", ".runs/1/c.jsonl", "sub/.d.jsonl", "notes.txt"):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text("{}\n")
    got = [f.relative_to(root).as_posix() for f in expand_paths([root])]
    assert got == ["a.jsonl", "sub/b.jsonl.gz"]
    hidden = root / ".runs" / "1" / "c.jsonl"
    assert expand_paths([hidden]) == [hidden]  # a file named directly is always taken
    with pytest.raises(ResultsError, match="no such file or folder"):
        expand_paths([tmp_path / "missing"])
