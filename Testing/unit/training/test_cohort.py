"""Training cohorts: listing a folder or CSV of scans, the subject-level split, skipping the
scans detection refuses, and the usage error when too few remain."""
from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
from UADContrastiveLib.cli import main
from UADContrastiveLib.datasets import Subject, split
from UADContrastiveLib.errors import InputError
from UADContrastiveLib.training.cohort import prepare_cohort, read_cohort
from UADContrastiveLib.training.slice_cache import build_cache, is_cached


def write_image(path, value=1.0, size=(12, 12, 12)):
    path.parent.mkdir(parents=True, exist_ok=True)
    array = np.full(size[::-1], value, np.float32)
    array[2:-2, 2:-2, 2:-2] += 1.0
    sitk.WriteImage(sitk.GetImageFromArray(array), str(path))
    return path


def write_dicom_series(folder, slices=3):
    folder.mkdir(parents=True)
    for z in range(slices):
        image = sitk.GetImageFromArray(np.full((1, 8, 8), 100 + z, np.int16))
        writer = sitk.ImageFileWriter()
        writer.KeepOriginalImageUIDOn()
        writer.SetImageIO("GDCMImageIO")
        for key, value in (("0020|000e", "1.2.3.4"), ("0020|0013", str(z + 1)), ("0020|0032", f"0\\0\\{z}"),
                           ("0008|0060", "MR")):
            image.SetMetaData(key, value)
        writer.SetFileName(str(folder / f"slice{z:03d}"))  # no extension: found by its DICM preamble
        writer.Execute(image)


def test_folder_is_searched_recursively_with_masks_dicom_and_subjects(tmp_path):
    root = tmp_path / "healthy"
    write_image(root / "scan1.nii.gz")
    write_image(root / "scan1_brain_mask.nii.gz")
    write_image(root / "scan2.nrrd")
    write_image(root / "site-b" / "sub-07" / "t2.nii.gz")
    write_image(root / "site-b" / "sub-07" / "brain_mask.nii.gz")
    write_image(root / "site-b" / "sub-07" / "lesion_labels.nii.gz")
    write_dicom_series(root / "patient9" / "series1")
    (root / "notes.txt").write_text("not a scan")
    (root / ".hidden").mkdir()
    write_image(root / ".hidden" / "x.nii.gz")
    found = read_cohort(root)
    assert found.kind == "folder"
    by_id = {s.id: s for s in found.subjects}
    assert set(by_id) == {"scan1", "scan2", "site-b_sub-07_t2", "patient9_series1"}
    assert by_id["scan1"].brain_mask.name == "scan1_brain_mask.nii.gz" and by_id["scan2"].brain_mask is None
    assert by_id["site-b_sub-07_t2"].brain_mask.name == "brain_mask.nii.gz"
    assert by_id["site-b_sub-07_t2"].person == "site-b" and by_id["scan1"].person == "scan1"
    assert by_id["patient9_series1"].image.is_dir() and by_id["patient9_series1"].person == "patient9"
    assert "notes.txt" in found.ignored


def test_csv_lists_images_masks_and_subjects(tmp_path):
    write_image(tmp_path / "a" / "t1.nii.gz")
    write_image(tmp_path / "b" / "t1.nii.gz")
    (tmp_path / "list.csv").write_text("image,brain_mask,subject\na/t1.nii.gz,a/t1.nii.gz,P1\nb/t1.nii.gz,,P1\n")
    subjects = read_cohort(tmp_path / "list.csv").subjects
    assert [s.id for s in subjects] == ["a_t1", "b_t1"]
    assert subjects[0].brain_mask == tmp_path / "a" / "t1.nii.gz" and subjects[1].brain_mask is None
    assert {s.person for s in subjects} == {"P1"}
    (tmp_path / "bad.csv").write_text("path\nx.nii.gz\n")
    with pytest.raises(InputError, match="'image' column"):
        read_cohort(tmp_path / "bad.csv")


