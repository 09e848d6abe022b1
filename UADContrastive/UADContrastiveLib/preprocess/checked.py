"""The detection path's preprocessing with every refusal and warning it knows, in one call.

`uadc detect`, training caches, residual statistics and calibration all go through
`preprocess_checked`, so a scan detection would refuse is refused (InputError) everywhere,
and the volumes a model is trained and calibrated on are the volumes detection gives it.
"""
from __future__ import annotations

import SimpleITK as sitk

from ..io import nonfinite_warning
from .pipeline import Preprocessed, preprocess
from .quality import assess_registration, check_spacing


def preprocess_checked(image: sitk.Image, template, brain_mask: sitk.Image | None = None,
                       modality: str = "T1", source=None) -> tuple[Preprocessed, dict]:
    """(preprocessed scan, quality dict with its "warnings"); InputError for what cannot be analysed."""
    warnings = nonfinite_warning(image) + check_spacing(image, source)
    pre = preprocess(image, template, brain_mask=brain_mask, source=source)
    quality = assess_registration(pre, template, modality, source)
    quality["warnings"] = warnings + quality["warnings"]
    return pre, quality
