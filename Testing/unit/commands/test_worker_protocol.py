"""`uadc worker`'s protocol: requests parsed, detect's own parser applied, errors reported
while the worker lives on, and the ways it ends (quit, end of stdin, idle time). The real
worker process is used where no detection has to run; detections are in
Testing/integration/test_cli_worker.py."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest
from UADContrastiveLib import protocol
from UADContrastiveLib.commands import worker
from UADContrastiveLib.errors import InputError


def start_worker(*args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "UADContrastiveLib", "worker", *args],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, bufsize=1, env={**os.environ, "PYTHONUNBUFFERED": "1"})


def next_record(process: subprocess.Popen) -> dict:
    """The next JSON record on stdout (other lines skipped)."""
    while True:
        line = process.stdout.readline()
        assert line, f"worker ended early:\n{process.stderr.read()[-3000:]}"
        if line.startswith("{"):
            return json.loads(line)


def ask(process: subprocess.Popen, line: str) -> dict:
    """Send one line; the terminal record that answers it."""
    process.stdin.write(line)
    process.stdin.flush()
    while True:
        record = next_record(process)
        if record["stage"] in protocol.TERMINAL_STAGES:
            return record


# ----------------------------------------------------------------------------- parsing
def test_parse_request_accepts_detect_and_quit():
    request = protocol.parse_request(protocol.request_line(7, ["t1.nii.gz", "--out-dir", "out"]))
    assert (request.id, request.detect, request.quit) == (7, ["t1.nii.gz", "--out-dir", "out"], False)
    assert protocol.parse_request(protocol.quit_line()).quit


@pytest.mark.parametrize("line, names_id, hint", [
    ("not json", False, "not JSON"),
    ("[1, 2]", False, "JSON object"),
    ('{"id": 3}', True, '"detect" must be a non-empty list'),
    ('{"id": 3, "detect": "t1.nii.gz --out-dir out"}', True, '"detect" must be a non-empty list'),
    ('{"id": 3, "detect": ["t1.nii.gz", 5]}', True, '"detect" must be a non-empty list'),
    ('{"id": 3, "detect": ["t1.nii.gz"], "model": "x"}', True, "unknown request field(s) ['model']"),
])
def test_bad_requests_say_what_a_request_looks_like(line, names_id, hint):
    with pytest.raises(protocol.RequestError) as caught:
        protocol.parse_request(line)
    assert hint in str(caught.value)
    assert '"detect": ["t1.nii.gz", "--out-dir", "out"]' in str(caught.value)  # the example
    assert caught.value.request_id == (3 if names_id else None)


def test_detect_arguments_use_detects_parser_and_defaults():
    args = worker.detect_arguments(["t1.nii.gz", "--out-dir", "out", "--device", "cpu"])
    assert (args.inputs, args.out_dir, args.device, args.threshold, args.model) == (
        ["t1.nii.gz"], "out", "cpu", "auto", None)
    assert args.json_progress  # a worker always answers in records


@pytest.mark.parametrize("arguments, hint", [
    (["t1.nii.gz"], "the following arguments are required: --out-dir"),
    (["t1.nii.gz", "--out-dir", "o", "--device", "tpu"], "invalid choice: 'tpu'"),
    (["t1.nii.gz", "--out-dir", "o", "--bogus"], "unrecognized arguments: --bogus"),
    (["--help"], "does not answer"),
])
def test_bad_detect_arguments_raise_instead_of_exiting(arguments, hint, capsys):
    with pytest.raises(InputError) as caught:
        worker.detect_arguments(arguments)
    assert hint in str(caught.value)
    assert capsys.readouterr().out == ""  # stdout carries only records


# ----------------------------------------------------------------------------- the loaded model
class FakeDetector:
    pass


def test_loaded_model_is_reused_until_model_device_or_card_change(tmp_path, monkeypatch):
    from UADContrastiveLib.commands import detect

    loads = []
    monkeypatch.setattr(detect, "load_detector", lambda model, device, progress, **fields: (
        loads.append((model, device, fields)) or FakeDetector()))
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "model.json").write_text("{}")
    records = []
    progress = lambda stage, fraction, message="", **extra: records.append(extra)  # noqa: E731
    loaded = worker.LoadedModel()

    first = loaded.get(str(tmp_path / "a"), "cpu", progress)
    assert loaded.get(str(tmp_path / "a"), "cpu", progress) is first
    assert records[-1] == {"model_reused": True, "models_loaded": 1}
    assert loads[0][2] == {"overview": True, "model_reused": False, "models_loaded": 1}
    loaded.get(str(tmp_path / "b"), "cpu", progress)  # another model replaces it
    loaded.get(str(tmp_path / "b"), "auto", progress)  # another device too
    card = tmp_path / "b" / "model.json"
    card.write_text('{"version": 2}')  # re-installed in place
    os.utime(card, ns=(time.time_ns(), time.time_ns() + 10_000_000))
    loaded.get(str(tmp_path / "b"), "auto", progress)
    assert len(loads) == loaded.loads == 4
    loaded.forget()
    loaded.get(str(tmp_path / "b"), "auto", progress)
    assert loaded.loads == 5


# ----------------------------------------------------------------------------- the real process
def test_worker_reports_bad_requests_and_lives_on_until_quit(tmp_path):
    process = start_worker()
    try:
        ready = next_record(process)
        assert ready["stage"] == protocol.READY and ready["pid"] == process.pid

        record = ask(process, "not json\n")
        assert (record["stage"], record["exit_code"], record["request"]) == ("error", 2, None)
        assert "bad request" in record["message"]

        record = ask(process, protocol.request_line("args", ["in.nii.gz", "--out-dir", str(tmp_path), "--bogus"]))
        assert (record["stage"], record["exit_code"], record["request"]) == ("error", 2, "args")
        assert "unrecognized arguments: --bogus" in record["message"]

        record = ask(process, protocol.request_line("model", ["in.nii.gz", "--out-dir", str(tmp_path / "o"),
                                                              "--model", str(tmp_path / "no-such-model")]))
        assert (record["stage"], record["exit_code"], record["request"]) == ("error", 2, "model")
        assert "no-such-model" in record["message"] and "is neither a model folder" in record["message"]

        missing = tmp_path / "missing.nii.gz"
        record = ask(process, protocol.request_line("input", [str(missing), "--out-dir", str(tmp_path / "o"),
                                                              "--threshold", "high"]))
        assert "--threshold must be 'auto' or a number" in record["message"]
        assert process.poll() is None, "a bad request must not end the worker"

        process.stdin.write(protocol.quit_line())
        process.stdin.flush()
        assert process.wait(timeout=30) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_end_of_stdin_ends_the_worker():
    process = start_worker()
    assert next_record(process)["stage"] == protocol.READY
    process.stdin.close()
    assert process.wait(timeout=30) == 0


def test_idle_exit_frees_the_worker():
    process = start_worker("--idle-exit", "0.5")
    assert next_record(process)["stage"] == protocol.READY
    assert process.wait(timeout=30) == 0
    assert "no request for 0.5 s" in process.stderr.read()
    process.stdin.close()

