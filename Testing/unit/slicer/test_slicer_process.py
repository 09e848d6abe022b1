"""The module's child-process runner, with real subprocesses running small fake CLIs."""
from __future__ import annotations

import json
import os
import sys
import textwrap
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(REPO / "UADContrastive"))
sys.path.insert(0, str(REPO / "Testing"))

from process_checks import pid_alive, wait_until_gone  # noqa: E402
from UADContrastiveSlicerLib import process  # noqa: E402

posix_only = pytest.mark.skipif(os.name != "posix", reason="process-group checks use /proc or POSIX signals")


def write_script(folder: Path, body: str) -> Path:
    path = folder / "fake_cli.py"
    path.write_text("import json, os, sys, time, subprocess\n"
                    "def emit(**record):\n"
                    "    print(json.dumps(record), flush=True)\n" + textwrap.dedent(body))
    return path


def start(tmp_path: Path, body: str, *args: str) -> process.DetectionRun:
    work_dir = tmp_path / "work"
    work_dir.mkdir()
    script = write_script(tmp_path, body)
    run = process.DetectionRun([sys.executable, str(script), *args], work_dir)
    run.start()
    return run


def poll_until_finished(run: process.DetectionRun, timeout: float = 20.0) -> list:
    events, deadline = [], time.monotonic() + timeout
    while not run.finished:
        events += run.poll()
        assert time.monotonic() < deadline, "child did not finish"
        time.sleep(0.02)
    return events + run.poll()


# ----------------------------------------------------------------------------- parsing
def test_progress_line_parser_accepts_records_and_ignores_noise():
    event = process.parse_progress_line('{"stage": "reconstruct", "fraction": 0.25, "message": "step 5/20"}\n')
    assert (event.stage, event.fraction, event.message) == ("reconstruct", 0.25, "step 5/20")
    assert process.parse_progress_line("Downloading weights... 45%") is None
    assert process.parse_progress_line("") is None
    assert process.parse_progress_line("{not json") is None
    assert process.parse_progress_line('{"fraction": 0.5}') is None  # no stage
    assert process.parse_progress_line('[1, 2]') is None
    assert process.parse_progress_line('{"stage": "x", "fraction": 7}').fraction == 1.0
    assert process.parse_progress_line('{"stage": "x", "fraction": -1}').fraction == 0.0
    assert process.parse_progress_line('{"stage": "x", "fraction": "half"}').fraction == 0.0
    done = process.parse_progress_line('{"stage": "done", "fraction": 1.0, "outputs": {"a": "b"}}')
    assert done.record["outputs"] == {"a": "b"}


def test_cuda_out_of_memory_is_mapped_to_cpu_advice():
    text = "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB"
    assert "CPU" in process.advice_for_error(text)
    assert process.advice_for_error("ModuleNotFoundError: No module named 'monai'") == process.MISSING_MODULE_ADVICE
    assert process.advice_for_error("input.nrrd: not a 3D volume") == ""


def test_detect_command_follows_the_cli_contract(tmp_path):
    command = process.detect_command(tmp_path / "input.nrrd", tmp_path / "out", "ixi-t1", "cpu", 150.0,
                                     uncertainty=True, python="PythonSlicer")
    assert command[:5] == ["PythonSlicer", "-m", "UADContrastiveLib", "detect", str(tmp_path / "input.nrrd")]
    pairs = dict(zip(command, command[1:]))
    assert pairs["--out-dir"] == str(tmp_path / "out")
    assert pairs["--model"] == "ixi-t1"
    assert pairs["--device"] == "cpu"
    assert pairs["--threshold"] == "auto"
    assert float(pairs["--min-size"]) == 150.0
    assert {"--json-progress", "--overwrite", "--uncertainty", "--no-overview"} <= set(command)


def test_child_environment_puts_the_module_folder_first():
    env = process.child_environment({"PYTHONPATH": "/elsewhere", "HOME": "/h"})
    assert env["PYTHONPATH"].split(os.pathsep) == [str(process.MODULE_DIR), "/elsewhere"]
    assert (process.MODULE_DIR / "UADContrastiveLib").is_dir()
    assert env["HOME"] == "/h"


# ----------------------------------------------------------------------------- running
def test_run_reports_progress_in_order_and_finds_the_result_folder(tmp_path):
    run = start(tmp_path, """
        emit(stage="load model", fraction=0.0, message="loading")
        print("some library chatter on stdout", flush=True)
        print("a warning", file=sys.stderr, flush=True)
        emit(stage="reconstruct", fraction=0.5, message="half")
        emit(stage="done", fraction=1.0, message="1 of 1 done",
             outputs={sys.argv[1]: sys.argv[2]}, failed=0)
    """, "in.nrrd", str(tmp_path / "out" / "in"))
    events = poll_until_finished(run)
    assert [e.stage for e in events] == ["load model", "reconstruct", "done"]
    outcome = run.outcome("in.nrrd")
    assert outcome.ok and outcome.result_dir == tmp_path / "out" / "in"
    assert "a warning" in run.stderr_tail


