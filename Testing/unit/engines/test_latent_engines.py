"""The latent engines (MAD-AD, latent DDPM) and their shared autoencoder, on tiny networks.

Synthetic 32 x 32 "subjects" in a temporary slice cache keep training tests to seconds; the
networks are a few thousand parameters.
"""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from test_engine_train import make_cache  # the synthetic 32 x 32 slice cache
from UADContrastiveLib import zoo
from UADContrastiveLib.engines import load_engine
from UADContrastiveLib.engines.diffusion_common import step_schedule
from UADContrastiveLib.engines.latent_autoencoder import training as ae_training
from UADContrastiveLib.engines.latent_autoencoder.engine import AUTOENCODER_FILE, DENOISER_FILE
from UADContrastiveLib.engines.latent_autoencoder.network import brain_cells, build_codec
from UADContrastiveLib.engines.latent_ddpm import training as ldm_training
from UADContrastiveLib.engines.latent_ddpm.engine import LatentDdpmEngine
from UADContrastiveLib.engines.mad_ad import training as mad_training
from UADContrastiveLib.engines.mad_ad.engine import MadAdEngine
from UADContrastiveLib.engines.mad_ad.masking import draw_patch_size, random_patch_mask
from UADContrastiveLib.engines.mad_ad.network import build_denoiser
from UADContrastiveLib.errors import InputError, ModelError
from UADContrastiveLib.training.config import load_config

TINY_AE = {"channels": [8, 8, 16], "latent_channels": 3, "num_res_blocks": 1, "norm_num_groups": 4}
TINY_DENOISER = {"channels": [8, 16], "num_res_blocks": 1, "norm_num_groups": 4}


def tiny_config(tmp_path, **overrides):
    cache = make_cache(tmp_path / "cache")
    recipe = {
        "threads": 1, "checkpoint_minutes": 100, "cache_dir": str(cache), "checkpoint_dir": str(tmp_path / "ckpt"),
        "subjects": {"train": ["S0", "S1"], "validation": ["S2"]},
        "augmentation": {"gamma": 0.5, "noise": 0.5},
        "autoencoder": {"network": TINY_AE, "batch_size": 4, "lr": 1e-3, "minutes": None, "max_steps": 3,
                        "kl_weight": 1e-6, "gradient_weight": 0.5, "validation_slices": 4},
        "denoiser": {"network": TINY_DENOISER, "batch_size": 4, "lr": 1e-3, "minutes": None, "max_steps": 3,
                     "validation_slices": 8},
        "inference": {"batch_size": 4, "steps": 3},
    }
    config = load_config(overrides=recipe)
    for key, value in overrides.items():
        config[key].update(value) if isinstance(value, dict) else config.__setitem__(key, value)
    return config


# ---------------------------------------------------------------------------------- autoencoder
def test_autoencoder_latent_is_a_quarter_of_the_slice_and_standardised():
    torch.manual_seed(0)
    codec = build_codec({"channels": [8, 16, 16], "latent_channels": 3, "norm_num_groups": 8}).eval()
    assert codec.downsampling == 4
    x = torch.rand(2, 1, 96, 96)
    with torch.no_grad():
        reconstruction, mu, sigma = codec(x)
        assert mu.shape == sigma.shape == (2, 3, 24, 24) and reconstruction.shape == x.shape
        codec.set_latent_statistics(torch.tensor([1.0, -2.0, 0.5]), torch.tensor([2.0, 4.0, 0.5]))
        z, _ = codec.encode(x)
        raw, _ = codec.autoencoder.encode(x * 2 - 1)
        expected = (raw - torch.tensor([1.0, -2.0, 0.5]).view(1, 3, 1, 1)) / torch.tensor([2.0, 4.0, 0.5]).view(1, 3, 1, 1)
        torch.testing.assert_close(z, expected)
        # decode undoes the standardisation: decode(encode(x)) equals the raw autoencoder's output
        torch.testing.assert_close(codec.decode(z), (codec.autoencoder.decode(raw) + 1) / 2, atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="norm_num_groups"):
        build_codec({"channels": [6, 16, 16], "norm_num_groups": 4})


def test_autoencoder_gradients_reach_encoder_and_decoder():
    torch.manual_seed(0)
    codec = build_codec(TINY_AE)
    loss, l1 = ae_training.autoencoder_loss(codec, torch.rand(2, 1, 32, 32), 1e-6, 0.5)
    loss.backward()
    assert float(l1.detach()) > 0
    for part in (codec.autoencoder.encoder, codec.autoencoder.decoder, codec.autoencoder.quant_conv_mu):
        assert sum(float(p.grad.abs().sum()) for p in part.parameters() if p.grad is not None) > 0