def test_nothing_to_train_on_is_a_usage_error(tmp_path):
    with pytest.raises(InputError, match="holds no scans"):
        read_cohort(tmp_path)
    with pytest.raises(InputError, match="does not exist"):
        read_cohort(tmp_path / "missing")


def test_split_is_by_subject_and_never_leaves_a_side_empty():
    scans = [Subject(f"s{i}-{session}", None, subject=f"s{i}") for i in range(40) for session in "ab"]
    training, validation = split(scans)
    held_out = {s.person for s in validation}
    assert held_out and not held_out & {s.person for s in training}  # a person's scans stay together
    assert 0.1 < len(validation) / len(scans) < 0.4
    for count in (2, 3, 4):  # tiny cohorts still hold one subject out, and train on the rest
        training, validation = split([Subject(f"scan{i}", None) for i in range(count)])
        assert len(validation) == 1 and len(training) == count - 1
    assert split([Subject(f"scan{i}", None) for i in range(4)]) == split([Subject(f"scan{i}", None) for i in range(4)])


class _Template:
    name = "test-template"


def test_refused_scans_are_reported_and_skipped(tmp_path, monkeypatch):
    """Every refusal the detection path raises (InputError) skips that scan only."""
    good = [Subject(f"ok{i}", write_image(tmp_path / f"ok{i}.nii.gz")) for i in range(3)]
    bad = Subject("broken", tmp_path / "broken.nii.gz")
    bad.image.write_bytes(b"not an image at all")

    def fake_preprocess(subject, template, modality="T1"):
        from UADContrastiveLib.io import read_volume

        read_volume(subject.image)  # the real reader: refuses the broken file
        return np.zeros((4, 8, 8), np.float32), np.ones((4, 8, 8), bool), ["looks odd"]

    monkeypatch.setattr("UADContrastiveLib.training.slice_cache.preprocess_subject", fake_preprocess)
    report = build_cache(good + [bad], tmp_path / "cache", _Template())
    assert report.ready == ["ok0", "ok1", "ok2"] and list(report.refused) == ["broken"]
    assert "not a readable image" in report.refused["broken"] and report.warnings["ok0"] == ["looks odd"]
    assert all(is_cached(s, tmp_path / "cache", "test-template") for s in good)
    assert not is_cached(good[0], tmp_path / "cache", "another-template")  # other inputs never collide
    write_image(good[0].image, value=5.0)  # a changed file is preprocessed again
    import os
    os.utime(good[0].image, ns=(1, 1))
    assert not is_cached(good[0], tmp_path / "cache", "test-template")


def test_too_few_usable_scans_stop_with_a_usage_error(tmp_path, monkeypatch, capsys):
    root = tmp_path / "healthy"
    write_image(root / "ok0.nii.gz")
    write_image(root / "ok1.nii.gz")
    (root / "broken.nii.gz").write_bytes(b"garbage")

    def fake_preprocess(subject, template, modality="T1"):
        from UADContrastiveLib.io import read_volume

        read_volume(subject.image)
        return np.zeros((4, 8, 8), np.float32), np.ones((4, 8, 8), bool), []

    monkeypatch.setattr("UADContrastiveLib.training.slice_cache.preprocess_subject", fake_preprocess)
    with pytest.raises(InputError, match="only 2 of 3 scans could be used"):
        prepare_cohort({"cache_dir": str(tmp_path / "cache")}, root)
    assert "skipped" in capsys.readouterr().err
    write_image(root / "ok2.nii.gz")
    prepared = prepare_cohort({"cache_dir": str(tmp_path / "cache"), "modality": "FLAIR"}, root)
    assert sorted(prepared.train_ids + prepared.val_ids) == ["ok0", "ok1", "ok2"] and prepared.val_ids
    assert prepared.record["modality"] == "FLAIR" and "broken" in prepared.record["skipped"]
    assert prepared.cache_dir.parent.name == "cohorts"  # its own folder: cohorts never share a cache
    other = prepare_cohort({"cache_dir": str(tmp_path / "cache")}, _copy(root, tmp_path / "other"))
    assert other.cache_dir != prepared.cache_dir


