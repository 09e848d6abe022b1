"""A warm `uadc worker` process that the module reuses from one detection to the next.

A one-shot `uadc detect` process pays Python's start-up, the torch/MONAI imports and the
model load (about 3 s on a laptop CPU; Testing/benchmarks/bench_warm_worker.py) before any
work. The worker pays them on the first detection only: it keeps the last used model loaded
(another model or device replaces it inside the worker) and answers requests written to its
stdin (UADContrastiveLib/protocol.py).

Pure Python (no slicer, no Qt), polled from a qt.QTimer like process.DetectionRun, whose
interface WorkerRun keeps, so the widget follows either alike. Life cycle:
- started by the first detection, reused by the next ones, restarted by the next detection
  when it has died (crash, killed, or exited after IDLE_EXIT_SECONDS without a request);
- Cancel kills its whole process tree (a detection cannot be stopped half-way and leave the
  worker in a known state); the next detection starts a new one;
- WarmWorker.stop() ends it: the module's widget calls it from cleanup(), which Slicer calls
  when the module is unloaded, on application exit and on reload
  (Base/Python/slicer/ScriptedLoadableModule.py, util.reloadScriptedModule);
- if Slicer ends without that (a crash), the worker reads the end of its stdin and exits, or,
  mid-detection, fails to write its next record and exits;
- if it dies before it took a request (it cannot start: wrong Python, missing package), that
  detection runs in a one-shot process instead, and, when it never even became ready, so do
  all later ones (`broken`).
"""
from __future__ import annotations

import collections
import contextlib
import queue
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from UADContrastiveSlicerLib import core, process

# A warm worker holds about 1 GB (torch and the model); an idle one gives it back after this.
IDLE_EXIT_SECONDS = 30 * 60
STOP_GRACE_SECONDS = 2.0  # how long stop() lets the worker quit by itself (Slicer waits that long at exit)
POLL_SECONDS = 0.05  # wait(): scripts and tests only; the GUI polls from its timer


def worker_command(python: str | None = None, idle_exit_seconds: float | None = IDLE_EXIT_SECONDS) -> list[str]:
    arguments = [] if idle_exit_seconds is None else ["--idle-exit", f"{idle_exit_seconds:g}"]
    return process.core_command("worker", arguments, python)


class WarmWorker:
    """One `uadc worker` child process, started on demand; one request at a time."""

    def __init__(self, env: dict | None = None, command: list[str] | None = None):
        self.command = command or worker_command()
        self.env = env
        self.process: subprocess.Popen | None = None
        self.starts = 0
        self.ready = False  # the current process announced itself: it can take requests
        self.broken = False  # a worker died before it was ever ready: use one-shot processes
        self._events: queue.Queue = queue.Queue()
        self._stderr = collections.deque(maxlen=process.STDERR_LINES_KEPT)
        self._stderr_count = 0
        self._threads = []
        self._next_id = 0
        self.work_dir: Path | None = None  # the running process's private working folder

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self) -> None:
        # Requests carry absolute paths; a run's own folder is removed after it, so the worker
        # gets a private folder of its own. Never the shared temporary folder: `python -m`
        # puts the working folder first on sys.path, and a numpy.py planted there by another
        # user would be imported.
        self._remove_work_dir()
        self.work_dir = Path(tempfile.mkdtemp(prefix="uadc-worker-"))
        try:
            self.process = subprocess.Popen(
                self.command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                env=self.env, cwd=str(self.work_dir), text=True, encoding="utf-8", errors="replace",
                bufsize=1, **process.child_process_options())
        except OSError:
            self.broken = True
            self._remove_work_dir()
            raise
        self.starts += 1
        self.ready = False
        self._events = queue.Queue()  # a new process: nothing the previous one wrote is read
        self._threads = process.start_pumps(self.process, self._events.put, self._keep_stderr)

    def _keep_stderr(self, line: str) -> None:
        self._stderr.append(line)
        self._stderr_count += 1

    def submit(self, detect_arguments: list[str]) -> int:
        """Send one detection request (starting the worker if it is not running); its id.
        OSError when the worker cannot be started or written to."""
        if not self.alive:
            self.start()
        self._next_id += 1
        self.process.stdin.write(core.protocol().request_line(self._next_id, detect_arguments))
        self.process.stdin.flush()
        return self._next_id

    def events(self) -> list[process.ProgressEvent]:
        """Records that arrived since the last call (never blocks); any request's, in order."""
        events = []
        while True:
            try:
                line = self._events.get_nowait()
            except queue.Empty:
                return events
            event = process.parse_progress_line(line)
            if event is None:
                continue
            if event.stage == core.protocol().READY:
                self.ready = True
            events.append(event)

    @property
    def drained(self) -> bool:
        """The process exited and everything it wrote has been read."""
        return process.exited_and_read(self.process, self._threads, self._events)

    @property
    def stderr_mark(self) -> int:
        return self._stderr_count

    def stderr_since(self, mark: int) -> str:
        """What the worker wrote to stderr after `mark` (as much of it as is kept)."""
        count = min(self._stderr_count - mark, len(self._stderr))
        return "".join(list(self._stderr)[len(self._stderr) - count:]) if count > 0 else ""

    def abandon(self) -> None:
        """After the worker failed to take a request: make sure it is gone, and remember when it
        never even became ready (it cannot run here: `broken`, later runs go one-shot)."""
        self.kill()
        self.events()  # what it wrote before it went: sets `ready` if it announced itself
        self.broken = self.broken or not self.ready

    def kill(self) -> None:
        """Stop the worker and every process it started, now."""
        if self.process is None:
            return
        process.kill_process_tree(self.process)
        for thread in self._threads:
            thread.join(timeout=5)
        self._remove_work_dir()

    def _remove_work_dir(self) -> None:
        if self.work_dir is not None:
            shutil.rmtree(self.work_dir, ignore_errors=True)
            self.work_dir = None

    def stop(self, grace_seconds: float = STOP_GRACE_SECONDS) -> None:
        """End the worker: ask it to quit (between detections it is idle and does so at once),
        and kill it if it does not within `grace_seconds`."""
        if not self.alive:
            self._remove_work_dir()
            return
        with contextlib.suppress(OSError):  # it may be going away already
            self.process.stdin.write(core.protocol().quit_line())
            self.process.stdin.close()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=grace_seconds)
        self.kill()  # also whatever it started, if anything is left