def test_brain_cells_need_half_of_their_block_in_the_brain():
    brains = torch.zeros(1, 1, 8, 8)
    brains[..., :4, :4] = 1          # cell (0, 0) full
    brains[..., 4:6, 4:8] = 1        # cell (1, 1) half
    brains[..., 0, 4] = 1            # cell (0, 1) one pixel of 16
    cells = brain_cells(brains, 4)
    assert cells[0, 0].tolist() == [[True, False], [False, True]]


# ---------------------------------------------------------------------------------- MAD-AD masks
def test_patch_masks_have_the_drawn_ratio_and_patch_size():
    generator = torch.Generator().manual_seed(0)
    masks, ratios = random_patch_mask(400, 24, 24, generator, 0.4, patch=(2, 4))
    assert masks.shape == (400, 1, 24, 24) and masks.dtype == torch.bool
    assert float(ratios.min()) >= 0 and float(ratios.max()) <= 0.4
    patches = 12 * 6
    noised = masks.flatten(1).float().mean(1)
    np.testing.assert_allclose(noised.numpy(), (ratios * patches).round().numpy() / patches, atol=1e-6)
    assert abs(float(noised.mean()) - 0.2) < 0.02          # uniform in [0, 0.4]: mean 0.2
    # constant inside every 2 x 4 patch, patches aligned to the grid
    blocks = masks.view(400, 1, 12, 2, 6, 4)
    assert torch.equal(blocks.amin(dim=(3, 5)), blocks.amax(dim=(3, 5)))
    sizes = [draw_patch_size(generator) for _ in range(4000)]
    frequencies = [sizes.count(s) / len(sizes) for s in (1, 2, 4, 8)]
    np.testing.assert_allclose(frequencies, [0.2, 0.3, 0.3, 0.2], atol=0.03)
    with pytest.raises(ValueError, match="do not tile"):
        random_patch_mask(1, 24, 24, generator, patch=(5, 1))


def test_mad_ad_network_heads_and_gradients():
    torch.manual_seed(0)
    denoiser = build_denoiser(3, TINY_DENOISER)
    z_t, t = torch.randn(4, 3, 8, 8), torch.randint(0, 10, (4,))
    x0, logits = denoiser(z_t, t)
    assert x0.shape == (4, 3, 8, 8) and logits.shape == (4, 1, 8, 8)
    assert float(torch.sigmoid(logits.detach()).sub(0.5).abs().max()) == 0.0   # zero-initialised heads
    optimizer = torch.optim.SGD(denoiser.parameters(), lr=0.1)
    mask = torch.zeros(4, 1, 8, 8, dtype=torch.bool)
    mask[:, :, 2:6, 2:6] = True
    for _ in range(2):  # the heads start at zero: the body receives gradient from the second step on
        optimizer.zero_grad()
        loss, figures = mad_training.mad_ad_loss(denoiser, torch.randn(4, 3, 8, 8), z_t, mask, t, 0.5)
        loss.backward()
        optimizer.step()
    for part in (denoiser.body, denoiser.x0_head, denoiser.mask_head):
        assert sum(float(p.grad.abs().sum()) for p in part.parameters() if p.grad is not None) > 0
    assert float(figures["mask_bce"].detach()) > 0


class _StubMadAdDenoiser(torch.nn.Module):
    """Calls the cells in `noisy` noisy, predicts x0 = `target` everywhere."""

    def __init__(self, target: torch.Tensor, noisy: torch.Tensor):
        super().__init__()
        self.target, self.noisy = target, noisy
        self.anchor = torch.nn.Parameter(torch.zeros(1))

    def forward(self, x_t, t):
        return self.target.expand_as(x_t), torch.where(self.noisy, 10.0, -10.0).expand(len(x_t), 1, *x_t.shape[-2:])


def _mad_ad_engine(denoiser, codec=None):
    network = {"autoencoder": TINY_AE, "denoiser": TINY_DENOISER}
    return MadAdEngine(codec or build_codec(TINY_AE), denoiser, network, {"steps": 4}, "cpu")


def test_mad_ad_restores_only_the_cells_called_noisy():
    z = torch.randn(2, 3, 8, 8)
    noisy = torch.zeros(1, 1, 8, 8, dtype=torch.bool)
    noisy[..., 1:3, 4:7] = True
    target = torch.zeros(1, 3, 8, 8)
    engine = _mad_ad_engine(_StubMadAdDenoiser(target, noisy))
    cells = torch.ones(2, 1, 8, 8, dtype=torch.bool)
    cells[1, :, 1, 4] = False  # a cell outside the brain is never restored
    restored, region = engine.restore(z, cells)
    assert torch.equal(region, noisy.expand(2, 1, 8, 8) & cells)
    outside = ~region.expand_as(z)
    assert torch.equal(restored[outside], z[outside])                       # bit-exact outside the region
    torch.testing.assert_close(restored[region.expand_as(z)], torch.zeros(int(region.sum()) * 3))  # x0 = target


