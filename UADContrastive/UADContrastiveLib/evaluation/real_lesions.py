"""Real lesion shapes placed into healthy heads with a T1 appearance (the report test set).

A donor lesion (a BraTS glioma, a white-matter lesion, a stroke) keeps its real shape and
size: the donor scan and the healthy recipient head are each registered to the template
exactly as `uadc detect` does, and the donor's mask is carried donor -> template ->
recipient in one resampling (an affine composite), at the recipient's own resolution, then
kept inside the recipient's DLMUSE brain. Inside the mask the recipient's intensities are
pulled towards a T1 lesion level relative to its white matter (gliomas by sub-region:
necrosis dark, tumour core darker than grey matter, oedema mildly hypointense; white-matter
lesions mildly hypointense; stroke hypointense), with a soft one-voxel edge and smooth
texture. No lesion here comes from the generator the encoder trains against
(`corruptions`), and every choice is made on the tuning donors, never the report donors.

With modality "T2" the recipients are the IXI T2 heads (the validation heads of the T2 cohort
folder, training.ixi_t2_cohort, registered to the T2 template; donors still to the T1 one:
both templates share the MNI grid) and the lesions get a T2 appearance relative to the brain's
median: gliomas bright (necrosis brightest, then oedema, tumour core), white-matter lesions
and stroke bright. The T1 sets are made exactly as before.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from ..datasets import Subject, brats_cases, is_validation, ixi_subjects, wml_cases
from ..io import image_like, read_mask, read_volume

# Lesion level as a share of the recipient's white-matter intensity, by donor kind and label.
T1_LEVELS = {
    "brats": {1: 0.30, 2: 0.80, 3: 0.55, 4: 0.55},  # necrosis, oedema, non-enhancing, enhancing core
    "wml": {None: 0.75},
    "stroke": {None: 0.50},
}
# T2: lesion level as a multiple of the recipient brain's median (grey and white matter alike
# in the IXI T2 heads), bright for every kind.
T2_LEVELS = {
    "brats": {1: 1.8, 2: 1.5, 3: 1.4, 4: 1.3},
    "wml": {None: 1.4},
    "stroke": {None: 1.5},
}
# (levels, percentile of the recipient's brain intensities the levels multiply)
APPEARANCES = {"T1": (T1_LEVELS, 90), "T2": (T2_LEVELS, 50)}
SET_SUFFIX = {"T1": "", "T2": "_t2"}  # the T1 sets keep their names
TEXTURE_SD = 0.05        # relative, smooth (sigma 2 voxels)
EDGE_SIGMA_VOXELS = 0.7  # soft lesion border
MIN_INSIDE_BRAIN = 0.8   # a placement keeping less of the lesion inside the brain is refused


@dataclass(frozen=True)
class Donor:
    id: str
    kind: str            # "brats", "wml" or "stroke"
    image: Path
    lesion: Path
    brain_mask: Path | None


def validation_part(subject_id: str) -> str:
    """'tuning' or 'report' for a validation subject (deterministic, about half each)."""
    digest = int(hashlib.sha256(f"part:{subject_id}".encode()).hexdigest(), 16)
    return "tuning" if digest % 2 == 0 else "report"


PART_RULE = "validation subject in the tuning part when int(sha256('part:' + id).hexdigest(), 16) is even, else report"


def donors(lesions_root: Path) -> list[Donor]:
    root = Path(lesions_root)
    found = [Donor(c.id, "brats", c.image, c.lesion_mask, c.brain_mask) for c in brats_cases(root / "brats2013")]
    found += [Donor(c.id, "wml", c.image, c.lesion_mask, c.brain_mask) for c in wml_cases(root / "wml10")]
    stroke = root / "isles22" / "sub-strokecase0009"
    if stroke.is_dir():
        found.append(Donor(stroke.name, "stroke", stroke / "dwi.nii.gz", stroke / "lesion_mask.nii.gz", None))
    return found


def donor_part(donor: Donor) -> str:
    """Donors are split like subjects: a lesion shape serves the tuning or the report set, never both.
    The only stroke goes to the report part."""
    if donor.kind == "stroke":
        return "report"
    return validation_part(donor.id)


def template_transform(image_path: Path, brain_mask_path: Path | None, template) -> sitk.Transform:
    """Model-grid point -> scan point, by the detection path's registration."""
    from ..preprocess.pipeline import preprocess

    image = read_volume(image_path)
    brain = read_mask(brain_mask_path, image) if brain_mask_path else None
    return preprocess(image, template, brain_mask=brain, source=str(image_path)).transform


