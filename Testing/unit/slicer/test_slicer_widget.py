"""The module's Widget driven like a user would, with Slicer's real Python
(parameterNodeWrapper, ScriptedLoadableModule), slicer-core's real MRML scene and
segmentations, stand-in Qt widgets built from the .ui file, and a stand-in logic whose
detection replays a recorded `uadc detect --json-progress` run
(Testing/fixtures/detect_json_progress.jsonl, from the tiny test model).
"""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import types
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[3]
TESTING = REPO / "Testing"
MODULE_FILE = REPO / "UADContrastive" / "UADContrastive.py"
RECORDED_RUN = TESTING / "fixtures" / "detect_json_progress.jsonl"
sys.path.insert(0, str(TESTING))
sys.path.insert(0, str(REPO / "UADContrastive"))

import slicer_standins as standins  # noqa: E402

SHAPE_KJI = (12, 16, 20)
WARNING = "the input does not look T1-weighted (contrast between grey and white matter is low)"


def blob_map() -> np.ndarray:
    """27 voxels at 2.0 and, apart from them, 8 voxels at 1.0."""
    anomaly_map = np.zeros(SHAPE_KJI, np.float32)
    anomaly_map[2:5, 2:5, 2:5] = 2.0
    anomaly_map[8:10, 10:12, 14:16] = 1.0
    return anomaly_map


class ReplayLogic:
    """Mixin for the module's real logic: the child process is replaced by the recorded
    run, and its result folder is written on the input's own grid."""

    def __init__(self, tmp_path, scale=1.0):
        super().__init__()
        self.tmp_path = tmp_path
        self.scale = scale  # map values of the next run (tells runs apart)
        self.runs = []

    def startDeviceProbe(self):
        return answered_probe()

    def startDetection(self, inputVolume, model, device):
        import SimpleITK as sitk
        from UADContrastiveSlicerLib import geometry, process

        work = self.tmp_path / f"run{len(self.runs)}"
        result_dir = work / "out" / "input"
        result_dir.mkdir(parents=True)
        grid = geometry.sitk_from_volume(inputVolume)
        anomaly_map = blob_map() * self.scale
        for name, array in (("healthy.nii.gz", anomaly_map * 0 + 100), ("anomaly_map.nii.gz", anomaly_map),
                            ("anomaly_mask.nii.gz", (anomaly_map > 0.5).astype(np.uint8))):
            image = sitk.GetImageFromArray(array)
            image.CopyInformation(grid)
            sitk.WriteImage(image, str(result_dir / name))
        report = {"threshold": {"value": 0.5, "method": "calibrated"}, "device": "cpu", "warnings": [WARNING],
                  "thresholds_available": {"fpr_1%": 0.5, "fpr_0.5%": 1.5, "fpr_0.1%": 2.5},
                  "min_size_mm3": 0.0, "components": []}
        (result_dir / "report.json").write_text(json.dumps(report))
        input_path = work / process.INPUT_NAME
        lines = [line.replace("RESULT_DIR", str(result_dir)).replace("INPUT", str(input_path))
                 for line in RECORDED_RUN.read_text().splitlines()]
        run = process.DetectionRun(["uadc"], work, remove_work_dir=False)
        run.process = types.SimpleNamespace(returncode=None, poll=lambda: run.process.returncode)
        run.pending = lines
        self.runs.append(run)
        return run, input_path

    def showResults(self, results, opacity):
        self.shown = results


def answered_probe(record=None):
    """A device probe that has answered already (the real one runs a child Python)."""
    from UADContrastiveSlicerLib import options

    choices = options.device_choices_from_probe(record or {"torch": "2.9.0", "cuda": False})
    return types.SimpleNamespace(poll=lambda: choices, cancel=lambda: None)


def feed(run, count):
    """The child writes `count` more lines; it exits after the last one."""
    for line in run.pending[:count]:
        run._lines.put(line + "\n")
    run.pending = run.pending[count:]
    if not run.pending:
        run.process.returncode = 0


@pytest.fixture()
def env(monkeypatch, tmp_path):
    yield from widget_env(monkeypatch, lambda module: type(
        "UADContrastiveLogic", (ReplayLogic, module.UADContrastiveLogic), {})(tmp_path))


