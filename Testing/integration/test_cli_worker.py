"""`uadc worker` on a real scan with the tiny model: the second request reuses the loaded model,
a failed input is reported while the worker lives on, and the outputs are those of `uadc detect`."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import SimpleITK as sitk
from UADContrastiveLib import protocol
from UADContrastiveLib.io import volume_stem

VOLUMES = ("healthy.nii.gz", "anomaly_map.nii.gz", "anomaly_mask.nii.gz", "brain_mask.nii.gz")
TIMINGS = "timings_s"  # the only report entries that differ between two runs of one detection
# ITK's multi-threaded registration sums its metric in varying order, so two plain runs can differ
# by a brain-edge voxel (see test_background_load); one ITK thread makes runs repeatable.
REPEATABLE = {**os.environ, "ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS": "1"}


def without_timings(report):
    if isinstance(report, dict):
        return {k: without_timings(v) for k, v in report.items() if k != TIMINGS}
    return report


def records_until_terminal(process: subprocess.Popen, request_id) -> list[dict]:
    records = []
    while True:
        line = process.stdout.readline()
        assert line, f"worker ended early:\n{process.stderr.read()[-3000:]}"
        if not line.startswith("{"):
            continue
        record = json.loads(line)
        if record.get(protocol.REQUEST) == request_id:
            records.append(record)
            if record["stage"] in protocol.TERMINAL_STAGES:
                return records


@pytest.fixture(scope="module")
def ixi_scan(shared_data):
    return sorted((shared_data / "ixi_t1" / "images").iterdir())[0]


@pytest.fixture(scope="module")
def session(ixi_scan, tiny_model, tmp_path_factory):
    """One worker answering: a detection, a missing input, the same detection again; then quit."""
    out = tmp_path_factory.mktemp("worker")
    before = ixi_scan.read_bytes()
    process = subprocess.Popen([sys.executable, "-m", "UADContrastiveLib", "worker"], stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, bufsize=1, env=REPEATABLE)
    answers = {}
    try:
        for request_id, inputs, folder in (("first", [ixi_scan], "a"), ("missing", [out / "missing.nii.gz"], "m"),
                                           ("second", [ixi_scan], "b")):
            process.stdin.write(protocol.request_line(request_id, [
                *map(str, inputs), "--out-dir", str(out / folder), "--model", str(tiny_model), "--device", "cpu"]))
            process.stdin.flush()
            answers[request_id] = records_until_terminal(process, request_id)
        process.stdin.write(protocol.quit_line())
        process.stdin.flush()
        exit_code = process.wait(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert ixi_scan.read_bytes() == before, "inputs must never be modified"
    return out, answers, exit_code


def load_model_record(records):
    return next(r for r in records if r["stage"] == protocol.LOAD_MODEL)


def test_the_second_request_reuses_the_loaded_model(session):
    _, answers, exit_code = session
    first, second = load_model_record(answers["first"]), load_model_record(answers["second"])
    assert (first["model_reused"], first["models_loaded"]) == (False, 1)
    assert (second["model_reused"], second["models_loaded"]) == (True, 1)
    for name in ("first", "second"):
        done = answers[name][-1]
        assert (done["stage"], done["exit_code"], done["failed"]) == ("done", 0, 0)
        assert [r["stage"] for r in answers[name]].count("done") == 1
    assert exit_code == 0  # {"quit": true}


def test_a_missing_input_is_reported_and_the_worker_lives_on(session):
    out, answers, _ = session
    done = answers["missing"][-1]
    assert (done["stage"], done["exit_code"], done["failed"]) == ("done", 2, 1)
    errors = [r["message"] for r in answers["missing"] if r["message"].startswith("uadc: error")]
    assert errors and "missing.nii.gz" in errors[0]
    assert not (out / "m" / "missing").exists()  # nothing written for a failed input
    assert answers["second"][-1]["exit_code"] == 0  # served after the failure


def test_worker_outputs_are_those_of_uadc_detect(session, ixi_scan, tiny_model, tmp_path):
    out, answers, _ = session
    result = subprocess.run([sys.executable, "-m", "UADContrastiveLib", "detect", str(ixi_scan), "--out-dir",
                             str(tmp_path), "--model", str(tiny_model), "--device", "cpu", "--json-progress"],
                            capture_output=True, text=True, timeout=900, env=REPEATABLE)
    assert result.returncode == 0, result.stderr[-3000:]
    stem = volume_stem(ixi_scan)
    assert answers["first"][-1]["outputs"] == {str(ixi_scan): str(out / "a" / stem)}
    one_shot = tmp_path / stem
    for worker_folder in (out / "a" / stem, out / "b" / stem):  # a fresh and a reused model
        assert sorted(p.name for p in worker_folder.iterdir()) == sorted(p.name for p in one_shot.iterdir())
        for name in VOLUMES:
            expected = sitk.ReadImage(str(one_shot / name))
            written = sitk.ReadImage(str(worker_folder / name))
            assert written.GetPixelID() == expected.GetPixelID(), name
            np.testing.assert_array_equal(sitk.GetArrayFromImage(written), sitk.GetArrayFromImage(expected), name)
        reports = [without_timings(json.loads((folder / "report.json").read_text(encoding="utf-8")))
                   for folder in (one_shot, worker_folder)]
        assert reports[0] == reports[1]


SLICER_CRASHES_MID_DETECTION = """
import os, sys, time
from UADContrastiveSlicerLib import process, warm_worker
worker = warm_worker.WarmWorker(env=process.child_environment(),
                                command=warm_worker.worker_command(python=sys.executable))
run = warm_worker.WorkerRun(worker, {arguments!r}, {work_dir!r})
run.start()
while not any(event.stage == "preprocess" for event in run.poll()):
    time.sleep(0.02)
print(worker.process.pid, flush=True)
os._exit(0)  # no cleanup, as when Slicer crashes
"""


@pytest.mark.skipif(not os.path.isdir("/proc"), reason="follows the orphaned worker through /proc")
def test_a_worker_whose_reader_is_gone_stops_mid_detection_and_leaves_nothing(ixi_scan, tiny_model, tmp_path):
    """Slicer crashed during a detection: the worker's next record finds no reader, and it exits."""
    from process_checks import wait_until_gone

    out = tmp_path / "out"
    arguments = [str(ixi_scan), "--out-dir", str(out), "--model", str(tiny_model), "--device", "cpu"]
    code = SLICER_CRASHES_MID_DETECTION.format(arguments=arguments, work_dir=str(tmp_path))
    parent = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert parent.returncode == 0, parent.stderr[-3000:]
    assert wait_until_gone([int(parent.stdout.split()[-1])], timeout=300), \
        "the worker went on with nobody to answer to"
    assert not [p.name for p in out.iterdir() if p.is_dir()]  # no result, no partial folder
