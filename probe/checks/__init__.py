"""Checks: one module per check, all of the same shape (OONI's experiment shape).

Every public module of this package is a check; private modules (a leading underscore)
hold what several checks share. A check declares its whole contract in its own module
(``NAME``, ``VERSION``, ``SPEC``, ``run``, ``methods``: see :mod:`probe.checks._base`),
and the registry below is derived from the modules found here, so a new check is one new
file. All I/O goes through ``ctx.net`` (:mod:`probe.net`). Modules are imported on first
use so that the command line starts fast.
"""

from __future__ import annotations

import importlib
import pkgutil
from functools import cache

from probe.checks._base import CheckContext, CheckModule, CheckSpec, TestKeys

__all__ = ["CheckContext", "CheckModule", "CheckSpec", "TestKeys", "check_names",
           "check_specs", "get_check", "methods_for"]


@cache
def check_names() -> tuple[str, ...]:
    """The names of every check: the public modules of this package."""
    return tuple(sorted(m.name for m in pkgutil.iter_modules(__path__)
                        if not m.name.startswith("_")))


@cache
def get_check(name: str) -> CheckModule:
    if name not in check_names():
        raise KeyError(f"no check named {name!r}")
    module: CheckModule = importlib.import_module(f"{__name__}.{name}")
    if module.NAME != name:
        raise AssertionError(f"probe.checks.{name} declares NAME = {module.NAME!r}")
    return module


def check_specs() -> dict[str, CheckSpec]:
    """Each check's target keys (what ``probe.targets`` validates endpoints against)."""
    return {name: get_check(name).SPEC for name in check_names()}


def methods_for(test_name: str, test_keys: TestKeys) -> list[str]:
    """Blocking methods a stored measurement shows (empty for unknown checks)."""
    if test_name not in check_names():
        return []
    return get_check(test_name).methods(test_keys)