def _copy(source, target):
    import shutil

    shutil.copytree(source, target)
    return target


def test_uadc_train_on_an_empty_folder_is_exit_2_without_traceback(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert main(["train", "--data", str(tmp_path / "empty"), "--out", str(tmp_path / "m")]) == 2
    err = capsys.readouterr().err
    assert "holds no scans" in err and "Traceback" not in err and "internal error" not in err
    assert main(["train", "--data", str(tmp_path), "--out", str(tmp_path / "m"), "--config",
                 str(tmp_path / "nope.yaml")]) == 2
    assert "Traceback" not in capsys.readouterr().err


def test_cohort_command_reports_usage_errors(tmp_path, capsys):
    assert main(["cohort", "--data", str(tmp_path / "missing")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_cohort_command_caches_every_usable_scan_and_reports_the_split(tmp_path, monkeypatch, capsys):
    root = tmp_path / "healthy"
    scans = [write_image(root / f"ok{i}.nii.gz") for i in range(4)]
    (root / "broken.nii.gz").write_bytes(b"garbage")

    def fake_preprocess(subject, template, modality="T1"):
        from UADContrastiveLib.io import read_volume

        read_volume(subject.image)  # the real reader: refuses the broken file
        return np.zeros((4, 8, 8), np.float32), np.ones((4, 8, 8), bool), []

    monkeypatch.setattr("UADContrastiveLib.training.slice_cache.preprocess_subject", fake_preprocess)
    assert main(["cohort", "--data", str(root), "--cache", str(tmp_path / "cache")]) == 0
    out, err = capsys.readouterr()
    assert "skipped" in err and "broken" in err
    cache_dir = next((tmp_path / "cache" / "cohorts").iterdir())
    assert f"validation scans cached in {cache_dir}" in out
    prepared = prepare_cohort({"cache_dir": str(tmp_path / "cache")}, root)  # what `uadc train` then reads
    assert prepared.cache_dir == cache_dir
    assert sorted(prepared.subjects) == [f"ok{i}" for i in range(len(scans))]
    assert all(is_cached(prepared.subjects[f"ok{i}"], cache_dir, "ixi-head-2mm") for i in range(len(scans)))


def test_template_rebuild_from_a_folder_without_ixi_subjects_is_refused(tmp_path, capsys):
    """It used to average zero subjects and overwrite the template with an empty one (exit 0)."""
    (tmp_path / "empty").mkdir()
    assert main(["template", "--data", str(tmp_path / "empty"), "--out", str(tmp_path / "template")]) == 2
    assert not (tmp_path / "template").exists() and "Traceback" not in capsys.readouterr().err


def test_calibration_uses_the_cards_held_out_scans_of_the_training_cohort(tmp_path):
    from types import SimpleNamespace

    from UADContrastiveLib.training.calibration import cohort_parts

    root = tmp_path / "healthy"
    for name in ("a", "b", "c", "d"):
        write_image(root / f"{name}.nii.gz")
    card = SimpleNamespace(training={"subjects": {"train": ["a", "b", "c"], "validation": ["d"]}})
    training, held_out, rule = cohort_parts(card, root)
    assert [s.id for s in training] == ["a", "b", "c"] and [s.id for s in held_out] == ["d"] and "card" in rule
    other = tmp_path / "other"  # scans the model never saw: all of them calibrate
    write_image(other / "x.nii.gz")
    training, held_out, _ = cohort_parts(card, other)
    assert training == [] and [s.id for s in held_out] == ["x"]
    atlas_card = SimpleNamespace(training={"subjects": ["a", "b"], "split": {"train": ["a", "b"], "validation": ["c"]}})
    assert [s.id for s in cohort_parts(atlas_card, root)[1]] == ["c"]
