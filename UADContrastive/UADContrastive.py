"""UADContrastive: unsupervised anomaly detection in brain MRI, as a 3D Slicer module.

This file only wires the GUI to the helpers in UADContrastiveSlicerLib (MRML logic,
child process, options) and to the pure core UADContrastiveLib, which runs in a separate
PythonSlicer process. torch is never imported here at load time.
"""

import importlib.util
import logging
import os
import shutil
import sys
from pathlib import Path

import qt
import slicer
import vtk
from slicer import vtkMRMLScalarVolumeNode, vtkMRMLSegmentationNode
from slicer.i18n import tr as _
from slicer.i18n import translate
from slicer.parameterNodeWrapper import parameterNodeWrapper
from slicer.ScriptedLoadableModule import (
    ScriptedLoadableModule,
    ScriptedLoadableModuleLogic,
    ScriptedLoadableModuleTest,
    ScriptedLoadableModuleWidget,
)
from slicer.util import VTKObservationMixin
from UADContrastiveSlicerLib import options, process
from UADContrastiveSlicerLib import scene as scene_logic

MODULE_DIR = Path(__file__).resolve().parent
POLL_INTERVAL_MS = 100
# Slider moves are merged: the segment is recomputed once the slider rests this long.
RETHRESHOLD_DELAY_MS = 120


class UADContrastive(ScriptedLoadableModule):
    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = _("UADContrastive")
        self.parent.categories = [translate("qSlicerAbstractCoreModule", "Segmentation")]
        self.parent.dependencies = []
        self.parent.contributors = ["UADContrastive developers"]
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


@parameterNodeWrapper
class UADContrastiveParameterNode:
    inputVolume: vtkMRMLScalarVolumeNode
    model: str = ""
    device: str = "auto"
    threshold: float = 0.5
    minSizeMm3: float = 0.0
    opacity: float = 0.5
    healthyVolume: vtkMRMLScalarVolumeNode
    anomalyMapVolume: vtkMRMLScalarVolumeNode
    segmentation: vtkMRMLSegmentationNode


class UADContrastiveWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    def __init__(self, parent=None) -> None:
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic = None
        self._parameterNode = None
        self._parameterNodeGuiTag = None
        self._run = None
        self._runInputPath = None
        self._runParameterNode = None
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

    # ------------------------------------------------------------------ setup
    def setup(self) -> None:
        ScriptedLoadableModuleWidget.setup(self)
        uiWidget = slicer.util.loadUI(self.resourcePath("UI/UADContrastive.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)
        self.logic = UADContrastiveLogic()

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

    def cleanup(self) -> None:
        if self._run is not None:
            self._run.cancel()
        self._pollTimer.stop()
        self._rethresholdTimer.stop()
        self.removeObservers()

    def enter(self) -> None:
        self.initializeParameterNode()
        if not self._deviceChoices:
            self.populateDevices()  # imports torch: only when the user opens the module

    def exit(self) -> None:
        if self._run is None:  # a running detection still needs its parameter node
            self.setParameterNode(None)

    def onSceneStartClose(self, caller, event) -> None:
        if self._run is not None:
            self.cancelRun()
        self.setParameterNode(None)

    def onSceneEndClose(self, caller, event) -> None:
        if self.parent.isEntered:
            self.initializeParameterNode()

    # ------------------------------------------------------------------ parameter node
    def initializeParameterNode(self) -> None:
        self.setParameterNode(self.logic.getParameterNode())
        if not self._parameterNode.inputVolume:
            firstVolume = slicer.mrmlScene.GetFirstNodeByClass("vtkMRMLScalarVolumeNode")
            if firstVolume:
                self._parameterNode.inputVolume = firstVolume

    def setParameterNode(self, inputParameterNode) -> None:
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self.onParametersModified)
        self._parameterNode = inputParameterNode
        if self._parameterNode:
            # Range first: connectGui pushes the stored threshold into the slider, which
            # would clamp it (and write the clamped value back) if the range were too small.
            self.refreshThresholdRange()
            self._parameterNodeGuiTag = self._parameterNode.connectGui(self.ui)
            self.addObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self.onParametersModified)
            # A stored choice that is no longer offered falls back to the combo's current item.
            if not self._selectComboData(self.ui.modelComboBox, self._parameterNode.model):
                self.onModelChanged()
            if not self._selectComboData(self.ui.deviceComboBox, self._parameterNode.device):
                self.onDeviceChanged()
            # Do not recompute the segment here: the user may have edited it meanwhile.
            self.refreshResultsSection(recomputeSegment=False)
            self.onParametersModified()

    def onParametersModified(self, caller=None, event=None) -> None:
        p = self._parameterNode
        if p is None:
            return
        running = self._run is not None
        self.ui.detectButton.enabled = running or (p.inputVolume is not None and bool(p.model))
        self.ui.detectButton.text = _("Cancel") if running else _("Detect anomalies")
        self.ui.inputsCollapsibleButton.enabled = not running
        if self.logic.results(p) is not None:
            if (p.threshold, p.minSizeMm3) != self._appliedThreshold:
                self._rethresholdTimer.start()
            scene_logic.set_overlay_opacity(slicer.mrmlScene, p.anomalyMapVolume, p.opacity)

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
        combo = self.ui.deviceComboBox
        combo.blockSignals(True)
        combo.clear()
        try:
            self._deviceChoices = options.device_choices()
        except Exception:  # a broken CUDA driver: still offer the CPU
            logging.exception("UADContrastive: querying CUDA failed")
            self._deviceChoices = [options.DeviceChoice("cpu", _("CPU (CUDA query failed)"))]
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
            self.ui.progressBar.setValue(0)
            self.ui.progressBar.setVisible(True)
            self.ui.stageLabel.text = self.ui.cpuWarningLabel.text or _("Starting...")
            self._pollTimer.start()
        self.onParametersModified()

    def ensureDependencies(self) -> bool:
        """First use: one dialog listing what Slicer's Python lacks, then install it."""
        ext_setup = self.logic.extSetupModule()
        if ext_setup is None:
            return True  # not shipped (developer checkout without it): let the run report
        missing = ext_setup.missing_in_slicer()
        if not missing:
            return True
        if not slicer.util.confirmOkCancelDisplay(
                _("UADContrastive needs these Python packages, which are not installed yet:\n\n{items}\n\n"
                  "Install them now? This downloads several hundred MB and can take a few minutes.")
                .format(items="\n".join(missing))):
            return False
        with slicer.util.tryWithErrorDisplay(_("Installing the dependencies failed."), waitCursor=True):
            ext_setup.install_into_slicer(missing)
        self.populateModels()
        self.populateDevices()
        return not ext_setup.missing_in_slicer()

    def onPollProcess(self) -> None:
        run = self._run
        if run is None:
            self._pollTimer.stop()
            return
        for event in run.poll():
            self.ui.progressBar.setValue(int(round(event.fraction * 100)))
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
            return
        # The range must be set before the value, or the slider clamps the value.
        self.refreshThresholdRange()
        if adoptReportDefaults:
            self.logic.applyReportDefaults(self._parameterNode, results)
        if recomputeSegment:
            self.applyThreshold(force=True)
        else:
            p = self._parameterNode
            self._appliedThreshold = (p.threshold, p.minSizeMm3)
            self.ui.resultsLabel.text = results.summarize(p.threshold, p.minSizeMm3).text()

    def refreshThresholdRange(self) -> None:
        results = self.logic.results(self._parameterNode) if self._parameterNode else None
        if results is None:
            return
        _low, high = results.map_range()
        minimum, maximum, step = options.threshold_slider_range(high, list(self.presetValues().items()))
        slider = self.ui.thresholdSlider
        slider.minimum, slider.maximum, slider.singleStep = minimum, maximum, step

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

    def getParameterNode(self):
        return UADContrastiveParameterNode(super().getParameterNode())

    def startDetection(self, inputVolume, model: str, device: str):
        """Write the input to a private temp folder and start the detection there."""
        workDir = process.make_work_dir()
        try:
            inputPath = scene_logic.write_input_volume(inputVolume, workDir / process.INPUT_NAME)
            command = process.detect_command(inputPath, workDir / "out", model, device, None)
            run = process.DetectionRun(command, workDir, env=process.child_environment(self.childBaseEnvironment()))
            run.start()
        except Exception:
            shutil.rmtree(workDir, ignore_errors=True)
            raise
        logging.info("UADContrastive: %s", " ".join(command))
        return run, inputPath

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
        return results

    @staticmethod
    def applyReportDefaults(parameterNode, results) -> None:
        """Threshold and minimum size the detection itself used (the card's defaults)."""
        p, report = parameterNode, results.report
        with slicer.util.NodeModify(p.parameterNode):
            p.threshold = float(report.get("threshold", {}).get("value", p.threshold))
            p.minSizeMm3 = options.default_min_size(report, p.minSizeMm3)

    def results(self, parameterNode):
        p = parameterNode
        if p is None or not (p.inputVolume and p.anomalyMapVolume and p.segmentation):
            return None
        if p.anomalyMapVolume.GetImageData() is None:
            return None
        return scene_logic.AnomalyResults(p.inputVolume, p.healthyVolume, p.anomalyMapVolume, p.segmentation)

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
            if run.process.poll() is None:
                run.cancel()
            run.cleanup()

    @staticmethod
    def userModelsFolder() -> Path:
        """Downloaded/imported models (never the ones shipped inside the extension)."""
        from UADContrastiveLib import zoo

        return Path(zoo.model_dirs()[-1])

    @staticmethod
    def extSetupModule():
        """ext_setup.py ships beside the module (installed) or one level up (source tree)."""
        for folder in (MODULE_DIR, MODULE_DIR.parent):
            path = folder / "ext_setup.py"
            if path.exists():
                spec = importlib.util.spec_from_file_location("uadc_ext_setup", path)
                module = importlib.util.module_from_spec(spec)
                sys.modules.setdefault("uadc_ext_setup", module)
                spec.loader.exec_module(module)
                return module
        return None


class UADContrastiveTest(ScriptedLoadableModuleTest):
    """Runs the real detection on Slicer's MRBrainTumor1 sample (needs an installed model)."""

    def setUp(self):
        slicer.mrmlScene.Clear()

    def runTest(self):
        self.setUp()
        self.test_DetectOnSampleData()

    def test_DetectOnSampleData(self):
        import numpy as np
        import SampleData
        from UADContrastiveSlicerLib import geometry, segments

        self.delayDisplay("Downloading MRBrainTumor1")
        inputVolume = SampleData.downloadSample("MRBrainTumor1")
        logic = UADContrastiveLogic()
        p = logic.getParameterNode()
        p.inputVolume = inputVolume
        models = options.model_choices()
        self.assertTrue(models, "no model installed")
        p.model = models[0].name
        p.device = "auto"

        self.delayDisplay("Running the detection (minutes on a CPU)")
        results = logic.runDetectionBlocking(p)

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
