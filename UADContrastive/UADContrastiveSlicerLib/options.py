"""What the widget offers the user: models, devices, threshold presets, warnings.

Pure Python, no slicer/Qt, and torch only inside device_choices() (importing torch takes
seconds and hundreds of MB, so it must never happen when Slicer loads the module).
"""
from __future__ import annotations

from dataclasses import dataclass, field

from UADContrastiveLib.postprocess.presets import HEALTHY_FPR_PRESETS, PRESET_TOOLTIP  # noqa: F401 - re-exported

CPU_WARNING = ("Running on the CPU: expect a few minutes per volume. Slicer stays usable "
               "meanwhile and Cancel stops the run.")


@dataclass
class ModelChoice:
    name: str
    label: str
    card: dict = field(default_factory=dict)


@dataclass
class DeviceChoice:
    key: str  # what --device gets: auto, cpu, cuda
    label: str
    enabled: bool = True


def card_of(entry) -> dict:
    """The card dict of one zoo.list_models() entry (a dict, or an object with .card)."""
    if isinstance(entry, dict):
        return entry.get("card", entry)
    card = getattr(entry, "card", None)
    return card if isinstance(card, dict) else {}


def model_choice(entry) -> ModelChoice:
    card = card_of(entry)
    name = str(card.get("name") or getattr(entry, "name", "") or "unnamed model")
    modality = card.get("modality")
    if isinstance(modality, (list, tuple)):
        modality = "/".join(str(m) for m in modality)
    label = f"{name} ({modality})" if modality else name
    return ModelChoice(name, label, card)


def model_choices() -> list[ModelChoice]:
    """Installed models, for the model combo box (full card read when the listing only
    gives a summary, for the modality and calibrated thresholds)."""
    from UADContrastiveLib import zoo

    def with_full_card(entry):
        if not (isinstance(entry, dict) and "card" not in entry and entry.get("path")):
            return entry
        try:
            return {**entry, "card": {**entry, **zoo.read_card(entry["path"])}}
        except Exception:  # unreadable card: list it by its summary name anyway
            return entry

    return [model_choice(with_full_card(entry)) for entry in zoo.list_models()]


def preset_values(source: dict | None) -> dict[str, float]:
    """{preset key: value} for each calibrated healthy-FPR threshold (HEALTHY_FPR_PRESETS).

    `source` is a report (key "thresholds_available"), a card (key "thresholds" holding
    "values"), or the plain {"fpr_1%": x, ...} mapping.
    """
    values = _threshold_values(source or {})
    found = {}
    for preset in HEALTHY_FPR_PRESETS:
        value = values.get(preset.key)
        if isinstance(value, dict):
            value = value.get("value")
        if isinstance(value, (int, float)):
            found[preset.key] = float(value)
    return found


def threshold_presets(source: dict | None) -> list[tuple[str, float]]:
    """(label, value) for each calibrated healthy-FPR threshold, most sensitive first."""
    values = preset_values(source)
    return [(preset.label, values[preset.key]) for preset in HEALTHY_FPR_PRESETS if preset.key in values]


def _threshold_values(source: dict) -> dict:
    if "thresholds_available" in source:
        return source["thresholds_available"] or {}
    thresholds = source.get("thresholds")
    if isinstance(thresholds, dict):
        return thresholds.get("values", thresholds)
    return source


def default_min_size(source: dict | None, fallback: float = 0.0) -> float:
    source = source or {}
    for candidate in (source.get("min_size_mm3"), (source.get("thresholds") or {}).get("min_size_mm3")
                      if isinstance(source.get("thresholds"), dict) else None):
        if isinstance(candidate, (int, float)):
            return float(candidate)
    return fallback


def threshold_slider_range(map_max: float, presets: list[tuple[str, float]]) -> tuple[float, float, float]:
    """(minimum, maximum, step): up to the hottest voxel, and every preset reachable."""
    top = max([float(map_max)] + [value * 1.5 for _, value in presets] + [1e-6])
    return 0.0, top, top / 1000.0


def device_choices() -> list[DeviceChoice]:
    """auto / cuda / cpu with what is really there: the GPU's name and memory, or why not."""
    try:
        import torch
    except ImportError:
        return [DeviceChoice("auto", "Auto (PyTorch not installed yet)"),
                DeviceChoice("cuda", "GPU: PyTorch not installed yet", enabled=False),
                DeviceChoice("cpu", "CPU")]
    if not torch.cuda.is_available():
        return [DeviceChoice("auto", "Auto (no CUDA device: CPU)"),
                DeviceChoice("cuda", "GPU: no CUDA device", enabled=False),
                DeviceChoice("cpu", "CPU")]
    properties = torch.cuda.get_device_properties(0)
    gpu = f"{properties.name}, {properties.total_memory / 1024 ** 3:.1f} GB"
    return [DeviceChoice("auto", f"Auto (GPU: {gpu})"),
            DeviceChoice("cuda", f"GPU: {gpu}"),
            DeviceChoice("cpu", "CPU")]


def runs_on_cpu(device_key: str, choices: list[DeviceChoice]) -> bool:
    if device_key == "cpu":
        return True
    cuda = next((c for c in choices if c.key == "cuda"), None)
    return cuda is None or not cuda.enabled


def cpu_warning(device_key: str, choices: list[DeviceChoice]) -> str:
    return CPU_WARNING if runs_on_cpu(device_key, choices) else ""
