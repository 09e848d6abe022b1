"""`uadc template` (maintainers): rebuild a shipped whole-head template from IXI training subjects:
the T1 one and its label atlas, or with `--modality T2` the T2 one from the IXI T2 cohort folder."""
from __future__ import annotations

from pathlib import Path

from ..errors import InputError


def add_parser(sub) -> None:
    p = sub.add_parser("template", help="(maintainers) rebuild the whole-head template and its DLMUSE label atlas from IXI training subjects")
    p.add_argument("--data", required=True,
                   help="../shared/data/ixi_t1, or with --modality T2 the IXI T2 cohort folder "
                        "(python -m UADContrastiveLib.training.ixi_t2_cohort)")
    p.add_argument("--modality", default="T1", choices=["T1", "T2"], type=str.upper)
    p.add_argument("--count", type=int, default=40)
    p.add_argument("--out", default=None)


def run(args) -> int:
    """Rebuild a shipped template from the first N training subjects: the T1 template and its label
    atlas from the IXI T1 folder, or (`--modality T2`) the T2 head template from a cohort folder of
    T2 heads with brain masks (training.ixi_t2_cohort writes one)."""
    from ..errors import EXIT_OK
    from ..preprocess.template_build import build_template
    from ..preprocess.templates import SHIPPED_TEMPLATE, T2_TEMPLATE, TEMPLATES
    from ..progress import Progress
    from ..protocol import TEMPLATE

    t2 = str(args.modality).upper() == "T2"
    pairs, dlmuse_dir = t2_template_pairs(Path(args.data), args.count) if t2 else t1_template_pairs(args)
    progress = Progress()
    name = T2_TEMPLATE if t2 else SHIPPED_TEMPLATE
    rebuild = (f"uadc template --modality T2 --data <ixi-t2 cohort folder> --count {args.count}" if t2
               else f"uadc template --data <ixi_t1> --count {args.count}")
    build_template(pairs, Path(args.out) if args.out else TEMPLATES, dlmuse_dir, name=name, rebuild=rebuild,
                   progress=lambda done, total: progress(TEMPLATE, done / total, f"{done}/{total} subjects"))
    progress.close()
    return EXIT_OK


def t1_template_pairs(args) -> tuple[list[tuple[Path, Path]], Path]:
    """(image, DLMUSE parcellation) of the first IXI T1 training subjects, and DLMUSE's label lists."""
    from ..datasets import ixi_subjects, split

    training, _ = split(ixi_subjects(Path(args.data)))
    pairs = [(s.image, s.brain_mask) for s in training[: args.count] if s.brain_mask is not None]
    if not pairs:  # an empty average would overwrite the shipped template with zeros
        raise InputError(args.data, "holds no IXI training subjects with parcellations "
                         "(images/*_T1.nii.gz and brain_parcellation/*_T1_DLMUSE.nii.gz).",
                         "Point --data to ../shared/data/ixi_t1.")
    dlmuse_dir = Path(args.data) / "dlmuse"
    if not (dlmuse_dir / "rois.csv").exists() or not (dlmuse_dir / "derived.csv").exists():
        raise InputError(dlmuse_dir, "lacks DLMUSE's label lists rois.csv and derived.csv (the atlas's names).",
                         "Point --data to ../shared/data/ixi_t1.")
    return pairs, dlmuse_dir


def t2_template_pairs(folder: Path, count: int) -> tuple[list[tuple[Path, Path]], None]:
    """(T2 head, brain mask) of the first training scans of a cohort folder, split as `uadc train`
    splits it (so the template never holds a validation head); no label atlas (the T1 one serves)."""
    from ..datasets import split
    from ..training.cohort import read_cohort

    training, _ = split(read_cohort(folder).subjects)
    pairs = [(s.image, s.brain_mask) for s in training[:count] if s.brain_mask is not None]
    if not pairs:
        raise InputError(folder, "holds no training scans with brain masks (<scan>_brain_mask.nii.gz).",
                         "Write the IXI T2 cohort with `python -m UADContrastiveLib.training.ixi_t2_cohort`.")
    return pairs, None
