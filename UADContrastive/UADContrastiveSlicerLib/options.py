"""What the widget offers the user: models, devices, threshold presets, warnings.

Pure Python, no slicer/Qt, and never torch: devices are probed in a child process
(device_probe; importing torch takes seconds and hundreds of MB, and would put a CUDA
context into Slicer).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

from UADContrastiveLib.postprocess.presets import HEALTHY_FPR_PRESETS, PRESET_TOOLTIP  # noqa: F401 - re-exported
from UADContrastiveLib.zoo.card import status_kind

CPU_WARNING = ("Running on the CPU: about 5-20 s per volume on a laptop, depending on the model "
               "(longer with uncertainty). Slicer stays usable meanwhile and Cancel stops the run.")


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
    notes = "; ".join(n for n in (modality, status_kind(card.get("status"))) if n)
    label = f"{name} ({notes})" if notes else name
    return ModelChoice(name, label, card)


def model_warning(card: dict | None) -> str:
    """What the panel says under the model selector: the card's status line, for models shipped
    to compare against rather than to use (experimental engines, the ablation)."""
    status = str((card or {}).get("status") or "").strip()
    return f"Not for clinical reading. This model is {status}" if status else ""


def model_choices() -> list[ModelChoice]:
    """Installed models, for the model combo box (full card read when the listing only
    gives a summary, for the modality and calibrated thresholds)."""
    from .core import model_zoo

    zoo = model_zoo()

    def with_full_card(entry):
        if not (isinstance(entry, dict) and "card" not in entry and entry.get("path")):
            return entry
        try:
            return {**entry, "card": {**entry, **zoo.read_card(entry["path"])}}
        except Exception:  # unreadable card: list it by its summary name anyway
            return entry

    return [model_choice(with_full_card(entry)) for entry in zoo.list_models()]


# Words in a volume's name (a file name, or a DICOM series description) that name its contrast.
CONTRAST_WORDS = {
    "FLAIR": ("flair", "darkfluid", "tirm"),
    "T2": ("t2", "t2w", "t2wi", "tse", "t2tse", "t2frfse"),
    "T1": ("t1", "t1w", "t1wi", "mprage", "spgr", "bravo", "t1c", "t1ce", "t1gd"),
}
# What the core says of an input it judged another contrast: "this looks T2-weighted ...".
LOOKS_PATTERN = re.compile(r"this looks (T1c|T1|T2|FLAIR|PD)-weighted")


def contrast_from_name(name: str | None) -> str | None:
    """T1, T2 or FLAIR when a word of the volume's name says so ("IXI102_T2", "3: AX FLAIR",
    "sub-01_T2w"), else None; a name naming two contrasts says nothing."""
    words = {w for w in re.split(r"[^a-z0-9]+", str(name or "").lower()) if w}
    found = {contrast for contrast, keys in CONTRAST_WORDS.items() if words & set(keys)}
    return found.pop() if len(found) == 1 else None


def contrast_from_message(text: str | None) -> str | None:
    """The contrast the core detected in an input it warned about or refused, else None."""
    match = LOOKS_PATTERN.search(str(text or ""))
    return {"T1c": "T1"}.get(match.group(1), match.group(1)) if match else None


def model_for_contrast(choices: list[ModelChoice], contrast: str | None, current: str | None) -> str | None:
    """The model to preselect for a volume of `contrast`: the current one when it reads that
    contrast, else the first model listed that does (a FLAIR volume goes to a FLAIR model, else
    a T2 one: FLAIR is T2-weighted), models to compare against (with a status) last; None when no
    contrast is known or no model reads it (the current choice stays)."""
    if not contrast:
        return None
    wanted = ("FLAIR", "T2") if contrast == "FLAIR" else (contrast,)

    def reads(choice: ModelChoice, target: str) -> bool:
        return str(choice.card.get("modality") or "").upper() == target

    for target in wanted:
        if any(c.name == current and reads(c, target) for c in choices):
            return current
        candidates = sorted((c for c in choices if reads(c, target)), key=lambda c: bool(c.card.get("status")))
        if candidates:
            return candidates[0].name
    return None


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


def threshold_slider_range(map_max: float | None, presets: list[tuple[str, float]],
                           current: float | None = None) -> tuple[float, float, float]:
    """(minimum, maximum, step): up to the hottest voxel, every preset and the current value
    reachable (a range below the current value would make the slider clamp it). Without a
    map yet (None), a 0-1 slider at least."""
    candidates = [float(map_max) if map_max is not None else 1.0] + [value * 1.5 for _, value in presets]
    if current is not None:
        candidates.append(float(current))
    top = max(candidates + [1e-6])
    return 0.0, top, top / 1000.0


# Run in a child Python (PythonSlicer): importing torch in Slicer's GUI process takes
# seconds, hundreds of MB and creates a CUDA context that lives as long as Slicer.
DEVICE_PROBE_CODE = """
import json
try:
    import torch
except ImportError:
    print(json.dumps({"torch": None}))
else:
    record = {"torch": torch.__version__, "cuda": bool(torch.cuda.is_available())}
    if record["cuda"]:
        properties = torch.cuda.get_device_properties(0)
        record["gpu"] = properties.name
        record["gpu_memory_gb"] = round(properties.total_memory / 1024 ** 3, 1)
    print(json.dumps(record))
"""
def device_choices_from_probe(record: dict) -> list[DeviceChoice]:
    """auto / cuda / cpu with what is really there: the GPU's name and memory, or why not."""
    if record.get("error"):
        return [DeviceChoice("auto", "Auto (device query failed: CPU unless a GPU is found)"),
                DeviceChoice("cuda", "GPU: device query failed", enabled=False),
                DeviceChoice("cpu", "CPU")]
    if not record.get("torch"):
        return [DeviceChoice("auto", "Auto (PyTorch not installed yet)"),
                DeviceChoice("cuda", "GPU: PyTorch not installed yet", enabled=False),
                DeviceChoice("cpu", "CPU")]
    if not record.get("cuda"):
        return [DeviceChoice("auto", "Auto (no CUDA device: CPU)"),
                DeviceChoice("cuda", "GPU: no CUDA device", enabled=False),
                DeviceChoice("cpu", "CPU")]
    gpu = f"{record.get('gpu', 'CUDA device')}, {float(record.get('gpu_memory_gb', 0.0)):.1f} GB"
    return [DeviceChoice("auto", f"Auto (GPU: {gpu})"),
            DeviceChoice("cuda", f"GPU: {gpu}"),
            DeviceChoice("cpu", "CPU")]


DEVICE_NAMES = {"cpu": "CPU", "cuda": "GPU (CUDA)", "mps": "Apple GPU (MPS)"}


def report_notes(report: dict | None) -> str:
    """What the panel shows from report.json besides the regions: where the model ran and
    every warning the detection raised (e.g. "this looks FLAIR-weighted ...; the model reads T1")."""
    report = report or {}
    lines = []
    device = report.get("device")
    if device:
        lines.append(f"Computed on: {DEVICE_NAMES.get(str(device).split(':')[0], str(device))}")
    lines += [f"Warning: {warning}" for warning in report.get("warnings") or []]
    return "\n".join(lines)


def runs_on_cpu(device_key: str, choices: list[DeviceChoice]) -> bool:
    if device_key == "cpu":
        return True
    cuda = next((c for c in choices if c.key == "cuda"), None)
    return cuda is None or not cuda.enabled


def cpu_warning(device_key: str, choices: list[DeviceChoice]) -> str:
    return CPU_WARNING if runs_on_cpu(device_key, choices) else ""
