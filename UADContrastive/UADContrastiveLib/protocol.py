"""The JSON-lines protocol between the core and the programs that follow it (the Slicer module).

One schema for `uadc detect --json-progress` and `uadc worker`; standard library only, so the
Slicer side can read it without loading the core's dependencies.

Records: one JSON object per line on stdout,
    {"stage": str, "fraction": 0..1, "message": str, ...extra fields}
  DONE   the last record of a detection: "outputs" {input: result folder or null}, "failed"
         (inputs that could not be processed), "exit_code" (0, or 2 when any input failed)
  ERROR  a detection that could not run at all: "message", "exit_code" (2 bad input, 1 internal)
  READY  `uadc worker` is listening for requests (its first record)
Any other stage is progress: DETECTION_STAGES for a detection, in the order they run, and
the stages of the other commands below. Lines that are not JSON
objects (a library printing to stdout) carry no meaning and are skipped by readers.

Worker requests: one JSON object per line on the worker's stdin,
    {"id": <any JSON value>, "detect": ["t1.nii.gz", "--out-dir", "out", ...]}
  where "detect" holds the arguments of `uadc detect` (the same options, checked by the same
  parser), and every record printed for that request carries "request": <id>; or
    {"quit": true}
  which ends the worker, as the end of its stdin does.
"""
from __future__ import annotations

import json
from dataclasses import dataclass

DONE = "done"
ERROR = "error"
READY = "ready"
INFO = "info"  # a message given outside any stage
REQUEST = "request"  # field of every record a worker prints for a request: the request's id

# Progress stages of one detection (`uadc detect`, a worker request), in the order they run.
LOAD_MODEL = "load model"  # also the stage whose records say whether the worker reused its model
PREPROCESS = "preprocess"
RECONSTRUCT = "reconstruct"
ANOMALY_MAP = "anomaly map"
WRITE = "write"
DETECTION_STAGES = (LOAD_MODEL, PREPROCESS, RECONSTRUCT, ANOMALY_MAP, WRITE)
# Progress stages of the other commands.
EVALUATE = "evaluate"
TEMPLATE = "template"
SHIPPING_RULE = "shipping rule"
# ... and of calibration (`uadc calibrate`, the end of `uadc train`): healthy statistics, then
# the healthy scans' or the labelled scans' maps for the thresholds.
STATISTICS_RECONSTRUCT = "statistics: reconstruct"
STATISTICS_MAPS = "statistics: leave-one-out maps"
CALIBRATION_DETECT = "detect"
CALIBRATION_LABELLED = "labelled"

REQUEST_ID = "id"
REQUEST_DETECT = "detect"
REQUEST_QUIT = "quit"
TERMINAL_STAGES = (DONE, ERROR)


def record(stage: str, fraction: float, message: str = "", **extra) -> dict:
    fraction = float(min(max(fraction, 0.0), 1.0))
    return {"stage": stage, "fraction": round(fraction, 4), "message": message, **extra}


def error_record(message: str, exit_code: int, **extra) -> dict:
    return record(ERROR, 1.0, message, exit_code=exit_code, **extra)


def dumps(fields: dict) -> str:
    """One record as one line (newline included)."""
    return json.dumps(fields, default=str) + "\n"


class RequestError(ValueError):
    """A request line that is not a request; `request_id` when the line still named one."""

    def __init__(self, message: str, request_id=None):
        super().__init__(message)
        self.request_id = request_id


@dataclass
class Request:
    id: object = None
    detect: list | None = None  # the arguments of `uadc detect`; None for a quit request
    quit: bool = False


def request_line(request_id, detect_arguments) -> str:
    """A detection request as the worker reads it."""
    return dumps({REQUEST_ID: request_id, REQUEST_DETECT: [str(a) for a in detect_arguments]})


def quit_line() -> str:
    return dumps({REQUEST_QUIT: True})


def parse_request(line: str) -> Request:
    example = ('{"id": 1, "detect": ["t1.nii.gz", "--out-dir", "out"]} or {"quit": true}')
    try:
        fields = json.loads(line)
    except ValueError as error:
        raise RequestError(f"a request must be one JSON object per line, e.g. {example}; "
                           f"this line is not JSON ({error}).") from None
    if not isinstance(fields, dict):
        raise RequestError(f"a request must be a JSON object, e.g. {example}; got {type(fields).__name__}.")
    request_id = fields.get(REQUEST_ID)
    if fields.get(REQUEST_QUIT) is True:
        return Request(request_id, quit=True)
    arguments = fields.get(REQUEST_DETECT)
    if not isinstance(arguments, list) or not arguments or not all(isinstance(a, str) for a in arguments):
        raise RequestError(f'"{REQUEST_DETECT}" must be a non-empty list of strings (the arguments of '
                           f"`uadc detect`), e.g. {example}.", request_id)
    unknown = sorted(set(fields) - {REQUEST_ID, REQUEST_DETECT})
    if unknown:
        raise RequestError(f"unknown request field(s) {unknown}; a request has only "
                           f'"{REQUEST_ID}" and "{REQUEST_DETECT}", e.g. {example}.', request_id)
    return Request(request_id, arguments)
