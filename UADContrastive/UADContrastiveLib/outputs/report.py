"""report.json: what one detection found and how; built by `uadc detect` and the demo, and
updated by the Slicer module's export (where the user may have moved the threshold or
edited the segment). Standard library only."""
from __future__ import annotations

import platform


def anomalous_volume_ml(components: list[dict]) -> float:
    """Total volume of the anomalous components (each carries its own `volume_ml`)."""
    return round(sum(float(c["volume_ml"]) for c in components), 4)


def build_report(*, input_name: str, model: dict, device: str, threshold: float, threshold_method: str,
                 thresholds_available: dict, min_size_mm3: float, brain_source: str, brain_volume_ml: float,
                 quality: dict, components: list[dict], preprocessing: dict, timings: dict,
                 findings: list[dict], input_to_template_ras: list[list[float]] | None,
                 anatomy_registration: str) -> dict:
    """The report of one detection. `input_name` is what the user gave (a path or a name);
    `findings` the regions named by anatomy (outputs.findings.describe_regions), with the
    affine from the input's RAS coordinates to the template's they were placed with and how the
    atlas naming them was carried onto the input (outputs.atlas_transfer: deformable or affine)."""
    return {
        "input": str(input_name),
        "model": model,
        "device": device,
        "host": {"platform": platform.platform(), "python": platform.python_version()},
        "threshold": {"value": float(threshold), "method": threshold_method},
        "thresholds_available": dict(thresholds_available),
        "min_size_mm3": float(min_size_mm3),
        "brain": {"source": brain_source, "volume_ml": brain_volume_ml},
        "quality": quality,
        "warnings": list(quality.get("warnings", [])) + _anatomy_warnings(anatomy_registration),
        "components": components,
        "anomalous_volume_ml": anomalous_volume_ml(components),
        "findings": findings,
        "input_to_template_ras": input_to_template_ras,
        "anatomy_registration": anatomy_registration,
        "preprocessing": preprocessing,
        "timings_s": {k: round(v, 3) for k, v in timings.items()},
    }


def _anatomy_warnings(anatomy_registration: str) -> list[str]:
    if anatomy_registration == "deformable":
        return []
    return ["The findings were named with the label atlas carried affinely (the deformable step failed): "
            "limbic, insular and ventricular names are less reliable; check them on the image."]


def exported_report(report: dict, *, input_name: str, components: list[dict], threshold: float | None = None,
                    min_size_mm3: float | None = None, findings: list[dict] | None = None) -> dict:
    """The detection's report as exported from Slicer: the input named as the user knows it
    (not the temporary file the detection ran on), the components (and, when given, the
    findings) of the segment as it is now, and the threshold and minimum size chosen in Slicer."""
    updated = dict(report)
    updated["input"] = str(input_name)
    if threshold is not None:
        updated["threshold"] = {"value": float(threshold), "method": "chosen in 3D Slicer"}
    if min_size_mm3 is not None:
        updated["min_size_mm3"] = float(min_size_mm3)
    updated["components"] = components
    updated["anomalous_volume_ml"] = anomalous_volume_ml(components)
    if findings is not None:
        updated["findings"] = findings
    updated["exported_from"] = "3D Slicer (the mask includes any manual edits of the segment)"
    return updated
