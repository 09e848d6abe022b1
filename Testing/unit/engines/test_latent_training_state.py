"""The latent engines trained over working periods on different machines: the shared autoencoder
and a denoiser each in a committed training-state folder, stopped as at the end of a period,
the folder copied to a fresh machine (its own home, user cache and slice cache, nothing of the
first run left) and resumed there with `uadc train --resume STATE`; it must end where an
uninterrupted run ends. Tiny networks, a few steps, synthetic 32 x 32 slices.
"""
from __future__ import annotations

import shutil
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from test_engine_train import make_cache  # the synthetic 32 x 32 slice cache
from UADContrastiveLib import zoo
from UADContrastiveLib.cli import main
from UADContrastiveLib.engines.latent_autoencoder.engine import DENOISER_FILE
from UADContrastiveLib.engines.latent_autoencoder.training import FINAL_FILE
from UADContrastiveLib.resources import SHIPPED_MODELS
from UADContrastiveLib.training import stage_runner
from UADContrastiveLib.training.config import load_config
from UADContrastiveLib.training.loop import StopRequest, load_checkpoint

AE_STATE = Path("training-state") / "latent-autoencoder-t1"
MAD_AD_STATE = Path("training-state") / "mad-ad-t1"
SUBJECTS = {"train": ["S0", "S1"], "validation": ["S2"]}
AUTOENCODER_RECIPE = {
    "name": "latent-autoencoder-tiny", "engine": "mad_ad", "threads": 1, "checkpoint_minutes": 100,
    "subjects": SUBJECTS, "augmentation": {"gamma": 0.5, "noise": 0.5},
    "autoencoder": {"network": {"channels": [8, 8, 16], "latent_channels": 3, "num_res_blocks": 1,
                                "norm_num_groups": 4},
                    "batch_size": 4, "lr": 1e-3, "minutes": None, "max_steps": 4, "kl_weight": 1e-6,
                    "gradient_weight": 0.5, "validation_slices": 4},
}
MAD_AD_RECIPE = {
    "name": "mad-ad-tiny", "engine": "mad_ad", "threads": 1, "checkpoint_minutes": 100, "subjects": SUBJECTS,
    "autoencoder_state": str(AE_STATE),  # relative: found from the clone's root on every machine
    "denoiser": {"network": {"channels": [8, 16], "num_res_blocks": 1, "norm_num_groups": 4},
                 "batch_size": 4, "lr": 1e-3, "minutes": None, "max_steps": 4, "validation_slices": 8},
    "inference": {"batch_size": 4, "steps": 3},
}


