"""End-to-end seconds of `uadc detect` per volume, split by stage, as a user runs it (a fresh
process per call), plus peak memory and `uadc detect` over 10 inputs in one call.
Prints figures; no pass/fail.

    python Testing/benchmarks/bench_pipeline.py [--repeats 3] [--batch 10] [--model NAME|PATH] [--code DIR]

--code runs another checkout's core (the folder holding UADContrastiveLib), for before/after
figures taken back to back under the same load.

Stage splits come from the --json-progress records' arrival times (the time each stage
BEGAN), so each figure is "from this record to the next":
  start-up       process start to the first record (interpreter, CLI parsing)
  model load     imports of torch/MONAI and loading the weights (0 when it overlaps preprocessing)
  preprocess     registration, brain mask, model grid
  reconstruct    the network passes
  map            anomaly map, filtering, back onto the input grid, threshold
  write          writing the output files
  exit           the done record to the process's end
and the process's CPU seconds (user + system over all its threads), which move less than wall
time when other work shares the machine.
The report.json of each run gives the in-process timings too (overlapping model load shown there).
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DATA = Path(os.environ.get("UADC_DATA", REPO.parent / "shared" / "data"))
if not DATA.exists():
    DATA = Path("/work/shared/data")
# record stage -> the name of the span that begins with it
SPANS = {"load model": "model load", "preprocess": "preprocess", "reconstruct": "reconstruct",
         "anomaly map": "map", "write": "write", "done": "exit"}
ORDER = ("start-up", "model load", "preprocess", "reconstruct", "map", "write", "exit", "CPU")


CODE = REPO / "UADContrastive"


def environment() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(CODE), env.get("PYTHONPATH")) if p)
    return env


def run_detect(inputs: list[Path], model: str | None, extra: list[str] = ()) -> tuple[float, dict, dict]:
    """(wall seconds, {span: seconds}, report.json timings of the first input) of one `uadc detect`."""
    with tempfile.TemporaryDirectory() as out:
        command = [sys.executable, "-m", "UADContrastiveLib", "detect", *map(str, inputs), "--out-dir", out,
                   "--json-progress", *(["--model", model] if model else []), *extra]
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        child = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=environment(),
                                 text=True)
        marks = [("start-up", start)]
        for line in child.stdout:
            stage = json.loads(line).get("stage") if line.startswith("{") else None
            if stage in SPANS and SPANS[stage] != marks[-1][0]:
                marks.append((SPANS[stage], time.perf_counter()))
        stderr = child.stderr.read()
        if child.wait():
            raise RuntimeError(f"uadc detect failed:\n{stderr[-2000:]}")
        end = time.perf_counter()
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        spans: dict[str, float] = {"CPU": after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime}
        for (name, begin), (_, finish) in zip(marks, marks[1:] + [("end", end)]):
            spans[name] = spans.get(name, 0.0) + finish - begin
        report = next(Path(out).glob("*/report.json"), None)
        timings = json.loads(report.read_text())["timings_s"] if report else {}
    return end - start, spans, timings


def median_spans(runs: list[dict]) -> dict:
    return {name: statistics.median(r.get(name, 0.0) for r in runs) for name in ORDER}


def bench_volume(label: str, path: Path, repeats: int, model: str | None) -> None:
    run_detect([path], model)  # warm-up: file cache, Python bytecode
    results = [run_detect([path], model) for _ in range(repeats)]
    walls = [r[0] for r in results]
    spans = median_spans([r[1] for r in results])
    timings = {k: statistics.median(r[2].get(k, 0.0) for r in results) for k in results[0][2]}
    print(f"{label}: end to end median {statistics.median(walls):.2f} s "
          f"(min {min(walls):.2f}, max {max(walls):.2f}, {repeats} runs after a warm-up)")
    print(f"    CPU seconds of the process (user + system, all threads; median): {spans.pop('CPU'):.2f}")
    print("    by stage (median s): " + ", ".join(f"{k} {v:.2f}" for k, v in spans.items()))
    print("    in-process (report.json, median s): " + ", ".join(f"{k} {v:.2f}" for k, v in timings.items()))
    print(f"    everything except reconstruct: {statistics.median(w - r[1].get('reconstruct', 0.0) for w, r in zip(walls, results)):.2f} s")


def main() -> None:
    global CODE
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch", type=int, default=10, help="inputs in the one-call run (0 to skip)")
    parser.add_argument("--model", default=None)
    parser.add_argument("--code", type=Path, default=None, help="folder holding the UADContrastiveLib to run")
    args = parser.parse_args()
    CODE = (args.code or CODE).resolve()
    heads = sorted((DATA / "ixi_t1" / "images").glob("*_T1.nii.gz"))
    brats = DATA / "lesions" / "brats2013" / "brats_2013_pat0001_1" / "t1c.nii.gz"
    load = os.getloadavg()
    print(f"{CODE}: {time.strftime('%Y-%m-%d %H:%M:%S %Z')}, {os.cpu_count()} CPUs, load average "
          f"{load[0]:.2f} {load[1]:.2f} {load[2]:.2f}, torch threads default")
    bench_volume(f"IXI head {heads[0].name} (2 mm-ish head)", heads[0], args.repeats, args.model)
    bench_volume(f"BraTS {brats.parent.name} 240x240x155 1 mm", brats, args.repeats, args.model)
    if args.batch:
        wall, spans, _ = run_detect(heads[: args.batch], args.model)
        print(f"uadc detect over {args.batch} IXI heads in one call: {wall:.1f} s, {wall / args.batch:.2f} s per "
              f"volume (start-up + model load {spans['start-up'] + spans['model load']:.2f} s, once)")
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print(f"peak resident memory of any detect process: {peak:.0f} MiB")


if __name__ == "__main__":
    main()
