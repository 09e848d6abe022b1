"""Run `UADContrastiveLib detect` in a separate process and follow its progress.

Pure Python (no slicer, no Qt): the widget polls DetectionRun.poll() from a qt.QTimer,
so the GUI never blocks, and the same class is tested with real subprocesses.
Why a separate process: torch inference would freeze Slicer's GUI thread, a crash or
CUDA out-of-memory in the model cannot take Slicer down, and Cancel can simply kill it.
This is the one-shot process (one per detection); warm_worker keeps one process for many.
"""
from __future__ import annotations

import collections
import json
import os
import queue
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path

from UADContrastiveSlicerLib import core

# The folder holding the UADContrastiveLib package (the module's folder): put on the
# child's PYTHONPATH, because an installed extension's scripted-module folder is on
# Slicer's sys.path but not necessarily on a fresh PythonSlicer's.
MODULE_DIR = Path(__file__).resolve().parent.parent
INPUT_NAME = "input.nrrd"
STDERR_LINES_KEPT = 200

OUT_OF_MEMORY_MARKERS = ("cuda out of memory", "outofmemoryerror", "cublas_status_alloc_failed",
                         "cudnn_status_alloc_failed", "hip out of memory")
OUT_OF_MEMORY_ADVICE = ("The graphics card ran out of memory. Choose 'CPU' as device and run "
                        "again (slower, but it needs no GPU memory), or close other programs "
                        "that use the GPU.")
MISSING_MODULE_ADVICE = ("A Python package the detection needs is missing. Reopen the module "
                         "and accept the offer to install the dependencies, then restart Slicer.")


@dataclass
class ProgressEvent:
    stage: str
    fraction: float
    message: str = ""
    record: dict = field(default_factory=dict)


@dataclass
class Outcome:
    ok: bool
    result_dir: Path | None = None
    message: str = ""
    advice: str = ""
    cancelled: bool = False


def parse_progress_line(line: str) -> ProgressEvent | None:
    """One stdout line -> event; None for anything that is not a progress record
    (libraries sometimes print to stdout; those lines must not break the run)."""
    line = line.strip()
    if not line.startswith("{"):
        return None
    try:
        record = json.loads(line)
    except ValueError:
        return None
    if not isinstance(record, dict) or not isinstance(record.get("stage"), str):
        return None
    try:
        fraction = min(max(float(record.get("fraction", 0.0)), 0.0), 1.0)
    except (TypeError, ValueError):
        fraction = 0.0
    return ProgressEvent(record["stage"], fraction, str(record.get("message", "")), record)


def advice_for_error(text: str) -> str:
    """What the user can do about an error, judged from its message or stderr."""
    lowered = text.lower()
    if any(marker in lowered for marker in OUT_OF_MEMORY_MARKERS):
        return OUT_OF_MEMORY_ADVICE
    if "no module named" in lowered:
        return MISSING_MODULE_ADVICE
    return ""


def python_executable() -> str:
    """Slicer's Python launcher when inside Slicer, else the running interpreter."""
    return shutil.which("PythonSlicer") or sys.executable


def core_command(command: str, arguments: list[str], python: str | None = None) -> list[str]:
    """`uadc COMMAND ARGUMENTS...` run by Slicer's Python."""
    return [python or python_executable(), "-m", "UADContrastiveLib", command, *map(str, arguments)]


def detect_arguments(input_path, out_dir, model: str, device: str, min_size_mm3: float | None,
                     uncertainty: bool = False) -> list[str]:
    """The arguments of `uadc detect` for one run: a one-shot command line or a worker request.
    No overview.png: the module shows the volumes themselves and deletes the work folder after
    loading them (the overview cost 0.3 s of drawing per run and 0.4 s to import matplotlib)."""
    arguments = [str(input_path), "--out-dir", str(out_dir), "--device", device, "--threshold", "auto",
                 "--json-progress", "--overwrite", "--no-overview"]
    if model:
        arguments += ["--model", model]
    if min_size_mm3 is not None:
        arguments += ["--min-size", f"{float(min_size_mm3):g}"]
    if uncertainty:
        arguments.append("--uncertainty")
    return arguments


