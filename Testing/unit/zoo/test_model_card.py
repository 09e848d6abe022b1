"""The typed model card, the engine contract and registry."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from UADContrastiveLib.engines import ENGINES, Engine, engine_class
from UADContrastiveLib.errors import ModelError
from UADContrastiveLib.postprocess.filtering import PostprocessConfig
from UADContrastiveLib.preprocess.templates import (
    ModelGrid,
    template_for_modality,
    template_for_model,
)
from UADContrastiveLib.resources import SHIPPED_MODELS
from UADContrastiveLib.zoo import ModelCard, verify_model


@pytest.fixture(params=sorted(p.name for p in SHIPPED_MODELS.iterdir() if (p / "model.json").is_file()))
def shipped_card(request):
    return SHIPPED_MODELS / request.param


def test_shipped_cards_read_and_write_back_the_same_content(shipped_card, tmp_path):
    original = json.loads((shipped_card / "model.json").read_text(encoding="utf-8"))
    card = ModelCard.read(shipped_card)
    assert card.model_grid.matches(ModelGrid()) and card.template == template_for_modality(card.modality)
    assert card.thresholds.min_size_mm3 == 64.0 and card.thresholds.default == "fpr_0.5%"
    copy = tmp_path / shipped_card.name
    shutil.copytree(shipped_card, copy)
    ModelCard.read(copy).write()
    written = json.loads((copy / "model.json").read_text(encoding="utf-8"))
    # post-processing is written with every setting explicit; nothing else changes
    assert written.pop("postprocess") == {**PostprocessConfig().to_dict(), **original.pop("postprocess")}
    assert written == original
    assert verify_model(copy).name == card.name


def test_shipped_models_fit_the_package(shipped_card):
    """Each shipped model's files stay small enough for the extension package (25 MB each)."""
    card = ModelCard.read(shipped_card)
    assert sum((shipped_card / name).stat().st_size for name in card.files) < 25 * 1024**2, card.name


def write_card(folder, **fields):
    folder.mkdir(parents=True, exist_ok=True)
    card = {"name": "m", "engine": "zscore_atlas", "files": {}, **fields}
    (folder / "model.json").write_text(json.dumps(card), encoding="utf-8")
    return folder


@pytest.mark.parametrize(("fields", "field"), [
    ({"name": None}, "name"),
    ({"model_grid": {"size_xyz": [96, 96], "spacing_mm": 2.0, "center_lps_mm": [0, 0, 0]}}, "model_grid"),
    ({"model_grid": {"spacing_mm": 2.0}}, "model_grid"),
    ({"thresholds": {"values": {"fpr_1%": "high"}}}, "thresholds.values.fpr_1%"),
    ({"thresholds": {"min_size_mm3": -1}}, "thresholds.min_size_mm3"),
    ({"files": {"unet.pt": "abc"}}, "files.unet.pt"),
    ({"postprocess": {"filter": "mean"}}, "postprocess"),
    ({"inference": [1, 2]}, "inference"),
])
def test_malformed_field_names_card_and_field(tmp_path, fields, field):
    folder = write_card(tmp_path / "model", **fields)
    with pytest.raises(ModelError) as info:
        ModelCard.read(folder)
    assert str(folder / "model.json") in str(info.value) and f"'{field}'" in str(info.value)


def test_missing_engine_is_named(tmp_path):
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "model.json").write_text(json.dumps({"name": "m", "files": {}}), encoding="utf-8")
    with pytest.raises(ModelError, match="field 'engine' is missing"):
        ModelCard.read(folder)


def test_minimum_size_has_one_home(tmp_path):
    """Older cards kept it under postprocess; it is read into, and written under, thresholds."""
    card = ModelCard.read(write_card(tmp_path / "model", postprocess={"min_size_mm3": 100.0}))
    assert card.thresholds.min_size_mm3 == 100.0
    card.write()
    written = json.loads(card.path.read_text(encoding="utf-8"))
    assert written["thresholds"]["min_size_mm3"] == 100.0 and "min_size_mm3" not in written["postprocess"]


def test_another_model_grid_is_honoured_and_an_unknown_template_refused(tmp_path):
    grid = ModelGrid((64, 64, 48), 3.0, (0.0, 18.0, 8.0))
    template = template_for_model("ixi-head-2mm", grid)
    assert template.grid == grid and template.head.GetSize() == (64, 64, 48)
    assert template.head.GetSpacing() == (3.0, 3.0, 3.0)
    assert np.allclose(template.head.GetOrigin(), grid.reference().GetOrigin())
    assert template_for_model("ixi-head-2mm", ModelGrid()).grid.matches(ModelGrid())
    with pytest.raises(ModelError, match="field 'template' names 'mni-1mm'"):
        template_for_model("mni-1mm", ModelGrid(), tmp_path / "model.json")


def test_registry_maps_every_engine_name_to_an_engine():
    assert set(ENGINES) >= {"contrastive_diffusion", "zscore_atlas", "mad_ad", "latent_ddpm"}
    for name in ENGINES:
        cls = engine_class(name)
        assert issubclass(cls, Engine) and cls.name == name
    with pytest.raises(ModelError, match="unknown engine 'anogan'"):
        engine_class("anogan")


def test_engine_defines_its_residual_once():
    from UADContrastiveLib.engines.zscore_atlas.engine import ZScoreAtlasEngine

    engine = ZScoreAtlasEngine(np.ones((2, 3, 3), np.float32), np.full((2, 3, 3), 0.5, np.float32))
    volume = np.full((2, 3, 3), 2.0, np.float32)
    healthy = engine.reconstruct(volume, np.ones_like(volume, bool))
    np.testing.assert_allclose(engine.residual(volume, healthy), 2.0)  # (2 - 1) / 0.5
    assert Engine.residual(engine, volume, healthy).tolist() == (volume - healthy).tolist()