def place_lesion(donor_labels: sitk.Image, donor_transform: sitk.Transform, recipient: sitk.Image,
                 recipient_transform: sitk.Transform) -> np.ndarray:
    """Donor label map on the recipient's grid ((z, y, x) int), through the template.

    The lesion's extent is its union indicator resampled with linear interpolation (> 0.5), so
    it keeps its shape and volume at the recipient's resolution; inside it each voxel takes the
    sub-region label whose own indicator is largest there."""
    composite = sitk.CompositeTransform([donor_transform, recipient_transform.GetInverse()])
    labels_array = sitk.GetArrayViewFromImage(donor_labels)

    def moved(indicator: np.ndarray) -> np.ndarray:
        image = sitk.GetImageFromArray(indicator.astype(np.float32))
        image.CopyInformation(donor_labels)
        return sitk.GetArrayFromImage(sitk.Resample(image, recipient, composite, sitk.sitkLinear, 0.0,
                                                    sitk.sitkFloat32))

    extent = moved(labels_array > 0) > 0.5
    values = [int(v) for v in np.unique(labels_array) if v > 0]
    out = np.zeros(extent.shape, np.int16)
    if len(values) == 1:
        out[extent] = values[0]
        return out
    scores = np.stack([moved(labels_array == v) for v in values])
    out[extent] = np.asarray(values, np.int16)[np.argmax(scores[:, extent], axis=0)]
    return out


def lesion_appearance(image: np.ndarray, brain: np.ndarray, labels: np.ndarray, kind: str,
                      rng: np.random.Generator, modality: str = "T1") -> np.ndarray:
    """The recipient's intensities with the lesion given a T1 or T2 look (see the module docstring)."""
    image = image.astype(np.float32)
    all_levels, percentile = APPEARANCES[modality]
    reference = float(np.percentile(image[brain], percentile))
    levels = all_levels[kind]
    target = np.zeros(image.shape, np.float32)
    for value in np.unique(labels[labels > 0]):
        level = levels.get(int(value), levels.get(None, 0.6))
        target[labels == value] = level * reference
    texture = ndimage.gaussian_filter(rng.standard_normal(image.shape).astype(np.float32), 2.0)
    texture *= TEXTURE_SD / max(float(texture.std()), 1e-6)
    weight = ndimage.gaussian_filter((labels > 0).astype(np.float32), EDGE_SIGMA_VOXELS)
    weight = np.where(labels > 0, 1.0, weight)
    # outside the lesion the soft edge blends towards the nearest lesion level
    _, nearest = ndimage.distance_transform_edt(labels == 0, return_indices=True)
    target = target[tuple(nearest)] * (1.0 + texture)
    out = (1.0 - weight) * image + weight * target
    return np.where(brain, out, image).astype(np.float32)


def make_case(donor: Donor, donor_transform: sitk.Transform, recipient: Subject,
              recipient_transform: sitk.Transform, seed: int, modality: str = "T1") -> tuple[sitk.Image, sitk.Image]:
    """(lesioned recipient image, lesion mask uint8), both on the recipient's grid."""
    image = read_volume(recipient.image)
    brain = sitk.GetArrayFromImage(read_mask(recipient.brain_mask, image)) > 0
    donor_labels = read_volume(donor.lesion, allow_constant=True)
    if donor.kind != "brats":  # 0/255 or 0/1 masks: one label
        donor_labels = sitk.Cast(donor_labels > 0, sitk.sitkUInt8)
    labels = place_lesion(sitk.Cast(donor_labels, sitk.sitkUInt8), donor_transform, image, recipient_transform)
    inside = (labels > 0) & brain
    placed = int((labels > 0).sum())
    if placed == 0 or inside.sum() < MIN_INSIDE_BRAIN * placed:
        raise ValueError(f"donor {donor.id} lands {inside.sum()}/{placed} voxels inside {recipient.id}'s brain")
    labels = np.where(brain, labels, 0)
    rng = np.random.default_rng(seed)
    lesioned = lesion_appearance(sitk.GetArrayFromImage(image), brain, labels, donor.kind, rng, modality)
    return image_like(lesioned, image), image_like((labels > 0).astype(np.uint8), image)


def healthy_parts(ixi_root: Path) -> dict[str, list[Subject]]:
    validation = [s for s in ixi_subjects(ixi_root) if is_validation(s.id)]
    return {part: [s for s in validation if validation_part(s.id) == part] for part in ("tuning", "report")}


