"""Per lesion kind, each model against the z-score atlas on the same cases: mean AUPRC and the
paired bootstrap 95 % interval of the difference (cases resampled with replacement, the two
models' figures of a case kept together, so the interval reflects case-to-case variation
only once)."""
from __future__ import annotations

import numpy as np

KINDS = {"brats": "glioma shapes", "wml": "white-matter lesion shapes", "stroke": "stroke shape"}
BOOTSTRAP_DRAWS = 4000


def lesion_kind(case_id: str) -> str | None:
    """The donor kind of a real-shape case id `<recipient>+<kind>-<donor>`."""
    if "+" not in case_id:
        return None
    return case_id.split("+", 1)[1].split("-", 1)[0]


def paired_bootstrap(values: np.ndarray, baseline: np.ndarray, seed: int = 0) -> tuple[float, float, float]:
    """(mean difference, 2.5 %, 97.5 % percentiles of the bootstrapped mean difference)."""
    difference = np.asarray(values, float) - np.asarray(baseline, float)
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, len(difference), size=(BOOTSTRAP_DRAWS, len(difference)))
    means = difference[draws].mean(axis=1)
    return float(difference.mean()), float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))


def per_kind_against(rows_by_model: dict[str, list[dict]], baseline: str, metric: str = "auprc") -> list[dict]:
    """One row per (kind, model): cases both models scored, means and the paired interval."""
    base = {r["id"]: r[metric] for r in rows_by_model.get(baseline, []) if r.get(metric) is not None}
    table = []
    for kind in KINDS:
        for model, rows in rows_by_model.items():
            pairs = [(r[metric], base[r["id"]]) for r in rows
                     if lesion_kind(r["id"]) == kind and r.get(metric) is not None and r["id"] in base]
            if not pairs:
                continue
            values, reference = np.array(pairs).T
            entry = {"kind": kind, "model": model, "cases": len(pairs), metric: float(values.mean()),
                     f"baseline_{metric}": float(reference.mean())}
            if model != baseline and len(pairs) > 1:
                entry["difference"], entry["low"], entry["high"] = paired_bootstrap(values, reference)
            table.append(entry)
    return table


def per_kind_markdown(table: list[dict], baseline: str, metric: str = "auprc") -> str:
    lines = [f"| lesion kind | model | cases | {metric.upper()} | {baseline} | difference [95 % CI, paired bootstrap] |",
             "|---|---|---|---|---|---|"]
    for r in table:
        interval = (f"{r['difference']:+.3f} [{r['low']:+.3f}, {r['high']:+.3f}]" if "difference" in r else "n/a")
        lines.append(f"| {KINDS[r['kind']]} | {r['model']} | {r['cases']} | {r[metric]:.3f} | "
                     f"{r[f'baseline_{metric}']:.3f} | {interval} |")
    return "\n".join(lines) + "\n"
