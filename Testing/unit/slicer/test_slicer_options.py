"""What the module's widget offers (models, devices, presets, warnings): pure helpers."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(REPO / "UADContrastive"))

from UADContrastiveSlicerLib import options  # noqa: E402

VALUES = {"fpr_0.1%": 0.9, "fpr_1%": 0.3, "fpr_0.5%": 0.5, "dice_optimal": 0.4}


@pytest.mark.parametrize("source", [
    {"thresholds_available": VALUES},                                  # report.json
    {"name": "m", "thresholds": {"default": "fpr_1%", "values": VALUES}},  # model card
    VALUES,                                                            # bare mapping
])
def test_presets_come_in_fpr_order_from_report_card_or_mapping(source):
    assert options.threshold_presets(source) == [("1 % FPR", 0.3), ("0.5 % FPR", 0.5), ("0.1 % FPR", 0.9)]


def test_missing_or_uncalibrated_presets_are_left_out():
    assert options.threshold_presets(None) == []
    assert options.threshold_presets({"thresholds": {"values": {"fpr_1%": 0.2}}}) == [("1 % FPR", 0.2)]
    assert options.threshold_presets({"thresholds_available": {"fpr_1%": {"value": 0.7}}}) == [("1 % FPR", 0.7)]


def test_min_size_default_from_report_or_card():
    assert options.default_min_size({"min_size_mm3": 120}) == 120.0
    assert options.default_min_size({"thresholds": {"min_size_mm3": 30}}) == 30.0
    assert options.default_min_size({"min_size_mm3": None}, fallback=5.0) == 5.0


def test_threshold_slider_reaches_the_hottest_voxel_and_every_preset():
    low, high, step = options.threshold_slider_range(2.0, [("p", 3.0)])
    assert low == 0.0 and high >= 3.0 and high >= 2.0 and step == pytest.approx(high / 1000)
    assert options.threshold_slider_range(0.0, [])[1] > 0  # empty map: still a usable slider
    assert options.threshold_slider_range(2.0, [], current=7.5)[1] >= 7.5  # never clamps the stored value
    assert options.threshold_slider_range(None, [])[1] == 1.0  # no map yet


def test_model_label_shows_the_modality():
    choice = options.model_choice({"name": "ixi-t1", "modality": "T1w", "thresholds": {}})
    assert (choice.name, choice.label) == ("ixi-t1", "ixi-t1 (T1w)")
    nested = options.model_choice({"path": "/m", "card": {"name": "x", "modality": ["T1w", "T2w"]}})
    assert nested.label == "x (T1w/T2w)"
    assert options.model_choice({"name": "bare"}).label == "bare"


def test_model_choices_lists_the_installed_models(tmp_path, monkeypatch):
    """The real zoo, pointed at a temporary cache holding one model card."""
    zoo = pytest.importorskip("UADContrastiveLib.zoo")
    folder = tmp_path / "models" / "tiny-t1"
    folder.mkdir(parents=True)
    (folder / "model.json").write_text(
        '{"name": "tiny-t1", "modality": "T1w", "engine": "x", "files": {},'
        ' "thresholds": {"values": {"fpr_1%": 0.25}}}')
    monkeypatch.setenv("UADC_CACHE", str(tmp_path))
    choices = [c for c in options.model_choices() if c.name == "tiny-t1"]
    assert choices, f"zoo.list_models() did not list the model: {zoo.list_models()}"
    assert choices[0].label == "tiny-t1 (T1w)"
    assert options.threshold_presets(choices[0].card) == [("1 % FPR", 0.25)]


@pytest.mark.parametrize("volume", ["IXI102-HH-1416_T2", "t2", "3: AX FLAIR", "sub-01_T2w"])
def test_a_t2_or_flair_volume_preselects_the_shipped_t2_model(volume, tmp_path, monkeypatch):
    """The real zoo (an empty user cache): the volume's name names T2 or FLAIR, and the module
    moves from the default T1 model to the shipped model reading T2; a T1 volume moves back."""
    pytest.importorskip("UADContrastiveLib.zoo")
    monkeypatch.setenv("UADC_CACHE", str(tmp_path))
    choices = options.model_choices()
    contrast = options.contrast_from_name(volume)
    assert options.model_for_contrast(choices, contrast, "contrastive-diffusion-t1") == "contrastive-diffusion-t2"
    assert options.model_for_contrast(choices, "T1", "contrastive-diffusion-t2") == "contrastive-diffusion-t1"


def test_cpu_warning_only_when_running_on_the_cpu():
    no_gpu = [options.DeviceChoice("auto", "Auto"), options.DeviceChoice("cuda", "GPU", enabled=False),
              options.DeviceChoice("cpu", "CPU")]
    gpu = [options.DeviceChoice("auto", "Auto"), options.DeviceChoice("cuda", "GPU"),
           options.DeviceChoice("cpu", "CPU")]
    assert options.cpu_warning("auto", no_gpu) == options.CPU_WARNING
    assert options.cpu_warning("cpu", gpu) == options.CPU_WARNING
    assert options.cpu_warning("auto", gpu) == ""
    assert options.cpu_warning("cuda", gpu) == ""


@pytest.mark.parametrize("record, cuda_enabled, text", [
    ({"torch": None}, False, "not installed"),
    ({"torch": "2.9.0", "cuda": False}, False, "no CUDA device"),
    ({"torch": "2.9.0", "cuda": True, "gpu": "RTX A4000", "gpu_memory_gb": 15.7}, True, "RTX A4000, 15.7 GB"),
    ({"error": "boom"}, False, "query failed"),
])
def test_device_choices_from_the_child_probe(record, cuda_enabled, text):
    choices = {c.key: c for c in options.device_choices_from_probe(record)}
    assert set(choices) == {"auto", "cuda", "cpu"} and choices["cpu"].enabled
    assert choices["cuda"].enabled == cuda_enabled and text in choices["cuda"].label


def answer_of(probe, timeout: float = 600.0):
    import time

    deadline = time.monotonic() + timeout
    while probe.poll() is None:
        assert time.monotonic() < deadline, "the probe never answered"
        time.sleep(0.05)
    return {c.key: c for c in probe.choices}


def test_device_probe_runs_torch_in_a_child_process():
    from UADContrastiveSlicerLib.device_probe import DeviceProbe

    probe = DeviceProbe()
    probe.start()
    choices = answer_of(probe)
    assert probe.process.returncode == 0
    try:
        import torch
    except ImportError:
        assert "not installed" in choices["cuda"].label
        return
    assert choices["cuda"].enabled == torch.cuda.is_available()
    assert "failed" not in choices["auto"].label and "not installed" not in choices["auto"].label


def test_device_probe_failure_is_reported_not_raised(tmp_path):
    from UADContrastiveSlicerLib.device_probe import DeviceProbe

    probe = DeviceProbe(command=[str(tmp_path / "no-such-python"), "-c", "pass"])
    probe.start()
    assert "query failed" in answer_of(probe)["cuda"].label
    crashing = DeviceProbe(command=[sys.executable, "-c", "raise SystemExit('torch exploded')"])
    crashing.start()
    assert "query failed" in answer_of(crashing)["cuda"].label


def test_a_probe_that_never_answers_is_stopped_and_the_cpu_offered():
    from UADContrastiveSlicerLib.device_probe import DeviceProbe

    probe = DeviceProbe(command=[sys.executable, "-c", "import time; time.sleep(600)"], timeout_seconds=0.0)
    probe.start()
    choices = answer_of(probe)
    assert probe.process.poll() is not None  # killed, not left behind
    assert choices["cpu"].enabled and not choices["cuda"].enabled and "query failed" in choices["auto"].label


def test_report_notes_show_device_and_every_warning():
    notes = options.report_notes({"device": "cuda:0", "warnings": ["low contrast", "thick slices"]})
    assert notes.splitlines() == ["Computed on: GPU (CUDA)", "Warning: low contrast", "Warning: thick slices"]
    assert options.report_notes({}) == ""


def test_stage_progress_is_weighted_and_never_decreases():
    from UADContrastiveSlicerLib.stages import STAGE_WEIGHTS, StageProgress

    progress = StageProgress()
    seen = [progress.update(stage, fraction) for stage, fraction in [
        ("load model", 0.0), ("info", 0.0), ("preprocess", 0.0), ("preprocess", 1.0), ("reconstruct", 0.5),
        ("reconstruct", 1.0), ("anomaly map", 0.0), ("preprocess", 0.0), ("write", 0.0), ("done", 1.0)]]
    assert all(b >= a for a, b in zip(seen, seen[1:])) and seen[-1] == 1.0
    from UADContrastiveLib import protocol

    assert tuple(name for name, _ in STAGE_WEIGHTS) == protocol.DETECTION_STAGES  # in the order they run
    weights = dict(STAGE_WEIGHTS)
    assert seen[4] == pytest.approx(weights["load model"] + weights["preprocess"] + weights["reconstruct"] / 2)


def test_shipped_comparison_models_are_marked_in_the_selector_and_warned_about():
    """The shipped cards: the default is offered plainly; the experimental engines and the
    ablation carry their kind in the label and their status line under the selector."""
    models = REPO / "UADContrastive" / "Resources" / "Models"
    cards = {folder.name: json.loads((folder / "model.json").read_text())
             for folder in models.iterdir() if (folder / "model.json").exists()}
    default = cards["contrastive-diffusion-t1"]
    assert options.model_choice(default).label == "contrastive-diffusion-t1 (T1)"
    assert options.model_warning(default) == ""
    for name, kind in (("mad-ad-t1", "experimental"), ("latent-ddpm-t1", "experimental"), ("ddpm-t1", "ablation"),
                       ("contrastive-diffusion-t2", "experimental")):
        assert options.model_choice(cards[name]).label == f"{name} ({cards[name]['modality']}; {kind})"
        assert options.model_warning(cards[name]).startswith(f"Not for clinical reading. This model is {kind}: ")
    assert options.model_warning(None) == ""
    assert options.model_choice({"name": "m", "status": "trained for 2 h"}).label == "m"  # a sentence, not a kind


def test_a_volumes_name_or_the_cores_message_names_its_contrast():
    assert options.contrast_from_name("IXI102-HH-1416_T2") == "T2"
    assert options.contrast_from_name("sub-01_T2w") == "T2"
    assert options.contrast_from_name("3: AX FLAIR") == "FLAIR"
    assert options.contrast_from_name("MPRAGE_sag") == options.contrast_from_name("t1.nii") == "T1"
    assert options.contrast_from_name("brain") is None and options.contrast_from_name(None) is None
    assert options.contrast_from_name("T1_T2_ratio") is None  # two contrasts: says nothing
    assert options.contrast_from_name("T23_scan") is None      # "T23" is no contrast word
    assert options.contrast_from_message(
        "x.nii.gz: this looks T2-weighted (or FLAIR; ...); the model reads T1 (...). Choose a T2 model") == "T2"
    assert options.contrast_from_message("does not look like a brain after registration") is None


def test_the_model_for_a_contrast_prefers_the_current_then_a_usable_one():
    t1 = options.ModelChoice("t1", "t1 (T1)", {"modality": "T1"})
    ablation = options.ModelChoice("t2-ablation", "x", {"modality": "T2", "status": "an ablation"})
    t2 = options.ModelChoice("t2", "t2 (T2)", {"modality": "T2"})
    choices = [t1, ablation, t2]
    assert options.model_for_contrast(choices, "T2", "t1") == "t2"            # not the ablation
    assert options.model_for_contrast(choices, "T2", "t2-ablation") == "t2-ablation"  # already reads T2
    assert options.model_for_contrast(choices, "FLAIR", "t1") == "t2"         # no FLAIR model: T2
    assert options.model_for_contrast(choices, "T1", "t2") == "t1"
    assert options.model_for_contrast(choices, None, "t1") is None
    assert options.model_for_contrast([t1], "T2", "t1") is None               # none reads it: keep
