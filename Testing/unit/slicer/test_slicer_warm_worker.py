"""The module's warm worker (UADContrastiveSlicerLib/warm_worker.py) with real processes: a
stand-in worker speaking `uadc worker`'s protocol (Testing/fake_worker.py), and the real
`uadc detect` for the one-shot fallback."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
FAKE_WORKER = REPO / "Testing" / "fake_worker.py"
sys.path.insert(0, str(REPO / "UADContrastive"))
sys.path.insert(0, str(REPO / "Testing"))

from process_checks import pid_alive, wait_until_gone  # noqa: E402
from UADContrastiveSlicerLib import process, warm_worker  # noqa: E402

posix_only = pytest.mark.skipif(os.name != "posix", reason="process-group checks use /proc or POSIX signals")


def fake_worker(mode: str = "") -> warm_worker.WarmWorker:
    env = process.child_environment({**os.environ, "FAKE_WORKER_MODE": mode})
    return warm_worker.WarmWorker(env=env, command=[sys.executable, str(FAKE_WORKER)])


def submit(worker, tmp_path: Path, name: str, model: str = "tiny", input_path: str = "in.nrrd"):
    work_dir = tmp_path / name
    work_dir.mkdir()
    arguments = process.detect_arguments(input_path, work_dir / "out", model, "cpu", None)
    run = warm_worker.WorkerRun(worker, arguments, work_dir)
    run.start()
    return run


def poll_until(run, condition, timeout: float = 60.0) -> list:
    events, deadline = [], time.monotonic() + timeout
    while not condition():
        events += run.poll()
        assert time.monotonic() < deadline, f"timed out; stderr:\n{run.stderr_tail}"
        time.sleep(0.02)
    return events + run.poll()


def finish(run, timeout: float = 60.0) -> list:
    return poll_until(run, lambda: run.finished, timeout)


@pytest.fixture
def worker():
    started = fake_worker()
    yield started
    started.kill()


def test_worker_starts_on_first_use_and_is_reused(worker, tmp_path):
    assert worker.process is None  # nothing runs before the first detection
    first = submit(worker, tmp_path, "one")
    assert worker.alive and worker.starts == 1
    events = finish(first)
    assert [e.stage for e in events] == ["load model", "reconstruct", "done"]
    outcome = first.outcome("in.nrrd")
    assert outcome.ok and outcome.result_dir == tmp_path / "one" / "out" / "in"
    assert worker.ready and not first.one_shot
    pid = worker.process.pid

    second = submit(worker, tmp_path, "two")
    events = finish(second)
    assert worker.process.pid == pid and worker.starts == 1
    assert events[0].record["model_reused"] is True
    assert second.outcome("in.nrrd").result_dir == tmp_path / "two" / "out" / "in"
    # each run shows the worker's stderr from its own request only
    assert "request 2" in second.stderr_tail and "request 1" not in second.stderr_tail


@pytest.mark.parametrize("model, message", [
    ("bad-input", "uadc: error: in.nrrd: not a 3D volume"),
    ("unknown", "unknown: is neither a model folder nor a known model name."),
])
def test_a_failed_request_is_the_runs_error_and_the_worker_stays(worker, tmp_path, model, message):
    failed = submit(worker, tmp_path, "failed", model=model)
    finish(failed)
    outcome = failed.outcome("in.nrrd")
    assert not outcome.ok and not outcome.cancelled and failed.exit_code == 2
    assert outcome.message == message
    after = submit(worker, tmp_path, "after")
    finish(after)
    assert after.outcome("in.nrrd").ok and worker.starts == 1


@posix_only
def test_cancel_kills_the_worker_tree_and_the_next_run_starts_a_new_one(worker, tmp_path):
    slow = submit(worker, tmp_path, "slow", model="slow")
    events = poll_until(slow, lambda: slow.last_event is not None and "child_pid" in slow.last_event.record)
    grandchild = next(e.record["child_pid"] for e in events if "child_pid" in e.record)
    leader = worker.process.pid
    assert pid_alive(leader) and pid_alive(grandchild)

    slow.cancel()
    assert wait_until_gone([leader, grandchild], timeout=10)
    assert slow.outcome().cancelled
    assert not (tmp_path / "slow").exists()  # the run's folder is removed, as for a one-shot run

    after = submit(worker, tmp_path, "after")
    finish(after)
    assert after.outcome("in.nrrd").ok
    assert worker.starts == 2 and worker.process.pid != leader


def test_stop_ends_an_idle_worker_at_once(worker, tmp_path):
    finish(submit(worker, tmp_path, "one"))
    worker.stop()
    assert worker.process.returncode == 0  # it quit by itself when asked, not killed after the grace time
    assert not worker.alive
    worker.stop()  # twice is harmless


def test_a_crash_mid_detection_is_reported_and_the_next_run_restarts(worker, tmp_path):
    crashed = submit(worker, tmp_path, "crash", model="crash")
    finish(crashed)
    outcome = crashed.outcome("in.nrrd")
    assert not outcome.ok and not outcome.cancelled and not crashed.one_shot
    assert "stopped unexpectedly (exit code 3)" in outcome.message
    assert "boom in the worker" in outcome.message
    assert not worker.broken  # it had been ready: the next run tries a new worker

    after = submit(worker, tmp_path, "after")
    finish(after)
    assert after.outcome("in.nrrd").ok and worker.starts == 2


def test_a_worker_that_cannot_start_falls_back_to_uadc_detect(tmp_path):
    """The fallback is the real one-shot `uadc detect`, given an input that fails fast."""
    worker = fake_worker("die")
    run = submit(worker, tmp_path, "one", model=str(tmp_path / "no-such-model"),
                 input_path=str(tmp_path / "missing.nrrd"))
    finish(run, timeout=120)
    assert run.one_shot and worker.broken
    assert run.exit_code == 2  # the one-shot process's own exit code
    outcome = run.outcome()
    assert not outcome.ok and "no-such-model" in outcome.message


def test_a_worker_leaving_as_a_request_arrives_is_not_broken(tmp_path):
    worker = fake_worker("leave")
    run = submit(worker, tmp_path, "one", model=str(tmp_path / "no-such-model"),
                 input_path=str(tmp_path / "missing.nrrd"))
    finish(run, timeout=120)
    assert run.one_shot and not worker.broken  # it was ready: later runs try the worker again
    assert "no-such-model" in run.outcome().message


@pytest.mark.parametrize("mode, broken", [("die", True), ("leave", False)])
def test_a_worker_gone_before_the_request_is_written_falls_back_too(mode, broken, tmp_path, monkeypatch):
    """The worker was alive when checked but gone when written to (broken pipe)."""
    worker = fake_worker(mode)
    worker.start()
    worker.process.wait(timeout=30)

    def write_to_a_closed_pipe(arguments):
        raise BrokenPipeError(32, "Broken pipe")

    monkeypatch.setattr(worker, "submit", write_to_a_closed_pipe)
    run = submit(worker, tmp_path, "one", model=str(tmp_path / "no-such-model"),
                 input_path=str(tmp_path / "missing.nrrd"))
    assert run.one_shot and worker.broken is broken
    finish(run, timeout=120)
    assert "no-such-model" in run.outcome().message


def test_a_worker_program_that_does_not_exist_marks_the_worker_broken(tmp_path):
    worker = warm_worker.WarmWorker(command=[str(tmp_path / "no-such-python")])
    with pytest.raises(OSError):  # the one-shot fallback uses the same Python: it cannot start either
        submit(worker, tmp_path, "one")
    assert worker.broken


def test_wait_blocks_until_the_worker_answers(worker, tmp_path):
    run = submit(worker, tmp_path, "one")
    events = run.wait(timeout=60)
    assert run.finished and events[-1].stage == "done"
    assert run.outcome("in.nrrd").ok


def test_worker_command_runs_the_core_worker_with_an_idle_exit():
    command = warm_worker.worker_command(python="PythonSlicer")
    assert command[:4] == ["PythonSlicer", "-m", "UADContrastiveLib", "worker"]
    assert command[4:] == ["--idle-exit", f"{warm_worker.IDLE_EXIT_SECONDS:g}"]
    assert warm_worker.worker_command(python="p", idle_exit_seconds=None)[4:] == []


SLICER_CRASHES = """
import os, sys, time
sys.path.insert(0, {module_dir!r})
from UADContrastiveSlicerLib import process, warm_worker
worker = warm_worker.WarmWorker(env=process.child_environment(),
                                command=warm_worker.worker_command(python=sys.executable))
