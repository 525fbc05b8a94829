"""The package's former names, `components` and `operator_tools`, kept for one release (0.3.x) as aliases.

`import components.session_store` (or `from operator_tools import health`) gives the very module of its new
place (outsystems_redis.pulumi.session_store, outsystems_redis.tools.health), so classes and state are one,
after a FutureWarning (Python shows it by default, unlike a DeprecationWarning) that names the new place.
The next minor release drops them.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import sys
import types
import warnings

PACKAGE = "outsystems_redis"
# components/ held the core, the Pulumi shell and, in render/, the programs the servers run.
_SHELL = {"network", "server", "observability", "session_store"}
_AGENTS = {"metrics_agent", "make_room_agent"}
# A former package whose modules went to two places: an empty package of its own, so that
# `from components.render import metrics_agent` resolves each name through new_name.
_SPLIT = {"components.render"}


def new_name(old: str) -> str:
    """Where a module of a former name lives now."""
    first, *rest = old.split(".")
    if first == "operator_tools":
        return ".".join([PACKAGE, "tools", *rest])
    if first != "components":
        raise ValueError(f"{old} is not under a former name of {PACKAGE}")
    if rest and rest[0] in _SHELL:
        return ".".join([PACKAGE, "pulumi", *rest])
    if len(rest) > 1 and rest[0] == "render" and rest[1] in _AGENTS:
        return ".".join([PACKAGE, "server_files", *rest[1:]])
    return ".".join([PACKAGE, *rest])


class _Alias(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def __init__(self) -> None:
        self._own_specs: dict[str, importlib.machinery.ModuleSpec] = {}

    def find_spec(self, name: str, path=None, target=None):
        first = name.split(".")[0]
        # Only below our own alias package: a program's own `components` is left alone.
        if "." not in name or first not in _INSTALLED or sys.modules.get(first) is not _INSTALLED[first]:
            return None
        try:
            real = importlib.util.find_spec(new_name(name))
        except ModuleNotFoundError:
            return None
        if real is None:
            return None
        # The new module's file as origin: `python -m <former name>` runs it with that argv[0].
        return importlib.machinery.ModuleSpec(name, self, origin=real.origin,
                                              is_package=real.submodule_search_locations is not None)

    def create_module(self, spec):
        if spec.name in _SPLIT:
            module = types.ModuleType(spec.name, f"Former name: its modules are in {PACKAGE}/render and server_files.")
            module.__path__ = []
            return module
        real = importlib.import_module(new_name(spec.name))
        self._own_specs[spec.name] = real.__spec__
        return real

    def exec_module(self, module: types.ModuleType) -> None:
        # The import system gave the module the alias's spec: it gets its own back.
        own = self._own_specs.pop(module.__spec__.name, None)
        if own is not None:
            module.__spec__ = own

    def get_code(self, name: str) -> types.CodeType | None:
        """What `python -m <former name>` runs (runpy asks the loader): the new module's code."""
        real = importlib.util.find_spec(new_name(name))
        return real.loader.get_code(real.name)


_FINDER = _Alias()
_INSTALLED: dict[str, types.ModuleType] = {}  # former package name -> its alias module


def install(former: str) -> None:
    """Called by a former package's __init__: warn once, then resolve its submodules to their new places."""
    warnings.warn(f"the package '{former}' is now '{new_name(former + '.x').rsplit('.', 1)[0]}' (and its modules "
                  f"moved: {PACKAGE}/pulumi, render, server_files, tools); '{former}' goes in the next minor "
                  "release", FutureWarning, stacklevel=3)
    _INSTALLED[former] = sys.modules[former]
    if _FINDER not in sys.meta_path:
        sys.meta_path.insert(0, _FINDER)
