"""A one-page PNG overview of a detection: input, healthy reconstruction, anomaly map, mask.

Orientation: the arrays are on an LPS grid (outputs.write turns the input grid to LPS by
permuting and flipping axes), indexed (z, y, x), i.e. x
increases towards the patient's Left, y towards Posterior, z towards Superior. An axial
slice array[z] shown with imshow's default origin="upper" puts row y = 0 (most anterior) at
the top and column x = 0 (the patient's far right) on the viewer's left. That is the
radiological convention (patient's right on the viewer's left, anterior up) with no flip;
_axial() asserts the layout so a future change of grid convention cannot silently mirror it.
"""
from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np
from matplotlib import patheffects
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import ListedColormap
from matplotlib.figure import Figure

from ..io import atomic_path

MASK_COLOUR = (1.0, 0.8, 0.1)  # the segmentation's colour (segmentation.SEGMENT_COLOR)
ROWS = ("input", "healthy reconstruction", "anomaly map", "mask on input")


def choose_slices(mask: np.ndarray | None, anomaly_map: np.ndarray | None, brain: np.ndarray,
                  n_slices: int) -> list[int]:
    """Axial slices to show, in increasing z.

    With a non-empty mask: the slices with most mask voxels, kept apart by at least 1/n of the
    mask's z-extent so that they sample the lesions rather than show neighbouring slices. Without one:
    evenly spaced through the central 80 % of the brain (the extreme slices show little).
    """
    n_z = brain.shape[0]
    n_slices = max(1, min(int(n_slices), n_z))
    if mask is not None and np.any(mask):
        per_slice = np.count_nonzero(mask, axis=(1, 2)).astype(float)
        occupied = np.flatnonzero(per_slice)
        gap = max(1, (occupied[-1] - occupied[0] + 1) // n_slices)
        chosen: list[int] = []
        for z in np.argsort(-per_slice, kind="stable"):
            if per_slice[z] == 0 or len(chosen) == n_slices:
                break
            if all(abs(int(z) - c) >= gap for c in chosen):
                chosen.append(int(z))
        return sorted(chosen)
    occupied = np.flatnonzero(np.any(brain, axis=(1, 2)))
    if occupied.size == 0 and anomaly_map is not None:
        occupied = np.flatnonzero(np.any(anomaly_map != 0, axis=(1, 2)))
    low, high = (occupied[0], occupied[-1]) if occupied.size else (0, n_z - 1)
    span = high - low
    positions = np.linspace(low + 0.1 * span, high - 0.1 * span, n_slices)
    return sorted({int(round(p)) for p in positions})


def _axial(volume: np.ndarray, z: int) -> np.ndarray:
    """Slice z of a (z, y, x) LPS array, ready for imshow(origin="upper"): radiological, anterior up."""
    assert volume.ndim == 3, "overview arrays are (z, y, x)"
    return volume[z]


def _robust_range(values: np.ndarray) -> tuple[float, float]:
    values = values[np.isfinite(values)]
    if values.size == 0:
        return 0.0, 1.0
    low, high = (float(v) for v in np.percentile(values, (1.0, 99.5)))
    return (low, high) if high > low else (low, low + 1.0)


# Fixed margins in inches (title, row labels, colour bar). Matplotlib's constrained layout
# found the same arrangement but cost half of the overview's time (0.23 of 0.45 s on an IXI
# head), spent on every detection.
PANEL_INCHES, TOP_INCHES, LEFT_INCHES, BOTTOM_INCHES, RIGHT_INCHES, GAP_INCHES = 2.0, 0.75, 0.3, 0.1, 0.9, 0.06
CHARACTERS_PER_INCH = 13  # of the 9-point title


def _figure(columns: int, aspect: float):
    """A figure of len(ROWS) x columns image panels (width/height = aspect), with a colour-bar
    axis beside the anomaly-map row: (figure, axes[row][column], colour-bar axes)."""
    panel_width = PANEL_INCHES * aspect
    width = LEFT_INCHES + columns * panel_width + (columns - 1) * GAP_INCHES + RIGHT_INCHES
    height = TOP_INCHES + len(ROWS) * PANEL_INCHES + (len(ROWS) - 1) * GAP_INCHES + BOTTOM_INCHES
    figure = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(figure)
    axes = figure.subplots(len(ROWS), columns, squeeze=False, gridspec_kw={
        "left": LEFT_INCHES / width, "right": 1 - RIGHT_INCHES / width,
        "bottom": BOTTOM_INCHES / height, "top": 1 - TOP_INCHES / height,
        "wspace": GAP_INCHES / panel_width, "hspace": GAP_INCHES / PANEL_INCHES})
    map_row = axes[ROWS.index("anomaly map")][-1].get_position()
    colorbar_axes = figure.add_axes((map_row.x1 + 0.1 / width, map_row.y0 + 0.05 * map_row.height,
                                     0.12 / width, 0.9 * map_row.height))
    return figure, axes, colorbar_axes


def region_numbers(regions: np.ndarray, z: int) -> list[tuple[int, float, float]]:
    """(id, row, column) of every region in axial slice z: where its number goes (the centre of
    its voxels in that slice)."""
    section = _axial(regions, z)
    ids = np.unique(section[section > 0])
    rows, columns = np.nonzero(section)
    values = section[rows, columns]
    return [(int(i), float(rows[values == i].mean()), float(columns[values == i].mean())) for i in ids]


def write_overview_png(input_array: np.ndarray, healthy: np.ndarray, anomaly_map: np.ndarray,
                       mask: np.ndarray, path: str | Path, n_slices: int = 4,
                       title: str | None = None, brain: np.ndarray | None = None,
                       regions: np.ndarray | None = None, spacing: tuple[float, float] = (1.0, 1.0)) -> Path:
    """Write a PNG of a few axial slices: rows input / healthy / anomaly map (with colour bar) /
    mask over input. All arrays are (z, y, x) on one LPS grid whose in-plane voxel size is
    spacing = (x, y) mm (panels are drawn to scale); brain, if given, only
    guides the slice choice when the mask is empty; regions, if given, holds the findings' ids
    (0 elsewhere), which are written beside each region in the mask row. Written atomically."""
    arrays = [np.asarray(a, dtype=np.float32) for a in (input_array, healthy, anomaly_map)]
    mask = np.asarray(mask) > 0
    shapes = {a.shape for a in arrays} | {mask.shape}
    if len(shapes) != 1 or arrays[0].ndim != 3:
        raise ValueError(f"overview arrays must be 3D and of one shape, got {sorted(shapes)}")
    input_array, healthy, anomaly_map = arrays
    brain = (input_array != 0) if brain is None else (np.asarray(brain) > 0)
    slices = choose_slices(mask, anomaly_map, brain, n_slices)

    image_range = _robust_range(input_array[brain] if brain.any() else input_array)
    map_values = anomaly_map[brain] if brain.any() else anomaly_map
    map_top = float(np.percentile(map_values, 99.9)) if map_values.size else 1.0
    map_range = (0.0, map_top if map_top > 0 else 1.0)
    mask_colours = ListedColormap([MASK_COLOUR])

    height, width = input_array.shape[1:]
    figure, axes, colorbar_axes = _figure(len(slices), width * spacing[0] / (height * spacing[1]))
    # the panels have the section's physical aspect: each image fills its panel
    shown = {"aspect": "auto"}
    map_image = None
    for column, z in enumerate(slices):
        for row in range(len(ROWS)):
            ax = axes[row][column]
            ax.set_xticks([])
            ax.set_yticks([])
            if row == 0:
                ax.set_title(f"z = {z}", fontsize=8)
            if column == 0:
                ax.set_ylabel(ROWS[row], fontsize=8)
        axes[0][column].imshow(_axial(input_array, z), cmap="gray", vmin=image_range[0], vmax=image_range[1], **shown)
        axes[1][column].imshow(_axial(healthy, z), cmap="gray", vmin=image_range[0], vmax=image_range[1], **shown)
        map_image = axes[2][column].imshow(_axial(anomaly_map, z), cmap="inferno",
                                           vmin=map_range[0], vmax=map_range[1], **shown)
        axes[3][column].imshow(_axial(input_array, z), cmap="gray", vmin=image_range[0], vmax=image_range[1], **shown)
        axes[3][column].imshow(np.ma.masked_where(~_axial(mask, z), _axial(mask, z)),
                               cmap=mask_colours, alpha=0.6, vmin=0, vmax=1, interpolation="nearest", **shown)
        for number, row, col in ([] if regions is None else region_numbers(regions, z)):
            axes[3][column].text(col + 3, row - 3, str(number), color="white", fontsize=7, fontweight="bold",
                                 ha="left", va="bottom", clip_on=True,
                                 path_effects=[patheffects.withStroke(linewidth=1.5, foreground="black")])
    # Orientation letters on the first panel, so a reader need not trust the caption.
    for x, y, letter in ((0.03, 0.5, "R"), (0.97, 0.5, "L"), (0.5, 0.97, "A")):
        axes[0][0].text(x, y, letter, transform=axes[0][0].transAxes, color="yellow", fontsize=8,
                        ha="center", va="center")
    figure.colorbar(map_image, cax=colorbar_axes, label="anomaly")
    flagged = int(mask.sum())
    heading = title or "Anomaly detection overview"
    numbered = "" if regions is None else ", numbered as in the findings"
    # TOP_INCHES holds three lines: a figure of few columns is too narrow for the legend on one
    legend = f"{flagged} voxels flagged{numbered}; axial, radiological (patient right on the left), anterior up"
    lines = textwrap.wrap(legend, width=int(figure.get_figwidth() * CHARACTERS_PER_INCH))[:2]
    figure.suptitle("\n".join([heading, *lines]), fontsize=9, y=1 - 0.06 / figure.get_figheight(), va="top")
    path = Path(path)
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png")
    return path
