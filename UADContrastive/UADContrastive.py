"""UADContrastive: unsupervised anomaly detection in brain MRI, as a 3D Slicer module.

This file only wires the GUI to the helpers in UADContrastiveSlicerLib (MRML logic,
child process, options, dependencies) and to the pure core UADContrastiveLib, which runs
in a separate PythonSlicer process. torch is never imported in Slicer's GUI process
(devices are probed in a child process too); only the first-use installer, through the
PyTorch extension, loads it.
"""

import importlib
import logging
import os
import shutil
import sys
from pathlib import Path
from typing import Annotated

import qt
import slicer
import vtk
from slicer import vtkMRMLScalarVolumeNode, vtkMRMLSegmentationNode
from slicer.i18n import tr as _
from slicer.i18n import translate
from slicer.parameterNodeWrapper import WithinRange, parameterNodeWrapper
from slicer.ScriptedLoadableModule import (
    ScriptedLoadableModule,
    ScriptedLoadableModuleLogic,
    ScriptedLoadableModuleTest,
    ScriptedLoadableModuleWidget,
)
from slicer.util import VTKObservationMixin
from UADContrastiveSlicerLib import dependencies, options, process, warm_worker
from UADContrastiveSlicerLib import scene as scene_logic
from UADContrastiveSlicerLib.stages import StageProgress

MODULE_DIR = Path(__file__).resolve().parent
POLL_INTERVAL_MS = 100
# Slider moves are merged: the segment is recomputed once the slider rests this long.
RETHRESHOLD_DELAY_MS = 120
# Slicer's parameterNodeWrapper binds a float to a ctkSliderWidget only with a declared
# range, and sets the slider to it when connecting. For the threshold this is only the
# validator's range: the widget then narrows the slider to the map's calibrated range.
THRESHOLD_LIMIT = 1.0e6
MIN_SIZE_LIMIT_MM3 = 5000.0
# Submodules reloaded by onReload, dependencies first.
SLICER_LIB_MODULES = ("core", "geometry", "segments", "options", "process", "warm_worker", "stages", "dependencies",
                      "scene", "layout")
NOT_OBSERVED = object()  # no input seen yet: the first parameter-node update refreshes everything


class UADContrastive(ScriptedLoadableModule):
    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = _("UADContrastive")
        self.parent.categories = [translate("qSlicerAbstractCoreModule", "Segmentation")]
        self.parent.dependencies = []
        # Named authors and a public home page are to be set on publication.
        self.parent.contributors = ["UADContrastive developers (names to be set on publication)"]
        self.parent.helpText = _(
            "Unsupervised anomaly detection in brain MRI. A model trained only on healthy "
            "brains reconstructs a healthy version of the input; where input and "
            "reconstruction differ, the anomaly map is high. The map is thresholded into an "
            "'Anomaly' segment that can be refined with the Segment Editor.<br><br>"
            "Results are research output, not a diagnosis.<br><br>"
            "Method: Patrício C. et al., contrastive-conditioned diffusion models for "
            "unsupervised anomaly detection in brain MRI, 2025. Please cite this work when "
            "you use the module."
        )
        self.parent.acknowledgementText = _(
            "Based on the method of Patrício et al. (2025). Built on 3D Slicer, PyTorch, "
            "MONAI and SimpleITK. Healthy training data: the IXI dataset."
        )
        # A saved scene stores the two-view layout's number: register it at start-up so
        # that such a scene reopens before the module is ever opened.
        slicer.app.connect("startupCompleted()", registerLayout)


def registerLayout():
    from UADContrastiveSlicerLib import layout

    layout.register_layout_in_app()


@parameterNodeWrapper
class UADContrastiveParameterNode:
    inputVolume: vtkMRMLScalarVolumeNode
    model: str = ""
    device: str = "auto"
    threshold: Annotated[float, WithinRange(0.0, THRESHOLD_LIMIT)] = 0.5
    minSizeMm3: Annotated[float, WithinRange(0.0, MIN_SIZE_LIMIT_MM3)] = 0.0
    opacity: Annotated[float, WithinRange(0.0, 1.0)] = 0.5
    healthyVolume: vtkMRMLScalarVolumeNode
    anomalyMapVolume: vtkMRMLScalarVolumeNode
    segmentation: vtkMRMLSegmentationNode


class UADContrastiveWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    def __init__(self, parent=None, logic=None) -> None:
        """`logic` replaces UADContrastiveLogic (tests drive the widget with a stand-in)."""
        self._injectedLogic = logic
        self.logic = None
        self._parameterNode = None
        self._parameterNodeGuiTag = None
        self._observedInput = NOT_OBSERVED
        self._run = None
        self._runInputPath = None
        self._runParameterNode = None
        self._stageProgress = None
        self._deviceChoices = []
        self._modelChoices = []
        self._appliedThreshold = None  # (threshold, min size) the segment currently shows
        self._pollTimer = qt.QTimer()
        self._pollTimer.setInterval(POLL_INTERVAL_MS)
        self._pollTimer.connect("timeout()", self.onPollProcess)
        self._rethresholdTimer = qt.QTimer()
        self._rethresholdTimer.setSingleShot(True)
        self._rethresholdTimer.setInterval(RETHRESHOLD_DELAY_MS)
        self._rethresholdTimer.connect("timeout()", self.applyThreshold)
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)  # as in Slicer's module template

    # ------------------------------------------------------------------ setup
    def setup(self) -> None:
        ScriptedLoadableModuleWidget.setup(self)
        uiWidget = slicer.util.loadUI(self.resourcePath("UI/UADContrastive.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)
        self.logic = self._injectedLogic or UADContrastiveLogic()

        self.ui.progressBar.setVisible(False)
        self.ui.resultsCollapsibleButton.setEnabled(False)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)

        self.ui.detectButton.connect("clicked(bool)", self.onDetectOrCancel)
        self.ui.modelComboBox.connect("currentIndexChanged(int)", self.onModelChanged)
        self.ui.deviceComboBox.connect("currentIndexChanged(int)", self.onDeviceChanged)
        self.ui.exportButton.connect("clicked(bool)", self.onExport)
        self.ui.showModelsFolderButton.connect("clicked(bool)", self.onShowModelsFolder)
        self.ui.clearModelsFolderButton.connect("clicked(bool)", self.onClearModelsFolder)
        self.presetButtons = {}  # preset key -> button, one per preset of the core's single list
        for preset in options.HEALTHY_FPR_PRESETS:
            button = qt.QPushButton(preset.label)
            button.connect("clicked(bool)", lambda _checked, key=preset.key: self.onPreset(key))
            self.ui.presetsLayout.addWidget(button)
            self.presetButtons[preset.key] = button

        self.populateModels()
        self.initializeParameterNode()
        registerLayout()  # also when the module is (re)loaded after Slicer started

    def cleanup(self) -> None:
        """Slicer calls this when the module is unloaded: on application exit and on reload."""
        if self._run is not None:
            self._run.cancel()
        if self.logic is not None:
            self.logic.stopWorker()  # no detection process outlives the module
        self._pollTimer.stop()
        self._rethresholdTimer.stop()
        self.removeObservers()

    def enter(self) -> None:
        self.initializeParameterNode()
        if not self._deviceChoices:
            self.populateDevices()

    def exit(self) -> None:
        if self._run is None:  # a running detection still needs its parameter node
            self.setParameterNode(None)

    def onReload(self) -> None:
        """Developer reload: the helper modules first, then this file (Slicer's own reload)."""
        for name in SLICER_LIB_MODULES:
            module = sys.modules.get(f"UADContrastiveSlicerLib.{name}")
            if module is not None:
                importlib.reload(module)
        ScriptedLoadableModuleWidget.onReload(self)

    def onSceneStartClose(self, caller, event) -> None:
        if self._run is not None:
            self.cancelRun()
        self.setParameterNode(None)
        self.logic.forgetResults()

    def onSceneEndClose(self, caller, event) -> None:
        if self.parent.isEntered:
            self.initializeParameterNode()

    # ------------------------------------------------------------------ parameter node
    def initializeParameterNode(self) -> None:
        self.setParameterNode(self.logic.getParameterNode())
        if not self._parameterNode.inputVolume:
            firstVolume = self.logic.firstInputCandidate()
            if firstVolume:
                self._parameterNode.inputVolume = firstVolume

    def setParameterNode(self, inputParameterNode) -> None:
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self.onParametersModified)
        self._parameterNode = inputParameterNode
        self._observedInput = NOT_OBSERVED
        if self._parameterNode:
            # connectGui sets each slider to its declared range; the calibrated threshold
            # range is applied afterwards (it keeps the stored value reachable).
            self._parameterNodeGuiTag = self._parameterNode.connectGui(self.ui)
            self.refreshThresholdRange()
            self.addObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self.onParametersModified)
            # A stored choice that is no longer offered falls back to the combo's current item.
            if not self._selectComboData(self.ui.modelComboBox, self._parameterNode.model):
                self.onModelChanged()
            if not self._selectComboData(self.ui.deviceComboBox, self._parameterNode.device):
                self.onDeviceChanged()
            self.onParametersModified()

    def onParametersModified(self, caller=None, event=None) -> None:
        p = self._parameterNode
        if p is None:
            return
        if p.inputVolume is not self._observedInput:
            self.onInputChanged()
        running = self._run is not None
        self.ui.detectButton.enabled = running or (p.inputVolume is not None and bool(p.model))
        self.ui.detectButton.text = _("Cancel") if running else _("Detect anomalies")
        self.ui.inputsCollapsibleButton.enabled = not running
        if self.logic.results(p) is not None:
            if (p.threshold, p.minSizeMm3) != self._appliedThreshold:
                self._rethresholdTimer.start()
            scene_logic.set_overlay_opacity(slicer.mrmlScene, p.anomalyMapVolume, p.opacity)

    def onInputChanged(self) -> None:
        """Another input: show its own results (or none), never the previous input's."""
        p = self._parameterNode
        self._observedInput = p.inputVolume
        hidden = [p.inputVolume.GetID()] if p.inputVolume is not None else []
        for selector in (self.ui.healthySelector, self.ui.anomalyMapSelector):
            selector.sortFilterProxyModel().hiddenNodeIDs = hidden  # an output must not overwrite the input
        if self._run is None:
            self.logic.selectOutputsOfInput(p)
        # Do not recompute the segment here: the user may have edited it meanwhile.
        self.refreshResultsSection(recomputeSegment=False)

    # ------------------------------------------------------------------ models and devices
    def populateModels(self) -> None:
        combo = self.ui.modelComboBox
        combo.blockSignals(True)
        combo.clear()
        try:
            self._modelChoices = options.model_choices()
        except Exception as error:  # a broken model folder must not break the whole module
            logging.exception("UADContrastive: listing models failed")
            self._modelChoices = []
            combo.setToolTip(_("Could not list the models: {error}").format(error=error))
        for choice in self._modelChoices:
            combo.addItem(choice.label, choice.name)
        if not self._modelChoices:
            combo.addItem(_("No model installed"), "")
        combo.blockSignals(False)
        self.onModelChanged()

    def populateDevices(self) -> None:
        """Ask a child Python what torch sees (seconds: torch loads there, not in Slicer)."""
        combo = self.ui.deviceComboBox
        try:
            with slicer.util.tryWithErrorDisplay(_("Could not list the devices."), waitCursor=True):
                self._deviceChoices = self.logic.deviceChoices()
        except Exception:  # the module must still open: offer the CPU
            logging.exception("UADContrastive: listing the devices failed")
            self._deviceChoices = []
        if not self._deviceChoices:
            self._deviceChoices = [options.DeviceChoice("cpu", _("CPU"))]
        combo.blockSignals(True)
        combo.clear()
        for index, choice in enumerate(self._deviceChoices):
            combo.addItem(choice.label, choice.key)
            if not choice.enabled:
                combo.model().item(index).setEnabled(False)
        combo.blockSignals(False)
        if self._parameterNode:
            self._selectComboData(combo, self._parameterNode.device)
        self.onDeviceChanged()

    def onModelChanged(self, index=None) -> None:
        if self._parameterNode and self.ui.modelComboBox.currentData is not None:
            self._parameterNode.model = self.ui.modelComboBox.currentData
        card = self.currentCard()
        self.ui.modelWarningLabel.text = options.model_warning(card)
        self.ui.modelComboBox.toolTip = card.get("description") or _(
            "Installed anomaly-detection models and the MRI modality each expects.")
        self.refreshPresets()

    def onDeviceChanged(self, index=None) -> None:
        key = self.ui.deviceComboBox.currentData or "auto"
        if self._parameterNode:
            self._parameterNode.device = key
        self.ui.cpuWarningLabel.text = options.cpu_warning(key, self._deviceChoices) if self._deviceChoices else ""

    def currentCard(self) -> dict:
        name = self._parameterNode.model if self._parameterNode else ""
        return next((c.card for c in self._modelChoices if c.name == name), {})

    def onShowModelsFolder(self) -> None:
        folder = self.logic.userModelsFolder()
        folder.mkdir(parents=True, exist_ok=True)
        qt.QDesktopServices.openUrl(qt.QUrl.fromLocalFile(str(folder)))

    def onClearModelsFolder(self) -> None:
        folder = self.logic.userModelsFolder()
        if not folder.exists() or not any(folder.iterdir()):
            slicer.util.infoDisplay(_("The models folder is already empty:\n{folder}").format(folder=folder))
            return
        if not slicer.util.confirmOkCancelDisplay(
                _("Delete every downloaded or imported model in\n{folder}?\n\nThe model shipped with "
                  "the extension is kept.").format(folder=folder)):
            return
        shutil.rmtree(folder, ignore_errors=True)
        self.populateModels()

    # ------------------------------------------------------------------ detection
    def onDetectOrCancel(self) -> None:
        if self._run is not None:
            self.cancelRun()
            return
        if not self.ensureDependencies():
            return
        p = self._parameterNode
        with slicer.util.tryWithErrorDisplay(_("Could not start the detection."), waitCursor=True):
            # Card defaults for threshold and minimum size: both are re-applied instantly
            # in memory afterwards, so the run never has to be repeated for them.
            self._run, self._runInputPath = self.logic.startDetection(p.inputVolume, p.model, p.device)
            self._runParameterNode = p
            self._stageProgress = StageProgress()
            self.ui.progressBar.setValue(0)
            self.ui.progressBar.setVisible(True)
            self.ui.stageLabel.text = self.ui.cpuWarningLabel.text or _("Starting...")
            self._pollTimer.start()
        self.onParametersModified()

    def ensureDependencies(self) -> bool:
        """First use: one dialog listing what Slicer's Python lacks, then install it."""
        if sys.version_info < tuple(int(v) for v in dependencies.SLICER_PYTHON_VERSION.split(".")):
            slicer.util.errorDisplay(_("UADContrastive needs 3D Slicer {version} or newer.").format(
                version=dependencies.MINIMUM_SLICER_VERSION))
            return False
        missing = dependencies.missing_requirements()
        if not missing:
            return True
        if not slicer.util.confirmOkCancelDisplay(
                _("UADContrastive needs these Python packages, which are not installed yet:\n\n{items}\n\n"
                  "Download size: {size}. Install them now? This can take several minutes; "
                  "restart Slicer afterwards if asked.")
                .format(items="\n".join(missing), size=dependencies.download_size_text(missing))):
            return False
        with slicer.util.tryWithErrorDisplay(_("Installing the dependencies failed."), waitCursor=True):
            dependencies.install(missing)
        self.populateModels()
        self._deviceChoices = []
        self.populateDevices()
        return not dependencies.missing_requirements()

    def onPollProcess(self) -> None:
        run = self._run
        if run is None:
            self._pollTimer.stop()
            return
        for event in run.poll():
            self.ui.progressBar.setValue(int(self._stageProgress.update(event.stage, event.fraction) * 100))
            if event.message or event.stage:
                self.ui.stageLabel.text = f"{event.stage}: {event.message}" if event.message else event.stage
        if run.finished:
            self._pollTimer.stop()
            self.finishRun()

    def finishRun(self) -> None:
        run, self._run = self._run, None
        self.ui.progressBar.setVisible(False)
        outcome = run.outcome(self._runInputPath)
        try:
            if outcome.ok:
                with slicer.util.tryWithErrorDisplay(_("Could not load the results."), waitCursor=True):
                    p = self._runParameterNode
                    results = self.logic.loadResults(p, outcome.result_dir)
                    self.ui.stageLabel.text = _("Done.")
                    if p is not self._parameterNode:  # the user left the module meanwhile
                        self.initializeParameterNode()
                    self.refreshResultsSection(adoptReportDefaults=True)
                    self.logic.showResults(results, p.opacity)
            else:
                self.ui.stageLabel.text = outcome.message
                slicer.util.errorDisplay(outcome.message + ("\n\n" + outcome.advice if outcome.advice else ""),
                                         detailedText=run.stderr_tail or None)
        finally:
            run.cleanup()
            self.onParametersModified()

    def cancelRun(self) -> None:
        run, self._run = self._run, None
        self._pollTimer.stop()
        if run is not None:
            run.cancel()
        self.ui.progressBar.setVisible(False)
        self.ui.stageLabel.text = _("Cancelled. The scene was left unchanged.")
        self.onParametersModified()

    # ------------------------------------------------------------------ results
    def refreshResultsSection(self, adoptReportDefaults: bool = False, recomputeSegment: bool = True) -> None:
        results = self.logic.results(self._parameterNode) if self._parameterNode else None
        self.ui.resultsCollapsibleButton.setEnabled(results is not None)
        self.ui.exportButton.setEnabled(results is not None)
        self.refreshPresets()
        if results is None:
            self.ui.resultsLabel.text = _("No results yet.")
            self.ui.reportLabel.text = ""
            return
        self.ui.reportLabel.text = options.report_notes(results.report)
        if adoptReportDefaults:
            self.logic.applyReportDefaults(self._parameterNode, results)
        # The range is set after the value is known, wide enough to keep it (no clamping).
        self.refreshThresholdRange()
        if recomputeSegment:
            self.applyThreshold(force=True)
        else:
            p = self._parameterNode
            self._appliedThreshold = (p.threshold, p.minSizeMm3)
            self.ui.resultsLabel.text = results.summarize(p.threshold, p.minSizeMm3).text()

    def refreshThresholdRange(self) -> None:
        p = self._parameterNode
        if p is None:
            return
        results = self.logic.results(p)
        mapMax = results.map_range()[1] if results is not None else None
        minimum, maximum, step = options.threshold_slider_range(mapMax, list(self.presetValues().items()),
                                                                p.threshold)
        slider = self.ui.thresholdSlider
        slider.singleStep = step
        slider.minimum, slider.maximum = minimum, maximum

    def presetValues(self) -> dict:
        results = self.logic.results(self._parameterNode) if self._parameterNode else None
        return options.preset_values(results.report if results is not None else self.currentCard())

    def refreshPresets(self) -> None:
        values = self.presetValues()
        for key, button in self.presetButtons.items():
            button.enabled = key in values
            button.toolTip = (f"{values[key]:.4g} — " + options.PRESET_TOOLTIP) if key in values else _(
                "Not calibrated for this model.")

    def onPreset(self, key: str) -> None:
        values = self.presetValues()
        if key in values:
            self._parameterNode.threshold = values[key]

    def applyThreshold(self, force: bool = False) -> None:
        p = self._parameterNode
        results = self.logic.results(p) if p else None
        if results is None or (not force and (p.threshold, p.minSizeMm3) == self._appliedThreshold):
            return
        summary = results.update_segment_from_map(p.threshold, p.minSizeMm3)
        self._appliedThreshold = (p.threshold, p.minSizeMm3)
        self.ui.resultsLabel.text = summary.text()

    def onExport(self) -> None:
        results = self.logic.results(self._parameterNode)
        folder = qt.QFileDialog.getExistingDirectory(slicer.util.mainWindow(), _("Export results to folder"))
        if not folder or results is None:
            return
        with slicer.util.tryWithErrorDisplay(_("Export failed."), waitCursor=True):
            written = results.export(folder, self._parameterNode.threshold, self._parameterNode.minSizeMm3)
            slicer.util.infoDisplay(_("Wrote:\n{files}").format(files="\n".join(str(p) for p in written)))

    @staticmethod
    def _selectComboData(combo, data) -> bool:
        index = combo.findData(data)
        if index >= 0:
            combo.setCurrentIndex(index)
        return index >= 0


