"""Putting a trained, calibrated model folder into the zoo (a maintainers' tool).

    python -m UADContrastiveLib.zoo.ship MODEL_DIR --tuning EVAL_DIR/table.json \
        --recipe Resources/Models/recipes/NAME.yaml [--status TEXT] [--details docs/PAGE.md]

copies the card and the weight files it lists into Resources/Models/<name>, and adds to the
card what a shipped model states: `evaluation.tuning` (the figures and shipping-rule verdict of
`uadc evaluate --part tuning` on this model, from its table.json), `rebuild` (the recipe and the
commands of its header that rebuild the model) and, for a model that fails the shipping rule,
`status` "experimental: ..." naming the failing head, so `uadc models list` and the Slicer
selector mark it. The files' sha256 in the card are the training's; they are verified here.
"""
from __future__ import annotations

import argparse
import datetime
import json
import re
import shutil
import tempfile
from pathlib import Path

from ..errors import ModelError
from ..resources import RESOURCES, SHIPPED_MODELS
from .card import CARD, ModelCard
from .registry import verify_model

# the check whose failure the status names: the model's own thresholds on unseen healthy heads
HEAD_CHECK = "the model's threshold on every tuning head"
_WORST_HEAD = re.compile(r"[\d.]+-(?P<high>[\d.]+) % per head \(worst (?P<head>[^)]+)\), "
                         r"limit (?P<limit>[\d.]+) %")


def _rows_of(table: dict, model: str) -> list[dict]:
    """The rows of `model` ("name version") in a protocol table.json, else ModelError."""
    rows = [r for r in table.get("table", []) if r.get("model") == model]
    if not rows:
        found = sorted({r.get("model") for r in table.get("table", [])})
        raise ModelError(model, f"has no row in the evaluation table (models: {', '.join(found)}).",
                         "Give the table.json of `uadc evaluate --part tuning` run on this model version.")
    return rows


def tuning_block(table: dict, card: ModelCard, date: str | None = None) -> dict:
    """The card's `evaluation.tuning` from a tuning-part protocol table: the lesion set's AUPRC and
    Dice, the healthy heads' flagged share, per lesion kind against the atlas, the rule's verdict."""
    if table.get("part") != "tuning":
        raise ModelError(None, f"the evaluation table is of the {table.get('part')!r} part, not the tuning part.")
    model = f"{card.name} {card.version}"
    rows = {r["set"]: r for r in _rows_of(table, model)}
    lesions = next(r for name, r in rows.items() if name.startswith("tuning_real_shapes"))
    healthy = next((r for name, r in rows.items() if name.startswith("tuning_healthy")), {})
    rule = next(r for r in table.get("shipping_rule", []) if r["model"] == model)
    block = {"part": f"tuning ({lesions['set']}: {lesions['cases']} real-shape cases)",
             "date": date or datetime.date.today().isoformat(),
             "auprc": lesions["auprc"], "dice": lesions["dice"], "best_dice": lesions["best_dice"],
             "healthy_flagged": healthy.get("fp_fraction")}
    kinds = [k for k in table.get("per_kind", []) if k["model"] == model and "difference" in k]
    if kinds:
        block["per_kind_against_atlas"] = [
            {"kind": k["kind"], "cases": k["cases"], "auprc": round(k["auprc"], 4),
             "atlas_auprc": round(k["baseline_auprc"], 4), "difference": round(k["difference"], 4),
             "ci95": [round(k["low"], 4), round(k["high"], 4)]} for k in kinds]
    block["shipping_rule"] = {"ships": rule["ships"], "checks": [
        f"[{'pass' if c['passed'] else 'FAIL'}] {c['name']}: {c['figures']}" for c in rule["checks"]]}
    return block


