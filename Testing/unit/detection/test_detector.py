"""detection.detector: a model load reads its card once and hashes each file once, a detection
reports the protocol's stages in order, and a Detection carries everything its writer needs
(the report and the overview are written from it alone)."""
from __future__ import annotations

import hashlib
import json
import shutil

import numpy as np
import pytest
import SimpleITK as sitk
from UADContrastiveLib import protocol
from UADContrastiveLib.detection.detector import Detector, ModelLoadError
from UADContrastiveLib.io import read_volume
from UADContrastiveLib.outputs import names
from UADContrastiveLib.outputs.write import write_detection
from UADContrastiveLib.preprocess.templates import ModelGrid
from UADContrastiveLib.zoo import ModelCard, registry


@pytest.fixture(scope="module")
def coarse_model(tiny_model, tmp_path_factory):
    """The tiny model on a 3 mm grid (a few seconds per detection on a CPU)."""
    model = tmp_path_factory.mktemp("detector") / "coarse"
    shutil.copytree(tiny_model, model)
    card = json.loads((model / "model.json").read_text(encoding="utf-8"))
    card["model_grid"] = ModelGrid((64, 64, 48), 3.0, (0.0, 18.0, 8.0)).to_dict()
    (model / "model.json").write_text(json.dumps(card), encoding="utf-8")
    return model


@pytest.fixture(scope="module")
def ixi_image(shared_data):
    """An IXI head as shipped in the shared data: 2 mm, acquired sagittally (PSR)."""
    return read_volume(sorted((shared_data / "ixi_t1" / "images").glob("*_T1.nii.gz"))[0])


@pytest.fixture(scope="module")
def detection(coarse_model, ixi_image):
    """One detection with a threshold low enough to flag most of the brain, and its progress records."""
    stages = []
    result = Detector(coarse_model, "cpu").run(ixi_image, threshold=1e-6, min_size_mm3=0.0,
                                                progress=lambda stage, fraction, message="": stages.append(stage))
    return result, stages


def counting_reads_and_hashes(monkeypatch):
    reads, hashed = [], []
    read, sha256_file = ModelCard.read.__func__, registry.sha256_file

    def counted_read(cls, folder):
        reads.append(folder)
        return read(cls, folder)

    def counted_hash(path, *args, **kwargs):
        hashed.append(path.name)
        return sha256_file(path, *args, **kwargs)

    monkeypatch.setattr(ModelCard, "read", classmethod(counted_read))
    monkeypatch.setattr(registry, "sha256_file", counted_hash)
    return reads, hashed


@pytest.mark.parametrize("background", [False, True])
def test_a_model_load_reads_its_card_once_and_hashes_each_file_once(coarse_model, background, monkeypatch):
    reads, hashed = counting_reads_and_hashes(monkeypatch)
    detector = Detector(coarse_model, "cpu", background=background)
    assert detector.engine is not None and detector.device == "cpu"  # the load has finished
    files = json.loads((coarse_model / "model.json").read_text(encoding="utf-8"))["files"]
    assert len(reads) == 1 and sorted(hashed) == sorted(files)
    # the report's checksums are the verified ones, not hashed again
    assert detector.summary["sha256"] == files and len(hashed) == len(files)


def test_a_tampered_weight_file_stops_a_background_load_where_the_engine_is_needed(coarse_model, tmp_path):
    model = tmp_path / "tampered"
    shutil.copytree(coarse_model, model)
    weights = next(model / name for name in json.loads((model / "model.json").read_text())["files"])
    weights.write_bytes(weights.read_bytes() + b"\0")
    detector = Detector(model, "cpu", background=True)
    with pytest.raises(ModelLoadError, match="does not match its checksum"):
        _ = detector.engine


def test_a_detection_reports_the_protocols_stages_in_order(detection):
    result, stages = detection
    runs = [stage for index, stage in enumerate(stages) if index == 0 or stages[index - 1] != stage]
    # loading the model and writing are the command's stages; the detector runs the middle three
    assert runs == [protocol.PREPROCESS, protocol.RECONSTRUCT, protocol.ANOMALY_MAP]
    assert set(result.timings) >= {"preprocess", "reconstruct", "anomaly_map", "threshold"}


def test_a_detection_carries_the_model_device_and_thresholds_its_report_names(coarse_model, detection, tmp_path):
    result, _ = detection
    card = json.loads((coarse_model / "model.json").read_text(encoding="utf-8"))
    digests = {name: hashlib.sha256((coarse_model / name).read_bytes()).hexdigest() for name in card["files"]}
    assert result.model == {"name": "tiny-test", "version": "0.0.1", "engine": "contrastive_diffusion",
                            "path": str(coarse_model), "sha256": digests}
    assert result.device == "cpu"
    assert result.thresholds_available == card["thresholds"]["values"]
    assert result.threshold == 1e-6 and result.threshold_method == "given on the command line"

    report = write_detection(result, tmp_path, "IXI head", overview=False)
    written = json.loads((tmp_path / names.REPORT).read_text(encoding="utf-8"))
    assert written == json.loads(json.dumps(report, default=float))
    assert written["model"] == result.model and written["device"] == "cpu"
    assert written["thresholds_available"] == card["thresholds"]["values"]


def test_the_overview_draws_the_written_volumes_on_axial_sections(detection, ixi_image, tmp_path, monkeypatch):
    """The overview is drawn from the files as written, turned from the sagittal acquisition to
    LPS by permuting and flipping axes only: its mask is the written mask, voxel for voxel."""
    from UADContrastiveLib.outputs import overview

    result, _ = detection
    drawn = {}
    monkeypatch.setattr(overview, "write_overview_png",
                        lambda *arrays, **options: drawn.update(arrays=arrays, options=options))
    write_detection(result, tmp_path, "IXI head")

    def axial(name):
        image = sitk.DICOMOrient(sitk.ReadImage(str(tmp_path / name)), "LPS")
        assert image.GetDirection() == (1, 0, 0, 0, 1, 0, 0, 0, 1)
        return sitk.GetArrayFromImage(image)

    image, healthy, anomaly_map, mask, _path = drawn["arrays"]
    written_mask = axial(names.ANOMALY_MASK)
    assert 0 < written_mask.sum() == np.count_nonzero(mask)
    np.testing.assert_array_equal(np.asarray(mask) > 0, written_mask > 0)
    np.testing.assert_array_equal(anomaly_map, axial(names.ANOMALY_MAP))
    np.testing.assert_array_equal(healthy, axial(names.HEALTHY))
    np.testing.assert_array_equal(image, sitk.GetArrayFromImage(sitk.DICOMOrient(ixi_image, "LPS")))
    np.testing.assert_array_equal(drawn["options"]["brain"], axial(names.BRAIN_MASK))
    # PSR at 2 mm becomes (z, y, x) = (S, P, L) sections of 2 x 2 mm pixels
    size = ixi_image.GetSize()  # (P, S, R) voxels
    assert image.shape == (size[1], size[0], size[2]) and drawn["options"]["spacing"] == (2.0, 2.0)
    regions = drawn["options"]["regions"]
    assert set(np.unique(regions[written_mask > 0])) >= {1} and not regions[written_mask == 0].any()
