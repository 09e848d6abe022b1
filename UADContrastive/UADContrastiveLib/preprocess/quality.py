"""Plausibility checks of an input and its registration: refuse what cannot be a brain,
warn about what the model was not trained for.

Measured on the shared data (docs/contrasts.md; Testing/benchmarks/bench_brain_mask_contrasts.py):
correlation with the T1 template brain, over voxels inside both brains: IXI T1 0.88, BraTS T1c
0.24-0.42, WML T1 0.19-0.42, WML T2 -0.23-0.04, WML FLAIR -0.01-0.27, WML PD 0.00-0.15, uniform
noise 0.04. So a model that reads its template's contrast (T1 models on the T1 template, T2
models on the T2 template) refuses by the correlation with that template's brain, and other
models by the correlation ratio (0.11-0.44 on every real scan of any contrast). White/grey-matter
intensity ratio: IXI T1 1.8, WML T1 1.19-1.31, BraTS T1c 1.07-1.51, FLAIR 0.92-1.11, PD 0.89-0.95,
T2 0.73-0.92 (WM_GM_RANGES). A brain (by the correlation ratio) whose contrast is another
model's is told which contrast it looks like and to choose a model of that contrast: refused
where the template correlation refuses it, warned about otherwise.
"""
from __future__ import annotations

import numpy as np
import SimpleITK as sitk

from ..errors import InputError

MIN_TEMPLATE_CORRELATION = 0.07
MIN_T1_WM_GM_RATIO = 1.15
T1_FAMILY = ("T1", "T1C")
SHOWN = {"T1C": "T1c"}
# White/grey matter intensity ratio per modality (model-grid, template tissue regions), from
# Testing/benchmarks/bench_brain_mask_contrasts.py on the shared data: see docs/contrasts.md.
WM_GM_RANGES = {
    "T1": (MIN_T1_WM_GM_RATIO, np.inf),
    "T1C": (1.0, np.inf),
    "FLAIR": (0.9, 1.15),
    "T2": (0.0, 0.95),
    "PD": (0.0, 1.0),
}
MIN_BRAIN_COVERAGE = 0.6
MAX_SLICE_SPACING_MM = 6.0
WARN_ANISOTROPY = 4.0


def check_spacing(image: sitk.Image, source=None) -> list[str]:
    """Refuse slices too thick for the 2 mm model grid; warn about strong anisotropy."""
    spacing = np.asarray(image.GetSpacing(), float)
    if spacing.max() > MAX_SLICE_SPACING_MM:
        raise InputError(source, f"has {spacing.max():.1f} mm voxels along one axis (spacing {np.round(spacing, 2).tolist()}); "
                         f"the model works at 2 mm and cannot fill slices thicker than {MAX_SLICE_SPACING_MM:g} mm.",
                         "Use a 3D acquisition or a scan with thinner slices.")
    if spacing.max() / spacing.min() > WARN_ANISOTROPY:
        return [f"strongly anisotropic voxels {np.round(spacing, 2).tolist()} mm: thin anomalies between slices may be missed"]
    return []


def _template_regions(template):
    """Template brain, brain mask and its white-matter, grey-matter and CSF regions; made once
    per template (read-only arrays). The tissue regions come from the T1 template's intensities
    (CSF darkest, then grey, white brightest), also for a template of another contrast: every
    template lies on the same MNI grid, so the regions are the same anatomy."""
    return template.cached("tissue regions", lambda: _regions(template))


def _template_contrast(template) -> str:
    return str(getattr(template, "modality", "T1")).upper()


def _regions(template):
    brain = sitk.GetArrayFromImage(template.brain)
    inside = sitk.GetArrayFromImage(template.brain_probability) > 0.5
    tissue_source = brain
    if _template_contrast(template) not in T1_FAMILY:
        from .templates import load_template

        tissue_source = sitk.GetArrayFromImage(load_template().on_grid(template.grid).brain)
    values = tissue_source[inside]
    white = inside & (tissue_source > np.percentile(values, 70))
    grey = inside & (tissue_source > np.percentile(values, 15)) & (tissue_source < np.percentile(values, 35))
    csf = inside & (tissue_source < np.percentile(values, 4))
    regions = (brain, inside, white, grey, csf)
    for array in regions:
        array.flags.writeable = False  # shared by every later subject
    return regions


def contrast_ratios(volume: np.ndarray, subject_brain: np.ndarray, template) -> dict:
    """Median white-matter and CSF intensity over median grey-matter intensity of a registered
    model-grid volume, in the template's tissue regions: the input's apparent contrast."""
    _, _, white, grey, csf = _template_regions(template)
    grey_values = volume[grey & subject_brain]
    ratios = {}
    for name, region in (("wm_gm_ratio", white), ("csf_gm_ratio", csf)):
        values = volume[region & subject_brain]
        ratios[name] = (float(np.median(values) / max(np.median(grey_values), 1e-3))
                        if values.size and grey_values.size else float("nan"))
    return ratios


def correlation_ratio(values: np.ndarray, reference: np.ndarray, bins: int = 16) -> float:
    """How much of the variance of `values` the reference's intensity explains (eta, 0..1):
    like mutual information it asks only that equal template tissue look alike, not that it be
    bright or dark as in T1, so it measures a registered brain in any contrast."""
    if values.size < 100 or values.var() == 0:
        return 0.0
    edges = np.quantile(reference, np.linspace(0, 1, bins + 1)[1:-1])
    groups = np.digitize(reference, edges)
    counts = np.bincount(groups, minlength=bins)
    means = np.bincount(groups, weights=values, minlength=bins) / np.maximum(counts, 1)
    explained = float(np.sum(counts * (means - values.mean()) ** 2) / values.size)
    return float(np.sqrt(explained / values.var()))


