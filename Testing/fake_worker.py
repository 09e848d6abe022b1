"""A stand-in for `uadc worker` that speaks its protocol in milliseconds (no torch, no model),
for the Slicer side's tests. Run as a script: `python fake_worker.py`.

The request's --model picks the behaviour: "slow" starts a grandchild and sleeps (for Cancel),
"crash" dies mid-request, "bad-input" and "unknown" fail as detect and the worker report it;
any other answers at once, writing a result folder on the input's
grid when the input exists (the widget's input.nrrd). FAKE_WORKER_MODE=die exits before it is
ready (a worker that cannot start); FAKE_WORKER_MODE=leave exits right after it is ready
without reading (a worker that timed out just as a request came).
"""
import json
import os
import subprocess
import sys
import time

LOADS = []


def emit(**record):
    print(json.dumps(record), flush=True)


def write_results(input_path, result_dir):
    import numpy as np
    import SimpleITK as sitk

    image = sitk.ReadImage(input_path)
    anomaly_map = np.zeros(sitk.GetArrayViewFromImage(image).shape, np.float32)
    anomaly_map[2:5, 2:5, 2:5] = 2.0
    os.makedirs(result_dir, exist_ok=True)
    for name, array in (("healthy.nii.gz", anomaly_map * 0 + 100), ("anomaly_map.nii.gz", anomaly_map),
                        ("anomaly_mask.nii.gz", (anomaly_map > 0.5).astype(np.uint8))):
        written = sitk.GetImageFromArray(array)
        written.CopyInformation(image)
        sitk.WriteImage(written, os.path.join(result_dir, name))
    with open(os.path.join(result_dir, "report.json"), "w", encoding="utf-8") as report:
        json.dump({"threshold": {"value": 0.5, "method": "calibrated"}, "device": "cpu", "warnings": [],
                   "thresholds_available": {"fpr_1%": 0.5}, "min_size_mm3": 0.0, "components": []}, report)


def answer(request):
    rid, arguments = request["id"], request["detect"]
    options = dict(zip(arguments, arguments[1:]))
    model, input_path = options.get("--model", ""), arguments[0]
    print(f"fake worker: request {rid}", file=sys.stderr, flush=True)
    emit(stage="load model", fraction=1.0 if LOADS else 0.0, message="", model_reused=bool(LOADS),
         models_loaded=1, request=rid)
    LOADS.append(model)
    if model == "slow":
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
        emit(stage="reconstruct", fraction=0.1, message="", child_pid=child.pid, request=rid)
        time.sleep(60)
    if model == "bad-input":  # as detect reports an input it cannot read
        emit(stage="info", fraction=0.0, message=f"uadc: error: {input_path}: not a 3D volume", request=rid)
        emit(stage="done", fraction=1.0, message="0 of 1 done", outputs={input_path: None}, failed=1,
             exit_code=2, request=rid)
        return
    if model == "unknown":  # as the worker reports a request that cannot run at all
        emit(stage="error", fraction=1.0, message="unknown: is neither a model folder nor a known model name.",
             exit_code=2, request=rid)
        return
    if model == "crash":
        print("RuntimeError: boom in the worker", file=sys.stderr, flush=True)
        sys.exit(3)
    emit(stage="reconstruct", fraction=0.5, message="half", request=rid)
    stem = os.path.basename(input_path).split(".")[0]
    result_dir = os.path.join(options["--out-dir"], stem)
    if os.path.exists(input_path):
        write_results(input_path, result_dir)
    emit(stage="done", fraction=1.0, message="1 of 1 done", outputs={input_path: result_dir}, failed=0,
         exit_code=0, request=rid)


def main():
    mode = os.environ.get("FAKE_WORKER_MODE", "")
    if mode == "die":
        sys.exit("ModuleNotFoundError: No module named 'torch'")
    emit(stage="ready", fraction=0.0, message="fake worker ready", pid=os.getpid())
    if mode == "leave":
        return
    for line in iter(sys.stdin.readline, ""):
        request = json.loads(line)
        if request.get("quit"):
            return
        answer(request)


if __name__ == "__main__":
    main()
