"""The module's panel: the .ui's widgets wired to a DetectionLogicProtocol.

Nothing here waits for a child process: the device probe, the first-use install and the
detection each run in a child that a qt.QTimer polls, so Slicer's window never freezes and
the Detect button (which turns into Cancel) can never start a second one meanwhile.
"""
from __future__ import annotations

import logging
import shutil
import sys

import qt
import slicer
import vtk
from slicer.i18n import tr as _
from slicer.util import VTKObservationMixin

from . import dependencies, findings_table, options
from . import scene as scene_logic
from .logic_protocol import DetectionLogicProtocol
from .stages import StageProgress, stage_text

POLL_INTERVAL_MS = 100
# Slider moves are merged: the segment is recomputed once the slider rests this long.
RETHRESHOLD_DELAY_MS = 120
NOT_OBSERVED = object()  # no input seen yet: the first parameter-node update refreshes everything
CHECKING_DEVICES = [options.DeviceChoice("auto", "Auto (checking devices...)"), options.DeviceChoice("cpu", "CPU")]


class DetectionWidget(VTKObservationMixin):
    def __init__(self, ui, logic: DetectionLogicProtocol, isEntered=lambda: True):
        VTKObservationMixin.__init__(self)
        self.ui = ui
        self.logic = logic
        self._isEntered = isEntered
        self._parameterNode = None
        self._parameterNodeGuiTag = None
        self._observedInput = NOT_OBSERVED
        self._run = None  # the detection running now
        self._runInputPath = None
        self._runParameterNode = None
        self._install = None  # the first-use install running now
        self._probe = None  # the device probe, until it answered
        self._stageProgress = None
        self._deviceChoices = []
        self._modelChoices = []
        self._appliedThreshold = None  # (threshold, min size) the segment currently shows
        self._exactThreshold = None  # the threshold as set, before the slider's rounding
        self._findings = []  # what the findings table shows, row by row
        self._pollTimer = qt.QTimer()
        self._pollTimer.setInterval(POLL_INTERVAL_MS)
        self._pollTimer.connect("timeout()", self.onPoll)
        self._rethresholdTimer = qt.QTimer()
        self._rethresholdTimer.setSingleShot(True)
        self._rethresholdTimer.setInterval(RETHRESHOLD_DELAY_MS)
        self._rethresholdTimer.connect("timeout()", self.applyThreshold)
        self._connectWidgets()

    def _connectWidgets(self) -> None:
        ui = self.ui
        ui.progressBar.setVisible(False)
        ui.resultsCollapsibleButton.setEnabled(False)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)
        ui.detectButton.connect("clicked(bool)", self.onDetectOrCancel)
        ui.modelComboBox.connect("currentIndexChanged(int)", self.onModelChanged)
        ui.deviceComboBox.connect("currentIndexChanged(int)", self.onDeviceChanged)
        ui.exportButton.connect("clicked(bool)", self.onExport)
        ui.showModelsFolderButton.connect("clicked(bool)", self.onShowModelsFolder)
        ui.clearModelsFolderButton.connect("clicked(bool)", self.onClearModelsFolder)
        ui.findingsTable.setColumnCount(len(findings_table.COLUMNS))
        ui.findingsTable.setHorizontalHeaderLabels(list(findings_table.COLUMNS))
        ui.findingsTable.connect("cellClicked(int,int)", self.onFindingClicked)
        self.presetButtons = {}  # preset key -> button, one per preset of the core's single list
        for preset in options.HEALTHY_FPR_PRESETS:
            button = qt.QPushButton(preset.label)
            button.connect("clicked(bool)", lambda _checked, key=preset.key: self.onPreset(key))
            ui.presetsLayout.addWidget(button)
            self.presetButtons[preset.key] = button
        self.populateModels()
        self.showDeviceChoices(CHECKING_DEVICES)
        self.initializeParameterNode()

    def cleanup(self) -> None:
        """The module is unloaded (application exit, reload): no child process outlives it."""
        for child in (self._run, self._install, self._probe):
            if child is not None:
                child.cancel()
        self.logic.stopWorker()
        self._pollTimer.stop()
        self._rethresholdTimer.stop()
        self.removeObservers()

    def enter(self) -> None:
        self.initializeParameterNode()
        if not self._deviceChoices and self._probe is None:
            self.startDeviceProbe()

    def exit(self) -> None:
        if self._run is None and self._install is None:  # a running child still needs its parameter node
            self.setParameterNode(None)

    def onSceneStartClose(self, caller, event) -> None:
        if self._run is not None:
            self.cancelRun()
        self.setParameterNode(None)
        self.logic.forgetResults()
        self.showFindings([])

    def onSceneEndClose(self, caller, event) -> None:
        if self._isEntered():
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
            self._exactThreshold = self._parameterNode.threshold
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
        self.keepThresholdExact()
        if p.inputVolume is not self._observedInput:
            self.onInputChanged()
        self.refreshButtons()
        if self.logic.results(p) is not None:
            if (p.threshold, p.minSizeMm3) != self._appliedThreshold:
                self._rethresholdTimer.start()
            scene_logic.set_overlay_opacity(slicer.mrmlScene, p.anomalyMapVolume, p.opacity)

    def keepThresholdExact(self) -> None:
        """The slider shows the threshold rounded to its decimals and, when its range changes,
        may write that rounding back: a calibrated 0.0030584 must not become 0.0031. A new
        value that is only the rounding of the exact one is replaced by the exact one."""
        p, exact = self._parameterNode, self._exactThreshold
        if exact is None or p.threshold == exact:
            self._exactThreshold = p.threshold
            return
        if round(exact, int(self.ui.thresholdSlider.decimals)) == p.threshold:
            p.threshold = exact  # modifies the node again: this method then sees the exact value
        else:
            self._exactThreshold = p.threshold

    def refreshButtons(self) -> None:
        p = self._parameterNode
        busy = self._run is not None or self._install is not None
        self.ui.detectButton.enabled = busy or (p is not None and p.inputVolume is not None and bool(p.model))
        if self._install is not None:
            self.ui.detectButton.text = _("Cancel installation")
        else:
            self.ui.detectButton.text = _("Cancel") if self._run is not None else _("Detect anomalies")
        self.ui.inputsCollapsibleButton.enabled = not busy

    def onInputChanged(self) -> None:
        """Another input: show its own results (or none), never the previous input's."""
        p = self._parameterNode
        self._observedInput = p.inputVolume
        hidden = [p.inputVolume.GetID()] if p.inputVolume is not None else []
        for selector in (self.ui.healthySelector, self.ui.anomalyMapSelector):
            selector.sortFilterProxyModel().hiddenNodeIDs = hidden  # an output must not overwrite the input
        if self._run is None:
            self.logic.selectOutputsOfInput(p)
            if p.inputVolume is not None:
                self.preselectModel(options.contrast_from_name(p.inputVolume.GetName()))
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

    def startDeviceProbe(self) -> None:
        """Ask a child Python what torch sees; the combo says "checking devices..." until it answers."""
        self._deviceChoices = []
        self.showDeviceChoices(CHECKING_DEVICES)
        try:
            self._probe = self.logic.startDeviceProbe()
        except Exception:  # the module must still open: offer the CPU
            logging.exception("UADContrastive: could not start the device probe")
            self._probe = None
            self._deviceChoices = [options.DeviceChoice("cpu", _("CPU"))]
            self.showDeviceChoices(self._deviceChoices)
            return
        self._pollTimer.start()
        self.pollDeviceProbe()

    def pollDeviceProbe(self) -> None:
        choices = self._probe.poll() if self._probe is not None else None
        if choices is not None:
            self._probe = None
            self._deviceChoices = choices or [options.DeviceChoice("cpu", _("CPU"))]
            self.showDeviceChoices(self._deviceChoices)

    def showDeviceChoices(self, choices) -> None:
        combo = self.ui.deviceComboBox
        combo.blockSignals(True)
        combo.clear()
        for index, choice in enumerate(choices):
            combo.addItem(choice.label, choice.key)
            if not choice.enabled:
                combo.model().item(index).setEnabled(False)
        combo.blockSignals(False)
        if self._parameterNode:
            self._selectComboData(combo, self._parameterNode.device)
        self.onDeviceChanged()

    def preselectModel(self, contrast) -> None:
        """Select a model reading `contrast` (from the volume's name, or what the core detected);
        the user can still choose another."""
        if self._parameterNode is None:
            return
        name = options.model_for_contrast(self._modelChoices, contrast, self._parameterNode.model)
        if name and name != self._parameterNode.model and self._selectComboData(self.ui.modelComboBox, name):
            self.onModelChanged()

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
        if self._parameterNode and self._deviceChoices:  # not while the probe runs: keep the stored choice
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

    # ------------------------------------------------------------------ install and detection
    def onDetectOrCancel(self) -> None:
        if self._install is not None:
            self.cancelInstall()
        elif self._run is not None:
            self.cancelRun()
        elif self.dependenciesReady():
            self.startDetection()

    def dependenciesReady(self) -> bool:
        """True when the detection can start now; otherwise (after the user agreed) the install
        starts in the background, and the detection follows when it ends well."""
        if sys.version_info < tuple(int(v) for v in dependencies.SLICER_PYTHON_VERSION.split(".")):
            slicer.util.errorDisplay(_("UADContrastive needs 3D Slicer {version} or newer.").format(
                version=dependencies.MINIMUM_SLICER_VERSION))
            return False
        missing = dependencies.missing_requirements()
        if not missing:
            return True
        if not slicer.util.confirmOkCancelDisplay(
                _("UADContrastive needs these Python packages, which are not installed yet:\n\n{items}\n\n"
                  "Download size: {size}. Install them now? Slicer stays usable meanwhile; the "
                  "detection starts when they are installed.")
                .format(items="\n".join(missing), size=dependencies.download_size_text(missing))):
            return False
        with slicer.util.tryWithErrorDisplay(_("Could not start the installation.")):
            self._install = self.logic.startInstall(missing)
            self.showBusy(_("Installing the Python packages..."))
            self._pollTimer.start()
        self.refreshButtons()
        return False

    def startDetection(self) -> None:
        p = self._parameterNode
        with slicer.util.tryWithErrorDisplay(_("Could not start the detection."), waitCursor=True):
            # Card defaults for threshold and minimum size: both are re-applied instantly
            # in memory afterwards, so the run never has to be repeated for them.
            self._run, self._runInputPath = self.logic.startDetection(p.inputVolume, p.model, p.device)
            self._runParameterNode = p
            self._stageProgress = StageProgress()
            self.showBusy(self.ui.cpuWarningLabel.text or _("Starting..."))
            self._pollTimer.start()
        self.refreshButtons()

    def showBusy(self, text: str) -> None:
        self.ui.progressBar.setValue(0)
        self.ui.progressBar.setVisible(True)
        self.ui.stageLabel.text = text

    def onPoll(self) -> None:
        """The poll timer: whatever child runs (probe, install, detection) is read, never waited for."""
        try:
            if self._probe is not None:
                self.pollDeviceProbe()
            if self._install is not None:
                self.pollInstall()
            if self._run is not None:
                self.pollDetection()
        except Exception:  # a slot must not leak exceptions into Slicer's console
            logging.exception("UADContrastive: polling a child process failed")
        if self._probe is None and self._install is None and self._run is None:
            self._pollTimer.stop()

    def pollInstall(self) -> None:
        install = self._install
        lines = install.poll()
        self.ui.progressBar.setValue(int(install.fraction * 100))
        if lines:
            logging.info("UADContrastive install: %s", "\n".join(lines))
            self.ui.stageLabel.text = f"{install.step_label}: {lines[-1]}"
        if not install.finished:
            return
        self._install = None
        install.cleanup()
        self.ui.progressBar.setVisible(False)
        self.refreshButtons()
        if not install.ok:
            message = install.failure_message()
            self.ui.stageLabel.text = _("The Python packages were not installed.")
            slicer.util.errorDisplay(message, detailedText="".join(install.output) or None)
            return
        self.ui.stageLabel.text = _("Python packages installed.")
        self.populateModels()
        self.startDeviceProbe()  # torch may see a GPU now
        if not dependencies.missing_requirements():
            self.startDetection()

    def cancelInstall(self) -> None:
        install, self._install = self._install, None
        install.cancel()
        self.ui.progressBar.setVisible(False)
        self.ui.stageLabel.text = _("Installation cancelled. Nothing was changed in the scene.")
        self.refreshButtons()

    def pollDetection(self) -> None:
        run = self._run
        for event in run.poll():
            percent = int(self._stageProgress.update(event.stage, event.fraction) * 100)
            self.ui.progressBar.setValue(percent)
            text = stage_text(event.stage, event.message, percent)
            if text:
                self.ui.stageLabel.text = text
        if run.finished:
            self.finishRun()

    def finishRun(self) -> None:
        run, self._run = self._run, None
        self.ui.progressBar.setVisible(False)
        outcome = run.outcome(self._runInputPath)
        try:
            if outcome.ok:
                if run.stderr_tail.strip():  # Slicer's log is what users attach to bug reports
                    logging.info("UADContrastive: the detection's messages:\n%s", run.stderr_tail.rstrip())
                with slicer.util.tryWithErrorDisplay(_("Could not load the results."), waitCursor=True):
                    p = self._runParameterNode
                    results = self.logic.loadResults(p, outcome.result_dir)
                    self.ui.stageLabel.text = _("Done.")
                    if p is not self._parameterNode:  # the user left the module meanwhile
                        self.initializeParameterNode()
                    self.refreshResultsSection(adoptReportDefaults=True)
                    self.logic.showResults(results, p.opacity)
                    self.preselectModel(options.contrast_from_message(" ".join(results.report.get("warnings") or [])))
            else:
                logging.warning("UADContrastive: the detection failed: %s\n%s", outcome.message, run.stderr_tail)
                self.ui.stageLabel.text = outcome.message
                self.preselectModel(options.contrast_from_message(outcome.message))
                slicer.util.errorDisplay(outcome.message + ("\n\n" + outcome.advice if outcome.advice else ""),
                                         detailedText=run.stderr_tail or None)
        finally:
            run.cleanup()
            self.refreshButtons()

    def cancelRun(self) -> None:
        run, self._run = self._run, None
        if run is not None:
            run.cancel()
        self.ui.progressBar.setVisible(False)
        self.ui.stageLabel.text = _("Cancelled. The scene was left unchanged.")
        self.refreshButtons()

    # ------------------------------------------------------------------ results
    def refreshResultsSection(self, adoptReportDefaults: bool = False, recomputeSegment: bool = True) -> None:
        results = self.logic.results(self._parameterNode) if self._parameterNode else None
        self.ui.resultsCollapsibleButton.setEnabled(results is not None)
        self.ui.exportButton.setEnabled(results is not None)
        self.refreshPresets()
        if results is None:
            self.ui.resultsLabel.text = _("No results yet.")
            self.ui.reportLabel.text = ""
            self.showFindings([])
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
            self.showFindings(results.findings(p.threshold, p.minSizeMm3))

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
        self.showFindings(results.findings(p.threshold, p.minSizeMm3))

    def showFindings(self, findings: list[dict]) -> None:
        """One row per region: number, location, mL, peak (findings_table)."""
        self._findings = list(findings)
        table = self.ui.findingsTable
        table.setRowCount(0)
        rows = findings_table.table_rows(self._findings)
        table.setRowCount(len(rows))
        for row, cells in enumerate(rows):
            for column, text in enumerate(cells):
                table.setItem(row, column, qt.QTableWidgetItem(text))
        table.setVisible(bool(rows))

    def onFindingClicked(self, row: int, column: int = 0) -> None:
        results = self.logic.results(self._parameterNode) if self._parameterNode else None
        if results is not None and 0 <= row < len(self._findings):
            results.centre_slice_views_on(self._findings[row])

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