def widget_env(monkeypatch, make_logic):
    """The module's widget set up and entered, with the logic `make_logic(module)` returns."""
    pytest.importorskip("slicer", reason="slicer-core wheel not installed")
    pytest.importorskip("SimpleITK")
    with standins.isolated_modules():
        import slicer

        scene = slicer.vtkMRMLScene()
        standins.install(monkeypatch, scene)
        monkeypatch.setattr(slicer.util, "loadUI", standins.load_ui)
        monkeypatch.setattr(slicer.util, "childWidgetVariables", standins.child_widget_variables)
        monkeypatch.setattr(slicer.util, "confirmOkCancelDisplay", lambda *args, **kwargs: True)
        errors = []
        monkeypatch.setattr(slicer.util, "errorDisplay", lambda text, **kwargs: errors.append(text))
        monkeypatch.setattr(slicer, "modules", types.SimpleNamespace(
            uadcontrastive=types.SimpleNamespace(path=str(MODULE_FILE))), raising=False)
        module = standins.load_module_file(monkeypatch, MODULE_FILE)
        monkeypatch.setattr(module.dependencies, "missing_requirements", lambda: [])
        monkeypatch.setattr(module.dependencies, "SLICER_PYTHON_VERSION", "3.9")  # this test's Python
        monkeypatch.setattr(module.options, "model_choices",
                            lambda: [module.options.ModelChoice("tiny-test", "tiny-test (T1)", {})])
        logic = make_logic(module)
        moduleWidget = module.UADContrastiveWidget(standins.qMRMLWidget(), logic=logic)
        moduleWidget.setup()
        moduleWidget.enter()
        panel = moduleWidget.panel
        yield types.SimpleNamespace(slicer=slicer, scene=scene, module=module, moduleWidget=moduleWidget,
                                    widget=panel, logic=logic, ui=panel.ui, errors=errors)
        moduleWidget.cleanup()


def add_volume(env, name, offset=0.0):
    from UADContrastiveSlicerLib import geometry

    node = env.scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", name)
    matrix = np.diag([1.2, 0.9, 2.5, 1.0])
    matrix[:3, 3] = (-10.0 + offset, 20.0, 5.0)
    geometry.update_volume_from_array(node, np.full(SHAPE_KJI, 100.0, np.float32), matrix)
    return node


def detect(env, lines_per_poll=2):
    """Click Detect, let the recorded run arrive a few lines per timer tick."""
    env.ui.detectButton.click()
    assert not env.errors, env.errors
    run = env.logic.runs[-1]
    assert env.ui.detectButton.text == "Cancel"
    while env.widget._run is not None:
        feed(run, lines_per_poll)
        env.widget._pollTimer.fire()
    assert not env.errors, env.errors
    return run


def segment_count(env):
    from UADContrastiveSlicerLib import segments

    return segments.segment_voxel_count(env.widget._parameterNode.segmentation)


def test_the_widget_binds_and_preselects_the_input(env):
    volume = add_volume(env, "T1")
    env.widget.exit()
    env.widget.enter()
    assert env.widget._parameterNode.inputVolume is volume
    assert env.ui.inputSelector.currentNode() is volume
    assert env.ui.detectButton.enabled


