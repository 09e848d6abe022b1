"""Per-input output folders that appear whole or not at all.

Each input's results are written into a hidden temporary folder beside the final one
and renamed into place at the end, so an interrupted or failed run leaves nothing
under DIR/<stem>, and two runs into the same DIR never mix their files.
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

from ..errors import InputError


def check_output_root(out_dir: Path) -> Path:
    """Create DIR if needed and prove it is writable, before any work is done."""
    out_dir = Path(out_dir)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=out_dir, prefix=".uadc-write-test-"):
            pass
    except OSError as error:
        raise InputError(out_dir, f"output folder is not writable ({error.strerror}).",
                         "Choose another --out-dir.") from None
    return out_dir


def check_not_present(final: Path, overwrite: bool) -> None:
    if final.exists() and any(final.iterdir()) and not overwrite:
        raise InputError(final, "already holds results.", "Pass --overwrite to replace them, or choose another --out-dir.")


@contextlib.contextmanager
def staged_folder(final: Path, overwrite: bool = False):
    """Yield a temporary folder; on success it replaces `final` (only if allowed)."""
    final = Path(final)
    check_not_present(final, overwrite)
    staging = Path(tempfile.mkdtemp(prefix=f".{final.name}.partial-", dir=final.parent))
    try:
        yield staging
        check_not_present(final, overwrite)  # another run may have finished meanwhile
        if final.exists():
            retired = Path(tempfile.mkdtemp(prefix=f".{final.name}.old-", dir=final.parent))
            os.replace(final, retired / final.name)
            os.replace(staging, final)
            shutil.rmtree(retired, ignore_errors=True)
        else:
            try:
                os.replace(staging, final)
            except OSError:  # a concurrent run renamed its results into place first
                check_not_present(final, overwrite=False)
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def write_run_summary(out_dir: Path, command: str, entries: list[dict]) -> Path:
    """One summary per run (unique name: concurrent runs never overwrite each other's)."""
    from ..io import write_text

    stamp = time.strftime("%Y%m%d-%H%M%S")
    path = Path(out_dir) / f"uadc-{command}-summary-{stamp}-{os.getpid()}.json"
    write_text(json.dumps({"command": command, "inputs": entries}, indent=2), path)
    return path
