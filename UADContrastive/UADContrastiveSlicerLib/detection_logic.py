"""The module's logic: starts the child processes (device probe, install, detection) and
loads results into the scene. No Qt: the widget polls what this starts.

The module file's UADContrastiveLogic is this class plus Slicer's ScriptedLoadableModuleLogic
(which provides the raw parameter node); getParameterNode wraps it.
"""
from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

import slicer

from . import process, warm_worker
from . import scene as scene_logic
from .device_probe import DeviceProbe
from .installer import DependencyInstall
from .nodes import nodes_of_exact_class
from .parameter_node import clamp_min_size, clamp_threshold


class DetectionLogic:
    def __init__(self):
        self._worker = None  # the warm detection process, started by the first detection
        # One AnomalyResults per map node: it keeps the thresholder (crop, labelling) that
        # makes a slider move cost milliseconds instead of recomputing from scratch.
        self._resultsCache = {}

    def forgetResults(self) -> None:
        """Drop the cached results (the scene is closing: their nodes go away)."""
        self._resultsCache.clear()

    @staticmethod
    def firstInputCandidate():
        """The first plain scalar volume that is not one of this module's outputs: labelmaps
        and other subclasses are not offered, as the input selector does not show them."""
        for node in nodes_of_exact_class(slicer.mrmlScene, "vtkMRMLScalarVolumeNode"):
            if scene_logic.input_of_output(node) is None:
                return node
        return None

    @staticmethod
    def selectOutputsOfInput(parameterNode) -> None:
        """Outputs computed from another input are replaced by the current input's own (or by
        nothing: the next run then creates nodes named after this input). A node the user
        picked that belongs to no input is kept."""
        p = parameterNode
        outputs = scene_logic.outputs_for_input(slicer.mrmlScene, p.inputVolume)
        with slicer.util.NodeModify(p.parameterNode):
            for name, kind in (("healthyVolume", "healthy"), ("anomalyMapVolume", "map"),
                               ("segmentation", "segmentation")):
                current = getattr(p, name)
                owner = scene_logic.input_of_output(current)
                if current is None or current is p.inputVolume or (owner is not None and owner is not p.inputVolume):
                    setattr(p, name, outputs.get(kind))

    def startDeviceProbe(self) -> DeviceProbe:
        probe = DeviceProbe(env=self.childEnvironment())
        probe.start()
        return probe

    def startInstall(self, missing: list[str]) -> DependencyInstall:
        install = DependencyInstall(missing, env=self.childEnvironment())
        install.start()
        return install

    def startDetection(self, inputVolume, model: str, device: str):
        """Write the input to a private temp folder and start the detection there: in the warm
        worker when it can run here, else in a one-shot process."""
        workDir = process.make_work_dir()
        try:
            inputPath = scene_logic.write_input_volume(inputVolume, workDir / process.INPUT_NAME)
            arguments = process.detect_arguments(inputPath, workDir / "out", model, device, None)
            worker = self.detectionWorker()
            if worker is not None:
                run = warm_worker.WorkerRun(worker, arguments, workDir)
            else:
                run = process.DetectionRun(process.core_command("detect", arguments), workDir,
                                           env=self.childEnvironment())
            run.start()
        except Exception:
            shutil.rmtree(workDir, ignore_errors=True)
            raise
        logging.info("UADContrastive: %s%s", " ".join(run.command),
                     " (in the warm worker)" if worker is not None and not run.one_shot else "")
        return run, inputPath

    def detectionWorker(self):
        """The warm worker (a process object; the process starts with the first request), or
        None when a worker could not start here before: then one-shot processes run."""
        if self._worker is None:
            self._worker = warm_worker.WarmWorker(env=self.childEnvironment())
        return None if self._worker.broken else self._worker

    def stopWorker(self) -> None:
        """End the warm worker, if one runs (module unloaded, Slicer exiting)."""
        if self._worker is not None:
            self._worker.stop()

    @staticmethod
    def childEnvironment() -> dict:
        """Slicer's startup environment (Slicer's own changes, Qt paths..., must not leak into
        PythonSlicer), with the module's folder on PYTHONPATH."""
        try:
            base = dict(slicer.util.startupEnvironment())
        except Exception:
            base = dict(os.environ)
        return process.child_environment(base)

    def loadResults(self, parameterNode, resultDir):
        p = parameterNode
        results = scene_logic.load_results(
            slicer.mrmlScene, p.inputVolume, resultDir, p.healthyVolume, p.anomalyMapVolume, p.segmentation,
            opacity=p.opacity)
        with slicer.util.NodeModify(p.parameterNode):
            p.healthyVolume = results.healthy_node
            p.anomalyMapVolume = results.map_node
            p.segmentation = results.segmentation_node
        self._resultsCache[results.map_node.GetID()] = results
        return results

    @staticmethod
    def applyReportDefaults(parameterNode, results) -> None:
        """Threshold and minimum size the detection itself used (the card's defaults)."""
        from . import options

        p, report = parameterNode, results.report
        with slicer.util.NodeModify(p.parameterNode):
            p.threshold = clamp_threshold(report.get("threshold", {}).get("value", p.threshold))
            p.minSizeMm3 = clamp_min_size(options.default_min_size(report, p.minSizeMm3))

    def results(self, parameterNode):
        p = parameterNode
        if p is None or not (p.inputVolume and p.anomalyMapVolume and p.segmentation):
            return None
        if p.anomalyMapVolume.GetImageData() is None:
            return None
        cached = self._resultsCache.get(p.anomalyMapVolume.GetID())
        nodes = (p.inputVolume, p.healthyVolume, p.anomalyMapVolume, p.segmentation)
        if cached is None or (cached.input_node, cached.healthy_node, cached.map_node,
                              cached.segmentation_node) != nodes:
            cached = scene_logic.AnomalyResults(*nodes)
            self._resultsCache[p.anomalyMapVolume.GetID()] = cached
        return cached

    def showResults(self, results, opacity: float) -> None:
        from . import layout

        layout.show_side_by_side(results, opacity)

    def runDetectionBlocking(self, parameterNode, timeoutSeconds: float = 3600):
        """Detection without the GUI (self-test, Python console)."""
        p = parameterNode
        run, inputPath = self.startDetection(p.inputVolume, p.model, p.device)
        try:
            run.wait(timeout=timeoutSeconds)
            outcome = run.outcome(inputPath)
            if not outcome.ok:
                raise RuntimeError(f"{outcome.message}\n{outcome.advice}\n{run.stderr_tail}")
            results = self.loadResults(p, outcome.result_dir)
            self.applyReportDefaults(p, results)
            return results
        finally:
            if not run.finished:  # timed out: stop it (a warm worker too: the next run starts another)
                run.cancel()
            run.cleanup()

    @staticmethod
    def userModelsFolder() -> Path:
        """Downloaded/imported models (never the ones shipped inside the extension)."""
        from .core import model_zoo

        return Path(model_zoo().model_dirs()[-1])
