"""The fast paths of detection give the results of the plain ones."""
from __future__ import annotations

import importlib
import sys
import threading

import numpy as np
import pytest
import SimpleITK as sitk
from scipy import ndimage
from UADContrastiveLib.lean_imports import import_lean, skipping_imports
from UADContrastiveLib.preprocess.brain_mask import fill_holes
from UADContrastiveLib.preprocess.registration import Pyramid, coarser, no_finer_than
from UADContrastiveLib.preprocess.templates import ModelGrid, Template


@pytest.mark.parametrize("density", [0.45, 0.55, 0.65, 0.75])
def test_fill_holes_equals_scipy(density):
    rng = np.random.default_rng(int(density * 100))
    mask = ndimage.binary_opening(rng.random((30, 25, 20)) < density)
    np.testing.assert_array_equal(fill_holes(mask), ndimage.binary_fill_holes(mask))


def test_fill_holes_keeps_an_enclosed_cavity_filled_and_an_open_one_empty():
    mask = np.ones((9, 9, 9), bool)
    mask[3:6, 3:6, 3:6] = False       # enclosed: a hole
    mask[0:2, 1, 1] = False           # a dent from the border: not a hole
    filled = fill_holes(mask)
    assert filled[4, 4, 4] and not filled[0, 1, 1] and not filled[1, 1, 1]


def _image(spacing):
    image = sitk.Image([40, 30, 20], sitk.sitkFloat32)
    image.SetSpacing(spacing)
    return image


def test_registration_input_is_block_averaged_down_to_the_template_spacing():
    template = _image((2.0, 2.0, 2.0))
    assert no_finer_than(_image((1.0, 1.0, 1.0)), template).GetSize() == (20, 15, 10)
    assert no_finer_than(_image((0.9, 1.0, 3.0)), template).GetSpacing() == pytest.approx((1.8, 2.0, 3.0))
    coarse = _image((2.0, 2.0, 2.0))
    assert no_finer_than(coarse, template) is coarse  # a 2 mm input is registered as it is


def _fresh_package(tmp_path, monkeypatch, name):
    (tmp_path / name).mkdir()
    (tmp_path / name / "__init__.py").write_text("VALUE = 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, name, raising=False)


def test_skipped_imports_fail_in_this_thread_only_and_only_inside_the_block(tmp_path, monkeypatch):
    _fresh_package(tmp_path, monkeypatch, "uadc_optional_pkg")
    other_thread = {}
    with skipping_imports(("uadc_optional_pkg",)) as finder:
        with pytest.raises(ModuleNotFoundError):
            importlib.import_module("uadc_optional_pkg")
        thread = threading.Thread(target=lambda: other_thread.update(
            module=importlib.import_module("uadc_optional_pkg")))
        thread.start()
        thread.join()
    assert other_thread["module"].VALUE == 1  # the other thread imported it meanwhile
    assert finder.skipped == {"uadc_optional_pkg"} and finder not in sys.meta_path
    assert importlib.import_module("uadc_optional_pkg").VALUE == 1


def test_a_library_that_needs_a_skipped_package_is_imported_again_in_full(tmp_path, monkeypatch):
    _fresh_package(tmp_path, monkeypatch, "uadc_optional_pkg")
    (tmp_path / "uadc_needs_it").mkdir()
    (tmp_path / "uadc_needs_it" / "__init__.py").write_text("import uadc_optional_pkg\nVALUE = 2\n")
    monkeypatch.delitem(sys.modules, "uadc_needs_it", raising=False)
    module = import_lean(lambda: importlib.import_module("uadc_needs_it"), prefixes=("uadc_needs_it",),
                         names=("uadc_optional_pkg",))
    assert module.VALUE == 2 and "uadc_optional_pkg" in sys.modules


def test_registration_levels_are_made_once_and_no_axis_goes_coarser_than_the_level():
    image = sitk.GaussianSource(sitk.sitkFloat32, [40, 40, 12], sigma=[8.0] * 3, mean=[20.0, 20.0, 6.0])
    image.SetSpacing((1.0, 1.0, 3.0))
    level = coarser(image, 4.0)
    assert level.GetSpacing() == pytest.approx((4.0, 4.0, 3.0))  # the 3 mm axis is not averaged
    pyramid = Pyramid(image)
    assert pyramid.level(2) is pyramid.level(2) and pyramid.level(1) is pyramid.image
    template = Template(image, image, ModelGrid())
    assert template.pyramid("head") is template.pyramid("head")
    assert template.brain is template.brain
