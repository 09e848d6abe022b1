"""`uadc worker`: detections on request, with the model kept loaded between requests.

A program that runs many detections one at a time (the Slicer module) starts one worker
instead of one `uadc detect` process per detection, and so pays Python's start-up, the
torch/MONAI imports and the model load (about 3 s on a laptop CPU) once. Requests and
records follow `protocol`: each request holds the arguments of `uadc detect`, is checked by
detect's own parser and run by detect's own code (same outputs, written whole or not at
all), and ends with one DONE or ERROR record carrying its id. A request that fails is
reported and the worker keeps serving; the end of stdin or {"quit": true} ends it.
"""
from __future__ import annotations

import argparse
import gc
import os
import queue
import sys
import threading
import traceback

from .. import protocol
from ..errors import EXIT_BAD_INPUT, EXIT_INTERNAL, EXIT_OK, InputError, ModelError


def add_parser(sub) -> None:
    p = sub.add_parser(
        "worker", help="run detection requests read from stdin (JSON lines), keeping the model loaded",
        description='Reads one request per line, e.g. {"id": 1, "detect": ["t1.nii.gz", "--out-dir", "out"]} '
                    '(the arguments of `uadc detect`), and prints JSON-lines records as `uadc detect '
                    '--json-progress` does, each with "request": <id>. Ends on {"quit": true} or at the end of stdin.')
    p.add_argument("--idle-exit", type=float, default=None, metavar="SECONDS",
                   help="exit after this long without a request, freeing the model's memory (default: never)")


class _RequestParser(argparse.ArgumentParser):
    """detect's parser, with its complaints raised as InputError instead of exiting the worker."""

    def error(self, message):
        raise InputError(None, f"bad `detect` arguments in the request: {message}.",
                         "A request's \"detect\" list holds the arguments of `uadc detect`.")

    def exit(self, status=0, message=None):
        raise InputError(None, "the request asked for help or a version, which a worker does not answer.",
                         "Run `uadc detect --help` in a terminal.")

    def _print_message(self, message, file=None):
        if message:  # never on stdout: stdout carries only the protocol's records
            sys.stderr.write(message)


def detect_arguments(arguments: list[str]) -> argparse.Namespace:
    """A request's arguments, checked and completed with defaults exactly as `uadc detect` does."""
    from . import detect

    parser = _RequestParser(prog="uadc")
    detect.add_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["detect", *arguments])
    args.json_progress = True  # records are the worker's only way to answer
    return args


class LoadedModel:
    """The last model a request used, kept loaded for the next.

    One model at a time: a request for another model (or device) replaces it, so the worker's
    memory stays that of one model. The key includes the card's modification time, so a model
    re-installed in the same folder is loaded afresh.
    """

    def __init__(self):
        self._key = None
        self._detector = None
        self.loads = 0

    @staticmethod
    def key(model, device: str) -> tuple:
        from ..zoo import CARD, resolve_model

        folder = resolve_model(model).resolve()
        card = (folder / CARD).stat()
        return str(folder), card.st_mtime_ns, card.st_size, device

    def get(self, model, device: str, progress, overview: bool = True):
        """The detector for (model, device): the loaded one, or a new one (reported either way).
        overview: the first request's wish, which decides whether matplotlib is imported early."""
        from .detect import load_detector

        key = self.key(model, device)
        if key == self._key:
            progress(protocol.LOAD_MODEL, 1.0, "model already loaded", model_reused=True, models_loaded=self.loads)
            return self._detector
        self.forget()
        self.loads += 1
        detector = load_detector(model, device, progress, overview=overview, model_reused=False,
                                 models_loaded=self.loads)
        self._key, self._detector = key, detector
        return detector

    def forget(self) -> None:
        """Drop the loaded model (another is wanted, or a failure may have left it unusable)."""
        if self._detector is None:
            return
        self._key = self._detector = None
        gc.collect()
        torch = sys.modules.get("torch")
        if torch is not None and torch.cuda.is_available() and torch.cuda.is_initialized():
            torch.cuda.empty_cache()  # give the GPU memory back before another model loads


def _stdin_lines(lines: queue.Queue) -> None:
    """Reads requests in a thread, so the main thread can wait with a timeout (--idle-exit) on
    every platform; None marks the end of stdin."""
    try:
        for line in iter(sys.stdin.readline, ""):
            if line.strip():
                lines.put(line)
    finally:
        lines.put(None)


def serve(request: protocol.Request, model: LoadedModel, stream=None) -> int:
    """Run one detection request; returns its exit code (the worker itself goes on)."""
    from ..progress import Progress
    from . import detect

    progress = Progress(json_lines=True, stream=stream, context={protocol.REQUEST: request.id})
    try:
        args = detect_arguments(request.detect)
        return detect.run(args, progress=progress, detector_source=model.get)
    except BrokenPipeError:
        raise  # nobody reads the answers any more: the worker ends (see run)
    except ModelError as error:
        model.forget()  # a model that failed to load must not be served to the next request
        return _report(progress, str(error), EXIT_BAD_INPUT)
    except InputError as error:
        return _report(progress, str(error), EXIT_BAD_INPUT)
    except Exception as error:  # noqa: BLE001 - one request's crash must not end the worker
        traceback.print_exc(file=sys.stderr)
        model.forget()  # its state after the failure is unknown: the next request loads it afresh
        return _report(progress, f"internal error: {error}. Please report it with the worker's stderr.",
                       EXIT_INTERNAL)


def _report(progress, message: str, code: int) -> int:
    progress.emit(protocol.error_record(message, code))
    print(f"uadc: error: {message}", file=sys.stderr, flush=True)
    return code


def _emit(fields: dict) -> None:
    sys.stdout.write(protocol.dumps(fields))
    sys.stdout.flush()


def run(args) -> int:
    from .. import __version__

    lines: queue.Queue = queue.Queue()
    threading.Thread(target=_stdin_lines, args=(lines,), name="uadc-worker-stdin", daemon=True).start()
    model = LoadedModel()
    try:
        _emit(protocol.record(protocol.READY, 0.0, f"uadc {__version__} worker ready", pid=os.getpid()))
        while True:
            try:
                line = lines.get(timeout=args.idle_exit)
            except queue.Empty:
                print(f"uadc worker: no request for {args.idle_exit:g} s; exiting.", file=sys.stderr)
                return EXIT_OK
            if line is None:
                return EXIT_OK
            try:
                request = protocol.parse_request(line)
            except protocol.RequestError as error:
                _emit(protocol.error_record(f"bad request: {error}", EXIT_BAD_INPUT,
                                            **{protocol.REQUEST: error.request_id}))
                continue
            if request.quit:
                return EXIT_OK
            serve(request, model)
    except BrokenPipeError:
        # The reader went away (Slicer quit or crashed): nothing to answer to. Point stdout at
        # devnull so that flushing it at exit does not fail again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_INTERNAL
