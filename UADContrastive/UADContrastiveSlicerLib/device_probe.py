"""What torch sees, asked in a child Python without ever waiting for it.

A cold `import torch` with CUDA takes tens of seconds: the probe runs in its own process
(PythonSlicer; torch never enters Slicer's GUI process) and the widget polls it from a
qt.QTimer, showing "checking devices..." until it answers. Pure Python (no slicer, no Qt).
"""
from __future__ import annotations

import json
import queue
import subprocess
import time

from . import options, process

TIMEOUT_SECONDS = 180


class DeviceProbe:
    """start() returns at once; poll() gives None while the child runs, then the choices."""

    def __init__(self, env: dict | None = None, command: list[str] | None = None,
                 timeout_seconds: float = TIMEOUT_SECONDS):
        self.command = command or [process.python_executable(), "-c", options.DEVICE_PROBE_CODE]
        self.env = env
        self.timeout_seconds = timeout_seconds
        self.process: subprocess.Popen | None = None
        self.choices: list[options.DeviceChoice] | None = None
        self._lines: queue.Queue = queue.Queue()
        self._stdout: list[str] = []
        self._stderr: list[str] = []
        self._threads = []
        self._deadline = None

    def start(self) -> None:
        try:
            self.process = subprocess.Popen(
                self.command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
                env=self.env, text=True, encoding="utf-8", errors="replace", **process.child_process_options())
        except OSError as error:
            self.choices = options.device_choices_from_probe({"error": str(error)})
            return
        self._deadline = time.monotonic() + self.timeout_seconds
        self._threads = process.start_pumps(self.process, self._lines.put, self._stderr.append)

    @property
    def answered(self) -> bool:
        return self.choices is not None

    def poll(self) -> list[options.DeviceChoice] | None:
        """The device choices once the child answered (or failed, or timed out); None before."""
        if self.choices is None and self.process is not None:
            while not self._lines.empty():
                self._stdout.append(self._lines.get_nowait())
            if process.exited_and_read(self.process, self._threads, self._lines):
                self.choices = options.device_choices_from_probe(self._record())
            elif time.monotonic() > self._deadline:
                self.cancel()
                self.choices = options.device_choices_from_probe(
                    {"error": f"no answer within {self.timeout_seconds:g} s"})
        return self.choices

    def _record(self) -> dict:
        records = [line for line in self._stdout if line.startswith("{")]
        if self.process.returncode == 0 and records:
            try:
                return json.loads(records[-1])
            except ValueError:
                pass
        return {"error": (("".join(self._stderr)).strip().splitlines() or [f"exit code {self.process.returncode}"])[-1]}

    def cancel(self) -> None:
        """Stop the child (the module is unloaded while it still runs)."""
        if self.process is not None and self.process.poll() is None:
            process.kill_process_tree(self.process)
