"""Engine core: networks, corruptions, synthetic lesions, model cards, engine loading/inference.

Tiny random networks on 32 x 32 slices keep this file fast.
"""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from UADContrastiveLib import zoo
from UADContrastiveLib.engines import load_engine, resolve_device
from UADContrastiveLib.engines.contrastive_diffusion.diffusion import build_unet, make_noise
from UADContrastiveLib.engines.contrastive_diffusion.encoder import build_encoder, contrastive_loss
from UADContrastiveLib.engines.contrastive_diffusion.engine import ContrastiveDiffusionEngine
from UADContrastiveLib.errors import ModelError
from UADContrastiveLib.training.corruptions import (
    anomaly_view,
    insert_synthetic_lesions,
    lesion_blobs,
    patch_mask,
    random_erase,
)
from UADContrastiveLib.training.slice_cache import brain_slices

TINY_ENCODER = {"block_inplanes": [8, 8, 16, 16], "latent_dim": 8, "projection_dim": 4}
TINY_UNET = {"channels": [8, 16], "attention_levels": [False, False], "norm_num_groups": 8, "latent_dim": 8}


def jitter(module, seed=0):
    """MONAI zero-initialises the UNet's output convolution: perturb so outputs are not all 0."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=g))
    return module


def phantom(z=6, size=32, seed=0):
    rng = np.random.default_rng(seed)
    zz, yy, xx = np.indices((z, size, size))
    brain = ((yy - size / 2) ** 2 + (xx - size / 2) ** 2 < (size * 0.35) ** 2) & (zz > 0)
    volume = (0.6 + 0.1 * rng.standard_normal((z, size, size))).astype(np.float32) * brain
    return volume.astype(np.float32), brain


def tiny_engine(conditioned=True, seed=0):
    torch.manual_seed(seed)
    encoder = build_encoder(TINY_ENCODER) if conditioned else None
    unet = jitter(build_unet({**TINY_UNET, "latent_dim": 8 if conditioned else 0}), seed)
    network = {"conditioned": conditioned, "unet": {**TINY_UNET, "latent_dim": 8 if conditioned else 0},
               "encoder": TINY_ENCODER if conditioned else None,
               "schedule": {"num_train_timesteps": 1000, "schedule": "cosine"}}
    return ContrastiveDiffusionEngine(unet, encoder, network, {"batch_size": 4, "timesteps": [250, 500]})


def write_tiny_model(folder, conditioned=True):
    engine = tiny_engine(conditioned)
    folder.mkdir(parents=True, exist_ok=True)
    files = {}
    torch.save(engine.unet.state_dict(), folder / "unet.pt")
    files["unet.pt"] = zoo.sha256_file(folder / "unet.pt")
    if conditioned:
        torch.save(engine.encoder.state_dict(), folder / "encoder.pt")
        files["encoder.pt"] = zoo.sha256_file(folder / "encoder.pt")
    card = {"name": "tiny", "engine": "contrastive_diffusion", "network": engine.network,
            "inference": engine.inference, "files": files}
    (folder / "model.json").write_text(json.dumps(card))
    return engine


# ---------------------------------------------------------------- networks
def test_encoder_and_unet_shapes_and_conditioning():
    torch.manual_seed(0)
    encoder, unet = build_encoder(TINY_ENCODER).eval(), jitter(build_unet(TINY_UNET)).eval()
    x = torch.rand(3, 1, 32, 32)
    latent = encoder(x)
    assert latent.shape == (3, 8)
    assert encoder.project(latent).shape == (3, 4)
    t = torch.tensor([10, 500, 900])
    with torch.no_grad():
        out = unet(x, t, latent)
        other = unet(x, t, latent + 1.0)
    assert out.shape == x.shape
    # the latent really enters through the time embedding
    assert not torch.allclose(out, other)
    assert isinstance(unet.unet.class_embedding, torch.nn.Linear)
    with pytest.raises(ValueError):
        unet(x, t, None)
    plain = build_unet({**TINY_UNET, "latent_dim": 0})
    assert plain(x, t).shape == x.shape


def test_loss_decreases_on_tiny_net():
    torch.manual_seed(0)
    unet = build_unet({**TINY_UNET, "latent_dim": 0})
    optimizer = torch.optim.Adam(unet.parameters(), lr=3e-3)
    x = torch.rand(4, 1, 32, 32)
    t = torch.full((4,), 300)
    losses = []
    for _ in range(12):
        loss = (unet(x * 0.5, t) - x).abs().mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < 0.7 * losses[0]


def test_contrastive_loss_prefers_aligned_views():
    loss = contrastive_loss(0.5)
    a = torch.nn.functional.normalize(torch.randn(8, 4, generator=torch.Generator().manual_seed(0)), dim=1)
    shuffled = a[torch.randperm(8, generator=torch.Generator().manual_seed(1))]
    assert float(loss(a, a)) < float(loss(a, shuffled))


def test_coarse_noise_unit_variance_and_seeded():
    n1 = make_noise((4, 1, 32, 32), torch.Generator().manual_seed(3), coarse_weight=0.5)
    n2 = make_noise((4, 1, 32, 32), torch.Generator().manual_seed(3), coarse_weight=0.5)
    assert torch.equal(n1, n2)
    assert 0.8 < float(n1.std()) < 1.2


# ---------------------------------------------------------------- corruptions
def test_synthetic_lesions_inside_brain_and_mask_is_changed_voxels():
    volume, brain = phantom(z=12, size=40)
    out, lesion = insert_synthetic_lesions(volume, brain, np.random.default_rng(1), count=2, intensity="hyper")
    assert lesion.any() and out.dtype == np.float32 and out.shape == volume.shape
    assert not (lesion & ~brain).any()
    changed = np.abs(out - volume) > 0
    assert np.array_equal(changed, lesion)
    assert (out[lesion] > volume[lesion]).all()
    again, lesion2 = insert_synthetic_lesions(volume, brain, np.random.default_rng(1), count=2, intensity="hyper")
    assert np.array_equal(again, out) and np.array_equal(lesion, lesion2)
    dark, dark_mask = insert_synthetic_lesions(volume, brain, np.random.default_rng(2), intensity="hypo")
    assert dark_mask.any() and (dark[dark_mask] < volume[dark_mask]).all()


def test_2d_views_stay_in_brain_and_patch_mask_ratio():
    volume, brain = phantom(z=4, size=32)
    x = torch.from_numpy(volume[:, None]).float()
    b = torch.from_numpy(brain[:, None].astype(np.float32))
    g = torch.Generator().manual_seed(0)
    for view in (random_erase, lesion_blobs):
        out = view(x, b, g)
        assert torch.equal(out[b == 0], x[b == 0])
        assert not torch.equal(out, x)
    ones = torch.ones(2, 1, 32, 32)
    masked = patch_mask(ones, ones, g, cells=4, ratio=0.65)
    assert float((masked == 0).float().mean()) == pytest.approx(10 / 16)
    mixed = anomaly_view(x, b, g)
    assert mixed.shape == x.shape


def test_brain_slices_threshold():
    brain = np.zeros((4, 10, 10), bool)
    brain[0, :1, :1] = True   # 1 voxel
    brain[1, :5, :5] = True   # 25
    brain[2, :10, :10] = True  # 100
    assert brain_slices(brain, 0.15).tolist() == [1, 2]


# ---------------------------------------------------------------- engine
def test_engine_shapes_determinism_and_progress():
    engine = tiny_engine()
    volume, brain = phantom()
    calls = []
    first = engine.reconstruct(volume, brain, progress=calls.append)
    second = engine.reconstruct(volume, brain)
    assert first.shape == volume.shape and first.dtype == np.float32
    assert np.array_equal(first, second)  # seeded
    assert np.array_equal(first[0], volume[0])  # no brain: returned as input
    assert np.array_equal(first[~brain], volume[~brain])
    assert not np.array_equal(first[brain], volume[brain])
    assert calls[-1] == pytest.approx(1.0) and calls == sorted(calls)
    engine.inference["seed"] = 1
    assert not np.array_equal(engine.reconstruct(volume, brain), first)
    mean, std = engine.reconstruct_with_uncertainty(volume, brain, samples=3)
    assert mean.shape == std.shape == volume.shape
    assert std[brain].mean() > 0 and std[~brain].max() == 0
    engine.inference["ddim_steps"] = 3
    assert engine.reconstruct(volume, brain).shape == volume.shape


def test_load_engine_verifies_checksums_and_weights_only(tmp_path):
    folder = tmp_path / "model"
    reference = write_tiny_model(folder)
    volume, brain = phantom()
    engine = load_engine(folder, "cpu")
    assert np.allclose(engine.reconstruct(volume, brain), reference.reconstruct(volume, brain), atol=1e-5)
    # tampered weight file: refused before loading, naming the file
    data = bytearray((folder / "unet.pt").read_bytes())
    data[-10] ^= 0xFF
    (folder / "unet.pt").write_bytes(bytes(data))
    with pytest.raises(ModelError, match="unet.pt"):
        load_engine(folder, "cpu")
    with pytest.raises(ModelError, match="unet.pt"):
        zoo.verify_model(folder)
    # a pickled object (not a state dict of tensors) is refused by weights_only loading
    torch.save({"evil": ModelError}, folder / "unet.pt")
    card = json.loads((folder / "model.json").read_text(encoding="utf-8"))
    card["files"]["unet.pt"] = zoo.sha256_file(folder / "unet.pt")
    (folder / "model.json").write_text(json.dumps(card))
    with pytest.raises(ModelError, match="unet.pt"):
        load_engine(folder, "cpu")
    (folder / "encoder.pt").unlink()
    with pytest.raises(ModelError, match="encoder.pt"):
        zoo.verify_model(folder)


def test_zoo_resolve_and_list(tmp_path, monkeypatch):
    monkeypatch.setenv("UADC_CACHE", str(tmp_path / "cache"))
    write_tiny_model(tmp_path / "cache" / "models" / "tiny", conditioned=False)
    names = [m["name"] for m in zoo.list_models()]
    assert "tiny" in names
    assert zoo.resolve_model("tiny") == tmp_path / "cache" / "models" / "tiny"
    assert zoo.resolve_model(tmp_path / "cache" / "models" / "tiny") == tmp_path / "cache" / "models" / "tiny"
    with pytest.raises(ModelError):
        zoo.resolve_model("no-such-model")
    with pytest.raises(ModelError):
        zoo.read_card(tmp_path)
    assert resolve_device("cpu").type == "cpu"
    assert resolve_device("auto").type in ("cpu", "cuda")