def test_mad_ad_healthy_slices_change_only_where_the_latent_did():
    torch.manual_seed(0)
    slices = torch.rand(2, 1, 32, 32)
    brains = torch.ones_like(slices)
    nothing = _mad_ad_engine(_StubMadAdDenoiser(torch.zeros(1, 3, 8, 8), torch.zeros(1, 1, 8, 8, dtype=torch.bool)))
    assert torch.equal(nothing.heal_slices(slices, brains, None), slices)    # no noisy cell: the input itself
    noisy = torch.zeros(1, 1, 8, 8, dtype=torch.bool)
    noisy[..., 3, 3] = True
    engine = _mad_ad_engine(_StubMadAdDenoiser(torch.full((1, 3, 8, 8), 3.0), noisy), nothing.codec)
    healthy = engine.heal_slices(slices, brains, None)
    z, _ = engine.codec.encode(slices)
    restored, _ = engine.restore(z, engine.cells(brains))
    expected = engine.codec.decode(z) - engine.codec.decode(restored)
    torch.testing.assert_close(slices - healthy, expected, atol=1e-5, rtol=1e-5)  # residual = decode difference
    assert float((slices - healthy).abs().max()) > 1e-4


# ---------------------------------------------------------------------------------- latent DDPM
class _StubLdmDenoiser(torch.nn.Module):
    """Predicts x0 = `target` whatever it is given: a 'healthy model' whose healthy latent is target."""

    def __init__(self, target: torch.Tensor):
        super().__init__()
        self.target = target
        self.anchor = torch.nn.Parameter(torch.zeros(1))

    def forward(self, x_t, t):
        return self.target.expand_as(x_t)


@pytest.mark.parametrize("inpaint", [True, False])
def test_latent_ddpm_heals_only_the_cells_that_changed(inpaint):
    torch.manual_seed(0)
    target = torch.randn(1, 3, 8, 8)
    z = target.repeat(2, 1, 1, 1)
    z[0, :, 2:4, 5:7] += 3.0                      # the "anomaly": four cells of slice 0
    network = {"autoencoder": TINY_AE, "denoiser": TINY_DENOISER}
    engine = LatentDdpmEngine(build_codec(TINY_AE), _StubLdmDenoiser(target), network,
                              {"t_start": 300, "steps": 5, "change_threshold": 1.0, "inpaint": inpaint}, "cpu")
    healed, mask = engine.heal_latent(z, torch.ones(2, 1, 8, 8, dtype=torch.bool), torch.Generator().manual_seed(0))
    expected = torch.zeros(2, 1, 8, 8, dtype=torch.bool)
    expected[0, :, 2:4, 5:7] = True
    assert torch.equal(mask, expected)
    assert torch.equal(healed[~mask.expand_as(z)], z[~mask.expand_as(z)])     # bit-exact elsewhere
    torch.testing.assert_close(healed[mask.expand_as(z)], target.expand_as(z)[mask.expand_as(z)])


def test_latent_ddpm_healthy_is_the_input_outside_the_upsampled_mask():
    torch.manual_seed(0)
    codec = build_codec(TINY_AE).eval()
    slices = torch.rand(2, 1, 32, 32)
    brains = torch.ones_like(slices)
    with torch.no_grad():
        z, _ = codec.encode(slices)
    target = z.clone()
    target[0, :, 1, 1] -= 4.0                     # the model "heals" cell (1, 1) of slice 0, nothing else
    network = {"autoencoder": TINY_AE, "denoiser": TINY_DENOISER}
    engine = LatentDdpmEngine(codec, _StubLdmDenoiser(target), network,
                              {"t_start": 200, "steps": 4, "change_threshold": 1.0}, "cpu")
    with torch.no_grad():
        healthy = engine.heal_slices(slices, brains, torch.Generator().manual_seed(0))
    changed = (healthy != slices)[:, 0]
    assert changed[0, 4:8, 4:8].all() and int(changed.sum()) == 16  # exactly the 4 x 4 block of cell (1, 1)


def test_step_schedule_runs_from_t_start_to_x0():
    assert step_schedule(9, 10) == [(9, 8), (8, 7), (7, 6), (6, 5), (5, 4), (4, 3), (3, 2), (2, 1), (1, 0), (0, -1)]
    assert step_schedule(300, 3) == [(300, 150), (150, 0), (0, -1)]
    assert step_schedule(2, 10) == [(2, 1), (1, 0), (0, -1)]
    with pytest.raises(ValueError):
        step_schedule(5, 0)


