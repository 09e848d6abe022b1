"""The metric-computing half of `uadc evaluate`: per-case metrics, the case list, the report.

The detection loop (read, preprocess, run the model, carry the map back) is the CLI's; this
module only turns (anomaly map, lesion mask, brain mask) into numbers and writes them as
metrics.csv, metrics.json, report.md and metrics.png, each atomically.
"""
from __future__ import annotations

import csv
import io as text_io
import json
import math
from pathlib import Path
from typing import Sequence

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from ..errors import InputError
from ..io import atomic_path, write_text
from ..postprocess.components import threshold_components, voxel_volume_mm3
from .metrics import (
    DEFAULT_SIZE_BINS_ML,
    auprc,
    auroc,
    best_dice,
    dice,
    false_positive_fraction,
    lesion_detection_by_size,
    size_bin_names,
)

REQUIRED_COLUMNS = ("id", "image", "lesion_mask")
PATH_COLUMNS = ("image", "lesion_mask", "brain_mask")
# Metrics summarised as mean ± sd per data set, with how they are shown.
SUMMARY_METRICS = {"auprc": "AUPRC", "auroc": "AUROC", "dice": "Dice", "best_dice": "best Dice",
                   "fp_fraction": "FP fraction"}
CASE_COLUMNS = ("id", "dataset", "auprc", "auroc", "dice", "best_dice", "fp_fraction", "lesion_ml",
                "predicted_ml", "lesions_detected", "lesions")


def evaluate_case(anomaly_map: np.ndarray, lesion_mask: np.ndarray, brain_mask: np.ndarray, threshold: float,
                  spacing, min_size_mm3: float = 0.0, bins_ml: Sequence[float] = DEFAULT_SIZE_BINS_ML,
                  n_thresholds: int = 256) -> dict:
    """Metrics of one case; all arrays (z, y, x) on one grid, spacing in mm (x, y, z) or a scalar.

    auprc, auroc, best_dice: voxel-wise over brain voxels (threshold-free).
    dice, fp_fraction, detection: of the detection rule, threshold_components(map in brain,
    threshold, min_size_mm3); Dice and lesion detection against the whole lesion mask (a lesion
    outside the brain mask counts as missed), fp_fraction on lesion-free brain voxels.
    Keys "lesions <bin>" / "detected <bin>" count lesions per size bin (26-connected components).
    """
    anomaly_map = np.asarray(anomaly_map, dtype=np.float32)
    lesion, brain = np.asarray(lesion_mask) > 0, np.asarray(brain_mask) > 0
    if not anomaly_map.shape == lesion.shape == brain.shape:
        raise ValueError(f"map {anomaly_map.shape}, lesion {lesion.shape} and brain {brain.shape} differ in shape")
    voxel_ml = voxel_volume_mm3(spacing) / 1000.0
    scores, labels = anomaly_map[brain], lesion[brain]
    predicted, components = threshold_components(np.where(brain, anomaly_map, -np.inf), threshold,
                                                 min_size_mm3, spacing)
    best, best_threshold = best_dice(scores, labels, n_thresholds)
    detection = lesion_detection_by_size(predicted, lesion, spacing, bins_ml)
    row = {
        "auprc": auprc(scores, labels),
        "auroc": auroc(scores, labels),
        "dice": dice(predicted, lesion),
        "threshold": float(threshold),
        "min_size_mm3": float(min_size_mm3),
        "best_dice": best,
        "best_dice_threshold": best_threshold,
        "fp_fraction": false_positive_fraction(predicted, brain, lesion),
        "lesion_ml": float(lesion.sum() * voxel_ml),
        "lesion_ml_outside_brain": float((lesion & ~brain).sum() * voxel_ml),
        "predicted_ml": float(predicted.sum() * voxel_ml),
        "predicted_components": len(components),
        "lesions": detection["all"]["lesions"],
        "lesions_detected": detection["all"]["detected"],
    }
    for name in size_bin_names(bins_ml):
        row[f"lesions {name}"] = detection[name]["lesions"]
        row[f"detected {name}"] = detection[name]["detected"]
    return row


