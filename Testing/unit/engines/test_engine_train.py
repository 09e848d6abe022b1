"""Training: checkpoint/resume equivalence, model folder + card, 2-process gloo DDP.

Synthetic 32 x 32 "subjects" in a temporary slice cache and tiny networks keep it fast.
"""
from __future__ import annotations

import json
import os
import socket

import numpy as np
import torch
import torch.multiprocessing as mp
from UADContrastiveLib import zoo
from UADContrastiveLib.engines import load_engine
from UADContrastiveLib.engines.contrastive_diffusion import model_folder, stages, training
from UADContrastiveLib.engines.contrastive_diffusion.diffusion import build_unet
from UADContrastiveLib.training.config import load_config
from UADContrastiveLib.training.distributed import Dist
from UADContrastiveLib.training.loop import load_checkpoint

TINY = {
    "threads": 1,
    "checkpoint_minutes": 100,
    "augmentation": {"gamma": 0.5, "bias_field": 0.5, "blur": 0.2, "noise": 0.5},
    "encoder": {"network": {"block_inplanes": [8, 8, 16, 16], "latent_dim": 8, "projection_dim": 4},
                "batch_size": 4, "minutes": None, "max_steps": 2},
    "diffusion": {"network": {"unet": {"channels": [8, 16], "attention_levels": [False, False],
                                       "norm_num_groups": 8}},
                  "batch_size": 4, "minutes": None, "max_steps": 4, "latent_from_anomaly_view": 0.5},
    "validation": {"slices": 4, "final_slices": 4, "every_minutes": 100},
    "inference": {"timesteps": [500], "batch_size": 8},
}


def make_cache(folder, count=3, z=6, size=32):
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    zz, yy, xx = np.indices((z, size, size))
    brain = ((yy - size / 2) ** 2 + (xx - size / 2) ** 2 < (size * 0.35) ** 2) & (zz > 0)
    for k in range(count):
        volume = np.clip(0.6 + 0.15 * rng.standard_normal((z, size, size)), 0, 1.5).astype(np.float32) * brain
        np.savez_compressed(folder / f"S{k}.npz", volume=volume, brain=brain)
    return folder


def config(tmp_path, **diffusion):
    cache = make_cache(tmp_path / "cache")
    overrides = {**TINY, "cache_dir": str(cache), "checkpoint_dir": str(tmp_path / "ckpt"),
                 "subjects": {"train": ["S0", "S1"], "validation": ["S2"]}}
    cfg = load_config(overrides=overrides)
    cfg["diffusion"].update(diffusion)
    return cfg


def test_train_all_writes_verified_model_folder(tmp_path):
    cfg = config(tmp_path)
    summary = training.train(cfg, None, tmp_path / "model", "all", device="cpu")
    assert summary["steps"] == 4
    # training flushes denormals for speed, process-wide: the caller gets its arithmetic back
    assert torch.tensor([1e-310], dtype=torch.float64).mul(1.0).item() != 0.0
    card = zoo.verify_model(tmp_path / "model").to_dict()
    assert set(card["files"]) == {"unet.pt", "encoder.pt"}
    assert card["training"]["subjects"] == {"train": ["S0", "S1"], "validation": ["S2"]}
    assert card["engine"] == "contrastive_diffusion" and card["network"]["conditioned"] is True
    assert np.isfinite(card["validation"]["brain_mae"])
    for name in card["files"]:  # state dicts only: loadable with weights_only
        state = torch.load(tmp_path / "model" / name, weights_only=True)
        assert all(torch.is_tensor(v) for v in state.values())
    engine = load_engine(tmp_path / "model", "cpu")
    volume = np.load(tmp_path / "cache" / "S2.npz")
    recon = engine.reconstruct(volume["volume"], volume["brain"])
    assert recon.shape == volume["volume"].shape
    # a model folder can also be exported from the last checkpoint (EMA weights)
    trained = torch.load(tmp_path / "model" / "unet.pt", weights_only=True)
    exported = model_folder.export_checkpoint(cfg, tmp_path / "model", ["S0", "S1"], ["S2"], 4)
    card2 = zoo.verify_model(exported).to_dict()
    assert card2["training"]["diffusion"]["steps"] == 4 and "checkpoint" in card2["status"]
    again = torch.load(exported / "unet.pt", weights_only=True)
    assert all(torch.equal(trained[k], again[k]) for k in trained)  # the same EMA weights


