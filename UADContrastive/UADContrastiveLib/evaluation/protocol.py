"""The evaluation protocol (DESIGN section 5) as one command: `uadc evaluate --protocol DATA`.

The IXI validation subjects are split once into a tuning part (every choice is made there)
and a report part (touched only for the published figures); see `real_lesions`. The report
sets are:
  report_real_shapes  report-part IXI heads with real lesion shapes (BraTS, WML, ISLES donors
                      of the report part) given a T1 appearance;
  report_healthy      the same heads untouched (false-positive rate);
  wml10_t1            the WML10 T1 scans, real white-matter lesions (subtle on T1);
  brats_t1c           the BraTS 2013 T1c scans, real gliomas (a modality shift from T1).
`--part tuning` scores tuning_real_shapes and tuning_healthy instead, and applies the shipping
rule (evaluation.shipping_rule) to every model, with its verdict. Every model named runs
on every set through the same detection path and thresholds rule; the table (mean over cases,
seconds per volume on this machine) goes to OUT/table.md and OUT/table.json, each model/set's
full report to OUT/<model>/<set>/. The lesioned heads are made once (registration of every
donor and recipient takes minutes) and kept in the user cache (`evaluation-sets`).

`--modality T2` scores T2 models (and a T2 z-score atlas) on the T2 sets instead (PARTS_T2, in
`evaluation-sets-t2`): the IXI T2 validation heads with real lesion shapes given a T2
appearance, the same heads healthy, WML10 T2 and FLAIR, BraTS FLAIR (a contrast shift).
"""
from __future__ import annotations

import json
import platform
import time
from pathlib import Path

import numpy as np

from ..io import write_text
from .scoring import read_cases_csv, summarise, write_evaluation_report

PARTS = {
    "report": ("report_real_shapes", "report_healthy", "wml10_t1", "brats_t1c"),
    "tuning": ("tuning_real_shapes", "tuning_healthy"),
}
NOTES = {
    "report_real_shapes": "IXI T1 heads of the report part with REAL lesion shapes (BraTS gliomas, WML, "
                          "ISLES stroke; report-part donors) given a T1 appearance",
    "tuning_real_shapes": "IXI T1 heads of the tuning part with REAL lesion shapes (tuning-part donors) "
                          "given a T1 appearance",
    "report_healthy": "IXI T1 heads of the report part, healthy: every flagged voxel is a false positive",
    "tuning_healthy": "IXI T1 heads of the tuning part, healthy",
    "wml10_t1": "WML10 T1 (skull-stripped, 0.94 x 0.94 x 3 mm): REAL white-matter lesions, subtle on T1",
    "brats_t1c": "BraTS 2013 T1c (contrast-enhanced T1, z-scored): REAL gliomas; a modality shift from T1",
}
PARTS_T2 = {
    "report": ("report_real_shapes_t2", "report_healthy_t2", "wml10_t2", "wml10_flair", "brats_flair"),
    "tuning": ("tuning_real_shapes_t2", "tuning_healthy_t2"),
}
NOTES.update({
    "report_real_shapes_t2": "IXI T2 heads of the report part (validation heads of the T2 cohort) with REAL "
                             "lesion shapes (report-part donors) given a T2 appearance (every kind bright)",
    "tuning_real_shapes_t2": "IXI T2 heads of the tuning part with REAL lesion shapes (tuning-part donors) "
                             "given a T2 appearance",
    "report_healthy_t2": "IXI T2 heads of the report part, healthy: every flagged voxel is a false positive",
    "tuning_healthy_t2": "IXI T2 heads of the tuning part, healthy",
    "wml10_t2": "WML10 T2 (skull-stripped, 0.94 x 0.94 x 3 mm): REAL white-matter lesions, bright on T2",
    "wml10_flair": "WML10 FLAIR: REAL white-matter lesions; a contrast shift from T2",
    "brats_flair": "BraTS 2013 FLAIR (z-scored): REAL gliomas; a contrast shift from T2",
})
TABLE_METRICS = ("auprc", "dice", "best_dice", "fp_fraction")


def parts_of(modality: str) -> dict[str, tuple[str, ...]]:
    return PARTS_T2 if modality == "T2" else PARTS


