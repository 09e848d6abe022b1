"""End-to-end seconds of `uadc detect` per volume, split by stage, as a user runs it (a fresh
process per call), with each process's CPU seconds and peak memory; then `uadc detect` over N
inputs in one call (the model loads once) against N separate calls. Prints two tables; no pass/fail.

    python Testing/benchmarks/bench_pipeline.py [--repeats 3] [--batch 10] [--model NAME|PATH] [--code DIR]

--code runs another checkout's core (the folder holding UADContrastiveLib), for before/after
figures taken back to back under the same load. Say under what load figures were taken: the
header prints the load average, and the CPU seconds move much less than wall time when other
work shares the machine.

Stage splits come from the --json-progress records' arrival times (the time each stage
BEGAN), so each figure is "from this record to the next":
  start-up       process start to the first record (interpreter, imports, CLI parsing)
  set-up, read   the "load model" record (the model load starts in a thread) to "preprocess":
                 template, imports of the image libraries, reading the input
  preprocess     registration, brain mask, model grid, and any wait for the model load
  reconstruct    the network passes
  map            anomaly map, filtering, back onto the input grid, threshold
  write          writing the output files
  exit           the done record to the process's end
The rows marked "in-process" are the report.json timings of the same runs; model_wait there is
how long detection waited for the model load after preprocessing (0 when fully overlapped).
"""
from __future__ import annotations

import argparse
import json
import os
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
SPANS = {"load model": "set-up, read", "preprocess": "preprocess", "reconstruct": "reconstruct",
         "anomaly map": "map", "write": "write", "done": "exit"}
STAGES = ("start-up", "set-up, read", "preprocess", "reconstruct", "map", "write", "exit")
IN_PROCESS = ("registration", "preprocess", "model_wait", "reconstruct", "anomaly_map", "threshold")

CODE = REPO / "UADContrastive"


def environment() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(CODE), env.get("PYTHONPATH")) if p)
    return env


def run_detect(inputs: list[Path], model: str | None) -> dict:
    """One `uadc detect` in a fresh process: {"wall", "cpu", "peak_mib", "spans", "timings"}."""
    with tempfile.TemporaryDirectory() as out:
        command = [sys.executable, "-m", "UADContrastiveLib", "detect", *map(str, inputs), "--out-dir", out,
                   "--json-progress", *(["--model", model] if model else [])]
        start = time.perf_counter()
        with tempfile.TemporaryFile("w+") as errors:
            child = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=errors, env=environment(), text=True)
            marks = [("start-up", start)]
            for line in child.stdout:
                stage = json.loads(line).get("stage") if line.startswith("{") else None
                if stage in SPANS and SPANS[stage] != marks[-1][0]:
                    marks.append((SPANS[stage], time.perf_counter()))
            # wait4, not wait: it gives this child's own CPU time and peak memory
            _, status, usage = os.wait4(child.pid, 0)
            end = time.perf_counter()
            child.returncode = os.waitstatus_to_exitcode(status)
            if child.returncode:
                errors.seek(0)
                raise RuntimeError(f"uadc detect failed:\n{errors.read()[-2000:]}")
        spans: dict[str, float] = {}
        for (name, begin), (_, finish) in zip(marks, marks[1:] + [("end", end)]):
            spans[name] = spans.get(name, 0.0) + finish - begin
        report = next(Path(out).glob("*/report.json"), None)
        timings = {}
        if report:
            data = json.loads(report.read_text())
            timings = {**data["timings_s"], **data.get("preprocessing", {}).get("timings_s", {})}
    return {"wall": end - start, "cpu": usage.ru_utime + usage.ru_stime, "peak_mib": usage.ru_maxrss / 1024,
            "spans": spans, "timings": timings}