class WorkerRun(process.DetectionRun):
    """One detection answered by a WarmWorker, with DetectionRun's interface (start, poll,
    finished, outcome, cancel, cleanup, wait). If the worker dies before it takes the
    request, the detection runs in a one-shot process (DetectionRun's own behaviour)."""

    def __init__(self, worker: WarmWorker, detect_arguments: list[str], work_dir: Path,
                 remove_work_dir: bool = True):
        one_shot_command = process.core_command("detect", detect_arguments, python=worker.command[0])
        super().__init__(one_shot_command, work_dir, env=worker.env, remove_work_dir=remove_work_dir)
        self.worker = worker
        self.detect_arguments = list(detect_arguments)
        self.request_id: int | None = None
        self.acknowledged = False  # the worker printed a record for this request
        self.terminal: dict | None = None  # the DONE or ERROR record that ended it
        self.one_shot = False  # the worker could not take it: DetectionRun's process runs it
        self._stderr_mark = 0

    def start(self) -> None:
        self._stderr_mark = self.worker.stderr_mark
        try:
            self.request_id = self.worker.submit(self.detect_arguments)
        except OSError:  # could not start it, or it died before reading (broken pipe)
            self.worker.abandon()
            self._run_one_shot()

    def _run_one_shot(self) -> None:
        self.one_shot = True
        super().start()

    def poll(self) -> list[process.ProgressEvent]:
        if self.one_shot:
            return super().poll()
        protocol = core.protocol()
        events = []
        for event in self.worker.events():
            if event.record.get(protocol.REQUEST) != self.request_id:
                continue  # the ready record, or a line of no request
            self.acknowledged = True
            self._note(event)
            if event.stage in protocol.TERMINAL_STAGES:
                self.terminal = event.record
            events.append(event)
        if not (self.acknowledged or self.cancelled) and self.worker.drained:
            self.worker.abandon()
            self._run_one_shot()
        return events

    @property
    def finished(self) -> bool:
        if self.one_shot:
            return super().finished
        return self.terminal is not None or (self.acknowledged and self.worker.drained)

    @property
    def crashed(self) -> bool:
        """The worker died in the middle of this detection."""
        return not self.one_shot and self.terminal is None and self.acknowledged and self.worker.drained

    @property
    def exit_code(self) -> int | None:
        if self.one_shot:
            return super().exit_code
        if self.terminal is not None:
            # every terminal record carries it; a done record without (an older core): failed inputs decide
            errors = core.errors()
            failed = self.terminal.get("failed")
            return int(self.terminal.get("exit_code", errors.EXIT_BAD_INPUT if failed else errors.EXIT_OK))
        code = self.worker.process.returncode if self.worker.process else None
        return code if code else (core.errors().EXIT_INTERNAL if self.crashed else None)

    @property
    def stderr_tail(self) -> str:
        return super().stderr_tail if self.one_shot else self.worker.stderr_since(self._stderr_mark)

    def outcome(self, input_path=None) -> process.Outcome:
        if not self.crashed or self.cancelled:
            return super().outcome(input_path)
        tail = self.stderr_tail
        message = f"The detection process stopped unexpectedly (exit code {self.exit_code})."
        details = process.last_lines(tail)
        return process.Outcome(False, message=message + (f"\n{details}" if details else ""),
                               advice=process.advice_for_error(tail))

    def wait(self, timeout: float | None = None) -> list[process.ProgressEvent]:
        """Block until finished (scripts and tests; the GUI polls instead)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        events = []
        while not self.one_shot and not self.finished:
            if deadline is not None and time.monotonic() > deadline:
                raise subprocess.TimeoutExpired(self.detect_arguments, timeout)
            events += self.poll()
            time.sleep(POLL_SECONDS)
        if self.one_shot:
            remaining = None if deadline is None else max(deadline - time.monotonic(), 0.0)
            return events + super().wait(remaining)
        return events + self.poll()

    def cancel(self) -> None:
        """Kill the worker's whole process tree (the next detection starts a new worker);
        the scene is untouched and the run's folder removed, as for a one-shot process."""
        if self.one_shot:
            super().cancel()
            return
        self.cancelled = True
        self.worker.kill()
        self.cleanup()