def build_sets(data: Path, sets_dir: Path, log=print, modality: str = "T1") -> dict[str, Path]:
    """Write (once) the case lists of both parts and the real-lesion sets into sets_dir."""
    from .real_lesions import write_real_shape_sets
    from .sets import REAL_LESION_SETS, real_lesion_sets

    sets_dir = Path(sets_dir)
    names = [name for part in parts_of(modality).values() for name in part]
    paths = {name: sets_dir / f"{name}.csv" for name in names}
    if not all(paths[n].exists() for n in names if n not in REAL_LESION_SETS):
        write_real_shape_sets(Path(data), sets_dir, log=log, modality=modality)
    real = tuple(n for n in names if n in REAL_LESION_SETS)
    if not all(paths[n].exists() for n in real):
        real_lesion_sets(Path(data), sets_dir, real)
    return paths


def shipped_model_names(modality: str | None = None) -> list[str]:
    """Every shipped model reading `modality` (every one when None): the default comparison is
    all engines of a contrast side by side (a T2 model scored on the T1 sets says nothing)."""
    from ..zoo.registry import list_models

    return [m["name"] for m in list_models() if m["source"] == "shipped"
            and (modality is None or m["modality"].upper() == modality.upper())]


def table_rows(results: dict, training_minutes: dict | None = None, refused: dict | None = None) -> list[dict]:
    """{model: {set: rows}} -> one row per (set, model) with means, timing and training time.
    refused: {model: {set: [{"id", "error"}]}}, the cases the detection path refused (not in
    the means, so a model that refuses hard cases is not flattered silently)."""
    table = []
    for model, sets in results.items():
        for name, rows in sets.items():
            summary = summarise(rows).get(name, {})
            refused_cases = ((refused or {}).get(model) or {}).get(name) or []
            entry = {"set": name, "model": model, "cases": len(rows), "refused": [c["id"] for c in refused_cases],
                     "seconds_per_volume": round(float(np.median([r["seconds"] for r in rows])), 1) if rows else None,
                     "training_minutes": (training_minutes or {}).get(model)}
            for metric in TABLE_METRICS:
                value = (summary.get(metric) or {}).get("mean")
                entry[metric] = None if value is None else round(float(value), 4)
            table.append(entry)
    return sorted(table, key=lambda r: (list(NOTES).index(r["set"]) if r["set"] in NOTES else 99, r["model"]))


def table_markdown(table: list[dict], part: str) -> str:
    lines = [f"| set ({part} part) | model | cases (refused) | AUPRC | Dice at threshold | best Dice | healthy voxels flagged "
             "| s / volume | training (min) |", "|---|---|---|---|---|---|---|---|---|"]
    def cell(row: dict, key: str, percent: bool = False) -> str:
        value = row.get(key)
        if value is None:
            return "n/a"
        return f"{100 * value:.2f} %" if percent else f"{value:.3f}"

    for r in table:
        healthy = r["set"].endswith("healthy")
        cases = f"{r['cases']} ({len(r['refused'])})" if r.get("refused") else str(r["cases"])
        lines.append(f"| {r['set']} | {r['model']} | {cases} | {'n/a' if healthy else cell(r, 'auprc')} | "
                     f"{'n/a' if healthy else cell(r, 'dice')} | {'n/a' if healthy else cell(r, 'best_dice')} | "
                     f"{cell(r, 'fp_fraction', percent=True)} | {r['seconds_per_volume'] or 'n/a'} | "
                     f"{'n/a' if r.get('training_minutes') is None else r['training_minutes']} |")
    refusals = [f"{r['model']} on {r['set']}: {', '.join(r['refused'])}" for r in table if r.get("refused")]
    if refusals:
        lines += ["", "Refused by the detection path (left out of the means): " + "; ".join(refusals) + "."]
    lines += ["", "Data: " + "; ".join(f"{k}: {v}" for k, v in NOTES.items() if any(r['set'] == k for r in table)),
              f"Machine: {platform.processor() or platform.machine()}, times are medians per volume, end to end "
              "(preprocessing, reconstruction, map, threshold); training is the card's training time over "
              "every run that resumed it, on the machine it names."]
    return "\n".join(lines) + "\n"