# ---------------------------------------------------------------------------------- training + model folder
def test_autoencoder_resume_equals_uninterrupted_training(tmp_path):
    config = tiny_config(tmp_path, autoencoder={"max_steps": 4})
    straight, _ = ae_training.train_autoencoder(config, ["S0", "S1"], ["S2"], tmp_path / "a", False, torch.device("cpu"))
    config = tiny_config(tmp_path / "r", autoencoder={"max_steps": 2})
    ae_training.train_autoencoder(config, ["S0", "S1"], ["S2"], tmp_path / "b", False, torch.device("cpu"))
    config["autoencoder"]["max_steps"] = 4
    resumed, summary = ae_training.train_autoencoder(config, ["S0", "S1"], ["S2"], tmp_path / "b", True,
                                                     torch.device("cpu"))
    assert summary["steps"] == 4
    for key, value in straight.state_dict().items():
        torch.testing.assert_close(resumed.state_dict()[key], value, rtol=0, atol=0, msg=key)


@pytest.mark.parametrize("trainer, engine_name", [(mad_training, "mad_ad"), (ldm_training, "latent_ddpm")])
def test_training_writes_a_verified_model_folder(tmp_path, trainer, engine_name):
    config = tiny_config(tmp_path)
    ae_only = trainer.train(config, None, tmp_path / "model", "autoencoder", device="cpu")
    ae_file = tmp_path / "ckpt" / "autoencoder_final.pt"
    assert ae_only["autoencoder_path"] == str(ae_file) and ae_file.is_file()
    before = ae_file.read_bytes()
    summary = trainer.train(config, None, tmp_path / "model", "all", device="cpu")   # reuses the autoencoder
    assert ae_file.read_bytes() == before and summary["steps"] == 3
    card = zoo.verify_model(tmp_path / "model")
    assert card.engine == engine_name and set(card.files) == {AUTOENCODER_FILE, DENOISER_FILE}
    assert card.training["subjects"] == {"train": ["S0", "S1"], "validation": ["S2"]}
    assert card.network["autoencoder"]["channels"] == TINY_AE["channels"]
    assert np.isfinite(card.extra["validation"]["brain_mae"])
    for name in card.files:  # state dicts only
        state = torch.load(tmp_path / "model" / name, weights_only=True)
        assert all(torch.is_tensor(v) for v in state.values())
    engine = load_engine(tmp_path / "model", "cpu")
    volume = np.load(tmp_path / "cache" / "S2.npz")
    healthy = engine.reconstruct(volume["volume"], volume["brain"])
    assert healthy.shape == volume["volume"].shape and healthy.dtype == np.float32
    np.testing.assert_array_equal(healthy[~volume["brain"]], volume["volume"][~volume["brain"]])
    np.testing.assert_array_equal(engine.reconstruct(volume["volume"], volume["brain"]), healthy)  # reproducible
    if engine_name == "latent_ddpm":
        assert card.inference["change_threshold"] > 0 and card.inference["change_threshold"] != 0.5
    # a modified weight file is refused before loading
    (tmp_path / "model" / DENOISER_FILE).write_bytes(b"x" + (tmp_path / "model" / DENOISER_FILE).read_bytes())
    with pytest.raises(ModelError, match="checksum"):
        zoo.verify_model(tmp_path / "model")


def test_weights_that_do_not_fit_the_card_are_a_model_error(tmp_path):
    config = tiny_config(tmp_path)
    mad_training.train(config, None, tmp_path / "model", "all", device="cpu")
    card_path = tmp_path / "model" / "model.json"
    card = json.loads(card_path.read_text())
    card["network"]["denoiser"]["channels"] = [16, 16]
    card_path.write_text(json.dumps(card))
    with pytest.raises(ModelError, match="could not be loaded"):
        load_engine(tmp_path / "model", "cpu")


def test_denoiser_stage_without_an_autoencoder_says_what_to_run(tmp_path):
    config = tiny_config(tmp_path)
    with pytest.raises(InputError, match="autoencoder' stage first"):
        ldm_training.train(config, None, tmp_path / "model", "denoiser", device="cpu")
    with pytest.raises(ValueError, match="stage must be"):
        ldm_training.train(config, None, tmp_path / "model", "diffusion", device="cpu")


def test_train_command_refuses_a_stage_the_engine_does_not_have(tmp_path, capsys):
    from UADContrastiveLib.cli import main

    code = main(["train", "--engine", "latent_ddpm", "--stage", "encoder", "--data", str(tmp_path),
                 "--out", str(tmp_path / "model")])
    assert code == 2
    assert "not a stage of the latent_ddpm engine (its stages: autoencoder, denoiser, all)" in capsys.readouterr().err
    # without a latent recipe the default training config has no autoencoder section: a usage error
    code = main(["train", "--engine", "mad_ad", "--data", str(tmp_path), "--out", str(tmp_path / "model")])
    assert code == 2 and "mad-ad-t1.yaml" in capsys.readouterr().err
