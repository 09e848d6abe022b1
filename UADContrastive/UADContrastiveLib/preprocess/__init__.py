"""Input grid <-> model grid: orientation, template registration, brain mask, resampling,
intensity normalisation, and the exact way back (`pipeline`); the template and the model
grid (`templates`), building the shipped template (`template_build`); plausibility checks
of an input and its registration, including its apparent contrast (`quality`); the
pipeline with every refusal and warning, as detection and training both run it (`checked`).
"""
from .pipeline import Preprocessed, normalise_intensity, preprocess, resample

__all__ = ["Preprocessed", "normalise_intensity", "preprocess", "resample"]
