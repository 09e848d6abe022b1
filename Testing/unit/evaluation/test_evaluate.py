"""Per-case evaluation, the case list CSV and the written report."""
from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from UADContrastiveLib.errors import InputError
from UADContrastiveLib.evaluation.scoring import (
    evaluate_case,
    read_cases_csv,
    write_evaluation_report,
)


def constructed_case(seed=0):
    rng = np.random.default_rng(seed)
    brain = np.zeros((24, 28, 28), bool)
    brain[2:22, 2:26, 2:26] = True
    lesion = np.zeros_like(brain)
    lesion[6:10, 6:10, 6:10] = True            # 64 voxels: 0.512 mL at 2 mm
    lesion[15, 15, 15] = True                  # a 1-voxel lesion the size filter will miss
    anomaly = np.where(brain, rng.random(brain.shape) * 0.3, 0).astype(np.float32)
    anomaly[lesion] = 0.9
    anomaly[18:20, 20:22, 20:22] = 0.8         # an 8-voxel false positive
    return anomaly, lesion, brain


def test_evaluate_case_numbers():
    anomaly, lesion, brain = constructed_case()
    row = evaluate_case(anomaly, lesion, brain, threshold=0.5, spacing=2.0, min_size_mm3=16.0)
    # every lesion voxel (0.9) outranks every other brain voxel (<= 0.8): perfect ranking
    assert row["auroc"] == 1.0 and row["auprc"] == 1.0
    # predicted: the 64-voxel lesion and the 8-voxel patch (64 mm^3); the single voxel (8 mm^3) is dropped
    assert row["dice"] == pytest.approx(2 * 64 / (72 + 65))
    assert row["predicted_ml"] == pytest.approx(72 * 8 / 1000)
    assert row["lesion_ml"] == pytest.approx(65 * 8 / 1000)
    assert row["fp_fraction"] == pytest.approx(8 / (brain.sum() - 65))
    assert row["lesions"] == 2 and row["lesions_detected"] == 1
    assert row["lesions <0.1 mL"] == 1 and row["detected <0.1 mL"] == 0
    assert row["lesions 0.1-1 mL"] == 1 and row["detected 0.1-1 mL"] == 1
    # a threshold between 0.8 and 0.9 separates all lesion voxels, the 1-voxel one too
    assert row["best_dice"] == 1.0 and 0.8 <= row["best_dice_threshold"] < 0.9


def test_evaluate_case_ignores_map_outside_brain():
    anomaly, lesion, brain = constructed_case()
    anomaly[0, 0, 0:5] = 5.0  # outside the brain: never flagged
    row = evaluate_case(anomaly, lesion, brain, threshold=0.5, spacing=(2.0, 2.0, 2.0))
    assert row["predicted_ml"] == pytest.approx(73 * 8 / 1000)


def write_csv(path, header, rows):
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def test_read_cases_csv_resolves_relative_paths(tmp_path):
    (tmp_path / "data").mkdir()
    for name in ("a_t1.nii.gz", "a_les.nii.gz", "b_t1.nii.gz", "b_les.nii.gz", "b_brain.nii.gz"):
        (tmp_path / "data" / name).write_bytes(b"x")
    csv_path = write_csv(tmp_path / "cases.csv", ["id", "image", "lesion_mask", "brain_mask", "dataset"], [
        ["a", "data/a_t1.nii.gz", "data/a_les.nii.gz", "", "wml10"],
        ["b", str(tmp_path / "data" / "b_t1.nii.gz"), "data/b_les.nii.gz", "data/b_brain.nii.gz", "wml10"],
    ])
    cases = read_cases_csv(csv_path)
    assert [c["id"] for c in cases] == ["a", "b"]
    assert cases[0]["image"] == tmp_path / "data" / "a_t1.nii.gz"
    assert cases[0]["brain_mask"] is None
    assert cases[1]["brain_mask"] == tmp_path / "data" / "b_brain.nii.gz"
    assert cases[1]["dataset"] == "wml10"


def test_read_cases_csv_errors(tmp_path):
    (tmp_path / "t1.nii.gz").write_bytes(b"x")
    with pytest.raises(InputError, match="lesion_mask"):
        read_cases_csv(write_csv(tmp_path / "a.csv", ["id", "image"], [["a", "t1.nii.gz"]]))
    with pytest.raises(InputError, match="missing.nii.gz does not exist") as error:
        read_cases_csv(write_csv(tmp_path / "b.csv", ["id", "image", "lesion_mask"],
                                 [["a", "t1.nii.gz", "missing.nii.gz"]]))
    assert error.value.path == str(tmp_path / "b.csv")
    with pytest.raises(InputError, match="repeats the id"):
        read_cases_csv(write_csv(tmp_path / "c.csv", ["id", "image", "lesion_mask"],
                                 [["a", "t1.nii.gz", "t1.nii.gz"], ["a", "t1.nii.gz", "t1.nii.gz"]]))
    with pytest.raises(InputError, match="no cases"):
        read_cases_csv(write_csv(tmp_path / "d.csv", ["id", "image", "lesion_mask"], []))
    with pytest.raises(InputError, match="does not exist"):
        read_cases_csv(tmp_path / "nowhere.csv")