def bench_volume(path: Path, repeats: int, model: str | None) -> dict:
    """Median figures over `repeats` runs after a warm-up (file cache, bytecode)."""
    run_detect([path], model)
    runs = [run_detect([path], model) for _ in range(repeats)]
    median = {"wall": statistics.median(r["wall"] for r in runs), "cpu": statistics.median(r["cpu"] for r in runs),
              "peak_mib": max(r["peak_mib"] for r in runs),
              "range": f"{min(r['wall'] for r in runs):.2f} / {max(r['wall'] for r in runs):.2f}"}
    for stage in STAGES:
        median[stage] = statistics.median(r["spans"].get(stage, 0.0) for r in runs)
    median["not network"] = statistics.median(r["wall"] - r["spans"].get("reconstruct", 0.0) for r in runs)
    for name in IN_PROCESS:
        median[f"{name} (in-process)"] = statistics.median(r["timings"].get(name, 0.0) for r in runs)
    return median


def print_table(title: str, columns: dict[str, dict], rows: list[tuple[str, str, str]]) -> None:
    """rows: (label, key, format). A markdown table, one column per volume."""
    print(f"\n{title}\n")
    print("| " + " | ".join(["", *columns]) + " |")
    print("|" + "---|" * (len(columns) + 1))
    for label, key, form in rows:
        print("| " + " | ".join([label, *(format(c[key], form) for c in columns.values())]) + " |")


def main() -> None:
    global CODE
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch", type=int, default=10, help="inputs in the one-call vs separate-calls run (0 to skip)")
    parser.add_argument("--model", default=None)
    parser.add_argument("--code", type=Path, default=None, help="folder holding the UADContrastiveLib to run")
    args = parser.parse_args()
    CODE = (args.code or CODE).resolve()
    heads = sorted((DATA / "ixi_t1" / "images").glob("*_T1.nii.gz"))
    brats = DATA / "lesions" / "brats2013" / "brats_2013_pat0001_1" / "t1c.nii.gz"
    load = os.getloadavg()
    print(f"code {CODE}; {time.strftime('%Y-%m-%d %H:%M:%S %Z')}; {os.cpu_count()} CPUs; load average "
          f"{load[0]:.2f} {load[1]:.2f} {load[2]:.2f} at the start; OMP_NUM_THREADS="
          f"{os.environ.get('OMP_NUM_THREADS', 'unset')}")
    columns = {"IXI head 120x120x90, 2 mm": bench_volume(heads[0], args.repeats, args.model),
               "BraTS 240x240x155, 1 mm": bench_volume(brats, args.repeats, args.model)}
    rows = [(f"{stage} (s)", stage, ".2f") for stage in STAGES]
    rows += [("**end to end (s, wall)**", "wall", ".2f"), ("fastest / slowest run (s)", "range", "s"),
             ("**everything except reconstruct (s)**", "not network", ".2f"),
             ("CPU s of the process (all threads)", "cpu", ".2f"), ("peak resident memory (MiB)", "peak_mib", ".0f")]
    rows += [(f"{name} (in-process, s)", f"{name} (in-process)", ".2f") for name in IN_PROCESS]
    print_table(f"uadc detect, one volume per process: median of {args.repeats} runs after a warm-up",
                columns, rows)
    if args.batch:
        inputs = heads[: args.batch]
        one_call = run_detect(inputs, args.model)
        separate = [run_detect([path], args.model) for path in inputs]
        calls = {f"one call, {len(inputs)} inputs": {"wall": one_call["wall"], "cpu": one_call["cpu"],
                                                      "peak_mib": one_call["peak_mib"]},
                 f"{len(inputs)} separate calls": {"wall": sum(r["wall"] for r in separate),
                                                   "cpu": sum(r["cpu"] for r in separate),
                                                   "peak_mib": max(r["peak_mib"] for r in separate)}}
        for figures in calls.values():
            figures["per volume"] = figures["wall"] / len(inputs)
        print_table(f"uadc detect over {len(inputs)} IXI heads: one call (the model loads once) vs a process each",
                    calls,
                    [("wall (s)", "wall", ".1f"), ("per volume (s)", "per volume", ".2f"),
                     ("CPU s", "cpu", ".1f"), ("peak resident memory (MiB)", "peak_mib", ".0f")])


if __name__ == "__main__":
    main()
