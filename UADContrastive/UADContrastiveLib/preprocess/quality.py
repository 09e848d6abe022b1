"""Plausibility checks of an input and its registration: refuse what cannot be a brain,
warn about what the model was not trained for.

Measured on the shared data (docs/contrasts.md; Testing/benchmarks/bench_brain_mask_contrasts.py):
correlation with the T1 template brain, over voxels inside both brains: IXI T1 0.88, BraTS T1c
0.24-0.42, WML T1 0.19-0.42, WML T2 -0.23-0.04, WML FLAIR -0.01-0.27, WML PD 0.00-0.15, uniform
noise 0.04. So T1 models refuse by that correlation, and models of other contrasts by the
correlation ratio (0.11-0.44 on every real scan of any contrast). White/grey-matter intensity
ratio: IXI T1 1.8, WML T1 1.19-1.31, BraTS T1c 1.07-1.51, FLAIR 0.92-1.11, PD 0.89-0.95,
T2 0.73-0.92 (WM_GM_RANGES). The IXI T2 heads (3 T, FCM-normalised) have a white/grey matter
ratio of 1.23-1.30 like T1's, so T2 is told apart by the T2 lead instead: the correlation with
the T2 template brain minus that with the T1 template brain, of the same registered volume (both
templates share the MNI model grid): IXI T2 0.19-0.41, WML T2 0.25-0.31; IXI and WML T1, WML and
BraTS FLAIR 0.10 or less (T2_LEAD; docs/t2.md).

Every template knows its contrast. A brain (by the correlation ratio) whose contrast is the
other family's is told which contrast it looks like and to choose a model of that contrast:
refused when its correlation with a template of the model's own contrast is below the bound
(a T2 head on a T1 model: -0.20; a T1 head on a T2 model), warned about otherwise (FLAIR on a
T1 model). FLAIR is T2-weighted: a T2 model scores it as a contrast shift, as T1 models do T1c.
"""
from __future__ import annotations

import numpy as np
import SimpleITK as sitk

from ..errors import InputError