def test_progress_never_moves_back_over_a_recorded_run(env):
    recorded = [json.loads(line) for line in RECORDED_RUN.read_text().splitlines()]
    raw = [r["fraction"] for r in recorded]
    assert any(b < a for a, b in zip(raw, raw[1:])), "the recorded run must restart fractions per stage"
    add_volume(env, "T1")
    env.widget.enter()
    env.ui.progressBar.values.clear()
    detect(env, lines_per_poll=1)
    shown = env.ui.progressBar.values
    assert len(shown) == len(recorded) + 1  # the reset to 0, then one value per line
    assert all(b >= a for a, b in zip(shown, shown[1:])), shown
    assert shown[-1] == 100 and shown[len(shown) // 2] > 0


def test_threshold_slider_changes_the_segment_and_reuses_the_thresholder(env, monkeypatch):
    from UADContrastiveLib.postprocess import components as postprocess

    built = []

    class CountingThresholder(postprocess.ComponentThresholder):
        def __init__(self, *args, **kwargs):
            built.append(1)
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(postprocess, "ComponentThresholder", CountingThresholder)
    add_volume(env, "T1")
    env.widget.enter()
    detect(env)
    p = env.widget._parameterNode
    assert p.threshold == 0.5 and segment_count(env) == 27 + 8
    assert env.ui.thresholdSlider.maximum >= 2.5 * 1.5  # calibrated range: every preset reachable

    for value, expected in ((1.5, 27), (0.5, 35), (2.5, 0)):
        env.ui.thresholdSlider.value = value  # the user drags the slider
        assert p.threshold == value
        env.widget._rethresholdTimer.fire()
        assert segment_count(env) == expected, value
    assert "No anomaly above this threshold" in env.ui.resultsLabel.text
    assert len(built) == 1, "every slider move rebuilt the thresholder (cache missed)"
    assert env.widget.logic.results(p) is env.widget.logic.results(p)


def test_report_device_and_warnings_are_shown(env):
    add_volume(env, "T1")
    env.widget.enter()
    detect(env)
    assert "Computed on: CPU" in env.ui.reportLabel.text
    assert "Warning: " + WARNING in env.ui.reportLabel.text


def test_a_new_input_gets_new_output_nodes(env):
    from UADContrastiveSlicerLib import geometry

    volume_a = add_volume(env, "A")
    volume_b = add_volume(env, "B", offset=7.0)
    env.widget.enter()
    env.ui.inputSelector.setCurrentNode(volume_a)
    detect(env)
    p = env.widget._parameterNode
    outputs_a = (p.healthyVolume, p.anomalyMapVolume, p.segmentation)
    map_a = geometry.array_from_volume(outputs_a[1]).copy()
    assert outputs_a[1].GetName() == "A anomaly map"
    for selector in (env.ui.healthySelector, env.ui.anomalyMapSelector):
        assert volume_a not in selector.selectableNodes()  # the input cannot be picked as an output

    env.ui.inputSelector.setCurrentNode(volume_b)  # the user switches the input
    assert (p.healthyVolume, p.anomalyMapVolume, p.segmentation) == (None, None, None)
    assert env.ui.resultsLabel.text == "No results yet." and not env.ui.resultsCollapsibleButton.enabled
    assert volume_b not in env.ui.anomalyMapSelector.selectableNodes()

    env.logic.scale = 3.0
    detect(env)
    outputs_b = (p.healthyVolume, p.anomalyMapVolume, p.segmentation)
    assert not set(map(id, outputs_b)) & set(map(id, outputs_a))
    assert outputs_b[1].GetName() == "B anomaly map"
    assert np.array_equal(geometry.array_from_volume(outputs_a[1]), map_a)  # A's results untouched
    assert all(node.GetScene() is env.scene for node in outputs_a)

    env.ui.inputSelector.setCurrentNode(volume_a)  # back to A: A's own results again
    assert (p.healthyVolume, p.anomalyMapVolume, p.segmentation) == outputs_a


def test_a_run_never_writes_into_another_inputs_outputs(env):
    """Even when the user picks A's outputs by hand while B is the input."""
    volume_a = add_volume(env, "A")
    volume_b = add_volume(env, "B", offset=3.0)
    env.widget.enter()
    env.ui.inputSelector.setCurrentNode(volume_a)
    detect(env)
    p = env.widget._parameterNode
    map_a = p.anomalyMapVolume
    env.ui.inputSelector.setCurrentNode(volume_b)
    env.ui.anomalyMapSelector.setCurrentNode(map_a)
    detect(env)
    assert p.anomalyMapVolume is not map_a and p.anomalyMapVolume.GetName() == "B anomaly map"


def test_too_old_a_slicer_is_refused_with_a_message(env, monkeypatch):
    add_volume(env, "T1")
    env.widget.enter()
    monkeypatch.setattr(env.module.dependencies, "SLICER_PYTHON_VERSION", "99.0")
    env.ui.detectButton.click()
    assert env.errors and "3D Slicer 5.10 or newer" in env.errors[-1]
    assert not env.logic.runs


def test_layout_is_registered_when_slicer_starts(env):
    layout_logic = env.slicer.vtkMRMLLayoutLogic()
    layout_logic.SetMRMLScene(env.scene)
    env.slicer.app.layout_manager = types.SimpleNamespace(layoutLogic=lambda: layout_logic)
    parent = types.SimpleNamespace(path=str(MODULE_FILE))
    env.module.UADContrastive(parent)
    from UADContrastiveSlicerLib import layout

    assert not layout_logic.GetLayoutNode().IsLayoutDescription(layout.LAYOUT_ID)
    env.slicer.app.startupCompleted.emit()  # Slicer's signal once every module is loaded
    assert layout_logic.GetLayoutNode().IsLayoutDescription(layout.LAYOUT_ID)


def test_on_reload_reloads_the_helpers_then_the_module(env, monkeypatch):
    reloaded = []
    monkeypatch.setattr(env.slicer.util, "reloadScriptedModule", lambda name: reloaded.append(name))
    import UADContrastiveSlicerLib.stages as stages

    before = stages.StageProgress
    env.moduleWidget.onReload()
    assert reloaded == ["UADContrastive"]
    assert sys.modules["UADContrastiveSlicerLib.stages"].StageProgress is not before


def test_self_test_needs_no_torch_model_or_network_and_reports_a_skip_as_a_skip(env, monkeypatch):
    import unittest

    case = env.module.UADContrastiveTest()
    shown = []
    monkeypatch.setattr(case, "delayDisplay", lambda message, *args, **kwargs: shown.append(message))
    monkeypatch.setattr(env.module.options, "model_choices", lambda: [])
    with pytest.raises(unittest.SkipTest, match="detection not tested: no model installed"):
        case.runTest()
    assert "Results without a model: passed" in shown
    assert any(message.startswith("Detection test skipped: no model installed") for message in shown)


ENTER_WITHOUT_TORCH = """
import sys, types
sys.path[:0] = [{testing!r}, {module_dir!r}]
import pytest
import slicer_standins as standins
with pytest.MonkeyPatch.context() as monkeypatch:
    import slicer
    scene = slicer.vtkMRMLScene()
    standins.install(monkeypatch, scene)
    monkeypatch.setattr(slicer.util, "loadUI", standins.load_ui)
    monkeypatch.setattr(slicer.util, "childWidgetVariables", standins.child_widget_variables)
    monkeypatch.setattr(slicer, "modules", types.SimpleNamespace(
        uadcontrastive=types.SimpleNamespace(path={module_file!r})), raising=False)
    module = standins.load_module_file(monkeypatch, __import__("pathlib").Path({module_file!r}))
    widget = module.UADContrastiveWidget(standins.qMRMLWidget())
    widget.setup()
    widget.enter()  # the real logic: probes the devices in a child Python
    import time
    while widget.panel._probe is not None:  # what Slicer's event loop does: the poll timer ticks
        widget.panel._pollTimer.fire()
        time.sleep(0.05)
    combo = widget.panel.ui.deviceComboBox
    labels = [combo._items[i][0] for i in range(combo.count())]
    print("TORCH_IN_GUI_PROCESS", "torch" in sys.modules)
    print("DEVICES", labels)
    widget.cleanup()
"""


def test_entering_the_module_probes_devices_without_importing_torch():
    """In a fresh interpreter (this one may have torch loaded by other tests)."""
    pytest.importorskip("slicer", reason="slicer-core wheel not installed")
    standins.require_reference()
    code = textwrap.dedent(ENTER_WITHOUT_TORCH).format(
        testing=str(TESTING), module_dir=str(REPO / "UADContrastive"), module_file=str(MODULE_FILE))
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "TORCH_IN_GUI_PROCESS False" in result.stdout
    devices = next(line for line in result.stdout.splitlines() if line.startswith("DEVICES"))
    assert "Auto (" in devices and "CPU" in devices and "not installed" not in devices  # torch answered
    assert "checking" not in devices


RELEASE_AND_ANSWER = """
import json, os, sys, time
while not os.path.exists(sys.argv[1]):
    time.sleep(0.02)
print(json.dumps({"torch": "2.9.0", "cuda": True, "gpu": "Test GPU", "gpu_memory_gb": 8.0}), flush=True)
"""


def test_the_device_probe_never_blocks_the_widget(env, monkeypatch, tmp_path):
    """The probe's child answers only once the test releases it, i.e. after enter() returned:
    enter() cannot have waited for it."""
    from UADContrastiveSlicerLib.device_probe import DeviceProbe

    release = tmp_path / "release"
    probes = []

    def start_probe():
        probe = DeviceProbe(command=[sys.executable, "-c", RELEASE_AND_ANSWER, str(release)])
        probe.start()
        probes.append(probe)
        return probe

    env.widget._deviceChoices = []  # as on the first visit of the module
    monkeypatch.setattr(env.logic, "startDeviceProbe", start_probe)
    env.widget.enter()
    combo = env.ui.deviceComboBox
    assert len(probes) == 1 and probes[0].process.poll() is None  # the child still waits
    assert combo.currentText == "Auto (checking devices...)" and env.widget._pollTimer.isActive()
    env.widget._pollTimer.fire()
    assert combo.currentText == "Auto (checking devices...)"  # a tick does not wait either

    release.touch()
    run_until(env, lambda: env.widget._probe is None)
    assert [combo._items[i][0] for i in range(combo.count())] == [
        "Auto (GPU: Test GPU, 8.0 GB)", "GPU: Test GPU, 8.0 GB", "CPU"]
    assert env.ui.cpuWarningLabel.text == ""  # a GPU: no CPU warning
    env.widget.enter()
    assert len(probes) == 1  # asked once per session


def run_until(env, condition, timeout=60.0):
    """Let the poll timer tick, as Slicer's event loop would, until `condition()`."""
    import time

    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        env.widget._pollTimer.fire()
        time.sleep(0.02)


def test_an_output_node_picked_by_the_user_is_kept_across_module_visits(env):
    volume = add_volume(env, "T1")
    mine = env.scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "my map")
    env.widget.enter()
    env.ui.inputSelector.setCurrentNode(volume)
    env.ui.anomalyMapSelector.setCurrentNode(mine)
    env.widget.exit()
    env.widget.enter()
    assert env.widget._parameterNode.anomalyMapVolume is mine
    detect(env)
    assert env.widget._parameterNode.anomalyMapVolume is mine  # filled, now marked as T1's


