"""The command line's usage errors and progress format; ext_setup's reuse logic."""
from __future__ import annotations

import importlib.util
import io
import json
import sys

import pytest
from conftest import REPO
from UADContrastiveLib.cli import main
from UADContrastiveLib.errors import EXIT_BAD_INPUT
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


@pytest.fixture
def ext_setup(tmp_path, monkeypatch):
    """ext_setup.py on a venv in tmp_path whose pip commands are recorded, not run. PyTorch's
    index is never asked: each test says whether it answers, so the result is the same on
    every machine (with or without internet, with or without UADC_TORCH_WHEEL set)."""
    module = load_ext_setup()
    monkeypatch.delenv("UADC_TORCH_WHEEL", raising=False)
    monkeypatch.setattr(module, "VENV", tmp_path / ".venv")
    monkeypatch.setattr(module, "STAMP", tmp_path / ".venv" / ".uadc-setup.json")
    module.venv_python().parent.mkdir(parents=True)
    module.venv_python().touch()  # an existing venv: set-up goes straight to pip
    module.pip_commands = []
    monkeypatch.setattr(module, "run", lambda cmd, **kw: module.pip_commands.append([str(c) for c in cmd]))
    return module


def index_answers(answers: bool):
    asked = []

    def stand_in(url, seconds=None):
        asked.append(url)
        return answers
    stand_in.asked = asked
    return stand_in


def torch_install_arguments(ext_setup) -> list[str]:
    """What set-up asked pip to install first (torch), after `python -m pip install --quiet`."""
    first = ext_setup.pip_commands[0]
    assert first[:5] == [str(ext_setup.venv_python()), "-m", "pip", "install", "--quiet"]
    return first[5:]


def test_setup_with_the_cpu_index_reachable_installs_cpu_torch_from_it(ext_setup, monkeypatch):
    probe = index_answers(True)
    monkeypatch.setattr(ext_setup, "index_reachable", probe)
    ext_setup.ensure_venv("test", None)
    assert probe.asked == ["https://download.pytorch.org/whl/cpu"]
    assert torch_install_arguments(ext_setup) == [
        f"torch=={ext_setup.TORCH_VERSION}", "--index-url", "https://download.pytorch.org/whl/cpu"]
    assert ext_setup.pip_commands[1][-2:] == ["-e", f"{ext_setup.REPO}[test]"]


def test_setup_with_the_cpu_index_unreachable_says_so_and_uses_the_default_index(ext_setup, monkeypatch, capsys):
    monkeypatch.setattr(ext_setup, "index_reachable", index_answers(False))
    ext_setup.ensure_venv("test", None)
    assert torch_install_arguments(ext_setup) == [f"torch=={ext_setup.TORCH_VERSION}"]
    assert "https://download.pytorch.org/whl/cpu cannot be reached" in capsys.readouterr().out


def test_setup_with_a_local_wheel_installs_it_without_asking_any_index(ext_setup, monkeypatch, tmp_path):
    probe = index_answers(True)
    monkeypatch.setattr(ext_setup, "index_reachable", probe)
    wheel = tmp_path / f"torch-{ext_setup.TORCH_VERSION}+cpu-cp311-cp311-linux_x86_64.whl"
    wheel.write_bytes(b"")
    monkeypatch.setenv("UADC_TORCH_WHEEL", str(wheel))
    ext_setup.ensure_venv("test", None)
    assert torch_install_arguments(ext_setup) == [str(wheel)]
    assert probe.asked == []


def test_setup_with_a_local_wheel_that_is_missing_stops_before_pip(ext_setup, monkeypatch, tmp_path):
    monkeypatch.setattr(ext_setup, "index_reachable", index_answers(True))
    monkeypatch.setenv("UADC_TORCH_WHEEL", str(tmp_path / "no-such.whl"))
    with pytest.raises(SystemExit, match="no-such.whl, which is not a file"):
        ext_setup.ensure_venv("test", None)
    assert ext_setup.pip_commands == []
    assert not ext_setup.STAMP.exists()


def test_setup_with_cuda_asks_the_cuda_index_only(ext_setup, monkeypatch):
    probe = index_answers(False)
    monkeypatch.setattr(ext_setup, "index_reachable", probe)
    ext_setup.ensure_venv("test", "12.8")
    assert torch_install_arguments(ext_setup) == [
        f"torch=={ext_setup.TORCH_VERSION}", "--index-url", "https://download.pytorch.org/whl/cu128"]
    assert probe.asked == []


def test_setup_fingerprint_tracks_extras_and_torch_flavour(ext_setup):
    # the fingerprint decides whether a second run skips pip
    assert ext_setup.setup_fingerprint("test", None) == ext_setup.setup_fingerprint("test", None)
    assert ext_setup.setup_fingerprint("test", None) != ext_setup.setup_fingerprint("demo", None)
    assert ext_setup.setup_fingerprint("test", None) != ext_setup.setup_fingerprint("test", "12.8")


def test_setup_second_run_reuses_the_venv(ext_setup, monkeypatch):
    monkeypatch.setattr(ext_setup, "index_reachable", index_answers(True))
    ext_setup.ensure_venv("test", None)
    assert len(ext_setup.pip_commands) == 2  # torch, then the project
    ext_setup.ensure_venv("test", None)
    assert len(ext_setup.pip_commands) == 2  # nothing reinstalled
    ext_setup.ensure_venv("test", "12.8")
    assert len(ext_setup.pip_commands) == 4  # a different torch flavour reinstalls


def test_index_probe_gives_up_at_its_deadline_when_the_name_lookup_hangs(monkeypatch):
    """Name lookup ignores socket timeouts; the probe's own deadline must end the wait. The
    stand-in lookup blocks until released, so without the deadline this test never returns."""
    import threading

    ext_setup = load_ext_setup()
    release = threading.Event()

    def hanging_lookup(*args, **kwargs):
        release.wait()
        raise OSError("name lookup released by the test")
    monkeypatch.setattr(ext_setup.urllib.request, "urlopen", hanging_lookup)
    try:
        assert ext_setup.index_reachable("https://download.pytorch.org/whl/cpu", seconds=0.2) is False
    finally:
        release.set()


@pytest.mark.parametrize("as_program", [True, False])
def test_detect_loads_the_model_lean_only_when_the_process_ends_with_the_command(as_program, monkeypatch, tmp_path):
    """`uadc` itself (run_and_exit) may leave out MONAI's optional imports; an in-process caller
    of main() may need them later."""
    from UADContrastiveLib.commands import detect
    from UADContrastiveLib.errors import InputError

    asked = {}

    def stand_in(model, device, progress, lean_imports=False, **kwargs):
        asked["lean_imports"] = lean_imports
        raise InputError(None, "stop after the model load was asked for")
    monkeypatch.setattr(detect, "load_detector", stand_in)
    code = main(["detect", str(tmp_path / "t1.nii.gz"), "--out-dir", str(tmp_path / "out")],
                process_ends_with_command=as_program)
    assert code == EXIT_BAD_INPUT and asked == {"lean_imports": as_program}
