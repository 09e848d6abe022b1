"""`uadc template` (maintainers): rebuild the shipped whole-head template and its label atlas from IXI training subjects."""
from __future__ import annotations


def add_parser(sub) -> None:
    p = sub.add_parser("template", help="(maintainers) rebuild the whole-head template and its DLMUSE label atlas from IXI training subjects")
    p.add_argument("--data", required=True)
    p.add_argument("--count", type=int, default=40)
    p.add_argument("--out", default=None)


def run(args) -> int:
    from ..preprocess.template_build import run_template

    return run_template(args)