def test_closing_the_scene_drops_the_results(env):
    add_volume(env, "T1")
    env.widget.enter()
    detect(env)
    assert env.logic._resultsCache
    env.scene.Clear(0)  # File > Close Scene
    assert not env.logic._resultsCache
    assert env.widget._parameterNode is not None and env.widget._parameterNode.inputVolume is None
    assert env.ui.resultsLabel.text == "No results yet." and not env.ui.detectButton.enabled


# ----------------------------------------------------------------------------- the warm worker
FAKE_WORKER = TESTING / "fake_worker.py"  # speaks `uadc worker`'s protocol in milliseconds


@pytest.fixture()
def worker_env(monkeypatch):
    """The module's real logic (input written, results loaded), its warm worker running the
    protocol stand-in instead of `uadc worker` (no torch, no model)."""
    def real_logic(module):
        from UADContrastiveSlicerLib import warm_worker

        monkeypatch.setattr(warm_worker, "worker_command",
                            lambda *args, **kwargs: [sys.executable, str(FAKE_WORKER)])
        logic = module.UADContrastiveLogic()
        logic.startDeviceProbe = answered_probe
        logic.showResults = lambda results, opacity: None  # the layout needs Slicer's views
        return logic

    yield from widget_env(monkeypatch, real_logic)


