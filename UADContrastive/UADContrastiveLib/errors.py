"""Error types that map onto the CLI's exit codes (2 = bad input or usage)."""
from __future__ import annotations

from pathlib import Path


class InputError(ValueError):
    """Bad user input: names the file and the problem, and says what to do next."""

    def __init__(self, path: str | Path | None, problem: str, advice: str = ""):
        self.path = None if path is None else str(path)
        self.problem = problem
        self.advice = advice
        where = f"{self.path}: " if self.path else ""
        super().__init__(f"{where}{problem}" + (f" {advice}" if advice else ""))


class ModelError(InputError):
    """A model folder or weight file that is missing, tampered with, or incompatible."""
