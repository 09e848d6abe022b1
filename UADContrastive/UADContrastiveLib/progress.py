"""Progress reporting: a tqdm bar on stderr for people, JSON lines on stdout for the Slicer module."""
from __future__ import annotations

import sys

from tqdm import tqdm

from . import protocol


class Progress:
    """Reports (stage, fraction, message). `json_lines=True` prints one JSON object per line
    (schema in `protocol`); `context` fields are added to each (the worker's request id)."""

    def __init__(self, json_lines: bool = False, stream=None, context: dict | None = None):
        self.json_lines = json_lines
        self.stream = stream or (sys.stdout if json_lines else sys.stderr)
        self.context = dict(context or {})
        self._bar: tqdm | None = None
        self._stage = ""

    def __call__(self, stage: str, fraction: float, message: str = "", **extra) -> None:
        if self.json_lines:
            self.emit(protocol.record(stage, fraction, message, **extra))
            return
        fraction = float(min(max(fraction, 0.0), 1.0))
        if stage != self._stage or self._bar is None:
            self.close()
            self._bar = tqdm(total=100, desc=stage, file=self.stream, leave=False,
                             bar_format="{desc}: {percentage:3.0f}%|{bar}| {elapsed}<{remaining} {postfix}")
            self._stage = stage
        self._bar.n = int(round(fraction * 100))
        if message:
            self._bar.set_postfix_str(message, refresh=False)
        self._bar.refresh()

    def emit(self, record: dict) -> None:
        """One whole record (e.g. protocol.error_record) as a JSON line, with the context fields."""
        self.stream.write(protocol.dumps({**record, **self.context}))
        self.stream.flush()

    def log(self, message: str) -> None:
        if self.json_lines:
            self(self._stage or protocol.INFO, 0.0, message)
        else:
            tqdm.write(message, file=sys.stderr)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