def run_until_done(env, timeout=60.0):
    """Let the poll timer tick (as Slicer's event loop would) until the run has ended."""
    import time

    deadline = time.monotonic() + timeout
    while env.widget._run is not None:
        assert time.monotonic() < deadline, "the detection did not end"
        env.widget._pollTimer.fire()
        time.sleep(0.02)
    assert not env.errors, env.errors


def poll_until_acknowledged(env, run, timeout=60.0):
    import time

    deadline = time.monotonic() + timeout
    while not run.acknowledged:
        assert time.monotonic() < deadline, "the worker never took the request"
        env.widget._pollTimer.fire()
        time.sleep(0.02)


def worker_pid(env):
    return env.logic._worker.process.pid


def test_detections_share_one_warm_worker_and_cancel_or_unload_end_it(worker_env):
    env = worker_env
    add_volume(env, "T1")
    env.widget.enter()
    assert env.logic._worker is None  # nothing is started before the first detection

    env.ui.detectButton.click()
    assert env.ui.detectButton.text == "Cancel"
    run_until_done(env)
    assert segment_count(env) == 27 and env.ui.stageLabel.text == "Done."
    worker = env.logic._worker
    first_pid = worker_pid(env)

    env.ui.detectButton.click()  # the second detection: the same process, model kept loaded
    run_until_done(env)
    assert worker_pid(env) == first_pid and worker.starts == 1 and worker.alive

    env.widget._parameterNode.model = "slow"  # the stand-in worker then runs until cancelled
    env.ui.detectButton.click()
    run = env.widget._run
    poll_until_acknowledged(env, run)
    env.ui.detectButton.click()  # Cancel
    assert env.widget._run is None and "Cancelled" in env.ui.stageLabel.text
    assert not worker.alive and not run.work_dir.exists()
    assert not env.ui.progressBar.visible

    env.widget._parameterNode.model = "tiny-test"
    env.ui.detectButton.click()  # after Cancel: a new worker
    run_until_done(env)
    assert worker.starts == 2 and worker_pid(env) != first_pid and segment_count(env) == 27

    # Slicer unloads every module on exit (and on reload): the widget's cleanup ends the worker.
    env.slicer.app.moduleManager().moduleAboutToBeUnloaded.emit("UADContrastive")
    assert not worker.alive and worker.process.returncode == 0  # asked to quit, not killed


def test_the_model_runs_on_the_stage_label_in_words_not_raw_records(env):
    add_volume(env, "T1")
    env.widget.enter()
    env.ui.detectButton.click()
    run = env.logic.runs[-1]
    shown = []
    while env.widget._run is not None:
        feed(run, 1)
        env.widget._pollTimer.fire()
        shown.append(env.ui.stageLabel.text)
    assert "Running on the CPU: expect about half a minute per volume." in shown  # an info line, as it is
    assert not any(text.startswith(("info:", "reconstruct:", "load model")) for text in shown), shown
    assert any(text.startswith("Reconstructing a healthy brain... ") for text in shown)


def test_the_input_candidate_is_never_a_volume_the_selector_hides(env):
    env.scene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode", "labels")
    volume = add_volume(env, "T1")
    env.widget.exit()
    env.widget.enter()
    assert env.widget._parameterNode.inputVolume is volume


# ----------------------------------------------------------------------------- results panel
@pytest.fixture()
def findings(monkeypatch):
    import slicer_findings
    from UADContrastiveSlicerLib import core

    monkeypatch.setattr(core, "region_describer", lambda: slicer_findings.describe_regions)
    return slicer_findings


