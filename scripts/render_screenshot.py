"""Render Resources/Screenshot.png from the real outputs of `uadc detect` (maintainers' tool).

3D Slicer cannot run on the build machines, so the picture is drawn with matplotlib:
the two views (input with the anomaly-map overlay and the segment outline; the healthy
reconstruction) show real voxels from a detection folder; the panel on the left is a
labelled mock-up of the module's controls, not a capture of Slicer.

    python scripts/render_screenshot.py DETECTION_FOLDER INPUT_IMAGE [--out Resources/Screenshot.png]
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import SimpleITK as sitk  # noqa: E402


def axial_lps(image: sitk.Image) -> np.ndarray:
    """(z, y, x) array in LPS order, so imshow shows radiological axial slices, anterior up."""
    return sitk.GetArrayFromImage(sitk.DICOMOrient(image, "LPS"))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("folder", type=Path)
    parser.add_argument("input", type=Path)
    parser.add_argument("--out", type=Path, default=Path("Resources/Screenshot.png"))
    args = parser.parse_args()
    image = axial_lps(sitk.ReadImage(str(args.input)))
    healthy = axial_lps(sitk.ReadImage(str(args.folder / "healthy.nii.gz")))
    amap = axial_lps(sitk.ReadImage(str(args.folder / "anomaly_map.nii.gz")))
    mask = axial_lps(sitk.ReadImage(str(args.folder / "anomaly_mask.nii.gz")))
    report = json.loads((args.folder / "report.json").read_text(encoding="utf-8"))
    z = int(np.argmax(mask.sum(axis=(1, 2)))) if mask.any() else int(np.argmax(amap.sum(axis=(1, 2))))
    low, high = np.percentile(image[image > image.min()], (1, 99.5))

    figure = plt.figure(figsize=(13, 5.2), facecolor="#2b2b2b")
    panel = figure.add_axes([0.01, 0.04, 0.25, 0.92])
    panel.set_facecolor("#3c3f41")
    panel.set_xticks([])
    panel.set_yticks([])
    lines = [
        ("UADContrastive", 14, "white"),
        ("MOCK-UP of the module panel (not a Slicer capture)", 8, "#ffb86c"),
        ("", 6, "white"),
        (f"Input volume:  {args.input.name}", 9, "white"),
        (f"Model:  {report['model']['name']} (T1)", 9, "white"),
        (f"Device:  {report['device']}", 9, "white"),
        ("[ Detect anomalies ]", 11, "#8be9fd"),
        ("", 6, "white"),
        (f"Threshold:  {report['threshold']['value']:.3f}", 9, "white"),
        ("presets: 1 % | 0.5 % | 0.1 % healthy FPR", 8, "#bbbbbb"),
        (f"Minimum region size:  {report['min_size_mm3']:.0f} mm\u00b3", 9, "white"),
        (f"Regions: {len(report['components'])}   total {report['anomalous_volume_ml']:.2f} mL", 9, "#50fa7b"),
        ("", 6, "white"),
        ("[ Export... ]   [ Show models folder ]", 9, "#8be9fd"),
    ]
    y = 0.95
    for text, size, colour in lines:
        panel.text(0.05, y, text, color=colour, fontsize=size, transform=panel.transAxes, va="top")
        y -= 0.065
    views = [("Input + anomaly map + 'Anomaly' segment", image, True), ("Healthy reconstruction (linked view)", healthy, False)]
    for index, (title, volume, overlay) in enumerate(views):
        axis = figure.add_axes([0.28 + index * 0.36, 0.04, 0.35, 0.86])
        axis.imshow(volume[z], cmap="gray", vmin=low, vmax=high)
        if overlay:
            # like a Slicer foreground with a lower window: only scores near the threshold are coloured
            shown = np.ma.masked_where(amap[z] < 0.5 * report["threshold"]["value"], amap[z])
            axis.imshow(shown, cmap="inferno", alpha=0.55, vmin=0, vmax=float(np.percentile(amap[amap > 0], 99.9)))
            if mask[z].any():
                axis.contour(mask[z], levels=[0.5], colors="#50fa7b", linewidths=1.2)
        axis.set_title(title, color="white", fontsize=10)
        axis.axis("off")
    figure.text(0.28, 0.005, "Views rendered with matplotlib from real `uadc detect` outputs "
                f"(axial slice {z}); 3D Slicer itself was not run.", color="#bbbbbb", fontsize=7)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(args.out, dpi=100, facecolor=figure.get_facecolor())
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