MIN_TEMPLATE_CORRELATION = 0.07
MIN_T1_WM_GM_RATIO = 1.15
T1_FAMILY = ("T1", "T1C")
# Contrasts a model of the family's name reads (the second ones as a contrast shift).
FAMILIES = {"T1": T1_FAMILY, "T2": ("T2", "FLAIR")}
SHOWN = {"T1C": "T1c"}
# White/grey matter intensity ratio per modality (model-grid, template tissue regions), from
# Testing/benchmarks/bench_brain_mask_contrasts.py on the shared data: see docs/contrasts.md.
# Listed most common first: an ambiguous ratio names T2 before FLAIR and PD.
WM_GM_RANGES = {
    "T1": (MIN_T1_WM_GM_RATIO, np.inf),
    "T1C": (1.0, np.inf),
    "T2": (0.0, 0.95),
    "FLAIR": (0.9, 1.15),
    "PD": (0.0, 1.0),
}
T2_LEAD = 0.15
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
    template lies on the same MNI grid, so they are the same anatomy."""
    return template.cached("tissue regions", lambda: _regions(template))


def _template_contrast(template) -> str:
    return str(getattr(template, "modality", "T1")).upper()


def _regions(template):
    brain = sitk.GetArrayFromImage(template.brain)
    inside = sitk.GetArrayFromImage(template.brain_probability) > 0.5
    if _template_contrast(template) in T1_FAMILY:
        values = brain[inside]
        white = inside & (brain > np.percentile(values, 70))
        grey = inside & (brain > np.percentile(values, 15)) & (brain < np.percentile(values, 35))
        csf = inside & (brain < np.percentile(values, 4))
    else:
        from .templates import load_template

        _, _, white, grey, csf = _template_regions(load_template().on_grid(template.grid))
    regions = (brain, inside, white, grey, csf)
    for array in regions:
        array.flags.writeable = False  # shared by every later subject
    return regions


def _contrast_template_brains(template) -> dict[str, np.ndarray]:
    """{contrast: template brain on this template's grid} of every shipped template (read-only)."""
    def make():
        from .templates import TEMPLATE_KINDS, load_template

        brains = {}
        for name, kind in TEMPLATE_KINDS.items():
            try:
                other = template if name == template.name else load_template(name=name).on_grid(template.grid)
            except FileNotFoundError:
                continue
            brains[kind.modality] = sitk.GetArrayFromImage(other.brain)
            brains[kind.modality].flags.writeable = False
        return brains

    return template.cached("contrast template brains", make)


def t2_lead(volume: np.ndarray, region: np.ndarray, template) -> float:
    """Correlation of `volume` with the T2 template brain minus that with the T1 one, over
    `region` (NaN without both templates); see T2_LEAD."""
    brains = _contrast_template_brains(template)
    if not {"T1", "T2"} <= set(brains) or region.sum() <= 100:
        return float("nan")
    t1, t2 = (float(np.corrcoef(volume[region], brains[c][region])[0, 1]) for c in ("T1", "T2"))
    return t2 - t1


def contrast_ratios(volume: np.ndarray, subject_brain: np.ndarray, template) -> dict:
    """Median white-matter and CSF intensity over median grey-matter intensity of a registered
    model-grid volume, in the template's tissue regions, and its T2 lead: the input's apparent
    contrast."""
    _, _, white, grey, csf = _template_regions(template)
    grey_values = volume[grey & subject_brain]
    ratios = {}
    for name, region in (("wm_gm_ratio", white), ("csf_gm_ratio", csf)):
        values = volume[region & subject_brain]
        ratios[name] = (float(np.median(values) / max(np.median(grey_values), 1e-3))
                        if values.size and grey_values.size else float("nan"))
    _, inside, _, _, _ = _template_regions(template)
    ratios["t2_lead"] = t2_lead(volume, inside & subject_brain, template)
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


def family(modality: str) -> str:
    """The contrast family a modality belongs to (FAMILIES), else the modality itself."""
    name = modality.upper()
    return next((key for key, members in FAMILIES.items() if name in members), name)


def assess_registration(pre, template, modality: str = "T1", source=None) -> dict:
    """Resemblance to the template, brain coverage and the input's apparent contrast.

    Raises InputError when the registered input does not look like a brain: for T1 models by
    its correlation with the (T1) template brain, for other contrasts by the correlation ratio
    (any monotone or inverted tissue contrast passes); and when it is a brain of the other
    contrast family (see the module docstring), saying which and what model to choose.
    Returns {"template_correlation", "correlation_ratio", "brain_coverage", "wm_gm_ratio",
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
    ratios = contrast_ratios(volume, subject, template)
    contrast = _template_contrast(template)
    own_template = family(modality) == family(contrast)
    looks = apparent_contrasts(ratios)
    other_family = bool(looks) and not {name.upper() for name in looks} & set(FAMILIES.get(family(modality), ()))
    if own_template and correlation < MIN_TEMPLATE_CORRELATION and eta >= MIN_TEMPLATE_CORRELATION and other_family:
        raise InputError(source, f"{wrong_contrast_text(modality, looks, ratios)} (correlation "
                         f"with the {contrast} template {correlation:.2f}).",
                         f"Choose a {looks[0]} model (`uadc models list` shows each model's contrast).")
    t1_like = modality.upper() in T1_FAMILY
    resemblance, measure = (correlation, "correlation") if t1_like else (eta, "correlation ratio")
    if resemblance < MIN_TEMPLATE_CORRELATION:
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


def apparent_contrasts(features: dict) -> list[str]:
    """The modalities an input with these contrast features ({"wm_gm_ratio"[, "t2_lead"]}) may
    be, most common first: T2 alone when its T2 lead says so; else every modality whose white/grey
    matter ratio range holds the input's, T2 only when no T2 lead was measured."""
    lead = features.get("t2_lead", float("nan"))
    if np.isfinite(lead) and lead >= T2_LEAD:
        return ["T2"]
    ratio = features["wm_gm_ratio"]
    if not np.isfinite(ratio):
        return []
    return [_shown(name) for name, (low, high) in WM_GM_RANGES.items()
            if low <= ratio < high and not (name == "T2" and np.isfinite(lead))]


def wrong_contrast_text(modality: str, looks: list[str], features: dict) -> str:
    """"this looks T2-weighted (...); the model reads T1": what the input looks like (the most
    common contrast first, the others in brackets, then the measured features) and what the
    model reads."""
    others = f"or {', '.join(looks[1:])}; " if len(looks) > 1 else ""
    lead = features.get("t2_lead", float("nan"))
    measured = f"white/grey matter ratio {features['wm_gm_ratio']:.2f}" + (
        f", T2 lead {lead:+.2f}" if np.isfinite(lead) else "")
    return f"this looks {looks[0]}-weighted ({others}{measured}); the model reads {_shown(modality)}"


def modality_warnings(modality: str, ratios: dict) -> list[str]:
    """A warning when the input's apparent contrasts (apparent_contrasts) do not include the
    model's modality; modalities without a measured range (WM_GM_RANGES) are not checked."""
    expected = WM_GM_RANGES.get(modality.upper())
    ratio = ratios["wm_gm_ratio"]
    looks = apparent_contrasts(ratios)
    if expected is None or _shown(modality) in looks:
        return []
    if not looks:
        return [f"the input does not look {modality}-weighted (white/grey matter ratio {ratio:.2f}, {modality} is "
                f"{_describe_range(expected)}) but the model was trained on {modality}: expect false positives"]
    return [f"{wrong_contrast_text(modality, looks, ratios)}: choose a {looks[0]} model, or expect false positives"]


def _describe_range(bounds: tuple[float, float]) -> str:
    low, high = bounds
    return f"at least {low:g}" if not np.isfinite(high) else (f"below {high:g}" if low <= 0 else f"{low:g}-{high:g}")
