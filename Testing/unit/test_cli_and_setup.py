"""The command line's usage errors and progress format; ext_setup's reuse logic."""
from __future__ import annotations

import importlib.util
import io
import json
import sys

import pytest
from conftest import REPO
from UADContrastiveLib.cli import EXIT_BAD_INPUT, main
from UADContrastiveLib.progress import Progress


def load_ext_setup():
    spec = importlib.util.spec_from_file_location("ext_setup", REPO / "ext_setup.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_usage_errors_exit_2(capsys):
    assert main(["detect"]) == EXIT_BAD_INPUT
    assert main(["no-such-command"]) == EXIT_BAD_INPUT
    assert main(["detect", "x.nii.gz", "--out-dir", "o", "--threshold", "high"]) == EXIT_BAD_INPUT
    assert "--threshold must be 'auto' or a number" in capsys.readouterr().err


def test_version_exits_0():
    assert main(["--version"]) == 0


def test_a_reader_that_leaves_early_ends_the_command_quietly():
    """`uadc models list | head -1`: the pipe closes before the listing is written."""
    import os
    import subprocess

    env = {**os.environ, "PYTHONPATH": str(REPO / "UADContrastive")}
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader is gone before the command writes
    try:
        result = subprocess.run([sys.executable, "-m", "UADContrastiveLib", "models", "list"], stdout=write_end,
                                stderr=subprocess.PIPE, text=True, env=env, timeout=120)
    finally:
        os.close(write_end)
    assert result.returncode == 141
    assert "Traceback" not in result.stderr and "error" not in result.stderr


def test_json_progress_lines_are_parseable():
    stream = io.StringIO()
    progress = Progress(json_lines=True, stream=stream)
    progress("reconstruct", 0.5, "slice 40/80")
    progress("reconstruct", 1.7)  # clamped
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert lines == [{"stage": "reconstruct", "fraction": 0.5, "message": "slice 40/80"},
                     {"stage": "reconstruct", "fraction": 1.0, "message": ""}]


def test_ext_setup_torch_choice_and_fingerprint():
    ext_setup = load_ext_setup()
    assert ext_setup.torch_requirement(None) == ["torch==2.13.0"]
    assert ext_setup.torch_requirement("12.8")[-1].endswith("/whl/cu128")
    # the fingerprint decides whether a second run skips pip: it must track extras and flavour
    assert ext_setup.setup_fingerprint("test", None) == ext_setup.setup_fingerprint("test", None)
    assert ext_setup.setup_fingerprint("test", None) != ext_setup.setup_fingerprint("demo", None)
    assert ext_setup.setup_fingerprint("test", None) != ext_setup.setup_fingerprint("test", "12.8")


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX venv layout")
def test_ext_setup_second_run_reuses_the_venv(tmp_path, monkeypatch):
    ext_setup = load_ext_setup()
    monkeypatch.setattr(ext_setup, "VENV", tmp_path / ".venv")
    monkeypatch.setattr(ext_setup, "STAMP", tmp_path / ".venv" / ".uadc-setup.json")
    calls = []
    monkeypatch.setattr(ext_setup, "run", lambda cmd, **kw: calls.append(cmd))
    monkeypatch.setattr(ext_setup, "index_reachable", lambda url: True)
    ext_setup.ensure_venv("test", None)
    assert len(calls) == 2  # torch, then the project
    ext_setup.ensure_venv("test", None)
    assert len(calls) == 2  # nothing reinstalled
    ext_setup.ensure_venv("test", "12.8")
    assert len(calls) == 4  # a different torch flavour reinstalls


def test_cpu_torch_comes_from_the_cpu_index_or_falls_back_quickly(monkeypatch, tmp_path):
    ext_setup = load_ext_setup()
    monkeypatch.delenv("UADC_TORCH_WHEEL", raising=False)
    pinned = f"torch=={ext_setup.TORCH_VERSION}"
    monkeypatch.setattr(ext_setup, "index_reachable", lambda url: url.endswith("/whl/cpu"))
    assert ext_setup.torch_requirement(None) == [pinned, "--index-url", "https://download.pytorch.org/whl/cpu"]
    assert ext_setup.torch_requirement("12.8") == [pinned, "--index-url", "https://download.pytorch.org/whl/cu128"]
    monkeypatch.setattr(ext_setup, "index_reachable", lambda url: False)
    assert ext_setup.torch_requirement(None) == [pinned]  # the default index
    wheel = tmp_path / f"torch-{ext_setup.TORCH_VERSION}+cpu-cp311-cp311-linux_x86_64.whl"
    wheel.write_bytes(b"")
    monkeypatch.setenv("UADC_TORCH_WHEEL", str(wheel))
    assert ext_setup.torch_requirement(None) == [str(wheel)]


def test_unreachable_index_probe_gives_up_within_its_deadline():
    import time

    ext_setup = load_ext_setup()
    start = time.perf_counter()
    assert ext_setup.index_reachable("http://10.255.255.1/whl/cpu", seconds=0.5) is False  # unroutable
    assert time.perf_counter() - start < 2.0
