"""`uadc template` (maintainers): rebuild a shipped whole-head template from IXI training subjects:
the T1 one and its label atlas, or with `--modality T2` the T2 one from the IXI T2 cohort folder."""
from __future__ import annotations


def add_parser(sub) -> None:
    p = sub.add_parser("template", help="(maintainers) rebuild the whole-head template and its DLMUSE label atlas from IXI training subjects")
    p.add_argument("--data", required=True,
                   help="../shared/data/ixi_t1, or with --modality T2 the IXI T2 cohort folder "
                        "(python -m UADContrastiveLib.training.ixi_t2_cohort)")
    p.add_argument("--modality", default="T1", choices=["T1", "T2"], type=str.upper)
    p.add_argument("--count", type=int, default=40)
    p.add_argument("--out", default=None)


def run(args) -> int:
    from ..preprocess.template_build import run_template

    return run_template(args)