def read_cases_csv(path: str | Path) -> list[dict]:
    """Cases from a CSV with columns id, image, lesion_mask[, brain_mask][, dataset].

    Paths may be relative to the CSV's folder. Returns one dict per row with Path values for
    the path columns (brain_mask None when absent or empty) and the other columns as text.
    Raises InputError for a missing file or column, an empty id, a duplicate id or no rows.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "does not exist (the case list CSV).", "Check the path.")
    with path.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        columns = [c.strip() for c in (reader.fieldnames or [])]
        missing = [c for c in REQUIRED_COLUMNS if c not in columns]
        if missing:
            raise InputError(path, f"lacks the column(s) {', '.join(missing)} (found: {', '.join(columns) or 'none'}).",
                             "The header must name id, image, lesion_mask and optionally brain_mask and dataset.")
        rows = [{(k or "").strip(): (v or "").strip() for k, v in row.items()} for row in reader]
    cases, seen = [], set()
    for line, row in enumerate(rows, start=2):
        if not any(row.values()):
            continue  # blank line
        case_id = row["id"]
        if not case_id:
            raise InputError(path, f"line {line} has an empty id.")
        if case_id in seen:
            raise InputError(path, f"line {line} repeats the id {case_id!r}; ids must be unique.")
        seen.add(case_id)
        case = dict(row)
        for column in PATH_COLUMNS:
            value = row.get(column, "")
            if not value:
                if column in REQUIRED_COLUMNS:
                    raise InputError(path, f"line {line} (id {case_id}) has no {column}.")
                case[column] = None
                continue
            file = Path(value).expanduser()
            file = file if file.is_absolute() else path.parent / file
            if not file.exists():
                raise InputError(path, f"line {line} (id {case_id}): {column} {file} does not exist.",
                                 "Relative paths are taken from the CSV's folder.")
            case[column] = file
        cases.append(case)
    if not cases:
        raise InputError(path, "lists no cases.")
    return cases


def _finite(values) -> np.ndarray:
    values = np.asarray([v for v in values if v is not None], dtype=float)
    return values[np.isfinite(values)]


def summarise(rows: list[dict]) -> dict:
    """{dataset: {metric: {mean, sd, n}}, plus "detection by size" pooled over the cases}."""
    summary = {}
    for dataset in _datasets(rows):
        cases = [r for r in rows if r.get("dataset", "all") == dataset]
        entry = {"cases": len(cases)}
        for metric in SUMMARY_METRICS:
            values = _finite(r.get(metric) for r in cases)
            entry[metric] = {"mean": float(values.mean()) if values.size else None,
                             "sd": float(values.std(ddof=1)) if values.size > 1 else None,
                             "n": int(values.size)}
        detection = {}
        for key in cases[0]:
            if key.startswith("lesions "):
                name = key[len("lesions "):]
                lesions = sum(int(r.get(key, 0)) for r in cases)
                found = sum(int(r.get(f"detected {name}", 0)) for r in cases)
                detection[name] = {"lesions": lesions, "detected": found,
                                   "rate": found / lesions if lesions else None}
        entry["detection_by_size"] = detection
        summary[dataset] = entry
    return summary


def _datasets(rows: list[dict]) -> list[str]:
    return list(dict.fromkeys(r.get("dataset", "all") for r in rows))


def _json_safe(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, np.generic):
        return _json_safe(value.item())
    return value


def _cell(value) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    if isinstance(value, float):
        return f"{value:.3f}"
    return str(value)


def _mean_sd(entry: dict) -> str:
    if entry["mean"] is None:
        return "–"
    sd = f" ± {entry['sd']:.3f}" if entry["sd"] is not None else ""
    return f"{entry['mean']:.3f}{sd} (n={entry['n']})"


def _notes_text(dataset_notes: str | dict) -> str:
    if isinstance(dataset_notes, dict):
        return "\n".join(f"- **{name}**: {note}" for name, note in dataset_notes.items())
    return str(dataset_notes)


def _report_markdown(rows: list[dict], summary: dict, title: str, dataset_notes: str | dict,
                     figure_name: str) -> str:
    lines = [f"# {title}", "", "## Data", "", _notes_text(dataset_notes), "", "## Summary (mean ± sd over cases)", ""]
    lines.append("| data set | cases | " + " | ".join(SUMMARY_METRICS.values()) + " |")
    lines.append("|---" * (len(SUMMARY_METRICS) + 2) + "|")
    for dataset, entry in summary.items():
        cells = [_mean_sd(entry[m]) for m in SUMMARY_METRICS]
        lines.append(f"| {dataset} | {entry['cases']} | " + " | ".join(cells) + " |")
    lines += ["", "AUPRC, AUROC and best Dice: voxel-wise over brain voxels (best Dice: at each case's own "
              "best threshold, an upper bound). Dice and FP fraction: at the detection threshold; FP fraction "
              "= flagged share of lesion-free brain voxels.", "", "## Lesion detection by size",
              "", "A lesion (26-connected component of the reference mask) is detected when any flagged voxel "
              "overlaps it; counts pooled over the cases.", ""]
    bins = list(next(iter(summary.values()))["detection_by_size"]) if summary else []
    lines.append("| data set | " + " | ".join(bins) + " |")
    lines.append("|---" * (len(bins) + 1) + "|")
    for dataset, entry in summary.items():
        cells = []
        for name in bins:
            d = entry["detection_by_size"][name]
            cells.append(f"{d['detected']}/{d['lesions']}" + (f" ({d['rate']:.0%})" if d["rate"] is not None else ""))
        lines.append(f"| {dataset} | " + " | ".join(cells) + " |")
    lines += ["", "## Cases", "", "| " + " | ".join(CASE_COLUMNS) + " |", "|---" * len(CASE_COLUMNS) + "|"]
    for row in rows:
        lines.append("| " + " | ".join(_cell(row.get(c, "all" if c == "dataset" else None)) for c in CASE_COLUMNS) + " |")
    lines += ["", f"![AUPRC and Dice per data set]({figure_name})", ""]
    return "\n".join(lines)


def _write_figure(rows: list[dict], title: str, dataset_notes: str | dict, path: Path) -> None:
    datasets = _datasets(rows)
    metrics = {"auprc": "AUPRC", "dice": "Dice at threshold", "best_dice": "best Dice"}
    figure = Figure(figsize=(3.2 * len(metrics), 3.8), dpi=100, layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots(1, len(metrics), squeeze=False)[0]
    for ax, (metric, label) in zip(axes, metrics.items()):
        data = [_finite(r.get(metric) for r in rows if r.get("dataset", "all") == d) for d in datasets]
        positions = range(1, len(datasets) + 1)
        ax.boxplot([d if d.size else [np.nan] for d in data], positions=list(positions), widths=0.5,
                   showfliers=False)
        for position, values in zip(positions, data):  # every case visible, not only the quartiles
            ax.plot(np.full(values.size, position), values, "o", alpha=0.5, markersize=3)
        ax.set_xticks(list(positions), datasets, rotation=20, fontsize=8)
        ax.set_ylim(-0.02, 1.02)
        ax.set_title(label, fontsize=9)
    notes = ("; ".join(f"{name}: {note}" for name, note in dataset_notes.items())
             if isinstance(dataset_notes, dict) else str(dataset_notes))
    figure.suptitle(f"{title}\n{notes[:160]}", fontsize=8)
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png")


def write_evaluation_report(rows: list[dict], out_dir: str | Path, title: str,
                            dataset_notes: str | dict) -> dict[str, Path]:
    """Write metrics.csv, metrics.json, report.md and metrics.png into out_dir, each atomically.

    rows: one dict per case, evaluate_case's keys plus "id" and optionally "dataset" (cases
    without one form the data set "all"). dataset_notes: what the data are (say whether lesions
    are real or synthetic), as text or {dataset: text}. Returns {kind: path}.
    """
    if not rows:
        raise ValueError("no cases to report")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rows = [{"id": r.get("id"), "dataset": r.get("dataset", "all"), **r} for r in rows]
    summary = summarise(rows)
    paths = {"csv": out_dir / "metrics.csv", "json": out_dir / "metrics.json",
             "report": out_dir / "report.md", "figure": out_dir / "metrics.png"}

    columns = list(dict.fromkeys(key for row in rows for key in row))
    buffer = text_io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: ("" if v is None else v) for k, v in row.items()})
    write_text(buffer.getvalue(), paths["csv"])

    document = {"title": title, "dataset_notes": dataset_notes, "summary": summary, "cases": rows}
    write_text(json.dumps(_json_safe(document), indent=2, allow_nan=False) + "\n", paths["json"])
    write_text(_report_markdown(rows, summary, title, dataset_notes, paths["figure"].name), paths["report"])
    _write_figure(rows, title, dataset_notes, paths["figure"])
    return paths
