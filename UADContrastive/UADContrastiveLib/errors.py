"""The command line's exit codes, and the error types that map onto them."""
from __future__ import annotations

from pathlib import Path

EXIT_OK = 0
EXIT_INTERNAL = 1       # a bug or a broken environment (the traceback is printed)
EXIT_BAD_INPUT = 2      # bad input or usage, named in the message; also a batch with any failed input
EXIT_INTERRUPTED = 130  # Ctrl-C: 128 + SIGINT, as a shell reports it
EXIT_BROKEN_PIPE = 141  # the reader of stdout left: 128 + SIGPIPE, as a shell reports it


def exit_code_for_signal(signum: int) -> int:
    """A process ended by signal `signum` exits with 128 + signum (the shell's convention)."""
    return 128 + signum


class InputError(ValueError):
    """Bad user input (EXIT_BAD_INPUT): names the file and the problem, and says what to do next."""

    def __init__(self, path: str | Path | None, problem: str, advice: str = ""):
        self.path = None if path is None else str(path)
        self.problem = problem
        self.advice = advice
        where = f"{self.path}: " if self.path else ""
        super().__init__(f"{where}{problem}" + (f" {advice}" if advice else ""))


class ModelError(InputError):
    """A model folder or weight file that is missing, tampered with, or incompatible."""