worker.start()
while not worker.ready:
    worker.events()
    time.sleep(0.02)
print(worker.process.pid, flush=True)
os._exit(0)  # no cleanup, as when Slicer crashes
"""


@posix_only
def test_the_real_worker_ends_when_slicer_ends_without_cleanup():
    """Its stdin ends with the process that held it: an idle worker exits by itself."""
    code = SLICER_CRASHES.format(module_dir=str(REPO / "UADContrastive"))
    parent = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert parent.returncode == 0, parent.stderr[-3000:]
    assert wait_until_gone([int(parent.stdout.split()[-1])], timeout=60), \
        "the worker outlived the process that started it"


@posix_only
def test_the_worker_runs_in_a_private_folder_removed_when_it_ends(worker, tmp_path):
    """Not the shared temporary folder: `python -m` puts the working folder first on sys.path,
    where a numpy.py planted by another user would be imported."""
    import tempfile

    finish(submit(worker, tmp_path, "one"))
    cwd = Path(os.readlink(f"/proc/{worker.process.pid}/cwd"))
    assert cwd == worker.work_dir and cwd != Path(tempfile.gettempdir())
    assert (cwd.stat().st_mode & 0o077) == 0  # only this user can put files there
    worker.stop()
    assert not cwd.exists() and worker.work_dir is None