def test_atlas_on_another_grid_than_its_card_is_refused(tmp_path):
    from UADContrastiveLib.engines.zscore_atlas.engine import ATLAS_FILE, ZScoreAtlasEngine

    folder = write_card(tmp_path / "model")
    np.savez(folder / ATLAS_FILE, mean=np.zeros((4, 4, 4)), std=np.ones((4, 4, 4)))
    with pytest.raises(ModelError, match="model_grid"):
        ZScoreAtlasEngine.from_folder(folder, ModelCard.read(folder))


def test_untyped_card_of_a_film_model_from_training_reads_and_loads(tmp_path):
    """A folder written by today's training code (FiLM conditioning, patched inference keys,
    no thresholds yet) reads through the typed card and runs."""
    import sys
    from pathlib import Path

    import torch
    from UADContrastiveLib.engines import load_engine

    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    from tiny_model import TINY_NETWORK, make_tiny_model

    folder = make_tiny_model(tmp_path / "film")
    card = json.loads((folder / "model.json").read_text(encoding="utf-8"))
    network = {**TINY_NETWORK, "unet": {**TINY_NETWORK["unet"], "conditioning": "film"}}
    from UADContrastiveLib.engines.contrastive_diffusion.diffusion import build_unet
    from UADContrastiveLib.zoo import sha256_file

    torch.save(build_unet(network["unet"]).state_dict(), folder / "unet.pt")
    card.update(network=network, inference={"timesteps": [500], "noise": "multiscale", "patch_size": 16,
                                            "patch_stride": 8, "seed": 0},
                validation={"brain_mae": 0.1}, status="exported from a training checkpoint at step 4")
    card.pop("thresholds")
    card.pop("postprocess", None)
    card["files"]["unet.pt"] = sha256_file(folder / "unet.pt")
    (folder / "model.json").write_text(json.dumps(card), encoding="utf-8")
    typed = ModelCard.read(folder)
    assert typed.network["unet"]["conditioning"] == "film" and typed.thresholds.values == {}
    assert typed.extra["status"].startswith("exported")
    engine = load_engine(folder, "cpu")
    volume = np.random.default_rng(0).random((2, 32, 32)).astype(np.float32)
    brain = np.zeros_like(volume, bool)
    brain[:, 8:24, 8:24] = True
    assert engine.reconstruct(volume, brain).shape == volume.shape
    with pytest.raises(ModelError, match="no calibrated threshold"):
        typed.default_threshold()


def test_the_one_card_writer_hashes_the_weights_and_lets_the_cohort_and_the_engine_speak(tmp_path):
    """training.model_folder, used by every engine's training: the weight files it lists are the
    ones written (sha256 computed here independently), the cohort's own description wins over the
    engine's fallback, and the engine's training figures over the cohort's fields."""
    import hashlib

    import torch
    from UADContrastiveLib.preprocess.intensity import INTENSITY_PERCENTILES, INTENSITY_RANGE
    from UADContrastiveLib.training.model_folder import save_weights, write_card

    layer = torch.nn.Conv2d(1, 2, 3).to(memory_format=torch.channels_last)
    save_weights(layer, tmp_path / "net.pt")
    cohort = {"data": "42 FLAIR scans in /site/healthy", "modality": "FLAIR", "template": "ixi-t2-head-2mm",
              "subjects": {"train": ["a"], "validation": ["b"], "statistics": ["c"]}}
    write_card(tmp_path, engine="contrastive_diffusion", config={"name": "site-flair", "min_slice_fraction": 0.2},
               files=["net.pt"], cohort=cohort, training={"subjects": {"train": ["a", "d"]}, "steps": 7},
               network={"conditioned": True}, slice_min_brain_fraction=0.2, hardware="CPU test", data="IXI T1")
    card = verify_model(tmp_path)
    assert card.files == {"net.pt": hashlib.sha256((tmp_path / "net.pt").read_bytes()).hexdigest()}
    assert card.name == "site-flair" and card.modality == "FLAIR" and card.engine == "contrastive_diffusion"
    assert card.training["data"] == cohort["data"] and card.training["subjects"] == {"train": ["a", "d"]}
    assert card.training["steps"] == 7 and card.training["hardware"] == "CPU test"
    assert card.training["torch"] == torch.__version__ and "modality" not in card.training
    assert card.template == "ixi-t2-head-2mm" and "template" not in card.training  # the cohort's registration target
    assert card.preprocessing == {"intensity_percentiles": list(INTENSITY_PERCENTILES),
                                  "intensity_clip": list(INTENSITY_RANGE), "outside_brain": 0.0,
                                  "training_brain_mask": card.preprocessing["training_brain_mask"],
                                  "slice_axis": 0, "slice_min_brain_fraction": 0.2}
    weights = torch.load(tmp_path / "net.pt", weights_only=True)
    assert all(w.is_contiguous() for w in weights.values())
    assert torch.equal(weights["weight"], layer.weight.detach())

    write_card(tmp_path, engine="zscore_atlas", config={}, files=["net.pt"], data="IXI T1")
    card = verify_model(tmp_path)  # rewritten: a cohort-less fit names the fallback, no slice fields
    assert card.name == tmp_path.name and card.modality == "T1" and card.training["data"] == "IXI T1"
    assert card.template == "ixi-head-2mm"
    assert "slice_axis" not in card.preprocessing