def fresh_machine(monkeypatch, root: Path) -> Path:
    """A machine at `root` with an empty home and user cache, its own slice cache (built from the
    same scans) and a clone of the repository as the current directory; returns the clone."""
    (root / "home").mkdir(parents=True)
    monkeypatch.setenv("HOME", str(root / "home"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(root / "home" / ".cache"))
    monkeypatch.setenv("UADC_CACHE", str(root / "user-cache"))
    monkeypatch.setenv("UADC_SLICE_CACHE", str(make_cache(root / "slices")))
    (root / "clone").mkdir()
    monkeypatch.chdir(root / "clone")
    return root / "clone"


def assert_no_user_cache(root: Path) -> None:
    assert not (root / "user-cache").exists() and not (root / "home" / ".cache").exists()


def write_recipe(path: Path, recipe: dict) -> Path:
    path.write_text(yaml.safe_dump(recipe))
    return path


def train(*args) -> int:
    return main(["train", "--data", "unused-with-subjects", "--no-calibrate", "--device", "cpu", *map(str, args)])


@contextmanager
def stopped_after(monkeypatch, steps: int):
    """What SIGTERM (or --session-minutes) does at the end of a working period, right after
    optimiser step `steps`: the run stops cleanly and writes its state."""
    count_step = stage_runner.count_step

    def counting(budget, *args):
        count_step(budget, *args)
        if budget.step == steps:
            StopRequest.requested = True

    monkeypatch.setattr(stage_runner, "count_step", counting)
    try:
        yield
    finally:
        monkeypatch.setattr(stage_runner, "count_step", count_step)
        StopRequest.requested = False


def assert_same_state(a: dict, b: dict, modules: tuple[str, ...]) -> None:
    assert a["step"] == b["step"]
    np.testing.assert_allclose(b["recent_losses"], a["recent_losses"], rtol=1e-5)
    for key in modules:
        for name, value in a[key].items():
            torch.testing.assert_close(b[key][name].float(), value.float(), rtol=1e-5, atol=1e-6, msg=f"{key}.{name}")
    for index, moments in a["optimizer"]["state"].items():  # AdamW's moments went on from the copy
        for name in ("exp_avg", "exp_avg_sq"):
            torch.testing.assert_close(b["optimizer"]["state"][index][name], moments[name], rtol=1e-5, atol=1e-7)
    assert torch.equal(a["rng"][0]["torch"], b["rng"][0]["torch"])
    assert torch.equal(a["rng"][0]["generator"], b["rng"][0]["generator"])


def copy_state(source: Path, clone: Path, state: Path) -> None:
    """The committed folder as a fresh clone holds it."""
    shutil.copytree(source, clone / state)


def test_the_autoencoder_resumes_from_a_copied_state_on_a_fresh_machine_as_if_never_interrupted(tmp_path, monkeypatch,
                                                                                                 capsys):
    monkeypatch.setattr(StopRequest, "requested", False)
    recipe = write_recipe(tmp_path / "latent-autoencoder-tiny.yaml", AUTOENCODER_RECIPE)

    fresh_machine(monkeypatch, tmp_path / "a")  # uninterrupted: 4 steps in one period
    assert train("--config", recipe, "--stage", "autoencoder", "--out", "ae", "--state", AE_STATE) == 0
    straight = tmp_path / "a" / "clone" / AE_STATE

    first = fresh_machine(monkeypatch, tmp_path / "b")  # period 1: stopped after 2 of the 4 steps
    with stopped_after(monkeypatch, 2):
        assert train("--config", recipe, "--stage", "autoencoder", "--out", "ae", "--state", AE_STATE) == 0
    unfinished = torch.load(first / AE_STATE / FINAL_FILE, weights_only=True)["summary"]
    assert unfinished["steps"] == 2 and unfinished["complete"] is False
    assert sorted(p.name for p in (first / AE_STATE).iterdir()) == [
        "autoencoder.ckpt.pt", "autoencoder_final.pt", "recipe.yaml"]  # nothing else to commit
    # no denoiser trains on an autoencoder whose budget is not spent
    assert train("--config", write_recipe(tmp_path / "mad.yaml", MAD_AD_RECIPE), "--stage", "denoiser",
                 "--out", "mad", "--state", MAD_AD_STATE) == 2
    refusal = capsys.readouterr().err
    assert "before its budget was spent" in refusal and f"uadc train --resume {AE_STATE} --stage autoencoder" in refusal
    assert not (first / MAD_AD_STATE).exists()  # a refused run leaves no state folder

    second = fresh_machine(monkeypatch, tmp_path / "c")  # period 2, elsewhere: only the committed folder
    copy_state(first / AE_STATE, second, AE_STATE)
    shutil.rmtree(tmp_path / "b")
    assert train("--resume", AE_STATE, "--stage", "autoencoder", "--out", "ae") == 0
    resumed = second / AE_STATE

    assert_same_state(load_checkpoint(straight / "autoencoder.ckpt.pt"), load_checkpoint(resumed / "autoencoder.ckpt.pt"),
                      ("model",))
    a, b = (torch.load(folder / FINAL_FILE, weights_only=True) for folder in (straight, resumed))
    assert a["summary"]["steps"] == b["summary"]["steps"] == 4 and b["summary"]["complete"] is True
    for name, value in a["model"].items():  # the weights and the measured latent statistics
        torch.testing.assert_close(b["model"][name], value, rtol=1e-5, atol=1e-6, msg=name)
    assert b["summary"]["validation_brain_l1"] == pytest.approx(a["summary"]["validation_brain_l1"], rel=1e-5)
    for machine in ("a", "c"):
        assert_no_user_cache(tmp_path / machine)


def test_a_denoiser_finds_the_committed_autoencoder_and_resumes_on_a_fresh_machine_as_if_never_interrupted(
        tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(StopRequest, "requested", False)
    trainer_machine = fresh_machine(monkeypatch, tmp_path / "ae-machine")  # the finished, committed autoencoder
    small = {**AUTOENCODER_RECIPE, "autoencoder": {**AUTOENCODER_RECIPE["autoencoder"], "max_steps": 2}}
    assert train("--config", write_recipe(tmp_path / "ae.yaml", small), "--stage", "autoencoder", "--out", "ae",
                 "--state", AE_STATE) == 0
    committed_autoencoder = trainer_machine / AE_STATE
    recipe = write_recipe(tmp_path / "mad-ad-tiny.yaml", MAD_AD_RECIPE)

    def denoiser_machine(name: str) -> Path:
        clone = fresh_machine(monkeypatch, tmp_path / name)
        copy_state(committed_autoencoder, clone, AE_STATE)
        return clone

    straight = denoiser_machine("a")  # uninterrupted: 4 steps
    assert train("--config", recipe, "--stage", "denoiser", "--out", tmp_path / "a" / "model", "--state", MAD_AD_STATE) == 0
    first = denoiser_machine("b")  # period 1: stopped after 2 of the 4 steps
    with stopped_after(monkeypatch, 2):
        assert train("--config", recipe, "--stage", "denoiser", "--out", tmp_path / "b" / "model",
                     "--state", MAD_AD_STATE) == 0
    assert load_checkpoint(first / MAD_AD_STATE / "mad_ad_denoiser.ckpt.pt")["step"] == 2
    # the committed state names the autoencoder by its folder, relative to the clone: no machine path
    assert yaml.safe_load((first / MAD_AD_STATE / "recipe.yaml").read_text())["autoencoder_state"] == str(AE_STATE)

    second = denoiser_machine("c")  # period 2, elsewhere
    copy_state(first / MAD_AD_STATE, second, MAD_AD_STATE)
    shutil.rmtree(tmp_path / "b")
    assert train("--resume", MAD_AD_STATE, "--stage", "denoiser", "--out", tmp_path / "c" / "model") == 0

    a = load_checkpoint(straight / MAD_AD_STATE / "mad_ad_denoiser.ckpt.pt")
    b = load_checkpoint(second / MAD_AD_STATE / "mad_ad_denoiser.ckpt.pt")
    assert a["step"] == b["step"] == 4
    assert_same_state(a, b, ("model", "ema"))
    autoencoder_sha = zoo.registry.sha256_file(committed_autoencoder / FINAL_FILE)
    assert a["autoencoder_sha256"] == b["autoencoder_sha256"] == autoencoder_sha
    x = torch.load(tmp_path / "a" / "model" / DENOISER_FILE, weights_only=True)  # the EMA weights shipped
    y = torch.load(tmp_path / "c" / "model" / DENOISER_FILE, weights_only=True)
    for name, value in x.items():
        torch.testing.assert_close(y[name], value, rtol=1e-5, atol=1e-6, msg=name)
    card = zoo.verify_model(tmp_path / "c" / "model")
    assert card.training["autoencoder"]["sha256"] == autoencoder_sha and card.training["denoiser"]["steps"] == 4
    for machine in ("ae-machine", "a", "c"):
        assert_no_user_cache(tmp_path / machine)

    # a denoiser state resumed on an autoencoder that changed since is refused, its state untouched
    changed = torch.load(second / AE_STATE / FINAL_FILE, weights_only=True)
    changed["model"] = {k: v + 1e-3 if v.is_floating_point() else v for k, v in changed["model"].items()}
    torch.save(changed, second / AE_STATE / FINAL_FILE)
    before = (second / MAD_AD_STATE / "mad_ad_denoiser.ckpt.pt").read_bytes()
    capsys.readouterr()
    assert train("--resume", MAD_AD_STATE, "--stage", "denoiser", "--out", tmp_path / "c" / "model-2") == 2
    assert "was trained on another autoencoder" in capsys.readouterr().err
    assert (second / MAD_AD_STATE / "mad_ad_denoiser.ckpt.pt").read_bytes() == before


def test_the_multi_period_recipes_share_one_autoencoder_state_and_keep_the_0_1_settings():
    autoencoder = load_config(SHIPPED_MODELS / "recipes" / "latent-autoencoder-t1.yaml")
    assert "denoiser" not in autoencoder and autoencoder["version"] == "0.2.0" and autoencoder["threads"] == 2
    for engine, name in (("mad_ad", "mad-ad-t1"), ("latent_ddpm", "latent-ddpm-t1")):
        recipe = yaml.safe_load((SHIPPED_MODELS / "recipes" / f"{name}-v0.2.yaml").read_text())
        shipped = yaml.safe_load((SHIPPED_MODELS / "recipes" / f"{name}.yaml").read_text())
        assert recipe["engine"] == engine and recipe["name"] == name and recipe["version"] == "0.2.0"
        assert recipe["autoencoder_state"] == str(AE_STATE) and "autoencoder" not in recipe
        assert recipe["threads"] == 2 and recipe["denoiser"]["minutes"] > shipped["denoiser"]["minutes"]
        same = {k: v for k, v in shipped["denoiser"].items() if k not in ("minutes",)}
        assert {k: recipe["denoiser"][k] for k in same} == same and recipe["inference"] == shipped["inference"]
        assert autoencoder["autoencoder"]["network"] == shipped["autoencoder"]["network"]
    assert autoencoder["autoencoder"]["minutes"] > shipped["autoencoder"]["minutes"]
