"""UADContrastive: unsupervised anomaly detection in brain MRI, as a 3D Slicer module.

What Slicer needs and nothing more: the module's description, the thin widget and logic
classes (the panel is UADContrastiveSlicerLib.detection_widget, the logic
UADContrastiveSlicerLib.detection_logic, the parameter node
UADContrastiveSlicerLib.parameter_node) and the self-test. The detection itself runs in a
separate PythonSlicer process (UADContrastiveLib); torch never enters Slicer's GUI process.
"""

from pathlib import Path

import slicer
import UADContrastiveSlicerLib
from slicer.i18n import tr as _
from slicer.i18n import translate
from slicer.ScriptedLoadableModule import (
    ScriptedLoadableModule,
    ScriptedLoadableModuleLogic,
    ScriptedLoadableModuleTest,
    ScriptedLoadableModuleWidget,
)
from UADContrastiveSlicerLib import dependencies, options
from UADContrastiveSlicerLib.detection_logic import DetectionLogic
from UADContrastiveSlicerLib.detection_widget import DetectionWidget
from UADContrastiveSlicerLib.parameter_node import UADContrastiveParameterNode


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


class UADContrastiveWidget(ScriptedLoadableModuleWidget):
    def __init__(self, parent=None, logic=None) -> None:
        """`logic` replaces UADContrastiveLogic (tests drive the widget with a stand-in)."""
        self._injectedLogic = logic
        self.logic = None
        self.panel = None
        ScriptedLoadableModuleWidget.__init__(self, parent)

    def setup(self) -> None:
        ScriptedLoadableModuleWidget.setup(self)
        uiWidget = slicer.util.loadUI(self.resourcePath("UI/UADContrastive.ui"))
        self.layout.addWidget(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)
        self.logic = self._injectedLogic or UADContrastiveLogic()
        self.panel = DetectionWidget(slicer.util.childWidgetVariables(uiWidget), self.logic,
                                     isEntered=lambda: self.parent.isEntered)
        registerLayout()  # also when the module is (re)loaded after Slicer started

    def cleanup(self) -> None:
        """Slicer calls this when the module is unloaded: on application exit and on reload."""
        if self.panel is not None:
            self.panel.cleanup()

    def enter(self) -> None:
        self.panel.enter()

    def exit(self) -> None:
        self.panel.exit()

    def onReload(self) -> None:
        """Developer reload: the helper modules first, then this file (Slicer's own reload)."""
        UADContrastiveSlicerLib.reload_submodules()
        ScriptedLoadableModuleWidget.onReload(self)


class UADContrastiveLogic(ScriptedLoadableModuleLogic, DetectionLogic):
    """Slicer's logic base (the parameter node) + the module's logic (DetectionLogic)."""

    def __init__(self, parent=None):
        ScriptedLoadableModuleLogic.__init__(self, parent)
        DetectionLogic.__init__(self)

    def getParameterNode(self):
        return UADContrastiveParameterNode(super().getParameterNode())


class UADContrastiveTest(ScriptedLoadableModuleTest):
    """In-Slicer self-test. The scene logic is tested on a synthetic result folder (needs no
    torch, model or network, so it runs on an extension build machine); the full detection
    on Slicer's MRBrainTumor1 runs only when torch, a model and the sample data are there,
    and is otherwise reported as skipped (unittest.SkipTest), never as passed."""

    def setUp(self):
        slicer.mrmlScene.Clear()

    def runTest(self):
        self.setUp()
        self.test_ResultsWithoutModel()
        self.setUp()
        self.test_DetectOnSampleData()

    def skipDetection(self, reason: str) -> None:
        self.delayDisplay(f"Detection test skipped: {reason}")
        self.skipTest(f"detection not tested: {reason}")

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
            self.skipDetection(f"missing {', '.join(missing)}" if missing else "no model installed")
        import numpy as np
        import SampleData
        from UADContrastiveSlicerLib import geometry, segments

        self.delayDisplay("Downloading MRBrainTumor1")
        try:
            inputVolume = SampleData.downloadSample("MRBrainTumor1")
        except Exception as error:  # offline build machine
            self.skipDetection(f"sample data not available ({error})")
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