def test_report_files(tmp_path):
    rows = []
    for index, dataset in enumerate(["wml10", "wml10", "brats"]):
        anomaly, lesion, brain = constructed_case(index)
        rows.append({"id": f"case{index}", "dataset": dataset,
                     **evaluate_case(anomaly, lesion, brain, 0.5, 2.0, min_size_mm3=16.0)})
    rows[2]["auprc"] = float("nan")  # an undefined metric must not break JSON or the summary
    paths = write_evaluation_report(rows, tmp_path / "report", "Test evaluation",
                                    {"wml10": "real WML, T1", "brats": "real glioma, t1c"})
    assert sorted(p.name for p in (tmp_path / "report").iterdir()) == [
        "metrics.csv", "metrics.json", "metrics.png", "report.md"]
    with paths["csv"].open() as handle:
        table = list(csv.DictReader(handle))
    assert [r["id"] for r in table] == ["case0", "case1", "case2"]
    assert float(table[0]["dice"]) == pytest.approx(rows[0]["dice"])
    document = json.loads(paths["json"].read_text(encoding="utf-8"))
    assert document["cases"][2]["auprc"] is None
    wml = document["summary"]["wml10"]
    dice_values = [rows[0]["dice"], rows[1]["dice"]]
    assert wml["dice"]["mean"] == pytest.approx(np.mean(dice_values))
    assert wml["dice"]["sd"] == pytest.approx(np.std(dice_values, ddof=1))
    assert wml["detection_by_size"]["0.1-1 mL"] == {"lesions": 2, "detected": 2, "rate": 1.0}
    assert document["summary"]["brats"]["auprc"]["n"] == 0
    report = paths["report"].read_text(encoding="utf-8")
    assert "# Test evaluation" in report and "real WML, T1" in report
    assert f"{np.mean(dice_values):.3f} ±" in report
    assert "| case2 | brats |" in report and "![" in report
    assert paths["figure"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_protocol_table_gives_each_engine_its_means_speed_and_training_time():
    from UADContrastiveLib.evaluation.protocol import table_markdown, table_rows

    def rows(dataset, auprcs, seconds):
        return [{"dataset": dataset, "auprc": a, "dice": a / 2, "best_dice": a, "fp_fraction": None, "seconds": s}
                for a, s in zip(auprcs, seconds)]

    results = {"engine-a 0.1": {"report_real_shapes": rows("report_real_shapes", [0.2, 0.4], [3.0, 5.0])},
               "atlas 0.2": {"report_real_shapes": rows("report_real_shapes", [0.1, 0.3], [1.0, 2.0])}}
    refused = {"atlas 0.2": {"report_real_shapes": [{"id": "brats/pat0006", "error": "registration failed"}]}}
    table = table_rows(results, {"engine-a 0.1": 116.0}, refused)
    by_model = {r["model"]: r for r in table}
    assert by_model["engine-a 0.1"]["auprc"] == 0.3 and by_model["engine-a 0.1"]["seconds_per_volume"] == 4.0
    assert by_model["engine-a 0.1"]["training_minutes"] == 116.0 and by_model["atlas 0.2"]["training_minutes"] is None
    markdown = table_markdown(table, "report")
    assert "| report_real_shapes | engine-a 0.1 | 2 | 0.300 | 0.150 | 0.300 | n/a | 4.0 | 116.0 |" in markdown
    assert "REAL lesion shapes" in markdown  # the data and modality are named beside the figures
    assert "| report_real_shapes | atlas 0.2 | 2 (1) | 0.200 |" in markdown
    assert "Refused by the detection path (left out of the means): atlas 0.2 on report_real_shapes: brats/pat0006." \
        in markdown


def test_protocol_run_keeps_refused_cases_out_of_the_means_and_names_them(tmp_path, monkeypatch):
    from types import SimpleNamespace

    from UADContrastiveLib.detection import detector as detector_module
    from UADContrastiveLib.evaluation import protocol

    monkeypatch.setenv("UADC_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(protocol, "build_sets", lambda data, sets_dir, log=print, modality="T1": {
        name: tmp_path / f"{name}.csv" for part in protocol.PARTS.values() for name in part})
    monkeypatch.setattr(protocol, "read_cases_csv", lambda path: [{"id": "ok"}, {"id": "pat0006"}])
    monkeypatch.setattr(detector_module, "Detector", lambda model, device: SimpleNamespace(
        card=SimpleNamespace(name=model, version="1.0", training={
            # a card written before cards summed the runs: wall_time_minutes was the last run's alone
            "wall_time_minutes": 36.2, "encoder": {"initialised_from": "contrastive-diffusion-t1"},
            "diffusion": {"steps": 2951, "minutes": 178.38}})))

    def evaluate_cases(detector, cases, dataset):
        row = {"dataset": dataset, "auprc": 0.5, "dice": 0.2, "best_dice": 0.3, "fp_fraction": 0.01, "seconds": 2.0}
        return [row], [{"id": "pat0006", "error": "the registration check failed"}]

    def rule(detector, paths, data, lesion_rows, log, modality):
        return {"model": "m 1.0", "ships": False, "text": f"Shipping rule for m 1.0: FAILS ({len(lesion_rows)} rows)"}

    result = protocol.run_protocol(["m"], tmp_path, tmp_path / "out", "tuning", evaluate_cases, log=lambda *_: None,
                                   rule=rule)
    assert result["shipping_rule"][0]["ships"] is False
    assert [(r["set"], r["cases"], r["refused"]) for r in result["table"]] == [
        ("tuning_real_shapes", 1, ["pat0006"]), ("tuning_healthy", 1, ["pat0006"])]
    assert {r["training_minutes"] for r in result["table"]} == {178.4}  # the whole state's, not the last run's
    written = json.loads((tmp_path / "out" / "table.json").read_text())["table"]
    assert written[0]["refused"] == ["pat0006"]
    assert "m 1.0 on tuning_real_shapes: pat0006" in (tmp_path / "out" / "table.md").read_text()
    assert "Shipping rule for m 1.0: FAILS (1 rows)" in (tmp_path / "out" / "table.md").read_text()
