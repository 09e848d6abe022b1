"""Markdown table of `uadc evaluate` results, one row per (data set, model) (maintainers' tool).

    python scripts/summarise_evaluation.py EVAL_ROOT/<model>/<set>/metrics.json ...
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

COLUMNS = ("auprc", "auroc", "dice", "best_dice", "fp_fraction")


def cell(summary: dict, key: str) -> str:
    entry = summary.get(key) or {}
    if not isinstance(entry, dict) or entry.get("mean") is None:
        return "n/a"
    return f"{entry['mean']:.3f} ± {entry['sd']:.3f}"


def main(paths: list[str]) -> None:
    print("| data set | model | cases | " + " | ".join(COLUMNS) + " |")
    print("|" + " --- |" * (3 + len(COLUMNS)))
    for path in paths:
        document = json.loads(Path(path).read_text(encoding="utf-8"))
        for dataset, summary in document["summary"].items():
            model = document["cases"][0].get("model", "?")
            cases = sum(1 for c in document["cases"] if c.get("dataset") == dataset)
            print(f"| {dataset} | {model} | {cases} | " + " | ".join(cell(summary, k) for k in COLUMNS) + " |")


if __name__ == "__main__":
    main(sys.argv[1:])
