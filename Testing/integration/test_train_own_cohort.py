"""A site's own healthy cohort, end to end: a plain folder of scans (one of them broken) ->
`uadc train` (tiny networks, a few steps) -> calibrated model folder -> `uadc models verify`
-> `uadc models import` into a temporary user cache -> `uadc detect` with the installed model."""
from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest
import yaml
from UADContrastiveLib.cli import main

TINY_RECIPE = {
    "threads": 1,
    "checkpoint_minutes": 100,
    "encoder": {"network": {"block_inplanes": [8, 8, 16, 16], "latent_dim": 8, "projection_dim": 4},
                "batch_size": 4, "minutes": None, "max_steps": 2},
    "diffusion": {"network": {"unet": {"channels": [8, 16], "attention_levels": [False, False],
                                       "norm_num_groups": 8}},
                  "batch_size": 4, "minutes": None, "max_steps": 2},
    "validation": {"slices": 4, "final_slices": 4, "every_minutes": 100},
    "inference": {"timesteps": [500], "batch_size": 16},
}


@pytest.fixture(scope="module")
def trained(shared_data, tmp_path_factory):
    root = tmp_path_factory.mktemp("own-cohort")
    scans = root / "my_healthy_scans"
    scans.mkdir()
    for index, image in enumerate(sorted((shared_data / "ixi_t1" / "images").glob("*_T1.nii.gz"))[:6]):
        shutil.copy(image, scans / f"scan{index + 1}.nii.gz")
    (scans / "scan7.nii.gz").write_bytes(b"\x1f\x8b truncated download")
    recipe = root / "tiny.yaml"
    recipe.write_text(yaml.safe_dump(TINY_RECIPE))
    env = pytest.MonkeyPatch()
    env.setenv("UADC_SLICE_CACHE", str(root / "slice-cache"))
    env.setenv("UADC_CACHE", str(root / "user-cache"))  # where `models import` installs
    model = root / "my-model"
    code = main(["train", "--data", str(scans), "--out", str(model), "--config", str(recipe),
                 "--device", "cpu"])
    yield root, scans, model, code
    env.undo()


def test_training_skips_the_broken_file_and_writes_a_calibrated_card(trained, capsys):
    _, _, model, code = trained
    assert code == 0
    card = json.loads((model / "model.json").read_text(encoding="utf-8"))
    assert card["name"] == "my-model" and card["modality"] == "T1"
    split = card["training"]["subjects"]
    held_out = split["statistics"] + split["validation"]
    assert sorted(split["train"] + held_out) == [f"scan{i}" for i in range(1, 7)]
    assert split["validation"] and len(held_out) >= 4 and len(split["train"]) >= 2  # a small cohort's rule
    assert card["training"]["split_rule"] and card["training"]["statistics_rule"]
    assert "scan7" in card["training"]["skipped"] and card["training"]["data"]["kind"] == "folder"
    assert set(card["files"]) == {"unet.pt", "encoder.pt", "healthy_statistics.npz"}
    assert sorted(card["healthy_statistics"]["scans"]) == sorted(held_out)  # never a training scan
    thresholds = card["thresholds"]
    assert thresholds["values"] and thresholds["default"] in thresholds["values"]
    assert sorted(thresholds["healthy_scans"]) == sorted(f"{scan}.nii.gz" for scan in held_out)


def test_model_verifies_installs_lists_and_detects(trained, capsys):
    root, scans, model, code = trained
    assert code == 0
    assert main(["models", "verify", "--model", str(model)]) == 0
    assert main(["models", "import", str(model)]) == 0
    installed = root / "user-cache" / "models" / "my-model"
    assert (installed / "model.json").is_file()
    capsys.readouterr()
    assert main(["models", "list"]) == 0
    assert "my-model" in capsys.readouterr().out
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "UADContrastive"))
    from UADContrastiveSlicerLib.options import model_choices

    assert "my-model (T1)" in [choice.label for choice in model_choices()]  # Slicer's model selector
    out = root / "detections"
    assert main(["detect", str(scans / "scan1.nii.gz"), "--model", "my-model", "--out-dir", str(out),
                 "--device", "cpu"]) == 0
    report = json.loads((out / "scan1" / "report.json").read_text(encoding="utf-8"))
    assert report["model"]["name"] == "my-model"
    assert (out / "scan1" / "anomaly_mask.nii.gz").is_file()