class UADContrastiveLogic(ScriptedLoadableModuleLogic):
    """Thin: starts the child process, loads results into the scene (UADContrastiveSlicerLib)."""

    def __init__(self, parent=None):
        ScriptedLoadableModuleLogic.__init__(self, parent)
        self._worker = None  # the warm detection process, started by the first detection
        # One AnomalyResults per map node: it keeps the thresholder (crop, labelling) that
        # makes a slider move cost milliseconds instead of recomputing from scratch.
        self._resultsCache = {}

    def getParameterNode(self):
        return UADContrastiveParameterNode(super().getParameterNode())

    def forgetResults(self) -> None:
        """Drop the cached results (the scene is closing: their nodes go away)."""
        self._resultsCache.clear()

    @staticmethod
    def firstInputCandidate():
        """The first scalar volume that is not one of this module's outputs."""
        nodes = slicer.mrmlScene.GetNodesByClass("vtkMRMLScalarVolumeNode")
        for index in range(nodes.GetNumberOfItems()):
            node = nodes.GetItemAsObject(index)
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

    @staticmethod
    def deviceChoices() -> list:
        env = process.child_environment(UADContrastiveLogic.childBaseEnvironment())
        return options.device_choices(env=env)

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
                                           env=process.child_environment(self.childBaseEnvironment()))
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
            self._worker = warm_worker.WarmWorker(env=process.child_environment(self.childBaseEnvironment()))
        return None if self._worker.broken else self._worker

    def stopWorker(self) -> None:
        """End the warm worker, if one runs (module unloaded, Slicer exiting)."""
        if self._worker is not None:
            self._worker.stop()

    @staticmethod
    def childBaseEnvironment() -> dict:
        """Slicer's startup environment: Slicer's own changes (Qt paths...) must not leak
        into PythonSlicer."""
        try:
            return dict(slicer.util.startupEnvironment())
        except Exception:
            return dict(os.environ)

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
        p, report = parameterNode, results.report
        with slicer.util.NodeModify(p.parameterNode):
            p.threshold = min(max(float(report.get("threshold", {}).get("value", p.threshold)), 0.0), THRESHOLD_LIMIT)
            p.minSizeMm3 = min(max(options.default_min_size(report, p.minSizeMm3), 0.0), MIN_SIZE_LIMIT_MM3)

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
        from UADContrastiveSlicerLib import layout

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
        from UADContrastiveSlicerLib.core import model_zoo

        return Path(model_zoo().model_dirs()[-1])


