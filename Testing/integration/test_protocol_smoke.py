"""`uadc evaluate --protocol DATA --part tuning` end to end on the development data, made small:
one real donor lesion, two tuning heads, the tiny test model. The sets are built by the real
code (registration, lesion placement, skull-stripped twins), every case runs through the
detection path, and the table, the per-kind comparison and the shipping rule's verdict land
in the output folder."""
from __future__ import annotations

import json

import pytest
from UADContrastiveLib.cli import main
from UADContrastiveLib.evaluation import real_lesions


@pytest.mark.slow
def test_tuning_protocol_on_real_heads_writes_the_table_and_the_rule(shared_data, tiny_model, tmp_path, monkeypatch):
    monkeypatch.setenv("UADC_CACHE", str(tmp_path / "cache"))  # sets are built afresh, in the test's folder
    every_donor, every_part = real_lesions.donors, real_lesions.healthy_parts
    monkeypatch.setattr(real_lesions, "donors", lambda root: [d for d in every_donor(root)
                                                               if real_lesions.donor_part(d) == "tuning"][:1])
    monkeypatch.setattr(real_lesions, "healthy_parts", lambda root: {
        part: heads[:2] for part, heads in every_part(root).items()})
    out = tmp_path / "eval"
    assert main(["evaluate", "--protocol", str(shared_data), "--part", "tuning", "--models", str(tiny_model),
                 "--out-dir", str(out), "--device", "cpu"]) == 0
    result = json.loads((out / "table.json").read_text(encoding="utf-8"))
    rows = {r["set"]: r for r in result["table"]}
    assert rows["tuning_real_shapes"]["cases"] == 2 and rows["tuning_healthy"]["cases"] == 2
    assert 0.0 <= rows["tuning_real_shapes"]["auprc"] <= 1.0
    (rule,) = result["shipping_rule"]
    assert [c["name"] for c in rule["checks"]] == [
        "thresholds calibrated on half of the tuning heads, every head of the other half",
        "the model's threshold on every tuning head", "the model's threshold on every skull-stripped tuning head",
        "tuning AUPRC not below the shipped version's"]
    assert f"Shipping rule for {rule['model']}" in (out / "table.md").read_text(encoding="utf-8")
    assert len(list((tmp_path / "cache" / "evaluation-sets" / "skull_stripped").glob("*.nii.gz"))) == 2
