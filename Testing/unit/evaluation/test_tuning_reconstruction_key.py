"""The tuning harness reuses reconstructions across recalibrations, never across weights."""
import json
from pathlib import Path

from UADContrastiveLib.evaluation.tuning import reconstruction_key

SHIPPED = Path(__file__).resolve().parents[3] / "UADContrastive/Resources/Models/contrastive-diffusion-t1"


def _copy_card(tmp_path: Path, name: str, edit) -> Path:
    folder = tmp_path / name
    folder.mkdir()
    card = json.loads((SHIPPED / "model.json").read_text())
    edit(card)
    (folder / "model.json").write_text(json.dumps(card))
    return folder


def test_recalibration_keeps_the_key_and_new_weights_change_it(tmp_path):
    original = _copy_card(tmp_path, "original", lambda c: None)

    def recalibrate(card):
        card["version"] = "9.9.9"
        card["thresholds"] = {"fpr_0.5%": 123.0}
        card["files"]["healthy_statistics.npz"] = "0" * 64

    def retrain(card):
        card["files"]["unet.pt"] = "f" * 64

    def other_timestep(card):
        card["inference"]["timesteps"] = [250]

    assert reconstruction_key(_copy_card(tmp_path, "recalibrated", recalibrate)) == reconstruction_key(original)
    assert reconstruction_key(_copy_card(tmp_path, "retrained", retrain)) != reconstruction_key(original)
    assert reconstruction_key(_copy_card(tmp_path, "t250", other_timestep)) != reconstruction_key(original)