def reads_template_contrast(modality: str, template) -> bool:
    """Whether a model of `modality` expects inputs of its template's contrast (T1 and T1c on the
    T1 template, T2 on the T2 template): then the signed correlation with the template brain
    says whether an input resembles it."""
    def family(name: str) -> str:
        return "T1" if name.upper() in T1_FAMILY else name.upper()

    return family(modality) == family(_template_contrast(template))


def assess_registration(pre, template, modality: str = "T1", source=None) -> dict:
    """Resemblance to the template, brain coverage and the input's apparent contrast.

    Raises InputError when the registered input does not resemble the template brain: for a
    model reading the template's contrast by the signed correlation with the template brain,
    for other models by the correlation ratio (any monotone or inverted tissue contrast
    passes). A refused input that is a brain in another contrast (correlation ratio and
    white/grey matter ratio) is told so, and to choose a model of that contrast. Returns
    {"template_correlation", "correlation_ratio", "brain_coverage", "wm_gm_ratio",
    "csf_gm_ratio", "warnings"}; a contrast unlike `modality` is a warning.
    """
    brain, inside, _, _, _ = _template_regions(template)
    volume = sitk.GetArrayFromImage(pre.model_input)
    subject = sitk.GetArrayFromImage(pre.brain_mask_model) > 0
    both = inside & subject
    coverage = float(both.sum() / max(inside.sum(), 1))
    correlation = float(np.corrcoef(volume[both], brain[both])[0, 1]) if both.sum() > 100 else 0.0
    correlation = correlation if np.isfinite(correlation) else 0.0
    eta = correlation_ratio(volume[both], brain[both])
    contrast = _template_contrast(template)
    by_correlation = reads_template_contrast(modality, template)
    resemblance = correlation if by_correlation else eta
    measure = f"correlation with the {contrast} template" if by_correlation else "correlation ratio"
    ratios = contrast_ratios(volume, subject, template)
    if resemblance < MIN_TEMPLATE_CORRELATION:
        looks = apparent_contrasts(ratios["wm_gm_ratio"]) if np.isfinite(ratios["wm_gm_ratio"]) else []
        if eta >= MIN_TEMPLATE_CORRELATION and looks and _shown(modality) not in looks:
            raise InputError(source, f"{wrong_contrast_text(modality, looks, ratios['wm_gm_ratio'])} ({measure} "
                             f"{resemblance:.2f}).", f"Choose a {looks[0]} model (`uadc models list` shows each "
                             "model's contrast).")
        raise InputError(source, f"does not look like a brain after registration to the {contrast} template "
                         f"({measure} {resemblance:.2f}, expected >= {MIN_TEMPLATE_CORRELATION}).",
                         "Check that this is a brain MRI; if it is, give a brain mask with --brain-mask.")
    warnings = []
    if coverage < MIN_BRAIN_COVERAGE:
        warnings.append(f"the scan covers only {coverage:.0%} of the template brain: regions outside it are not analysed")
    warnings += modality_warnings(modality, ratios)
    return {"template_correlation": round(correlation, 3), "correlation_ratio": round(eta, 3),
            "brain_coverage": round(coverage, 3), **{k: round(v, 3) for k, v in ratios.items()},
            "warnings": warnings}


def _shown(modality: str) -> str:
    return SHOWN.get(modality.upper(), modality.upper())


def apparent_contrasts(wm_gm_ratio: float) -> list[str]:
    """The modalities whose measured white/grey matter ratio range holds `wm_gm_ratio`."""
    return [_shown(name) for name, (low, high) in WM_GM_RANGES.items() if low <= wm_gm_ratio < high]


def wrong_contrast_text(modality: str, looks: list[str], ratio: float) -> str:
    """"this looks T2-weighted ...; the model reads T1": what the input looks like and what the model reads."""
    expected = WM_GM_RANGES.get(modality.upper())
    bound = f", {_shown(modality)} is {_describe_range(expected)}" if expected else ""
    return (f"this looks {' or '.join(looks)}-weighted (white/grey matter ratio {ratio:.2f}{bound}); "
            f"the model reads {_shown(modality)}")


def modality_warnings(modality: str, ratios: dict) -> list[str]:
    """A warning when the input's white/grey matter ratio is outside the range measured for the
    model's modality (WM_GM_RANGES); modalities without a measured range are not checked."""
    expected = WM_GM_RANGES.get(modality.upper())
    ratio = ratios["wm_gm_ratio"]
    if expected is None or expected[0] <= ratio < expected[1]:
        return []
    looks = apparent_contrasts(ratio) if np.isfinite(ratio) else []
    if not looks:
        return [f"the input does not look {modality}-weighted (white/grey matter ratio {ratio:.2f}, {modality} is "
                f"{_describe_range(expected)}) but the model was trained on {modality}: expect false positives"]
    return [f"{wrong_contrast_text(modality, looks, ratio)}: choose a {looks[0]} model, or expect false positives"]


def _describe_range(bounds: tuple[float, float]) -> str:
    low, high = bounds
    return f"at least {low:g}" if not np.isfinite(high) else (f"below {high:g}" if low <= 0 else f"{low:g}-{high:g}")
