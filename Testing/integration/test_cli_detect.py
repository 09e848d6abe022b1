"""`uadc detect` end to end on real scans, outputs read back by other libraries."""
from __future__ import annotations

import json
import subprocess
import sys

import nibabel
import numpy as np
import pytest
import SimpleITK as sitk
import slicerio
from UADContrastiveLib import protocol
from UADContrastiveLib.cli import main
from UADContrastiveLib.io import read_volume, same_grid, volume_stem

OUTPUTS = ("healthy.nii.gz", "anomaly_map.nii.gz", "anomaly_mask.nii.gz", "anomaly.seg.nrrd", "anatomy_labels.nii.gz",
           "brain_mask.nii.gz", "report.json", "overview.png")


@pytest.fixture(scope="module")
def two_scans(shared_data):
    wml = sorted((shared_data / "lesions" / "wml10").iterdir())[0] / "t1.nii.gz"
    ixi = sorted((shared_data / "ixi_t1" / "images").iterdir())[0]
    return [wml, ixi]


@pytest.fixture(scope="module")
def detected(two_scans, tiny_model, tmp_path_factory):
    out = tmp_path_factory.mktemp("detect")
    before = [p.read_bytes() for p in two_scans]
    result = subprocess.run([sys.executable, "-m", "UADContrastiveLib", "detect", *map(str, two_scans),
                             "--out-dir", str(out), "--model", str(tiny_model), "--json-progress"],
                            capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    assert [p.read_bytes() for p in two_scans] == before, "inputs must never be modified"
    return out, result


def test_every_output_on_the_input_grid(detected, two_scans):
    out, _ = detected
    for scan in two_scans:
        folder = out / volume_stem(scan)
        assert sorted(p.name for p in folder.iterdir()) == sorted(OUTPUTS)
        image = read_volume(scan)
        original = nibabel.load(str(scan))
        for name in OUTPUTS[:3] + ("brain_mask.nii.gz", "anatomy_labels.nii.gz"):
            written = sitk.ReadImage(str(folder / name))
            assert same_grid(written, image), name
            loaded = nibabel.load(str(folder / name))
            assert loaded.shape == original.shape[:3]
            np.testing.assert_allclose(loaded.affine, original.affine, atol=1e-3)
        assert sitk.ReadImage(str(folder / "healthy.nii.gz")).GetPixelID() == sitk.sitkFloat32
        assert sitk.ReadImage(str(folder / "anomaly_mask.nii.gz")).GetPixelID() == sitk.sitkUInt8
        amap = sitk.GetArrayFromImage(sitk.ReadImage(str(folder / "anomaly_map.nii.gz")))
        brain = sitk.GetArrayFromImage(sitk.ReadImage(str(folder / "brain_mask.nii.gz"))) > 0
        assert np.all(amap[~brain] == 0) and amap[brain].max() > 0
        mask = sitk.GetArrayFromImage(sitk.ReadImage(str(folder / "anomaly_mask.nii.gz")))
        segmentation = slicerio.read_segmentation(str(folder / "anomaly.seg.nrrd"))
        segment = slicerio.extract_segments(segmentation, [("Anomaly", 1)])
        assert segmentation["segments"][0]["name"] == "Anomaly"
        assert int((segment["voxels"] > 0).sum()) == int(mask.sum())
        report = json.loads((folder / "report.json").read_text(encoding="utf-8"))
        assert report["threshold"]["method"].startswith("calibrated")
        assert report["anomalous_volume_ml"] == pytest.approx(
            mask.sum() * np.prod(image.GetSpacing()) / 1000, rel=1e-3)
        # outside the brain the healthy image is the input itself
        healthy = sitk.GetArrayFromImage(sitk.ReadImage(str(folder / "healthy.nii.gz")))
        np.testing.assert_array_equal(healthy[~brain], sitk.GetArrayFromImage(image)[~brain])


def test_json_progress_lines(detected):
    _, result = detected
    records = [json.loads(line) for line in result.stdout.splitlines() if line.strip()]
    stages = [r["stage"] for r in records]
    assert stages[-1] == protocol.DONE
    progress_stages = [s for s in dict.fromkeys(stages) if s not in (protocol.INFO, protocol.DONE)]
    assert progress_stages == list(protocol.DETECTION_STAGES)  # what the Slicer module's bar is weighted by
    assert all(0.0 <= r["fraction"] <= 1.0 for r in records)
    assert records[-1]["failed"] == 0


def test_existing_results_are_not_overwritten(detected, two_scans, tiny_model):
    out, _ = detected
    stamp = (out / "t1" / "report.json").stat().st_mtime_ns
    code = main(["detect", str(two_scans[0]), "--out-dir", str(out), "--model", str(tiny_model)])
    assert code == 2
    assert (out / "t1" / "report.json").stat().st_mtime_ns == stamp


def test_bad_input_exit_code_and_nothing_written(tmp_path, tiny_model):
    bad = tmp_path / "bad.nii.gz"
    bad.write_text("not an image")
    out = tmp_path / "out"
    code = main(["detect", str(bad), "--out-dir", str(out), "--model", str(tiny_model)])
    assert code == 2
    assert not (out / "bad").exists()
    summaries = list(out.glob("uadc-detect-summary-*.json"))
    assert len(summaries) == 1
    entry = json.loads(summaries[0].read_text(encoding="utf-8"))["inputs"][0]
    assert entry["status"] == "error" and "bad.nii.gz" in entry["error"]


def test_preprocess_command_writes_checkable_outputs(two_scans, tmp_path):
    scan = two_scans[1]
    assert main(["preprocess", str(scan), "--out-dir", str(tmp_path)]) == 0
    folder = tmp_path / volume_stem(scan)
    assert sorted(p.name for p in folder.iterdir()) == ["brain_mask.nii.gz", "model_input.nii.gz", "preprocess.json"]
    assert same_grid(sitk.ReadImage(str(folder / "brain_mask.nii.gz")), read_volume(scan))
    model_input = sitk.ReadImage(str(folder / "model_input.nii.gz"))
    assert model_input.GetSize() == (96, 96, 80) and model_input.GetSpacing() == (2.0, 2.0, 2.0)
    summary = json.loads((folder / "preprocess.json").read_text(encoding="utf-8"))
    assert summary["template"] == "ixi-head-2mm" and len(summary["transform"]["matrix"]) == 9
    assert 900 < summary["brain_volume_ml"] < 2000


def test_findings_in_the_report_match_the_written_files_and_the_printed_table(detected, two_scans):
    from UADContrastiveLib.outputs.findings import describe_regions, index_to_ras
    from UADContrastiveLib.preprocess.templates import load_atlas

    out, result = detected
    atlas = load_atlas()[0]
    in_atlas = np.argwhere(sitk.GetArrayViewFromImage(atlas) == 81).mean(axis=0)[::-1]
    frontal_template = (index_to_ras(atlas) @ np.append(in_atlas, 1))[:3]
    for scan in two_scans:
        folder = out / volume_stem(scan)
        report = json.loads((folder / "report.json").read_text(encoding="utf-8"))
        findings = report["findings"]
        mask_image = sitk.ReadImage(str(folder / "anomaly_mask.nii.gz"))
        mask = sitk.GetArrayFromImage(mask_image)
        assert sum(f["voxels"] for f in findings) == int(mask.sum()) > 0
        assert [f["id"] for f in findings] == list(range(1, len(findings) + 1))
        assert all(a["voxels"] >= b["voxels"] for a, b in zip(findings, findings[1:]))
        anatomy = sitk.ReadImage(str(folder / "anatomy_labels.nii.gz"))
        assert anatomy.GetPixelID() == sitk.sitkUInt16
        # what the Slicer module recomputes from the written files on a slider move
        anomaly_map = sitk.GetArrayFromImage(sitk.ReadImage(str(folder / "anomaly_map.nii.gz")))
        assert describe_regions(anomaly_map, mask, sitk.GetArrayFromImage(anatomy), mask_image,
                                report["input_to_template_ras"]) == findings
        # the input's right frontal white matter, carried to the template, lands on the atlas's:
        # within two voxels, as the deformable step fits the structure to this head's own shape
        # (2.2 mm off on one of these scans) and input_to_template_ras is the affine alone
        assert report["anatomy_registration"] == "deformable"
        on_input = np.argwhere(sitk.GetArrayViewFromImage(anatomy) == 81).mean(axis=0)[::-1]
        to_template = np.asarray(report["input_to_template_ras"])
        carried = (to_template @ index_to_ras(anatomy) @ np.append(on_input, 1))[:3]
        assert np.linalg.norm(carried - frontal_template) < 2 * max(mask_image.GetSpacing())
        for finding in findings[:10]:
            assert f"#{finding['id']:<3} {finding['location']}" in result.stderr