def run_protocol(models: list[str], data: Path, out_dir: Path, part: str, evaluate_cases,
                 device: str = "auto", log=print, modality: str = "T1", rule=None) -> dict:
    """Every model on every set of `part` (of the T1 or the T2 sets); `evaluate_cases(detector,
    cases, dataset) -> (rows, refused cases)`. On the tuning part, `rule(detector, paths, data,
    lesion_rows, log, modality)` (the shipping rule by default) gives each model's verdict."""
    rule = rule or shipping_rule
    from ..detection.detector import Detector
    from ..resources import user_cache_dir
    from ..zoo.card import cumulative_training

    out_dir = Path(out_dir)
    sets_folder = "evaluation-sets-t2" if modality == "T2" else "evaluation-sets"
    paths = build_sets(data, user_cache_dir() / sets_folder, log=log, modality=modality)
    suffix = "_t2" if modality == "T2" else ""
    results: dict = {}
    rules: list[dict] = []
    refused: dict = {}
    training_minutes: dict = {}
    for model in models:
        detector = Detector(model, device)
        name = f"{detector.card.name} {detector.card.version}"
        results[name], refused[name] = {}, {}
        training_minutes[name] = cumulative_training(detector.card.training)["minutes"]
        for set_name in parts_of(modality)[part]:
            cases = read_cases_csv(paths[set_name])
            start = time.perf_counter()
            rows, refused[name][set_name] = evaluate_cases(detector, cases, set_name)
            log(f"{name} on {set_name}: {len(rows)} cases in {time.perf_counter() - start:.0f} s"
                + (f", {len(refused[name][set_name])} refused" if refused[name][set_name] else ""))
            if rows:
                write_evaluation_report(rows, out_dir / name / set_name, f"{name} on {set_name}",
                                        {set_name: NOTES[set_name]})
            results[name][set_name] = rows
        if part == "tuning":
            rules.append(rule(detector, paths, data, results[name].get(f"tuning_real_shapes{suffix}") or [], log,
                              modality))
    table = table_rows(results, training_minutes, refused)
    kinds, kinds_text = per_kind(results, f"{part}_real_shapes{suffix}")
    write_text(json.dumps({"part": part, "table": table, "per_kind": kinds, "shipping_rule": rules}, indent=2)
               + "\n", out_dir / "table.json")
    write_text(table_markdown(table, part) + kinds_text + "".join(f"\n```\n{r['text']}\n```\n" for r in rules),
               out_dir / "table.md")
    return {"table": table, "per_kind": kinds, "shipping_rule": rules, "out_dir": str(out_dir)}


def per_kind(results: dict, set_name: str) -> tuple[list[dict], str]:
    """Per lesion kind against the z-score atlas (when it was among the models), as data and text."""
    from .comparison import per_kind_against, per_kind_markdown

    rows = {model: sets.get(set_name) or [] for model, sets in results.items()}
    atlas = next((m for m in rows if m.startswith("zscore-atlas")), None)
    if atlas is None:
        return [], ""
    table = per_kind_against(rows, atlas)
    return table, f"\nPer lesion kind on {set_name}, against {atlas}:\n\n" + per_kind_markdown(table, atlas)


def shipped_reference(name: str) -> tuple[str, float | None]:
    """(name and version, tuning AUPRC) of the model of this name shipped now, from its card."""
    from ..resources import SHIPPED_MODELS
    from ..zoo import ModelCard

    folder = SHIPPED_MODELS / name
    if not (folder / "model.json").is_file():
        return f"{name} (not shipped)", None
    card = ModelCard.read(folder)
    tuning = (card.evaluation or {}).get("tuning") or {}
    return f"{card.name} {card.version}", tuning.get("auprc")


def shipping_rule(detector, paths: dict, data: Path, lesion_rows: list[dict], log=print, modality: str = "T1") -> dict:
    """The shipping rule's verdict for one model (evaluation.shipping_rule), logged."""
    from .shipping_rule import (
        apply_rule,
        cohort_folder_brain,
        ixi_dlmuse_brain,
        skull_stripped_twins,
    )

    if modality == "T2":
        # the case id is the scan's id in the cohort folder the sets were made with: <ID>_T2
        healthy = read_cases_csv(paths["tuning_healthy_t2"])
        sets_dir = paths["tuning_healthy_t2"].parent
        twins = skull_stripped_twins(healthy, cohort_folder_brain(sets_dir / "ixi-t2-cohort"), sets_dir / "skull_stripped")
    else:
        healthy = read_cases_csv(paths["tuning_healthy"])
        twins = skull_stripped_twins(healthy, ixi_dlmuse_brain(Path(data) / "ixi_t1"),
                                     paths["tuning_healthy"].parent / "skull_stripped")
    auprcs = [r["auprc"] for r in lesion_rows if r.get("auprc") is not None]
    result = apply_rule(detector, healthy, twins, float(np.mean(auprcs)) if auprcs else None,
                        shipped_reference(detector.card.name))
    log(result["text"])
    return result