def experimental_status(block: dict, card: ModelCard) -> str | None:
    """The `status` line of a model that fails the shipping rule (None when it ships): the worst
    healthy tuning head under the model's own thresholds, and how many heads they came from."""
    if block["shipping_rule"]["ships"]:
        return None
    heads = len(card.thresholds.notes.get("healthy_scans") or []) or "few"
    check = next((c for c in block["shipping_rule"]["checks"] if HEAD_CHECK in c), "")
    found = _WORST_HEAD.search(check)
    if not check.startswith("[FAIL]") or not found:
        failed = "; ".join(c for c in block["shipping_rule"]["checks"] if c.startswith("[FAIL]"))
        return f"experimental: fails the shipping rule ({failed}); see evaluation"
    head = found["head"].split("-")[0]
    return (f"experimental: fails the shipping rule: thresholds from {heads} statistics heads do not transfer "
            f"(tuning head {head} flagged {found['high']} %, limit {float(found['limit']):g} %); see evaluation")


def rebuild_commands(recipe: Path) -> list[str]:
    """The commands in a recipe's header comment (lines starting `uadc` or `python`, with their
    backslash continuations), in order: how the model is rebuilt."""
    commands, current = [], None
    for line in recipe.read_text(encoding="utf-8").splitlines():
        if not line.startswith("#"):
            break
        text = line.lstrip("#").strip()
        if current is not None:
            current += " " + text.rstrip("\\").strip()
            if not text.endswith("\\"):
                commands.append(current)
                current = None
        elif text.startswith(("uadc ", "python ")):
            if text.endswith("\\"):
                current = text.rstrip("\\").strip()
            else:
                commands.append(text)
    return commands


def ship(source: Path, table: dict, recipe: Path | None = None, status: str | None = None, details: str | None = None,
         zoo: Path = SHIPPED_MODELS) -> ModelCard:
    """Copy the verified model folder `source` into `zoo`/<name> with the shipped card's additions;
    the folder there is replaced whole once the new one is complete and verified."""
    card = verify_model(source)
    block = tuning_block(table, card)
    card.evaluation = {**card.evaluation, **({"details": details} if details else {}), "tuning": block}
    if recipe is not None:  # an engine without a recipe file (the z-score atlas) keeps the card's own
        recipe = Path(recipe).resolve()
        named = (recipe.relative_to(RESOURCES.parent).as_posix() if recipe.is_relative_to(RESOURCES.parent)
                 else str(recipe))
        card.extra["rebuild"] = {"recipe": named, "commands": rebuild_commands(recipe)}
    status = status or experimental_status(block, card)
    if status:
        card.extra["status"] = status
    else:
        card.extra.pop("status", None)
    target = Path(zoo) / card.name
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{card.name}.partial-", dir=target.parent))
    staging.chmod(0o755)  # mkdtemp's private folder would ship unreadable to others
    try:
        for name in card.files:
            shutil.copy2(Path(source) / name, staging / name)
        card.folder = staging
        card.write()
        verify_model(staging)
        if target.exists():
            shutil.rmtree(target)
        staging.rename(target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return verify_model(target)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m UADContrastiveLib.zoo.ship", description=__doc__.split("\n")[0])
    parser.add_argument("model", type=Path, help="a trained, calibrated model folder")
    parser.add_argument("--tuning", type=Path, required=True, help="table.json of `uadc evaluate --part tuning`")
    parser.add_argument("--recipe", type=Path, default=None,
                        help="the recipe that trained it (its header: the commands); without it the card's "
                             "`rebuild` stays as it is")
    parser.add_argument("--status", default=None, help="the card's status line (default: experimental when the "
                        "model fails the shipping rule, none when it ships)")
    parser.add_argument("--details", default=None, help="the docs page with the full evaluation")
    parser.add_argument("--zoo", type=Path, default=SHIPPED_MODELS)
    args = parser.parse_args(argv)
    table = json.loads(args.tuning.read_text(encoding="utf-8"))
    card = ship(args.model, table, args.recipe, args.status, args.details, args.zoo)
    print(f"shipped {card.name} {card.version} into {card.folder} ({CARD} and {len(card.files)} files verified)"
          + (f"; status: {card.extra['status']}" if card.extra.get("status") else ""))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