def table_rows(env):
    table = env.ui.findingsTable
    return [[table.item(r, c).text() for c in range(table.columnCount())] for r in range(table.rowCount())]


def test_the_findings_table_follows_the_sliders_and_a_row_centres_the_views(env, findings):
    volume = add_volume(env, "T1")
    env.widget.enter()
    detect(env)
    assert env.ui.findingsTable.headers == ["#", "Location", "mL", "Peak"]
    rows = table_rows(env)
    voxel_ml = 1.2 * 0.9 * 2.5 / 1000
    assert [row[0] for row in rows] == ["1", "2"] and env.ui.findingsTable.visible
    assert rows[0][2] == f"{27 * voxel_ml:.2f}" and rows[0][3] == "2" and rows[1][3] == "1"

    env.ui.thresholdSlider.value = 1.5  # the user drags the slider
    env.widget._rethresholdTimer.fire()
    assert [row[0] for row in table_rows(env)] == ["1"]
    env.ui.thresholdSlider.value = 2.5
    env.widget._rethresholdTimer.fire()
    assert table_rows(env) == [] and not env.ui.findingsTable.visible

    env.ui.thresholdSlider.value = 0.5
    env.widget._rethresholdTimer.fire()
    red = env.scene.AddNewNodeByClass("vtkMRMLSliceNode")
    red.SetLayoutName("Red")
    env.ui.findingsTable.click(1)
    from UADContrastiveSlicerLib import geometry

    centre = (geometry.ijk_to_ras_of(volume) @ [14.5, 10.5, 8.5, 1.0])[:3]  # the 8-voxel blob
    matrix = red.GetSliceToRAS()
    np.testing.assert_allclose([matrix.GetElement(row, 3) for row in range(3)], centre, atol=1e-6)


def test_export_writes_the_results_and_the_findings_table(env, findings, monkeypatch, tmp_path):
    from slicer_reading import read_with_slicer

    add_volume(env, "T1")
    env.widget.enter()
    detect(env)
    env.ui.thresholdSlider.value = 1.5
    env.widget._rethresholdTimer.fire()
    folder = tmp_path / "export"
    shown = []
    monkeypatch.setattr(env.slicer.util, "mainWindow", lambda: None)
    monkeypatch.setattr(env.slicer.util, "infoDisplay", lambda text, **kwargs: shown.append(text))
    qt = sys.modules["qt"]
    monkeypatch.setattr(qt, "QFileDialog", types.SimpleNamespace(getExistingDirectory=lambda *args: str(folder)))
    env.ui.exportButton.click()
    assert not env.errors, env.errors
    assert sorted(p.name for p in folder.iterdir()) == sorted([
        "anomaly.seg.nrrd", "anomaly_mask.nii.gz", "anomaly_map.nii.gz", "healthy.nii.gz", "report.json",
        "findings.csv"])
    assert shown and str(folder / "report.json") in shown[-1]
    [segment] = read_with_slicer(folder / "anomaly.seg.nrrd")
    assert segment["voxels"] == 27  # the segment at the slider's threshold
    report = json.loads((folder / "report.json").read_text())
    assert report["threshold"]["value"] == 1.5 and [f["voxels"] for f in report["findings"]] == [27]
    assert (folder / "findings.csv").read_text().splitlines()[1].startswith("1,")

    shown.clear()
    monkeypatch.setattr(qt, "QFileDialog", types.SimpleNamespace(getExistingDirectory=lambda *args: ""))
    env.ui.exportButton.click()  # the user cancels the folder dialog: nothing written, nothing said
    assert not shown and not env.errors


def test_preset_buttons_set_the_calibrated_threshold_and_only_when_calibrated(env):
    add_volume(env, "T1")
    env.widget.enter()
    buttons = env.widget.presetButtons
    assert not any(button.enabled for button in buttons.values())  # the card holds no calibration
    detect(env)
    assert all(button.enabled for button in buttons.values())
    p = env.widget._parameterNode
    for key, value, voxels in (("fpr_0.5%", 1.5, 27), ("fpr_0.1%", 2.5, 0), ("fpr_1%", 0.5, 35)):
        buttons[key].click()
        assert p.threshold == value and env.ui.thresholdSlider.value == value
        env.widget._rethresholdTimer.fire()
        assert segment_count(env) == voxels, key
    assert buttons["fpr_1%"].toolTip.startswith("0.5 — ")


EXACT = 0.0030584123