def detect_command(input_path, out_dir, model: str, device: str, min_size_mm3: float | None,
                   uncertainty: bool = False, python: str | None = None) -> list[str]:
    return core_command("detect", detect_arguments(input_path, out_dir, model, device, min_size_mm3, uncertainty),
                        python)


def child_environment(base: dict | None = None) -> dict:
    env = dict(os.environ if base is None else base)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(MODULE_DIR), env.get("PYTHONPATH", "")) if p)
    env["PYTHONUNBUFFERED"] = "1"
    return env


def hidden_console_options(os_name: str | None = None, subprocess_module=subprocess) -> dict:
    """Popen keyword arguments that keep a console window from popping up on Windows.

    PythonSlicer is a console program: started from the GUI without this, Windows opens a
    black console window for every detection. Done as Slicer's own
    slicer.util.launchConsoleProcess does it (STARTUPINFO with STARTF_USESHOWWINDOW and
    wShowWindow = SW_HIDE). Nothing to do elsewhere.
    """
    if (os_name or os.name) != "nt":
        return {}
    info = subprocess_module.STARTUPINFO()
    info.dwFlags |= subprocess_module.STARTF_USESHOWWINDOW
    info.wShowWindow = 0  # SW_HIDE
    return {"startupinfo": info}


def child_process_options(os_name: str | None = None, subprocess_module=subprocess) -> dict:
    """Hidden console, and a process group of its own so Cancel can stop the whole tree."""
    if (os_name or os.name) == "nt":
        return {"creationflags": subprocess_module.CREATE_NEW_PROCESS_GROUP,
                **hidden_console_options("nt", subprocess_module)}
    return {"start_new_session": True}


def make_work_dir() -> Path:
    """A private temporary folder per run: input NRRD in, results out, removed afterwards."""
    return Path(tempfile.mkdtemp(prefix="uadc-slicer-"))


def kill_process_tree(process: subprocess.Popen, grace_seconds: float = 3.0) -> None:
    """Stop `process` and every process it started (data loader workers, etc.).

    The process was started in its own session/process group (POSIX) or process group
    (Windows), so the whole group can be signalled without touching anything else.
    """
    if process.poll() is not None and os.name == "nt":
        return
    if os.name == "nt":
        subprocess.run(["taskkill", "/F", "/T", "/PID", str(process.pid)],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False,
                       **hidden_console_options())
        process.wait(timeout=grace_seconds)
        return
    # The group outlives its leader: signal it even if the leader has already exited.
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(process.pid, sig)
        except (ProcessLookupError, PermissionError):
            break
        try:
            process.wait(timeout=grace_seconds)
            if not _group_alive(process.pid):
                break
        except subprocess.TimeoutExpired:
            continue
    if process.poll() is None:
        process.wait(timeout=grace_seconds)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    return True


