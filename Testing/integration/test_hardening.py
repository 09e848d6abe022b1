"""Failures are clear and harmless: bad inputs, interruption, concurrent runs, tampered models."""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import zipfile

import numpy as np
import pytest
import SimpleITK as sitk
from UADContrastiveLib.cli import main
from UADContrastiveLib.zoo.install import download_model, import_model


def uadc(*args, **kwargs):
    return subprocess.Popen([sys.executable, "-m", "UADContrastiveLib", *map(str, args)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kwargs)


@pytest.fixture(scope="module")
def ixi_scan(shared_data):
    return sorted((shared_data / "ixi_t1" / "images").iterdir())[1]


def only_final_entries(folder):
    """Names in an output folder, failing on any leftover temporary or partial entry."""
    names = sorted(p.name for p in folder.iterdir())
    assert not [n for n in names if n.startswith(".") or ".part" in n], names
    return names


def test_sigterm_mid_run_leaves_no_partial_output(ixi_scan, tiny_model, tmp_path):
    process = uadc("detect", ixi_scan, "--out-dir", tmp_path, "--model", tiny_model, "--json-progress")
    for line in process.stdout:
        if json.loads(line)["stage"] == "reconstruct":
            process.send_signal(signal.SIGTERM)
            break
    process.wait(timeout=120)
    assert process.returncode == 128 + signal.SIGTERM
    assert only_final_entries(tmp_path) == []


def test_concurrent_runs_into_one_folder(ixi_scan, tiny_model, tmp_path):
    runs = [uadc("detect", ixi_scan, "--out-dir", tmp_path, "--model", tiny_model) for _ in range(2)]
    codes = sorted(run.wait(timeout=600) for run in runs)
    assert codes == [0, 2], [run.stderr.read()[-500:] for run in runs]
    names = only_final_entries(tmp_path)
    stem = ixi_scan.name[: -len(".nii.gz")]
    assert stem in names and len([n for n in names if n.startswith("uadc-detect-summary")]) == 2
    report = json.loads((tmp_path / stem / "report.json").read_text(encoding="utf-8"))
    assert report["input"] == str(ixi_scan)
    assert len(list((tmp_path / stem).iterdir())) == 8


def write(tmp_path, name, array, spacing=(1.0, 1.0, 1.0)):
    image = sitk.GetImageFromArray(array.astype(np.float32))
    image.SetSpacing(spacing)
    path = tmp_path / name
    sitk.WriteImage(image, str(path))
    return path


@pytest.mark.parametrize("case, fragment", [
    ("noise", "does not look like a brain"),
    ("cube", "no plausible brain"),
    ("thick", "cannot fill slices thicker"),
])
def test_implausible_inputs_are_refused(case, fragment, tiny_model, tmp_path, capsys):
    rng = np.random.default_rng(0)
    if case == "noise":
        path = write(tmp_path, "noise.nii.gz", rng.random((100, 120, 110)) * 100, (2.0, 2.0, 2.0))
    elif case == "cube":
        array = np.zeros((60, 60, 60))
        array[20:40, 20:40, 20:40] = 100 + rng.random((20, 20, 20))
        path = write(tmp_path, "cube.nii.gz", array)
    else:
        path = write(tmp_path, "thick.nii.gz", rng.random((20, 200, 200)) * 100, (1.0, 1.0, 8.0))
    out = tmp_path / "out"
    assert main(["detect", str(path), "--out-dir", str(out), "--model", str(tiny_model)]) == 2
    assert fragment in capsys.readouterr().err
    assert only_final_entries(out) == [n for n in only_final_entries(out) if n.startswith("uadc-detect-summary")]


def test_wrong_modality_is_warned_in_the_report(shared_data, tiny_model, tmp_path):
    case = shared_data / "lesions" / "brats2013" / "brats_2013_pat0001_1"
    assert main(["detect", str(case / "flair.nii.gz"), "--out-dir", str(tmp_path), "--model", str(tiny_model),
                 "--no-overview"]) == 0
    report = json.loads((tmp_path / "flair" / "report.json").read_text(encoding="utf-8"))
    assert any("the model reads T1" in w and "FLAIR" in w for w in report["warnings"])


def test_unwritable_output_folder(ixi_scan, tiny_model, tmp_path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    assert main(["detect", str(ixi_scan), "--out-dir", str(blocker / "out"), "--model", str(tiny_model)]) == 2
    assert "not writable" in capsys.readouterr().err


def test_tampered_weights_are_refused(ixi_scan, tiny_model, tmp_path, capsys):
    copy = tmp_path / "tampered"
    shutil.copytree(tiny_model, copy)
    with open(copy / "unet.pt", "r+b") as handle:
        handle.seek(100)
        handle.write(b"\x00\x01\x02")
    assert main(["models", "verify", "--model", str(copy)]) == 2
    error = capsys.readouterr().err
    assert "unet.pt" in error and "checksum" in error
    # a real scan, so the refusal can only come from the weights
    out = tmp_path / "o"
    assert main(["detect", str(ixi_scan), "--out-dir", str(out), "--model", str(copy)]) == 2
    error = capsys.readouterr().err
    assert "unet.pt" in error and "checksum" in error
    assert not out.exists() or not [p for p in out.iterdir() if p.is_dir()]


def test_import_and_verified_download(tiny_model, tmp_path, monkeypatch):
    monkeypatch.setenv("UADC_CACHE", str(tmp_path / "cache"))
    imported = import_model(tiny_model)
    assert imported == tmp_path / "cache" / "models" / "tiny-test"
    assert main(["models", "verify", "--model", "tiny-test"]) == 0
    archive = tmp_path / "tiny.zip"
    with zipfile.ZipFile(archive, "w") as zipped:
        for file in tiny_model.iterdir():
            zipped.write(file, f"tiny-test/{file.name}")
    digest = hashlib.sha256(archive.read_bytes()).hexdigest()
    shutil.rmtree(imported)
    with pytest.raises(Exception, match="sha256 mismatch"):
        download_model(archive.as_uri(), "0" * 64)
    assert not imported.exists()
    assert not [p for p in (tmp_path / "cache" / "downloads").iterdir()]
    assert download_model(archive.as_uri(), digest) == imported
    assert main(["models", "verify", "--model", str(imported)]) == 0


def test_input_never_modified_even_on_error(tmp_path, tiny_model):
    path = write(tmp_path, "noise.nii.gz", np.random.default_rng(1).random((100, 120, 110)) * 100, (2.0, 2.0, 2.0))
    before, stat = path.read_bytes(), os.stat(path)
    main(["detect", str(path), "--out-dir", str(tmp_path / "o"), "--model", str(tiny_model)])
    assert path.read_bytes() == before and os.stat(path).st_mtime_ns == stat.st_mtime_ns
