"""`uadc cohort --data PATH`: check a training cohort and preprocess it into the slice cache
ahead of `uadc train` (which reads it from there), e.g. in the background while something
else runs. Reports the scans detection would refuse, and the split by subject."""
from __future__ import annotations

from pathlib import Path

from ..errors import EXIT_OK


def add_parser(sub) -> None:
    p = sub.add_parser("cohort", help="preprocess a training cohort into the slice cache ahead of `uadc train`")
    p.add_argument("--data", required=True, type=Path,
                   help="healthy scans, as `uadc train --data`: a folder, a CSV or the IXI folder")
    p.add_argument("--cache", type=Path, default=None, help="cache root (default: the user cache)")
    p.add_argument("--modality", default="T1", help="contrast of the scans (detection's contrast check)")


def run(args) -> int:
    from ..training.cohort import prepare_cohort

    prepared = prepare_cohort({"cache_dir": args.cache, "modality": args.modality}, args.data)
    split = prepared.record["subjects"]
    print(f"{len(split['train'])} training, {len(split.get('statistics', []))} statistics and "
          f"{len(split['validation'])} validation scans cached in {prepared.cache_dir}")
    return EXIT_OK