class ExactThresholdLogic(ReplayLogic):
    """The recorded run, with a calibrated threshold of more digits than the slider shows."""

    def startDetection(self, inputVolume, model, device):
        run, input_path = super().startDetection(inputVolume, model, device)
        report_path = next((run.work_dir / "out" / "input").glob("report.json"))
        report = json.loads(report_path.read_text())
        report["threshold"]["value"] = EXACT
        report["thresholds_available"] = {"fpr_1%": EXACT, "fpr_0.5%": 0.0047, "fpr_0.1%": 0.0099}
        report_path.write_text(json.dumps(report))
        return run, input_path


def test_the_calibrated_threshold_is_kept_exact_through_the_slider(monkeypatch, tmp_path):
    for env in widget_env(monkeypatch, lambda module: type(
            "UADContrastiveLogic", (ExactThresholdLogic, module.UADContrastiveLogic), {})(tmp_path)):
        add_volume(env, "T1")
        env.widget.enter()
        env.logic.scale = 0.001  # map values of the order of the calibrated threshold
        detect(env)
        p, slider = env.widget._parameterNode, env.ui.thresholdSlider
        assert p.threshold == EXACT and slider.value == 0.0031  # the slider shows it with 4 decimals
        # ctkSliderWidget re-emits its shown value when its range changes (the slider part keeps
        # more digits than the spin box): that rounding must not reach the parameter node.
        slider.valueChanged.emit(slider.value)
        assert p.threshold == EXACT
        env.ui.minSizeSlider.value = 10
        env.widget.refreshThresholdRange()
        env.widget.presetButtons["fpr_0.5%"].click()
        env.widget.presetButtons["fpr_1%"].click()
        slider.valueChanged.emit(slider.value)
        assert p.threshold == EXACT
        env.ui.thresholdSlider.value = 0.002  # a real move of the user is taken as it is
        assert p.threshold == 0.002


# ----------------------------------------------------------------------------- first-use install
WAIT_FOR_RELEASE = """
import os, sys, time
print("Collecting monai==1.6.1", flush=True)
while not os.path.exists(sys.argv[1]):
    time.sleep(0.02)
print("Successfully installed monai-1.6.1", flush=True)
"""


@pytest.fixture()
def install_env(env, monkeypatch, tmp_path):
    """Packages missing; the install is a real child process that waits for `release`."""
    from UADContrastiveSlicerLib.installer import DependencyInstall

    missing = ["monai==1.6.1"]
    monkeypatch.setattr(env.module.dependencies, "missing_requirements", lambda: list(missing))
    confirmations, installs = [], []
    monkeypatch.setattr(env.slicer.util, "confirmOkCancelDisplay",
                        lambda text, *args, **kwargs: confirmations.append(text) or True)
    env.release = tmp_path / "release"
    env.script = WAIT_FOR_RELEASE

    def start_install(packages):
        install = DependencyInstall(packages, steps=[
            ("Installing monai==1.6.1", lambda: [sys.executable, "-c", env.script, str(env.release)])])
        install.start()
        installs.append(install)
        return install

    monkeypatch.setattr(env.logic, "startInstall", start_install)
    env.missing, env.confirmations, env.installs = missing, confirmations, installs
    add_volume(env, "T1")
    env.widget.enter()
    return env


def test_a_second_click_during_an_install_starts_nothing(install_env):
    env = install_env
    env.ui.detectButton.click()
    assert len(env.installs) == 1 and len(env.confirmations) == 1
    install = env.installs[0]
    assert install.process.poll() is None  # the click returned while pip still runs
    assert env.ui.detectButton.text == "Cancel installation" and env.ui.detectButton.enabled
    assert env.ui.progressBar.visible and not env.ui.inputsCollapsibleButton.enabled
    run_until(env, lambda: "Collecting monai" in env.ui.stageLabel.text)

    env.ui.detectButton.click()  # the second click: cancels, starts no other install, asks nothing
    assert len(env.installs) == 1 and len(env.confirmations) == 1 and not env.logic.runs
    assert install.process.poll() is not None  # the install's process is gone
    assert env.widget._install is None and env.ui.detectButton.text == "Detect anomalies"
    assert "cancelled" in env.ui.stageLabel.text and not env.errors


def test_when_the_install_ends_well_the_detection_starts(install_env):
    env = install_env
    env.ui.detectButton.click()
    env.missing.clear()  # what the finished install will have changed
    env.release.touch()
    run_until(env, lambda: env.widget._install is None)
    assert not env.errors, env.errors
    assert len(env.logic.runs) == 1 and env.widget._run is not None and env.ui.detectButton.text == "Cancel"
    while env.widget._run is not None:  # the recorded run plays to its end
        feed(env.logic.runs[0], 5)
        env.widget._pollTimer.fire()
    assert segment_count(env) == 35 and not env.errors