def test_failed_run_reports_the_error_and_oom_advice(tmp_path):
    run = start(tmp_path, """
        emit(stage="reconstruct", fraction=0.1, message="")
        print("RuntimeError: CUDA out of memory. Tried to allocate 1.5 GiB", file=sys.stderr, flush=True)
        emit(stage="error", fraction=0.0, message="CUDA out of memory", exit_code=1)
        sys.exit(1)
    """)
    poll_until_finished(run)
    outcome = run.outcome()
    assert not outcome.ok and not outcome.cancelled
    assert outcome.message == "CUDA out of memory"
    assert outcome.advice == process.OUT_OF_MEMORY_ADVICE


def test_crash_without_error_line_uses_stderr(tmp_path):
    run = start(tmp_path, """
        raise ValueError("boom from the child")
    """)
    poll_until_finished(run)
    outcome = run.outcome()
    assert not outcome.ok
    assert "boom from the child" in outcome.message


def test_poll_never_blocks_while_the_child_is_silent(tmp_path):
    run = start(tmp_path, """
        time.sleep(30)
    """)
    try:
        for _ in range(20):
            assert run.poll() == []
        # every call came back while the child still sleeps: none waited for it
        assert run.process.poll() is None and not run.finished
    finally:
        run.cancel()


@posix_only
def test_cancel_kills_the_whole_process_tree(tmp_path):
    run = start(tmp_path, """
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
        emit(stage="spawned", fraction=0.0, child_pid=child.pid)
        time.sleep(60)
    """)
    deadline = time.monotonic() + 20
    grandchild = None
    while grandchild is None:
        for event in run.poll():
            grandchild = event.record.get("child_pid", grandchild)
        assert time.monotonic() < deadline, "fake CLI never reported its child"
        time.sleep(0.02)
    leader = run.process.pid
    assert pid_alive(leader) and pid_alive(grandchild)

    run.cancel()
    assert wait_until_gone([leader, grandchild], timeout=5)
    assert run.outcome().cancelled


def test_cancel_leaves_no_files(tmp_path):
    run = start(tmp_path, """
        out = os.path.join(os.getcwd(), "out", "input")
        os.makedirs(out)
        for index in range(1000):
            open(os.path.join(out, f"part{index}.nii.gz"), "w").write("x" * 1000)
            emit(stage="write", fraction=index / 1000, message=str(index))
            time.sleep(0.01)
    """)
    work_dir = run.work_dir
    deadline = time.monotonic() + 20
    while not any(e.stage == "write" for e in run.poll()):
        assert time.monotonic() < deadline
        time.sleep(0.02)
    assert (work_dir / "out" / "input").is_dir()
    run.cancel()
    assert not work_dir.exists()
    assert {p.name for p in tmp_path.iterdir()} == {"fake_cli.py"}


def test_successful_run_cleanup_removes_the_work_dir(tmp_path):
    run = start(tmp_path, """
        open("input.nrrd", "w").write("x")
        emit(stage="done", fraction=1.0, outputs={})
    """)
    poll_until_finished(run)
    assert (run.work_dir / "input.nrrd").exists()
    run.cleanup()
    assert not run.work_dir.exists()


def test_make_work_dir_is_private_and_empty():
    folder = process.make_work_dir()
    try:
        assert folder.is_dir() and not any(folder.iterdir())
        if os.name == "posix":
            assert folder.stat().st_mode & 0o077 == 0
    finally:
        folder.rmdir()


def test_progress_records_are_json_lines_the_core_really_prints():
    """The core's own Progress class, when available, produces lines the parser accepts."""
    progress_module = pytest.importorskip("UADContrastiveLib.progress")
    import io

    stream = io.StringIO()
    reporter = progress_module.Progress(json_lines=True, stream=stream)
    reporter("reconstruct", 0.3, "step 3/10")
    reporter("done", 1.0, "ok", outputs={"in.nii.gz": "/out/in"})
    events = [process.parse_progress_line(line) for line in stream.getvalue().splitlines()]
    assert [(e.stage, e.fraction) for e in events] == [("reconstruct", 0.3), ("done", 1.0)]
    assert json.loads(stream.getvalue().splitlines()[1])["outputs"] == events[1].record["outputs"]


def test_real_cli_error_reaches_the_user_as_a_message(tmp_path):
    """The actual core CLI, run the way the module runs it: a bad model gives exit code 2
    and its JSON error line becomes the message (not a traceback)."""
    pytest.importorskip("UADContrastiveLib.cli")
    work_dir = process.make_work_dir()
    command = process.detect_command(tmp_path / "missing.nrrd", work_dir / "out", str(tmp_path / "no-such-model"),
                                     "cpu", None, python=sys.executable)
    run = process.DetectionRun(command, work_dir, env=process.child_environment())
    run.start()
    poll_until_finished(run, timeout=120)
    outcome = run.outcome()
    run.cleanup()
    assert run.process.returncode == 2
    assert not outcome.ok
    assert outcome.message and "Traceback" not in outcome.message
    assert not work_dir.exists()
