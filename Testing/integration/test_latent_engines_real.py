"""MAD-AD and latent DDPM end to end on real IXI scans: tiny models trained for a few steps on
three preprocessed subjects (one shared autoencoder), then `uadc detect` and `uadc models verify`
on a fourth scan. The maps mean nothing; the geometry, the files and the contract do."""
from __future__ import annotations

import json

import numpy as np
import pytest
import SimpleITK as sitk
from UADContrastiveLib.cli import main
from UADContrastiveLib.datasets import ixi_subjects
from UADContrastiveLib.engines.registry import trainer
from UADContrastiveLib.io import read_volume, same_grid, volume_stem
from UADContrastiveLib.training.config import load_config
from UADContrastiveLib.training.slice_cache import build_cache

ENGINES = ("mad_ad", "latent_ddpm")
TINY = {
    "threads": 1, "checkpoint_minutes": 100,
    "autoencoder": {"network": {"channels": [8, 8, 16], "latent_channels": 3, "norm_num_groups": 4},
                    "batch_size": 4, "lr": 1e-3, "minutes": None, "max_steps": 2, "validation_slices": 4},
    "denoiser": {"network": {"channels": [8, 16], "num_res_blocks": 1, "norm_num_groups": 4},
                 "batch_size": 8, "lr": 1e-3, "minutes": None, "max_steps": 2, "validation_slices": 8},
    "inference": {"steps": 2, "batch_size": 40},
}


@pytest.fixture(scope="module")
def real_scans(shared_data):
    return [s for s in ixi_subjects(shared_data / "ixi_t1")][:4]


@pytest.fixture(scope="module")
def trained(real_scans, tmp_path_factory):
    root = tmp_path_factory.mktemp("latent")
    cache = root / "cache"
    report = build_cache(real_scans[:3], cache)
    assert len(report.ready) == 3, report.refused
    ids = report.ready
    models = {}
    for engine in ENGINES:
        config = load_config(overrides={**TINY, "cache_dir": str(cache), "checkpoint_dir": str(root / "ckpt" / engine),
                                        "autoencoder_path": str(root / "autoencoder_final.pt"), "name": f"tiny-{engine}",
                                        "subjects": {"train": ids[:2], "validation": ids[2:]}})
        summary = trainer(engine)(config, None, root / engine, "all", device="cpu")
        assert summary["steps"] == 2
        models[engine] = root / engine
    return models


@pytest.mark.parametrize("engine", ENGINES)
def test_detect_writes_maps_on_the_input_grid(trained, real_scans, engine, tmp_path, capsys):
    model = trained[engine]
    assert main(["models", "verify", "--model", str(model)]) == 0
    assert "every file matches" in capsys.readouterr().out
    scan = real_scans[3].image
    out = tmp_path / "out"
    assert main(["detect", str(scan), "--out-dir", str(out), "--model", str(model), "--threshold", "1.0",
                 "--device", "cpu"]) == 0
    folder = out / volume_stem(scan)
    image = read_volume(scan)
    for name in ("healthy.nii.gz", "anomaly_map.nii.gz", "anomaly_mask.nii.gz", "brain_mask.nii.gz"):
        assert same_grid(sitk.ReadImage(str(folder / name)), image), name
    amap = sitk.GetArrayFromImage(sitk.ReadImage(str(folder / "anomaly_map.nii.gz")))
    brain = sitk.GetArrayFromImage(sitk.ReadImage(str(folder / "brain_mask.nii.gz"))) > 0
    healthy = sitk.GetArrayFromImage(sitk.ReadImage(str(folder / "healthy.nii.gz")))
    assert np.isfinite(amap).all() and np.isfinite(healthy).all()
    assert np.all(amap[~brain] == 0)
    np.testing.assert_array_equal(healthy[~brain], sitk.GetArrayFromImage(image).astype(np.float32)[~brain])
    report = json.loads((folder / "report.json").read_text())
    assert report["model"]["engine"] == engine
    assert set(report["model"]["sha256"]) == {"autoencoder.pt", "denoiser.pt"}