class UADContrastiveTest(ScriptedLoadableModuleTest):
    """In-Slicer self-test. The scene logic is tested on a synthetic result folder (needs no
    torch, model or network, so it runs on an extension build machine); the full detection
    on Slicer's MRBrainTumor1 runs only when torch, a model and the sample data are there,
    and is otherwise skipped with a message."""

    def setUp(self):
        slicer.mrmlScene.Clear()

    def runTest(self):
        self.setUp()
        self.test_ResultsWithoutModel()
        self.setUp()
        self.test_DetectOnSampleData()

    def test_ResultsWithoutModel(self):
        import tempfile

        import numpy as np
        import SimpleITK as sitk
        from UADContrastiveSlicerLib import geometry, segments

        inputVolume = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "synthetic T1")
        values = np.zeros((10, 12, 14), np.float32)
        values[2:5, 3:6, 4:7] = 2.0
        values[7:9, 8:10, 9:11] = 1.0
        geometry.update_volume_from_array(inputVolume, values + 100, np.diag([1.5, 1.5, 2.0, 1.0]))
        with tempfile.TemporaryDirectory() as folder:
            image = geometry.sitk_from_volume(inputVolume)
            for name, array in (("healthy.nii.gz", values * 0 + 100), ("anomaly_map.nii.gz", values),
                                ("anomaly_mask.nii.gz", (values > 0.5).astype(np.uint8))):
                written = sitk.GetImageFromArray(array)
                written.CopyInformation(image)
                sitk.WriteImage(written, str(Path(folder) / name))
            (Path(folder) / "report.json").write_text(
                '{"threshold": {"value": 0.5}, "device": "cpu", "warnings": []}', encoding="utf-8")
            logic = UADContrastiveLogic()
            p = logic.getParameterNode()
            p.inputVolume = inputVolume
            results = logic.loadResults(p, folder)
        self.assertEqual(segments.segment_voxel_count(results.segmentation_node), 27 + 8)
        results.update_segment_from_map(1.5, 0.0)
        self.assertEqual(segments.segment_voxel_count(results.segmentation_node), 27)
        self.assertIs(logic.results(p), logic.results(p))  # cached between slider moves
        self.delayDisplay("Results without a model: passed")

    def test_DetectOnSampleData(self):
        missing = dependencies.missing_requirements()
        models = options.model_choices() if not missing else []
        if missing or not models:
            self.delayDisplay("Detection test skipped: " + (
                f"missing {', '.join(missing)}" if missing else "no model installed"))
            return
        import numpy as np
        import SampleData
        from UADContrastiveSlicerLib import geometry, segments

        self.delayDisplay("Downloading MRBrainTumor1")
        try:
            inputVolume = SampleData.downloadSample("MRBrainTumor1")
        except Exception as error:  # offline build machine
            self.delayDisplay(f"Detection test skipped: sample data not available ({error})")
            return
        logic = UADContrastiveLogic()
        p = logic.getParameterNode()
        p.inputVolume = inputVolume
        p.model = models[0].name
        p.device = "auto"

        self.delayDisplay("Running the detection (minutes on a CPU)")
        try:
            results = logic.runDetectionBlocking(p)
        finally:
            logic.stopWorker()  # this logic is the test's own: its worker ends with it

        inputArray = slicer.util.arrayFromVolume(inputVolume)
        for node in (results.healthy_node, results.map_node):
            self.assertEqual(slicer.util.arrayFromVolume(node).shape, inputArray.shape)
            np.testing.assert_allclose(geometry.ijk_to_ras_of(node), geometry.ijk_to_ras_of(inputVolume), atol=1e-4)
        anomalyMap = slicer.util.arrayFromVolume(results.map_node)
        self.assertTrue(np.isfinite(anomalyMap).all())
        self.assertIsNotNone(results.segmentation_node.GetSegmentation().GetSegment(segments.ANOMALY_SEGMENT_ID))

        # A higher threshold can only shrink the segment; above the maximum it is empty.
        low = results.update_segment_from_map(p.threshold, 0.0)
        lowCount = segments.segment_voxel_count(results.segmentation_node)
        results.update_segment_from_map(p.threshold * 2, 0.0)
        self.assertLessEqual(segments.segment_voxel_count(results.segmentation_node), lowCount)
        empty = results.update_segment_from_map(float(anomalyMap.max()) + 1, 0.0)
        self.assertEqual(empty.count, 0)
        self.assertEqual(segments.segment_voxel_count(results.segmentation_node), 0)
        self.delayDisplay(f"Test passed: {low.text()}")
