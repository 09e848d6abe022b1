"""The IXI T2 heads of ../shared/data as a user's own cohort: a plain folder `uadc train --data`
reads like any site's scans.

For each `ixi_t2/images/<ID>_T2.nii.gz` the folder holds `<ID>_T2.nii.gz` (a symbolic link, or a
copy where links are not possible) and `<ID>_T2_brain_mask.nii.gz`: the subject's T1 DLMUSE
parcellation (> 0) carried onto the T2 grid through both images' affines (world coordinates,
nearest neighbour). The T2 scans are registered to their T1 but stored on a slightly rotated
grid, so copying the mask voxel by voxel would misplace it.

    python -m UADContrastiveLib.training.ixi_t2_cohort --data ../shared/data --out ~/ixi-t2-cohort
    uadc train --data ~/ixi-t2-cohort --modality T2 --config .../recipes/contrastive-diffusion-t2.yaml ...
"""
from __future__ import annotations

import argparse
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import SimpleITK as sitk

from ..errors import InputError

SUFFIX = "_T2.nii.gz"
MASK_SUFFIX = "_T2_brain_mask.nii.gz"


@dataclass(frozen=True)
class T2Head:
    id: str              # the IXI subject id, e.g. IXI102-HH-1416
    image: Path          # ixi_t2/images/<id>_T2.nii.gz
    parcellation: Path   # ixi_t1/brain_parcellation/<id>_T1_DLMUSE.nii.gz


def ixi_t2_heads(data: Path) -> list[T2Head]:
    """The T2 heads of `data` (../shared/data) that have a T1 DLMUSE parcellation, sorted by id."""
    images = sorted((Path(data) / "ixi_t2" / "images").glob(f"*{SUFFIX}"))
    heads = []
    for image in images:
        subject = image.name[: -len(SUFFIX)]
        parcellation = Path(data) / "ixi_t1" / "brain_parcellation" / f"{subject}_T1_DLMUSE.nii.gz"
        if parcellation.is_file():
            heads.append(T2Head(subject, image, parcellation))
    if not heads:
        raise InputError(data, "holds no IXI T2 heads with a T1 parcellation "
                         "(ixi_t2/images/*_T2.nii.gz and ixi_t1/brain_parcellation/*_T1_DLMUSE.nii.gz).",
                         "Point --data to ../shared/data.")
    return heads


def carry_mask(mask: sitk.Image, target: sitk.Image) -> sitk.Image:
    """`mask > 0` on `target`'s grid: each target voxel takes the mask value at its own world
    position (nearest neighbour, 0 outside the mask's field of view)."""
    binary = sitk.Cast(mask > 0, sitk.sitkUInt8)
    return sitk.Resample(binary, target, sitk.Transform(3, sitk.sitkIdentity), sitk.sitkNearestNeighbor, 0,
                         sitk.sitkUInt8)


def _link_or_copy(source: Path, destination: Path) -> None:
    if destination.is_symlink() or destination.exists():
        if destination.resolve() == source.resolve():
            return
        destination.unlink()
    try:
        os.symlink(source.resolve(), destination)
    except OSError:  # e.g. Windows without the privilege
        shutil.copyfile(source, destination)


def write_ixi_t2_folder(data: Path, out: Path, log=None) -> list[Path]:
    """Write the cohort folder (see the module docstring) into `out`; returns the scan paths.
    The shared data are only read; every mask is written atomically."""
    from ..io import read_volume, write_volume

    heads = ixi_t2_heads(Path(data))
    out = Path(out).expanduser()
    out.mkdir(parents=True, exist_ok=True)
    scans = []
    for head in heads:
        scan = out / f"{head.id}{SUFFIX}"
        _link_or_copy(head.image, scan)
        mask = carry_mask(sitk.ReadImage(str(head.parcellation)), read_volume(head.image))
        write_volume(mask, out / f"{head.id}{MASK_SUFFIX}")
        scans.append(scan)
        if log:
            log(f"{scan.name}: brain mask {int(sitk.GetArrayViewFromImage(mask).sum())} voxels")
    return scans


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True, type=Path, help="the shared data folder (../shared/data)")
    parser.add_argument("--out", required=True, type=Path, help="cohort folder to write (outside the repository)")
    args = parser.parse_args(argv)
    scans = write_ixi_t2_folder(args.data, args.out, log=print)
    print(f"{len(scans)} T2 heads with carried brain masks in {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
