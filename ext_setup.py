#!/usr/bin/env python3
"""One entry for setting up UADContrastive.

Command line (a plain ``python3``, no virtual environment needed beforehand):

    python3 ext_setup.py demo            # create/update .venv, run the embedded demo
    python3 ext_setup.py test            # create/update .venv with test tools, run all tests
    python3 ext_setup.py demo --cuda 12.8  # same, with a CUDA build of torch

Inside 3D Slicer, the module installs its packages itself on first use (after one
confirmation): see UADContrastive/UADContrastiveSlicerLib/dependencies.py. This file is
not shipped with the extension (Slicer would load any .py in its scripted-modules folder
as a module).

The venv is reused: a stamp file records what was installed, so a second run with
the same requirements and torch flavour skips pip entirely.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import threading
import urllib.request
import venv
from pathlib import Path

REPO = Path(__file__).resolve().parent
VENV = REPO / ".venv"
STAMP = VENV / ".uadc-setup.json"
TORCH_VERSION = "2.13.0"
PYTORCH_INDEX = "https://download.pytorch.org/whl"
# The CPU index is probed before pip uses it: pip itself would retry an unreachable index
# for minutes. Name lookup ignores socket timeouts, hence the probe's own deadline.
INDEX_PROBE_SECONDS = 5.0


def venv_python() -> Path:
    return VENV / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def index_reachable(url: str, seconds: float = INDEX_PROBE_SECONDS) -> bool:
    """True when `url` answers within `seconds` (name lookup included)."""
    answered = []

    def probe():
        try:
            with urllib.request.urlopen(urllib.request.Request(url + "/", method="HEAD"), timeout=seconds):
                answered.append(True)
        except (OSError, ValueError):
            pass

    thread = threading.Thread(target=probe, daemon=True)
    thread.start()
    thread.join(seconds)
    return bool(answered)


def local_torch_wheel() -> Path | None:
    """A torch wheel given by UADC_TORCH_WHEEL (for machines without access to PyTorch's index).
    A name that is not a file on this machine stops set-up: silently falling back to an index
    would install a different build from the one the user asked for."""
    wheel = os.environ.get("UADC_TORCH_WHEEL")
    if not wheel:
        return None
    if not Path(wheel).is_file():
        raise SystemExit(f"UADC_TORCH_WHEEL names {wheel}, which is not a file; "
                         "point it at a downloaded torch wheel or unset it")
    return Path(wheel)


def torch_requirement(cuda: str | None) -> list[str]:
    """pip arguments installing the pinned torch: a CUDA build from PyTorch's CUDA index if asked;
    otherwise the CPU build (a few hundred MB instead of several GB of CUDA libraries) from a
    local wheel (UADC_TORCH_WHEEL), else PyTorch's CPU index, else, when that index cannot be
    reached, the default index (on Linux that build carries CUDA libraries; it runs on CPU too)."""
    if cuda:
        return [f"torch=={TORCH_VERSION}", "--index-url", f"{PYTORCH_INDEX}/cu" + cuda.replace(".", "")]
    wheel = local_torch_wheel()
    if wheel is not None:
        return [str(wheel)]
    cpu_index = f"{PYTORCH_INDEX}/cpu"
    if index_reachable(cpu_index):
        return [f"torch=={TORCH_VERSION}", "--index-url", cpu_index]
    print(f"{cpu_index} cannot be reached; installing torch from the default package index instead "
          "(set UADC_TORCH_WHEEL to a downloaded CPU wheel to avoid the larger build)", flush=True)
    return [f"torch=={TORCH_VERSION}"]


def setup_fingerprint(extras: str, cuda: str | None) -> str:
    text = (REPO / "pyproject.toml").read_text(encoding="utf-8") + extras + str(cuda) + TORCH_VERSION
    return hashlib.sha256(text.encode()).hexdigest()


def run(cmd: list, **kwargs) -> None:
    print("+", " ".join(str(c) for c in cmd), flush=True)
    subprocess.run([str(c) for c in cmd], check=True, **kwargs)


def ensure_venv(extras: str, cuda: str | None) -> Path:
    """Create or update .venv so that it holds the project with `extras`; return its python."""
    if not venv_python().exists():
        print(f"Creating virtual environment in {VENV}", flush=True)
        venv.EnvBuilder(with_pip=True).create(VENV)
    python = venv_python()
    fingerprint = setup_fingerprint(extras, cuda)
    if STAMP.exists() and json.loads(STAMP.read_text(encoding="utf-8")).get("fingerprint") == fingerprint:
        print(f"{VENV} is up to date (delete {STAMP.name} to force a reinstall)", flush=True)
        return python
    run([python, "-m", "pip", "install", "--quiet", *torch_requirement(cuda)])
    run([python, "-m", "pip", "install", "--quiet", "-e", f"{REPO}[{extras}]"])
    STAMP.write_text(json.dumps({"fingerprint": fingerprint, "extras": extras, "cuda": cuda}))
    return python


def command_demo(args: argparse.Namespace) -> int:
    python = ensure_venv("demo", args.cuda)
    out = args.out_dir or str(REPO / "demo-output")
    return subprocess.call([str(python), "-m", "UADContrastiveLib", "demo", "--out-dir", out])


def command_test(args: argparse.Namespace) -> int:
    python = ensure_venv("test", args.cuda)
    lint = subprocess.call([str(python), "-m", "ruff", "check", str(REPO)], cwd=REPO)
    tests = subprocess.call([str(python), "-m", "pytest", *args.pytest_args], cwd=REPO)
    return tests or lint


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    for name in ("demo", "test"):
        p = sub.add_parser(name)
        p.add_argument("--cuda", metavar="VERSION", help="install a CUDA build of torch, e.g. 12.8 (default: CPU)")
        if name == "demo":
            p.add_argument("--out-dir", help="where the demo writes its outputs (default: ./demo-output)")
        else:
            p.add_argument("pytest_args", nargs="*", help="extra arguments passed to pytest")
    args = parser.parse_args(argv)
    return {"demo": command_demo, "test": command_test}[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
