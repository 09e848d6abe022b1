"""The template's label atlas carried onto a scan's own grid, to name its findings.

The detection's affine registration places the atlas to lobe level; a deformable step on the
model grid (preprocess.deformable) then fits the template brain to the scan, and the atlas is
resampled once, nearest neighbour, through both (deformable, then the inverse affine) onto the
input grid. When the deformable step fails the atlas is carried affinely, as the report says.
Nothing here touches the anomaly map or the threshold.
"""
from __future__ import annotations

import SimpleITK as sitk

DEFORMABLE = "deformable"
AFFINE = "affine"


def atlas_on_input(pre, template, atlas: sitk.Image, flagged: sitk.Image | None = None) -> tuple[sitk.Image, str]:
    """(the atlas's labels on the input grid of `pre` (a preprocess.pipeline.Preprocessed), how
    they were carried: DEFORMABLE, or AFFINE when the deformable registration failed).

    `template` is the one the detection registered to (its brain is warped onto the scan; every
    shipped template lies on the atlas's grid); `flagged` the detection's anomaly mask on the input
    grid, whose voxels must not pull the deformation."""
    from ..preprocess.deformable import register_deformable

    ignore = None
    if flagged is not None:
        on_model = sitk.Resample(flagged, pre.model_input, pre.transform, sitk.sitkNearestNeighbor, 0)
        ignore = sitk.GetArrayViewFromImage(on_model) > 0
    try:
        warp = register_deformable(pre.model_input, template.brain, ignore)
    except RuntimeError:  # ITK's exceptions, and a non-finite field
        return pre.to_input_grid(atlas, sitk.sitkNearestNeighbor), AFFINE
    # A CompositeTransform applies its last transform first: input -> model grid -> template.
    input_to_template = sitk.CompositeTransform([warp, pre.input_to_model])
    return sitk.Resample(atlas, pre.input_reference, input_to_template, sitk.sitkNearestNeighbor, 0,
                         atlas.GetPixelID()), DEFORMABLE