def test_unconditioned_ablation_trains_without_an_encoder(tmp_path):
    """The ddpm-t1 ablation: same trainer, `conditioned: false` -> no encoder stage, no encoder file."""
    cfg = config(tmp_path, conditioned=False)
    training.train(cfg, None, tmp_path / "model", "all", device="cpu")
    card = zoo.verify_model(tmp_path / "model").to_dict()
    assert set(card["files"]) == {"unet.pt"} and card["network"]["conditioned"] is False
    assert card["network"]["unet"]["latent_dim"] == 0 and "Unconditioned" in card["description"]
    assert sorted(p.name for p in (tmp_path / "ckpt").iterdir()) == ["diffusion.ckpt.pt"]


def test_resume_equals_uninterrupted_training(tmp_path):
    straight = config(tmp_path / "a", conditioned=False)
    training.train(straight, None, tmp_path / "a" / "model", "diffusion", device="cpu")
    interrupted = config(tmp_path / "b", conditioned=False, max_steps=2)
    training.train(interrupted, None, tmp_path / "b" / "model", "diffusion", device="cpu")
    first_half = torch.load(tmp_path / "b" / "model" / "unet.pt", weights_only=True)
    interrupted["diffusion"]["max_steps"] = 4
    training.train(interrupted, None, tmp_path / "b" / "model", "diffusion", resume=True, device="cpu")
    a = torch.load(tmp_path / "a" / "model" / "unet.pt", weights_only=True)
    b = torch.load(tmp_path / "b" / "model" / "unet.pt", weights_only=True)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], first_half[k]) for k in a)  # the resumed steps did train
    state = load_checkpoint(tmp_path / "b" / "ckpt" / "diffusion.ckpt.pt")  # no pickled code
    assert state["step"] == 4


def test_the_encoder_stage_resumes_as_if_never_interrupted(tmp_path):
    """The contrastive stage on the stage runner: stopped after 1 of 2 steps and resumed, it ends
    with the weights, AdamW state, batch stream and augmentation streams of a straight run."""
    straight = config(tmp_path / "a")
    training.train(straight, None, tmp_path / "a" / "model", "encoder", device="cpu")
    interrupted = config(tmp_path / "b")
    interrupted["encoder"]["max_steps"] = 1
    training.train(interrupted, None, tmp_path / "b" / "model", "encoder", device="cpu")
    halfway = load_checkpoint(tmp_path / "b" / "ckpt" / "encoder.ckpt.pt")
    interrupted["encoder"]["max_steps"] = 2
    training.train(interrupted, None, tmp_path / "b" / "model", "encoder", resume=True, device="cpu")

    a = load_checkpoint(tmp_path / "a" / "ckpt" / "encoder.ckpt.pt")
    b = load_checkpoint(tmp_path / "b" / "ckpt" / "encoder.ckpt.pt")
    assert halfway["step"] == 1 and a["step"] == b["step"] == 2
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    assert not all(torch.equal(a["model"][k], halfway["model"][k]) for k in a["model"])  # the resumed step trained
    for index, moments in a["optimizer"]["state"].items():
        assert all(torch.equal(moments[k], b["optimizer"]["state"][index][k]) for k in ("step", "exp_avg", "exp_avg_sq"))
    assert torch.equal(a["rng"][0]["generator"], b["rng"][0]["generator"])
    assert not torch.equal(a["rng"][0]["generator"], halfway["rng"][0]["generator"])
    for x, y in zip(a["rng"][0]["augment"], b["rng"][0]["augment"]):  # numpy RandomState tuples
        assert x[0] == y[0] and np.array_equal(x[1], y[1]) and x[2:] == y[2:]
    assert a["recent_losses"] == b["recent_losses"]
    final = load_checkpoint(tmp_path / "b" / "ckpt" / "encoder_final.pt")
    assert final["summary"]["steps"] == 2 and all(torch.equal(final["model"][k], b["model"][k]) for k in final["model"])


