"""The first-use install of the Python packages, in child processes the widget polls.

Slicer's pip helpers process Qt events for each line pip prints: the window then half-works
and a second click can start a second pip into the same site-packages. Here every step runs
in its own child process (dependencies.install_commands), read by pump threads; poll() never
blocks, so the panel shows each line as it comes and the Detect button turns into Cancel,
which stops the whole process tree. Pure Python (no slicer, no Qt).
"""
from __future__ import annotations

import collections
import queue
import shutil
import subprocess
import tempfile
from pathlib import Path

from . import dependencies, process

OUTPUT_LINES_KEPT = 400


class DependencyInstall:
    def __init__(self, missing: list[str], python: str | None = None, env: dict | None = None,
                 steps: list | None = None):
        self.missing = list(missing)
        self.env = env
        self._folder = Path(tempfile.mkdtemp(prefix="uadc-install-"))  # the constraints file
        self.steps = steps if steps is not None else dependencies.install_commands(
            self.missing, python or process.python_executable(), self._folder / "constraints.txt")
        self.step_index = -1
        self.process: subprocess.Popen | None = None
        self.cancelled = False
        self.exit_code: int | None = None
        self.output = collections.deque(maxlen=OUTPUT_LINES_KEPT)  # every step's stdout and stderr
        self._lines: queue.Queue = queue.Queue()
        self._threads = []

    @property
    def step_label(self) -> str:
        return self.steps[self.step_index][0] if 0 <= self.step_index < len(self.steps) else ""

    @property
    def fraction(self) -> float:
        """Steps done (the torch step weighs as much as the others: its size is unknown here)."""
        return max(self.step_index, 0) / len(self.steps) if self.steps else 1.0

    def start(self) -> None:
        self._next_step()

    def _next_step(self) -> None:
        self.step_index += 1
        if self.step_index >= len(self.steps):
            self.exit_code = 0
            return
        command = self.steps[self.step_index][1]()
        self.output.append("$ " + " ".join(command) + "\n")
        try:
            self.process = subprocess.Popen(
                command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, env=self.env,
                cwd=str(self._folder), text=True, encoding="utf-8", errors="replace", bufsize=1,
                **process.child_process_options())
        except OSError as error:
            self.output.append(f"{error}\n")
            self.exit_code = 127
            return
        self._threads = process.start_pumps(self.process, self._lines.put, self._lines.put)

    def poll(self) -> list[str]:
        """Output lines since the last call (never blocks); moves on to the next step when one
        ends well, stops at the first that fails."""
        lines = []
        while True:
            try:
                lines.append(self._lines.get_nowait())
            except queue.Empty:
                break
        self.output.extend(lines)
        if not self.finished and process.exited_and_read(self.process, self._threads, self._lines):
            if self.process.returncode != 0:
                self.exit_code = self.process.returncode
            else:
                self._next_step()
        return [line.rstrip() for line in lines if line.strip()]

    @property
    def finished(self) -> bool:
        return self.cancelled or self.exit_code is not None

    @property
    def ok(self) -> bool:
        return self.exit_code == 0 and not self.cancelled

    def failure_message(self) -> str:
        return dependencies.failure_message(self.missing, "".join(self.output), self.exit_code)

    def cancel(self) -> None:
        self.cancelled = True
        if self.process is not None and self.process.poll() is None:
            process.kill_process_tree(self.process)
        self.cleanup()

    def cleanup(self) -> None:
        shutil.rmtree(self._folder, ignore_errors=True)