def t2_healthy_parts(cohort_folder: Path) -> dict[str, list[Subject]]:
    """The tuning and report heads of the IXI T2 cohort folder: its validation scans by the split
    `uadc train` makes of it, with their carried brain masks."""
    from ..datasets import split
    from ..training.cohort import read_cohort

    _, validation = split(read_cohort(cohort_folder).subjects)
    return {part: [s for s in validation if validation_part(s.id) == part] for part in ("tuning", "report")}


TUNING_RECIPIENTS_PER_DONOR = 3


def part_pairs(part: str, part_donors: list[Donor], recipients: list[Subject]) -> list[tuple[Donor, Subject]]:
    """(donor, recipient) pairs of a part: in the report part every donor lands in every recipient
    (about 100 cases: the statistical power of the published per-kind comparison); in the tuning
    part, where every choice and every training checkpoint is scored, each donor lands in three
    recipients taken in turn."""
    if part == "report":
        return [(donor, recipient) for donor in part_donors for recipient in recipients]
    count = min(TUNING_RECIPIENTS_PER_DONOR, len(recipients))
    return [(donor, recipients[(index * count + k) % len(recipients)])
            for index, donor in enumerate(part_donors) for k in range(count)]


def pair_seed(donor: Donor, recipient: Subject) -> int:
    """The lesion texture's seed: the same case whatever other pairs a set holds."""
    return int(hashlib.sha256(f"{donor.id}>{recipient.id}".encode()).hexdigest(), 16) % 2**32


def write_real_shape_sets(data: Path, out: Path, template=None, log=print, modality: str = "T1") -> dict[str, Path]:
    """Write <part>_real_shapes.csv and <part>_healthy.csv (part = tuning, report) under `out`, with
    the lesioned heads and masks in out/images. The donors of a part land in recipients of the
    same part as `part_pairs` pairs them; refused placements are logged and skipped. With
    modality "T2" the recipients are the IXI T2 heads (written as a cohort folder into
    out/ixi-t2-cohort) and the lesions look T2."""
    from ..io import write_volume
    from ..preprocess.templates import T2_TEMPLATE, load_template
    from .sets import healthy_case, write_cases_csv

    template = template or load_template()
    out = Path(out)
    (out / "images").mkdir(parents=True, exist_ok=True)
    recipient_template = template
    if modality == "T2":
        from ..training.ixi_t2_cohort import write_ixi_t2_folder

        write_ixi_t2_folder(Path(data), out / "ixi-t2-cohort")
        parts = t2_healthy_parts(out / "ixi-t2-cohort")
        recipient_template = load_template(name=T2_TEMPLATE)
    else:
        parts = healthy_parts(Path(data) / "ixi_t1")
    all_donors = donors(Path(data) / "lesions")
    transforms: dict[str, sitk.Transform] = {}
    paths = {}
    for part, recipients in parts.items():
        rows = []
        part_donors = [d for d in all_donors if donor_part(d) == part]
        pairs = part_pairs(part, part_donors, recipients)
        for donor, recipient in pairs:
            for key, image, brain, registered_to in ((donor.id, donor.image, donor.brain_mask, template),
                                                     (recipient.id, recipient.image, None, recipient_template)):
                if key not in transforms:
                    transforms[key] = template_transform(image, brain, registered_to)
            try:
                lesioned, mask = make_case(donor, transforms[donor.id], recipient, transforms[recipient.id],
                                           pair_seed(donor, recipient), modality)
            except ValueError as error:
                log(f"skipped: {error}")
                continue
            case = f"{recipient.id}+{donor.kind}-{donor.id}"
            image_path = write_volume(lesioned, out / "images" / f"{case}.nii.gz")
            mask_path = write_volume(mask, out / "images" / f"{case}_lesion.nii.gz")
            rows.append({"id": case, "image": image_path, "lesion_mask": mask_path, "brain_mask": "",
                         "dataset": f"{part}_real_shapes{SET_SUFFIX[modality]}"})
            log(f"{part}: {case} ({int(sitk.GetArrayViewFromImage(mask).sum())} lesion voxels)")
        healthy = [healthy_case(recipient, out / "images", f"{part}_healthy{SET_SUFFIX[modality]}")
                   for recipient in recipients]
        for name, table in ((f"{part}_real_shapes{SET_SUFFIX[modality]}", rows),
                            (f"{part}_healthy{SET_SUFFIX[modality]}", healthy)):
            paths[name] = out / f"{name}.csv"
            write_cases_csv(paths[name], table)
    return paths