def test_a_resumed_run_s_card_records_the_whole_state_s_training_time_and_steps(tmp_path):
    """A run that resumes a state trained for hours writes a card with the state's minutes and
    steps (every stage, every run), not only its own: what the evaluation table reports."""
    from UADContrastiveLib.zoo.card import cumulative_training

    cfg = config(tmp_path, max_steps=2)
    training.train(cfg, None, tmp_path / "model", "all", device="cpu")
    checkpoint = tmp_path / "ckpt" / "diffusion.ckpt.pt"
    state = load_checkpoint(checkpoint)
    state["elapsed"] = 178 * 60.0  # as if earlier working periods had trained 178 minutes
    torch.save(state, checkpoint)
    cfg["diffusion"]["max_steps"] = 4
    training.train(cfg, None, tmp_path / "model", "diffusion", resume=True, device="cpu")

    record = zoo.verify_model(tmp_path / "model").training
    assert record["training_steps"] == {"encoder": 2, "diffusion": 4}
    assert record["diffusion"]["steps"] == 4 and 178.0 <= record["diffusion"]["minutes"] < 179.0
    assert record["training_minutes"] == round(record["encoder"]["minutes"] + record["diffusion"]["minutes"], 1)
    assert 178.0 <= record["training_minutes"] < 179.0 and record["this_run_minutes"] < 5
    assert cumulative_training(record)["minutes"] == record["training_minutes"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ddp_worker(rank: int, world: int, port: int, cfg: dict, out: str, results: str):
    os.environ.update({"WORLD_SIZE": str(world), "RANK": str(rank), "LOCAL_RANK": str(rank),
                       "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)})
    torch.set_num_threads(1)
    dist_ = Dist(torch.device("cpu"))
    result = stages.train_diffusion(cfg, ["S0", "S1"], [], __import__("pathlib").Path(out), False, dist_)
    torch.save({k: v.detach().clone() for k, v in result["unet"].state_dict().items()},
               os.path.join(results, f"rank{rank}.pt"))
    torch.distributed.destroy_process_group()


def test_ddp_two_processes_keep_parameters_identical(tmp_path):
    cfg = config(tmp_path, conditioned=False, max_steps=2)
    mp.spawn(_ddp_worker, args=(2, _free_port(), cfg, str(tmp_path / "model"), str(tmp_path)), nprocs=2, join=True)
    r0 = torch.load(tmp_path / "rank0.pt", weights_only=True)
    r1 = torch.load(tmp_path / "rank1.pt", weights_only=True)
    assert all(torch.equal(r0[k], r1[k]) for k in r0)
    torch.manual_seed(int(cfg.get("seed", 0)) + 1)
    initial = build_unet({**cfg["diffusion"]["network"]["unet"], "latent_dim": 0}).state_dict()
    assert not all(torch.equal(r0[k], initial[k]) for k in r0)  # it trained


def test_config_file_loads_and_merges(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("diffusion:\n  lr: 0.5\n")
    cfg = load_config(path)
    assert cfg["diffusion"]["lr"] == 0.5 and cfg["diffusion"]["batch_size"] == 32
    json.dumps(cfg)


def test_atlas_is_rebuilt_by_uadc_train_from_the_slice_cache(tmp_path):
    """`uadc train --engine zscore_atlas`: the shipped baseline has a rebuild command, fitted on
    the slice cache (the detection path)."""
    import numpy as np
    import yaml
    from UADContrastiveLib.cli import main
    from UADContrastiveLib.engines.zscore_atlas.engine import ZScoreAtlasEngine

    cache = tmp_path / "cache"
    cache.mkdir()
    rng = np.random.default_rng(0)
    ids = ["S0", "S1", "S2", "S3"]
    brain = np.zeros((80, 96, 96), bool)
    brain[20:60, 20:76, 20:76] = True
    for subject_id in ids:
        volume = np.where(brain, 0.5 + 0.1 * rng.standard_normal(brain.shape), 0).astype(np.float32)
        np.savez_compressed(cache / f"{subject_id}.npz", volume=volume, brain=brain)
    config = tmp_path / "atlas.yaml"
    config.write_text(yaml.safe_dump({"cache_dir": str(cache), "subjects": {"train": ids, "validation": []}}))
    out = tmp_path / "zscore-atlas-test"
    assert main(["train", "--engine", "zscore_atlas", "--config", str(config), "--data", str(tmp_path),
                 "--out", str(out)]) == 0
    card = zoo.verify_model(out)
    assert card.engine == "zscore_atlas" and card.name == "zscore-atlas-test"
    assert card.training["subjects"] == ids and "detection path" in card.training["volumes"]
    engine = load_engine(out, "cpu")
    assert isinstance(engine, ZScoreAtlasEngine)
    assert abs(float(engine.mean[40, 48, 48]) - 0.5) < 0.1


def test_recipe_is_a_training_config_and_names_no_unknown_engine():
    from UADContrastiveLib.cli import build_parser
    from UADContrastiveLib.engines import ENGINES
    from UADContrastiveLib.resources import SHIPPED_MODELS

    recipe = SHIPPED_MODELS / "recipes" / "contrastive-diffusion-t1.yaml"
    config = load_config(recipe)
    assert config["diffusion"]["network"]["unet"]["conditioning"] == "film"
    ablation = load_config(SHIPPED_MODELS / "recipes" / "ddpm-t1.yaml")
    assert ablation["diffusion"]["conditioned"] is False and ablation["diffusion"]["network"]["unet"]["latent_dim"] == 0
    same = ("noise", "noise_octaves", "noise_persistence", "patch", "batch_size", "lr", "ema", "t_range")
    assert {k: ablation["diffusion"][k] for k in same} == {k: config["diffusion"][k] for k in same}
    assert config.get("engine", "contrastive_diffusion") in ENGINES
    args = build_parser().parse_args(["train", "--config", str(recipe), "--data", "d", "--out", "o"])
    assert args.engine is None and args.config == str(recipe)


def test_a_committed_state_resumes_on_a_fresh_folder_as_if_never_interrupted(tmp_path, monkeypatch):
    """`uadc train --state DIR`, the folder copied elsewhere (a fresh clone), `--resume COPY`: the
    jointly trained encoder, its EMA, the UNet's EMA, data order and random streams all continue."""
    import shutil

    import yaml
    from UADContrastiveLib.cli import main

    cache = make_cache(tmp_path / "cache")
    monkeypatch.setenv("UADC_SLICE_CACHE", str(cache))  # each machine's own cache; the state never names it
    recipe = {**TINY, "subjects": {"train": ["S0", "S1"], "validation": ["S2"]},
              "diffusion": {**TINY["diffusion"], "train_encoder": True, "max_steps": 6}}
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe))

    def train(*args):
        assert main(["train", "--data", str(cache), "--no-calibrate", "--device", "cpu", *args]) == 0

    train("--config", str(path), "--out", str(tmp_path / "straight"), "--state", str(tmp_path / "state-a"))
    recipe["diffusion"]["max_steps"] = 3
    path.write_text(yaml.safe_dump(recipe))
    train("--config", str(path), "--out", str(tmp_path / "first"), "--state", str(tmp_path / "state-b"))
    fresh = tmp_path / "other-machine" / "training-state"
    shutil.copytree(tmp_path / "state-b", fresh)
    shutil.rmtree(tmp_path / "state-b")  # nothing of the first run is left but the copy
    committed = yaml.safe_load((fresh / "recipe.yaml").read_text())
    committed["diffusion"]["max_steps"] = 6  # the next working period raises the budget
    (fresh / "recipe.yaml").write_text(yaml.safe_dump(committed))
    train("--resume", str(fresh), "--stage", "diffusion", "--out", str(tmp_path / "resumed"))

    a = load_checkpoint(tmp_path / "state-a" / "diffusion.ckpt.pt")
    b = load_checkpoint(fresh / "diffusion.ckpt.pt")
    assert a["step"] == b["step"] == 6
    np.testing.assert_allclose(a["recent_losses"], b["recent_losses"], rtol=1e-5)
    for key in ("model", "ema", "encoder", "encoder_ema"):
        assert all(torch.allclose(a[key][k].float(), b[key][k].float(), atol=1e-6) for k in a[key]), key
    assert all(torch.equal(x, y) for x, y in zip(a["rng"][0]["torch"], b["rng"][0]["torch"]))
    for name in ("unet.pt", "encoder.pt"):  # the model folders: the averaged UNet and the averaged encoder
        x = torch.load(tmp_path / "straight" / name, weights_only=True)
        y = torch.load(tmp_path / "resumed" / name, weights_only=True)
        assert all(torch.allclose(x[k].float(), y[k].float(), atol=1e-6) for k in x), name
    encoder_ema = a["encoder_ema"]
    shipped = torch.load(tmp_path / "straight" / "encoder.pt", weights_only=True)
    assert all(torch.equal(shipped[k], encoder_ema[k]) for k in shipped)  # inference uses the encoder's EMA
    exported = model_folder.export_checkpoint(
        load_config(overrides={**recipe, "checkpoint_dir": str(tmp_path / "state-a"), "cache_dir": str(cache)}),
        tmp_path / "exported", ["S0", "S1"], ["S2"], 4)
    from_checkpoint = torch.load(exported / "encoder.pt", weights_only=True)
    assert all(torch.equal(from_checkpoint[k], encoder_ema[k]) for k in shipped)  # an export pairs them too


def test_a_torchrun_run_on_two_processes_resumes_from_its_state_as_if_never_interrupted(tmp_path):
    """The README's several-process training: `torchrun --nproc-per-node 2 -m UADContrastiveLib
    train --state DIR` (DistributedDataParallel, gloo on CPU), stopped after 2 of 4 steps, its
    state folder copied elsewhere and resumed there with `--resume COPY`, ends where an
    uninterrupted two-process run ends: same step, weights, EMA and both ranks' random streams."""
    import shutil
    import subprocess
    import sys
    from pathlib import Path

    import yaml

    cache = make_cache(tmp_path / "cache")
    code = Path(__file__).resolve().parents[3] / "UADContrastive"
    env = {**os.environ, "UADC_SLICE_CACHE": str(cache), "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join([str(code), os.environ.get("PYTHONPATH", "")])}
    recipe = {**TINY, "subjects": {"train": ["S0", "S1"], "validation": ["S2"]},
              "diffusion": {**TINY["diffusion"], "conditioned": False, "max_steps": 4}}

    def torchrun(*args):
        command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                   "-m", "UADContrastiveLib", "train", "--data", str(cache), "--no-calibrate", "--device", "cpu",
                   "--stage", "diffusion", *map(str, args)]
        finished = subprocess.run(command, env=env, capture_output=True, text=True, encoding="utf-8",
                                  errors="replace", timeout=600)
        assert finished.returncode == 0, finished.stderr[-3000:]

    def write_recipe(steps: int) -> Path:
        recipe["diffusion"]["max_steps"] = steps
        path = tmp_path / "recipe.yaml"
        path.write_text(yaml.safe_dump(recipe))
        return path

    torchrun("--config", write_recipe(4), "--out", tmp_path / "straight", "--state", tmp_path / "state-a")
    torchrun("--config", write_recipe(2), "--out", tmp_path / "first", "--state", tmp_path / "state-b")
    halfway = load_checkpoint(tmp_path / "state-b" / "diffusion.ckpt.pt")
    fresh = tmp_path / "other-machine" / "training-state"
    shutil.copytree(tmp_path / "state-b", fresh)
    shutil.rmtree(tmp_path / "state-b")
    committed = yaml.safe_load((fresh / "recipe.yaml").read_text())
    committed["diffusion"]["max_steps"] = 4
    (fresh / "recipe.yaml").write_text(yaml.safe_dump(committed))
    torchrun("--resume", fresh, "--out", tmp_path / "resumed")

    a = load_checkpoint(tmp_path / "state-a" / "diffusion.ckpt.pt")
    b = load_checkpoint(fresh / "diffusion.ckpt.pt")
    assert halfway["step"] == 2 and a["step"] == b["step"] == 4
    assert len(a["rng"]) == len(b["rng"]) == 2  # each rank's own random streams are kept and restored
    for rank in range(2):
        assert torch.equal(a["rng"][rank]["torch"], b["rng"][rank]["torch"])
        assert torch.equal(a["rng"][rank]["generator"], b["rng"][rank]["generator"])
    assert not torch.equal(a["rng"][0]["generator"], a["rng"][1]["generator"])  # the ranks draw different batches
    np.testing.assert_allclose(a["recent_losses"], b["recent_losses"], rtol=1e-5)
    for key in ("model", "ema"):
        assert all(torch.allclose(a[key][k].float(), b[key][k].float(), atol=1e-6) for k in a[key]), key
        assert not all(torch.equal(a[key][k], halfway[key][k]) for k in a[key]), key  # the resumed steps trained
    x = torch.load(tmp_path / "straight" / "unet.pt", weights_only=True)
    y = torch.load(tmp_path / "resumed" / "unet.pt", weights_only=True)
    assert all(torch.allclose(x[k].float(), y[k].float(), atol=1e-6) for k in x)
