"""The IXI T2 heads through a user's own-cohort path, end to end (tiny networks, two steps per
stage): cohort folder with carried masks -> `uadc train --modality T2` -> a calibrated T2 model
on the T2 template, whose split follows the small-cohort statistics rule."""
from __future__ import annotations

import json

import pytest
import yaml
from UADContrastiveLib.cli import main
from UADContrastiveLib.resources import SHIPPED_MODELS
from UADContrastiveLib.training.config import deep_update
from UADContrastiveLib.training.ixi_t2_cohort import write_ixi_t2_folder

TINY = {  # tiny networks, two steps per stage
    "threads": 1, "checkpoint_minutes": 100,
    "encoder": {"network": {"block_inplanes": [8, 8, 16, 16], "latent_dim": 8, "projection_dim": 4},
                "batch_size": 4, "minutes": None, "max_steps": 2},
    "diffusion": {"network": {"unet": {"channels": [8, 16], "attention_levels": [False, False], "norm_num_groups": 8,
                                       "num_head_channels": 8, "latent_dim": 8}},
                  "batch_size": 4, "minutes": None, "max_steps": 2},
    "validation": {"slices": 4, "final_slices": 4, "every_minutes": 100},
    "inference": {"timesteps": [400], "batch_size": 16},
}


@pytest.fixture(scope="module")
def trained(shared_data, tmp_path_factory):
    root = tmp_path_factory.mktemp("t2-cohort")
    write_ixi_t2_folder(shared_data, root / "ixi-t2")
    recipe = yaml.safe_load((SHIPPED_MODELS / "recipes" / "contrastive-diffusion-t2.yaml").read_text())
    (root / "tiny-t2.yaml").write_text(yaml.safe_dump(deep_update(recipe, TINY)))
    env = pytest.MonkeyPatch()
    env.setenv("UADC_SLICE_CACHE", str(root / "slice-cache"))
    env.setenv("UADC_CACHE", str(root / "user-cache"))
    code = main(["train", "--data", str(root / "ixi-t2"), "--modality", "T2", "--out", str(root / "t2-model"),
                 "--config", str(root / "tiny-t2.yaml"), "--device", "cpu"])
    yield root / "t2-model", code
    env.undo()


def test_the_t2_cohort_trains_into_a_calibrated_t2_model_on_the_t2_template(trained, capsys):
    model, code = trained
    assert code == 0
    card = json.loads((model / "model.json").read_text(encoding="utf-8"))
    assert card["modality"] == "T2" and card["template"] == "ixi-t2-head-2mm"
    split = card["training"]["subjects"]
    # 23 heads: 7 validation, 4 statistics (the rule's 3 and the next person: the cohort of its own
    # needs four for leave-one-out), 12 training; the validation heads stay unseen by the statistics
    assert {k: len(v) for k, v in split.items()} == {"train": 12, "validation": 7, "statistics": 4}
    assert sorted(card["healthy_statistics"]["scans"]) == sorted(split["statistics"])
    assert not card["training"]["warnings"] and not card["training"]["skipped"]  # every T2 head looks T2
    assert card["thresholds"]["values"] and len(card["thresholds"]["flagged_per_scan_at_default"]) == 4
    assert main(["models", "verify", "--model", str(model)]) == 0
