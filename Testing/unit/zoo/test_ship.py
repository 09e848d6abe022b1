"""Putting a model into the zoo (zoo.ship) and what enumerates the shipped models."""
from __future__ import annotations

import json

import pytest
from UADContrastiveLib.cli import main
from UADContrastiveLib.errors import ModelError
from UADContrastiveLib.evaluation.protocol import shipped_model_names
from UADContrastiveLib.resources import SHIPPED_MODELS
from UADContrastiveLib.zoo import ModelCard, sha256_file, verify_model
from UADContrastiveLib.zoo.card import status_kind
from UADContrastiveLib.zoo.ship import rebuild_commands, ship

RECIPE = SHIPPED_MODELS / "recipes" / "contrastive-diffusion-t2.yaml"


def trained_folder(tmp_path):
    folder = tmp_path / "run"
    folder.mkdir()
    (folder / "weights.bin").write_bytes(b"weights")
    card = {"name": "m-t2", "version": "0.1.0", "engine": "zscore_atlas", "modality": "T2",
            "thresholds": {"default": "fpr_0.5%", "values": {"fpr_0.5%": 2.0},
                           "healthy_scans": ["a.nii.gz", "b.nii.gz", "c.nii.gz", "d.nii.gz"]},
            "files": {"weights.bin": sha256_file(folder / "weights.bin")}}
    (folder / "model.json").write_text(json.dumps(card), encoding="utf-8")
    return folder


def tuning_table(ships: bool, model: str = "m-t2 0.1.0") -> dict:
    head_check = {"name": "the model's threshold on every tuning head", "passed": ships,
                  "figures": "1.15 % mean, 0.13-3.08 % per head (worst IXI176-HH-1604_T2), limit 1.00 %"}
    return {"part": "tuning",
            "table": [{"set": "tuning_real_shapes_t2", "model": model, "cases": 24, "auprc": 0.2363, "dice": 0.2326,
                       "best_dice": 0.2554, "fp_fraction": 0.0134},
                      {"set": "tuning_healthy_t2", "model": model, "cases": 3, "auprc": None, "dice": 0.0,
                       "best_dice": 1.0, "fp_fraction": 0.0115}],
            "per_kind": [{"kind": "wml", "model": model, "cases": 15, "auprc": 0.0344, "baseline_auprc": 0.0237,
                          "difference": 0.0107, "low": -0.0014, "high": 0.0284}],
            "shipping_rule": [{"model": model, "ships": ships, "checks": [head_check]}]}


def test_a_model_failing_the_rule_ships_as_experimental_with_its_figures(tmp_path):
    card = ship(trained_folder(tmp_path), tuning_table(ships=False), RECIPE, zoo=tmp_path / "zoo")
    assert card.folder == tmp_path / "zoo" / "m-t2" and verify_model(card.folder).name == "m-t2"
    written = json.loads((card.folder / "model.json").read_text(encoding="utf-8"))
    assert status_kind(written["status"]) == "experimental"
    assert "4 statistics heads" in written["status"] and "IXI176 flagged 3.08 %, limit 1 %" in written["status"]
    tuning = written["evaluation"]["tuning"]
    assert (tuning["auprc"], tuning["dice"], tuning["best_dice"], tuning["healthy_flagged"]) == (
        0.2363, 0.2326, 0.2554, 0.0115)
    assert tuning["shipping_rule"]["checks"][0].startswith("[FAIL] the model's threshold on every tuning head: ")
    assert tuning["per_kind_against_atlas"][0]["ci95"] == [-0.0014, 0.0284]
    assert written["rebuild"]["recipe"] == "Resources/Models/recipes/contrastive-diffusion-t2.yaml"


def test_a_model_passing_the_rule_ships_without_a_status(tmp_path):
    source = trained_folder(tmp_path)
    card = json.loads((source / "model.json").read_text(encoding="utf-8"))
    (source / "model.json").write_text(json.dumps({**card, "status": "exported from a checkpoint"}), encoding="utf-8")
    shipped = ship(source, tuning_table(ships=True), RECIPE, zoo=tmp_path / "zoo")
    assert "status" not in shipped.extra


def test_ship_refuses_a_table_of_another_model_or_a_corrupt_folder(tmp_path):
    source = trained_folder(tmp_path)
    with pytest.raises(ModelError, match="has no row in the evaluation table"):
        ship(source, tuning_table(ships=False, model="m-t2 0.0.9"), RECIPE, zoo=tmp_path / "zoo")
    (source / "weights.bin").write_bytes(b"changed")
    with pytest.raises(ModelError, match="does not match its checksum"):
        ship(source, tuning_table(ships=False), RECIPE, zoo=tmp_path / "zoo")
    assert not (tmp_path / "zoo").exists()


def test_the_rebuild_commands_are_the_recipes_header_commands():
    commands = rebuild_commands(RECIPE)
    assert commands[0].startswith("python -m UADContrastiveLib.training.ixi_t2_cohort ")
    assert [c.split()[1] for c in commands[1:]] == ["train", "train", "calibrate"]
    assert "--resume training-state/contrastive-diffusion-t2" in commands[2] and "\\" not in "".join(commands)


def test_the_shipped_t2_card_was_put_into_the_zoo_this_way():
    """Whichever weights ship under the name: calibrated on the T2 cohort, its tuning figures and
    rebuild commands in the card, experimental exactly when it fails the shipping rule."""
    card = verify_model(SHIPPED_MODELS / "contrastive-diffusion-t2")
    assert (card.modality, card.template, card.version) == ("T2", "ixi-t2-head-2mm", "0.1.0")
    assert card.thresholds.default in card.thresholds.values
    tuning = card.evaluation["tuning"]
    assert (status_kind(card.extra.get("status")) == "experimental") == (not tuning["shipping_rule"]["ships"])
    assert card.extra["rebuild"]["commands"] == rebuild_commands(RECIPE)


def test_models_list_and_the_evaluation_default_know_each_models_contrast(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("UADC_CACHE", str(tmp_path))
    assert main(["models", "list"]) == 0
    lines = {line.split()[0]: line.split() for line in capsys.readouterr().out.splitlines()}
    assert lines["contrastive-diffusion-t2"][2:3] == ["T2"] and "experimental" in lines["contrastive-diffusion-t2"]
    assert lines["contrastive-diffusion-t1"][2:3] == ["T1"]
    cards = {name: ModelCard.read(SHIPPED_MODELS / name) for name in shipped_model_names()}
    assert set(cards) == set(lines)
    for modality in ("T1", "T2"):
        assert shipped_model_names(modality) == [n for n, c in cards.items() if c.modality == modality]
    assert "contrastive-diffusion-t2" in shipped_model_names("T2")
