"""Importing a model's code without the optional packages its libraries would drag in.

MONAI's package import runs `optional_import` eagerly for every optional dependency it knows:
scipy (signal, stats, interpolate, ...), pandas, scikit-learn, scikit-image, matplotlib,
nibabel, PIL... Detection needs none of them from MONAI (its networks and the DDPM schedule are
plain torch), yet they are two thirds of the time to load a model: measured on this 2-core
CPU, importing MONAI's networks after torch took 2.6 CPU s, and 0.6 s with them skipped; the
reconstruction was bit-identical. MONAI records a skipped optional package as unavailable and
raises only if a feature that needs it is used.

`skipping_imports` makes those packages unimportable for the calling thread only, for the
duration of a `with` block: the main thread, registering the input meanwhile, imports scipy and
friends normally, and modules already imported are never affected (Python looks in
sys.modules before asking any finder).
"""
from __future__ import annotations

import contextlib
import importlib.abc
import sys
import threading

# Top-level packages MONAI imports optionally that detection never uses through MONAI.
MONAI_OPTIONAL_HEAVY = ("scipy", "pandas", "sklearn", "skimage", "matplotlib", "nibabel", "PIL", "yaml",
                        "tifffile")


class _SkipFinder(importlib.abc.MetaPathFinder):
    """Refuses the given top-level packages to one thread (ModuleNotFoundError, as if absent)."""

    def __init__(self, names: tuple[str, ...], thread_id: int):
        self.names = frozenset(names)
        self.thread_id = thread_id
        self.skipped: set[str] = set()

    def find_spec(self, fullname, path=None, target=None):
        if threading.get_ident() == self.thread_id and fullname.partition(".")[0] in self.names:
            self.skipped.add(fullname)
            raise ModuleNotFoundError(f"No module named {fullname!r} (skipped while loading the model)",
                                      name=fullname)
        return None  # not ours to decide: the normal finders go on


@contextlib.contextmanager
def skipping_imports(names: tuple[str, ...] = MONAI_OPTIONAL_HEAVY):
    """Within the block, importing any of `names` (top-level packages) from this thread fails as
    if it were not installed; yields the finder (its `skipped` lists what was refused)."""
    finder = _SkipFinder(tuple(names), threading.get_ident())
    sys.meta_path.insert(0, finder)
    try:
        yield finder
    finally:
        sys.meta_path.remove(finder)


def import_lean(load, prefixes: tuple[str, ...] = ("monai",), names: tuple[str, ...] = MONAI_OPTIONAL_HEAVY):
    """load() with `names` skipped; should a library need one of them after all (a future MONAI
    importing scipy unconditionally), the modules under `prefixes` that the attempt left are
    dropped and load() runs again with everything importable: slower, never broken."""
    before = set(sys.modules)
    try:
        with skipping_imports(names):
            return load()
    except ImportError:
        for name in set(sys.modules) - before:
            if name.startswith(prefixes):
                sys.modules.pop(name, None)
        return load()