def test_an_install_without_network_says_so_and_raises_nothing(install_env):
    env = install_env
    env.script = ("import sys; print('ERROR: Could not find a version that satisfies the requirement "
                  "monai==1.6.1 (from versions: none)', file=sys.stderr); sys.exit(1)")
    env.ui.detectButton.click()
    run_until(env, lambda: env.widget._install is None)
    assert len(env.errors) == 1 and "could not be downloaded" in env.errors[0] and "monai==1.6.1" in env.errors[0]
    assert "--no-index" in env.errors[0]
    assert not env.logic.runs and env.ui.detectButton.text == "Detect anomalies"


def test_run_detection_blocking_loads_the_results_and_raises_a_failure(worker_env):
    env = worker_env
    volume = add_volume(env, "T1")
    logic = env.logic
    p = logic.getParameterNode()
    p.inputVolume, p.model, p.device = volume, "tiny-test", "cpu"
    results = logic.runDetectionBlocking(p, timeoutSeconds=120)
    from UADContrastiveSlicerLib import segments

    assert segments.segment_voxel_count(results.segmentation_node) == 27
    assert p.anomalyMapVolume is results.map_node and p.threshold == 0.5  # the report's defaults
    assert results.map_node.GetAttribute("UADContrastive.Report")

    p.model = "bad-input"
    with pytest.raises(RuntimeError, match="not a 3D volume"):
        logic.runDetectionBlocking(p, timeoutSeconds=120)
    assert p.anomalyMapVolume is results.map_node  # a failed run changes nothing


def test_a_successful_runs_messages_go_to_slicers_log(worker_env, caplog):
    env = worker_env
    add_volume(env, "T1")
    env.widget.enter()
    with caplog.at_level("INFO"):
        env.ui.detectButton.click()
        run_until_done(env)
    assert any("the detection's messages" in r.getMessage() and "fake worker: request 1" in r.getMessage()
               for r in caplog.records)


@pytest.mark.slow
def test_cancel_stops_a_real_uadc_worker_and_leaves_the_scene_unchanged(monkeypatch, tiny_model, shared_data):
    """The module's own logic and the real `uadc worker` (the tiny test model) on a real head."""
    import SimpleITK as sitk
    from process_checks import wait_until_gone

    def real_logic(module):
        logic = module.UADContrastiveLogic()
        logic.startDeviceProbe = answered_probe
        return logic

    head = sorted((shared_data / "ixi_t1" / "images").iterdir())[0]
    for env in widget_env(monkeypatch, real_logic):
        from UADContrastiveSlicerLib import geometry

        volume = env.scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "IXI head")
        geometry.update_volume_from_sitk(volume, sitk.ReadImage(str(head)))
        env.widget.enter()
        p = env.widget._parameterNode
        p.inputVolume, p.model, p.device = volume, str(tiny_model), "cpu"
        nodes_before = env.scene.GetNumberOfNodes()
        env.ui.detectButton.click()
        run = env.widget._run
        poll_until_acknowledged(env, run, timeout=600)  # the worker took the request: it is working
        worker = env.logic._worker
        assert "worker" in worker.command and worker.alive
        pid = worker.process.pid
        env.ui.detectButton.click()  # Cancel
        assert wait_until_gone([pid], timeout=30)
        assert env.widget._run is None and "Cancelled" in env.ui.stageLabel.text and not env.errors
        assert not run.work_dir.exists() and env.scene.GetNumberOfNodes() == nodes_before
        assert p.anomalyMapVolume is None and env.ui.detectButton.text == "Detect anomalies"


def test_a_t2_or_flair_volume_preselects_a_t2_model_and_the_user_can_still_choose(env, monkeypatch):
    options = env.module.options
    monkeypatch.setattr(options, "model_choices", lambda: [
        options.ModelChoice("tiny-test", "tiny-test (T1)", {"modality": "T1"}),
        options.ModelChoice("tiny-t2", "tiny-t2 (T2)", {"modality": "T2"})])
    env.widget.populateModels()
    p = env.widget._parameterNode
    assert p.model == "tiny-test"
    p.inputVolume = add_volume(env, "IXI102-HH-1416_T2")
    assert p.model == "tiny-t2" and env.ui.modelComboBox.currentData == "tiny-t2"
    env.ui.modelComboBox.setCurrentIndex(env.ui.modelComboBox.findData("tiny-test"))  # the user's choice
    assert p.model == "tiny-test"
    p.inputVolume = add_volume(env, "3: AX FLAIR", offset=5.0)
    assert p.model == "tiny-t2"
    p.inputVolume = add_volume(env, "brain", offset=9.0)  # the name says nothing: the choice stays
    assert p.model == "tiny-t2"
    env.widget.preselectModel(options.contrast_from_message(
        "scan.nii.gz: this looks T1-weighted (white/grey matter ratio 1.33); the model reads T2"))
    assert p.model == "tiny-test"
