"""The Slicer side's only doorway into the core (UADContrastiveLib).

Every import of the core's heavier modules from the Slicer side goes through one function
here, so a move in the core touches one line. Imports happen when called:
loading the module in Slicer must not import the core's dependencies (some are installed
only on first use).
"""
from __future__ import annotations


def protocol():
    """The JSON-lines records and worker requests shared with `uadc detect` and `uadc worker`
    (standard library only: safe to load in Slicer's GUI process)."""
    from UADContrastiveLib import protocol

    return protocol


def errors():
    """The command line's exit codes (standard library only, like protocol)."""
    from UADContrastiveLib import errors

    return errors


def model_zoo():
    """The model registry: list_models(), read_card(path), model_dirs()."""
    from UADContrastiveLib import zoo

    return zoo


def component_thresholder_class():
    """ComponentThresholder(map, spacing)(threshold, min_size_mm3) -> (mask, components)."""
    from UADContrastiveLib.postprocess.components import ComponentThresholder

    return ComponentThresholder


def threshold_components(*args, **kwargs):
    from UADContrastiveLib.postprocess.components import threshold_components

    return threshold_components(*args, **kwargs)


def write_volume(*args, **kwargs):
    from UADContrastiveLib.io import write_volume

    return write_volume(*args, **kwargs)


def write_text(*args, **kwargs):
    from UADContrastiveLib.io import write_text

    return write_text(*args, **kwargs)


def exported_report(*args, **kwargs):
    """report.json as exported from Slicer (outputs.report.exported_report)."""
    from UADContrastiveLib.outputs.report import exported_report

    return exported_report(*args, **kwargs)


def region_describer():
    """describe_regions(anomaly_map, mask, anatomy, image, input_to_template) of the core's
    findings (outputs.findings), or None with a core that does not name regions yet."""
    try:
        from UADContrastiveLib.outputs.findings import describe_regions
    except ImportError:
        return None
    return describe_regions
