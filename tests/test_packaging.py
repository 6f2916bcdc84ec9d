"""The installed package (``pip install .``, not an editable one) carries every shipped
config file: the probe reads them from ``probe/configs`` at run time."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_the_wheel_carries_every_shipped_config(tmp_path: Path) -> None:
    # Built from a clean copy: a build/ folder left in the tree would hide a missing file.
    src = tmp_path / "src"
    shutil.copytree(ROOT, src, symlinks=True, ignore=shutil.ignore_patterns(
        ".venv", ".git", "build", "*.egg-info", "__pycache__", "results", ".mypy_cache",
        ".ruff_cache", ".pytest_cache", ".hypothesis"))
    res = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps",
                          "-q", "-w", str(tmp_path), str(src)],
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    (wheel,) = tmp_path.glob("voip_probe-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    shipped = {f"probe/configs/{p.relative_to(ROOT / 'configs').as_posix()}"
               for p in (ROOT / "configs").rglob("*") if p.is_file()}
    assert shipped and "probe/configs/identity.toml" in shipped
    assert shipped <= names, sorted(shipped - names)
