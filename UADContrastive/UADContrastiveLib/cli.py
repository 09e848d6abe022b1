"""`uadc` command line (also `python -m UADContrastiveLib`).

Exit codes (`errors`): 0 ok, 2 bad input or usage (message names the file and the problem),
1 internal error. Each command lives in `commands/<name>.py`; heavy imports (torch,
MONAI) happen inside the commands' `run`.
"""
from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import signal
import sys
import threading
import traceback

from . import protocol
from .commands import COMMANDS
from .errors import (
    EXIT_BAD_INPUT,
    EXIT_BROKEN_PIPE,
    EXIT_INTERNAL,
    EXIT_INTERRUPTED,
    EXIT_OK,
    InputError,
    exit_code_for_signal,
)


def _command(name: str):
    return importlib.import_module(f"{__package__}.commands.{name}")


def build_parser(process_ends_with_command: bool = False) -> argparse.ArgumentParser:
    """process_ends_with_command: this process is `uadc` itself (run_and_exit), which ends when
    the command does, so a command may leave out imports only later work would need; False for
    in-process callers of main() (tests, scripts, the Slicer module's Python)."""
    from . import __version__

    parser = argparse.ArgumentParser(prog="uadc", description="Unsupervised anomaly detection in brain MRI.")
    parser.add_argument("--version", action="version", version=f"uadc {__version__}")
    parser.set_defaults(process_ends_with_command=process_ends_with_command)
    sub = parser.add_subparsers(dest="command", required=True)
    for name in COMMANDS:
        _command(name).add_parser(sub)
    return parser


def _exit_on_sigterm(signum, _frame):
    """Turn SIGTERM (Cancel in Slicer, a job scheduler) into SystemExit, so every `finally`
    runs and staged outputs are removed instead of left half-written."""
    raise SystemExit(exit_code_for_signal(signum))


def main(argv: list[str] | None = None, process_ends_with_command: bool = False) -> int:
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _exit_on_sigterm)
    parser = build_parser(process_ends_with_command)
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:
        return EXIT_BAD_INPUT if exit_.code not in (0, None) else EXIT_OK
    try:
        return _command(args.command).run(args) or EXIT_OK
    except InputError as error:
        _report_error(args, str(error), EXIT_BAD_INPUT)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        _report_error(args, "interrupted; no partial outputs were left.", EXIT_INTERNAL)
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # the reader left (`uadc models list | head`): not an error of ours
        with contextlib.suppress(OSError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at exit
        return EXIT_BROKEN_PIPE
    except Exception as error:  # noqa: BLE001 - the last line of defence turns a crash into exit 1
        traceback.print_exc(file=sys.stderr)
        _report_error(args, f"internal error: {error}. Please report it with the traceback above.", EXIT_INTERNAL)
        return EXIT_INTERNAL


def run_and_exit(argv: list[str] | None = None) -> None:
    """`uadc` as a program (the console script and `python -m UADContrastiveLib`): main(), then
    end the process without the interpreter's teardown.

    With torch and MONAI loaded (3000+ modules) that teardown, which only frees memory the OS
    takes back anyway, costs 0.3-1 s of CPU after the last output is written (measured: import
    torch + MONAI, then exit normally vs os._exit). Every output file is already closed and
    renamed by then (io.atomic_path); atexit handlers and the standard streams are run and flushed
    here so nothing the user should see is lost. In-process callers (tests, scripts) call main()."""
    import atexit

    code = main(argv, process_ends_with_command=True)
    try:
        atexit._run_exitfuncs()  # noqa: SLF001 - the handlers a normal exit would run (logging, tqdm)
        sys.stdout.flush()
        sys.stderr.flush()
    except (OSError, ValueError):  # a closed pipe (the reader went away): nothing left to deliver
        pass
    os._exit(code)


def _report_error(args, message: str, code: int) -> None:
    if getattr(args, "json_progress", False):
        print(protocol.dumps(protocol.error_record(message, code)), end="", flush=True)
    print(f"uadc: error: {message}", file=sys.stderr)