class DetectionRun:
    """One detection in a child process; poll() it from the GUI thread."""

    def __init__(self, command: list[str], work_dir: Path, env: dict | None = None,
                 remove_work_dir: bool = True):
        self.command = command
        self.work_dir = Path(work_dir)
        self.env = env
        self.remove_work_dir = remove_work_dir
        self.process: subprocess.Popen | None = None
        self.last_event: ProgressEvent | None = None
        self.done_record: dict | None = None
        self.error_messages: list[str] = []
        self.cancelled = False
        self._lines: queue.Queue = queue.Queue()
        self._stderr = collections.deque(maxlen=STDERR_LINES_KEPT)
        self._threads: list[threading.Thread] = []

    def start(self) -> None:
        self.process = subprocess.Popen(
            self.command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
            env=self.env, cwd=str(self.work_dir), text=True, encoding="utf-8", errors="replace",
            bufsize=1, **child_process_options())
        self._threads = start_pumps(self.process, self._lines.put, self._stderr.append)

    def poll(self) -> list[ProgressEvent]:
        """Progress events that arrived since the last call (never blocks)."""
        events = []
        while True:
            try:
                line = self._lines.get_nowait()
            except queue.Empty:
                break
            event = parse_progress_line(line)
            if event is None:
                continue
            self._note(event)
            events.append(event)
        return events

    def _note(self, event: ProgressEvent) -> None:
        """Keep what the outcome needs: the done record and the error messages."""
        protocol = core.protocol()
        if event.stage == protocol.DONE:
            self.done_record = event.record
        elif event.stage == protocol.ERROR or event.message.startswith("uadc: error"):
            self.error_messages.append(event.message)
        self.last_event = event

    @property
    def finished(self) -> bool:
        """The child exited and everything it wrote has been read."""
        return exited_and_read(self.process, self._threads, self._lines)

    @property
    def stderr_tail(self) -> str:
        return "".join(self._stderr)

    def wait(self, timeout: float | None = None) -> list[ProgressEvent]:
        """Block until finished (scripts and tests; the GUI polls instead)."""
        self.process.wait(timeout=timeout)
        for thread in self._threads:
            thread.join(timeout=5)
        return self.poll()

    @property
    def exit_code(self) -> int | None:
        return self.process.returncode if self.process else None

    def outcome(self, input_path: str | Path | None = None) -> Outcome:
        if self.cancelled:
            return Outcome(False, message="Cancelled.", cancelled=True)
        code = self.exit_code
        if code == 0:
            return Outcome(True, self._result_dir(input_path))
        message = (self.error_messages[-1] if self.error_messages else "") or last_lines(self.stderr_tail)
        message = message or f"The detection stopped with exit code {code}."
        return Outcome(False, message=message, advice=advice_for_error(message + "\n" + self.stderr_tail))

    def _result_dir(self, input_path) -> Path | None:
        outputs = (self.done_record or {}).get("outputs") or {}
        if input_path is not None and outputs.get(str(input_path)):
            return Path(outputs[str(input_path)])
        found = [Path(p) for p in outputs.values() if p]
        return found[0] if len(found) == 1 else None

    def cancel(self) -> None:
        """Kill the whole process tree; the scene is untouched because results are only
        loaded after a successful run, and the temporary folder is removed."""
        self.cancelled = True
        if self.process is not None:
            kill_process_tree(self.process)
            for thread in self._threads:
                thread.join(timeout=5)
        self.cleanup()

    def cleanup(self) -> None:
        if self.remove_work_dir:
            shutil.rmtree(self.work_dir, ignore_errors=True)


def start_pumps(child: subprocess.Popen, stdout_sink, stderr_sink) -> list[threading.Thread]:
    """Reader threads: pipes must be drained continuously or the child blocks on a full pipe;
    the GUI thread only ever looks at what the sinks collected."""
    threads = []
    for stream, sink in ((child.stdout, stdout_sink), (child.stderr, stderr_sink)):
        thread = threading.Thread(target=_pump, args=(stream, sink), daemon=True)
        thread.start()
        threads.append(thread)
    return threads


def exited_and_read(child: subprocess.Popen | None, pumps: list[threading.Thread], lines: queue.Queue) -> bool:
    """The child exited, its pumps read all it wrote, and nothing is left unread in `lines`."""
    return (child is not None and child.poll() is not None
            and not any(t.is_alive() for t in pumps) and lines.empty())


def _pump(stream, sink) -> None:
    try:
        for line in iter(stream.readline, ""):
            sink(line)
    except (OSError, ValueError):
        pass  # the pipe closed under us (process killed): nothing more to read
    finally:
        stream.close()


def last_lines(text: str, count: int = 3) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return "\n".join(lines[-count:])
