"""Seconds per detection as the Slicer module runs it: a one-shot `uadc detect` process per
run (process.DetectionRun) against the warm worker (warm_worker.WarmWorker), first run (which
starts the worker) and later runs (model already loaded). Prints figures; no pass/fail.

    python Testing/benchmarks/bench_warm_worker.py [--repeats 3] [--model PATH] [--device cpu] [--data DIR]

The module's own classes run the processes, polled every --poll seconds as the module's timer
does, on an IXI head written as the uncompressed NRRD the module writes. One-shot and warm runs
alternate, so a change of load on the machine touches both alike. CPU seconds (user + system
of the detection process, all threads) move less than wall time when other work shares the
machine; compare relatively when it does.
"""
from __future__ import annotations

import argparse
import os
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "UADContrastive"))

from UADContrastiveSlicerLib import process, warm_worker  # noqa: E402

DEFAULT_MODEL = REPO / "UADContrastive" / "Resources" / "Models" / "contrastive-diffusion-t1"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a running process (Linux /proc; 0 elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime, stime


def peak_resident_mib(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def follow(run, poll_seconds: float) -> tuple[float, float]:
    """Start `run`; (wall seconds from start to finished, seconds to its first record)."""
    start, first = time.perf_counter(), None
    run.start()
    while not run.finished:
        if run.poll() and first is None:
            first = time.perf_counter() - start
        time.sleep(poll_seconds)
    run.poll()
    outcome = run.outcome()
    if not outcome.ok:
        raise RuntimeError(f"detection failed: {outcome.message}\n{run.stderr_tail[-3000:]}")
    return time.perf_counter() - start, first or 0.0


def one_shot(arguments, work_dir: Path, env: dict, poll_seconds: float) -> tuple[float, float, float]:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    run = process.DetectionRun(process.core_command("detect", arguments), work_dir, env=env, remove_work_dir=False)
    wall, first = follow(run, poll_seconds)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, first, after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime


def warm(worker, arguments, work_dir: Path, poll_seconds: float) -> tuple[float, float, float]:
    pid = worker.process.pid if worker.alive else None
    cpu_before = process_cpu_seconds(pid) if pid else 0.0
    run = warm_worker.WorkerRun(worker, arguments, work_dir, remove_work_dir=False)
    wall, first = follow(run, poll_seconds)
    if run.one_shot:
        raise RuntimeError(f"the worker did not take the request:\n{worker.stderr_since(0)[-3000:]}")
    return wall, first, process_cpu_seconds(worker.process.pid) - cpu_before


def describe(label: str, runs: list[tuple]) -> float:
    walls = [r[0] for r in runs]
    text = ", ".join(f"{w:.2f}" for w in walls)
    middle = statistics.median(walls)
    print(f"{label}: {'median ' if len(runs) > 1 else ''}{middle:.2f} s wall ({text}); first record after "
          f"{statistics.median(r[1] for r in runs):.2f} s; CPU {statistics.median(r[2] for r in runs):.2f} s")
    return middle


def main() -> None:
    import SimpleITK as sitk

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--model", default=str(DEFAULT_MODEL))
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    parser.add_argument("--poll", type=float, default=0.1, help="seconds between polls (the module's timer: 0.1)")
    args = parser.parse_args()
    head = sorted((args.data / "ixi_t1" / "images").glob("*_T1.nii.gz"))[0]
    env = process.child_environment()
    load = os.getloadavg()
    print(f"{time.strftime('%Y-%m-%d %H:%M:%S %Z')}: {os.cpu_count()} CPUs, load average {load[0]:.2f} "
          f"{load[1]:.2f} {load[2]:.2f}; OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}")
    with tempfile.TemporaryDirectory(prefix="uadc-bench-worker-") as folder:
        folder = Path(folder)
        image = sitk.ReadImage(str(head))
        input_path = folder / process.INPUT_NAME
        sitk.WriteImage(image, str(input_path), False)  # as scene.write_input_volume writes it
        print(f"input {head.name} {image.GetSize()} as uncompressed NRRD; model {Path(args.model).name} on "
              f"{args.device}; polled every {args.poll:g} s")
        counter = iter(range(10_000))

        def arguments():
            work_dir = folder / f"run{next(counter)}"
            work_dir.mkdir()
            return process.detect_arguments(input_path, work_dir / "out", args.model, args.device, None), work_dir

        one_shot(*arguments(), env, args.poll)  # warm-up: the OS file cache (torch's libraries, the weights)
        worker = warm_worker.WarmWorker(env=env, command=warm_worker.worker_command(idle_exit_seconds=None))
        try:
            first_warm = [warm(worker, *arguments(), args.poll)]
            cold, later = [], []
            for _ in range(args.repeats):  # alternate, so that load changes touch both alike
                cold.append(one_shot(*arguments(), env, args.poll))
                later.append(warm(worker, *arguments(), args.poll))
            assert worker.starts == 1, "the worker was restarted"
            peak = peak_resident_mib(worker.process.pid)
        finally:
            worker.stop()
    one = describe(f"one-shot `uadc detect` process per run ({args.repeats} runs)", cold)
    describe("warm worker, first run (starts the worker, loads the model)", first_warm)
    again = describe(f"warm worker, later runs ({args.repeats}, model already loaded)", later)
    print(f"saved per run after the first: {one - again:.2f} s of {one:.2f} s ({100 * (one - again) / one:.0f} %)")
    print(f"worker peak resident memory: {peak:.0f} MiB (stays while the worker is kept; it exits after "
          f"{warm_worker.IDLE_EXIT_SECONDS / 60:g} min idle in Slicer)")


if __name__ == "__main__":
    main()
