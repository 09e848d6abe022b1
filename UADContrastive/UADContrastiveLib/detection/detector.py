"""A loaded model, ready to run detection on any number of volumes.

One detection: preprocess onto the card's model grid -> engine reconstruction -> the
anomaly-map chain (detection.anomaly_map: healthy score, filter, input grid) -> threshold +
minimum component size. A model load reads its card once and hashes its files once (the
checksum check before any weight is loaded); a Detection carries everything its writer
(outputs.write) needs, so the writer never reaches back into the Detector.
"""
from __future__ import annotations

import contextlib
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import ModelError
from ..protocol import ANOMALY_MAP, PREPROCESS, RECONSTRUCT

if TYPE_CHECKING:
    import numpy as np
    import SimpleITK as sitk

    from ..preprocess.pipeline import Preprocessed
    from ..preprocess.templates import Template
    from ..zoo import ModelCard

# numpy, SimpleITK, scipy (through preprocessing) are imported where they are used, not here:
# `uadc detect` imports this module and starts the model load (the slowest part of start-up)
# at once, and those imports then run beside it instead of before it.


class ModelLoadError(Exception):
    """The model could not be loaded (a ModelError from the loading thread): ends the whole run."""

    def __init__(self, error: ModelError):
        super().__init__(str(error))
        self.error = error


def _load_engine(card: ModelCard, device: str, lean_imports: bool = False):
    """(engine, device name): the heavy part of loading a model (checksums, torch, MONAI, weights).

    lean_imports: import the engine's code without the optional packages MONAI would pull in
    (see lean_imports; 2 CPU s less). Only for processes that run nothing but detection, such as
    `uadc detect`: in them MONAI's scipy- or pandas-based features stay unavailable."""
    from ..engines import engine_class, load_engine, resolve_device

    resolved = resolve_device(device)  # imports torch, with everything importable
    if lean_imports:
        from ..lean_imports import import_lean

        import_lean(lambda: engine_class(card.engine, card.path))
    return load_engine(card.folder, resolved, card), str(resolved)


def _in_background(function, *args) -> Future:
    """function(*args) in a daemon thread: a cancelled run (SIGTERM) exits at once instead of
    waiting for the load to finish, as a ThreadPoolExecutor's worker would make it."""
    future: Future = Future()

    def work():
        try:
            future.set_result(function(*args))
        except BaseException as error:  # noqa: BLE001 - handed to whoever waits for the result
            future.set_exception(error)

    threading.Thread(target=work, name="uadc-model-load", daemon=True).start()
    return future


# A calibrated threshold flags about 0.5 % of a healthy brain; ten times that is no longer a few
# findings in a healthy-looking scan but a scan unlike the healthy ones everywhere.
WIDESPREAD_FLAGGED_SHARE = 0.05


def widespread_flagging_warning(mask, brain) -> str | None:
    """A warning when the mask covers more than WIDESPREAD_FLAGGED_SHARE of the brain: the scan as a
    whole differs from the healthy scans the model was calibrated on (another scanner or protocol,
    contrast, resolution, a processed or averaged image), so its regions are not findings."""
    import numpy as np

    inside = int(np.count_nonzero(brain))
    share = np.count_nonzero(np.logical_and(mask, brain)) / inside if inside else 0.0
    if share <= WIDESPREAD_FLAGGED_SHARE:
        return None
    return (f"{100 * share:.0f} % of the brain is flagged (a healthy scan: at most 0.5 %): this scan differs from the "
            "model's healthy training scans as a whole (scanner, protocol, contrast or resolution), so the flagged "
            "regions are not reliable findings. Such a scan needs a model trained on healthy scans like it "
            "(README: Training on your own healthy scans).")


@dataclass
class Reconstruction:
    """A scan on the model grid and its healthy reconstruction, with what maps it back."""

    preprocessed: Preprocessed
    quality: dict
    volume: np.ndarray
    healthy: np.ndarray
    brain: np.ndarray
    spread: np.ndarray | None
    timings: dict


@dataclass
class Detection:
    """Everything one detection produced, on the input grid, and what its report names: the
    model (Detector.summary), the device it ran on, the card's thresholds and its template
    (whose label atlas names the findings' regions)."""

    preprocessed: Preprocessed
    healthy: sitk.Image
    anomaly_map: sitk.Image
    anomaly_mask: sitk.Image
    components: list
    threshold: float
    threshold_method: str
    min_size_mm3: float
    uncertainty: sitk.Image | None
    timings: dict
    quality: dict
    model: dict
    device: str
    thresholds_available: dict
    template: Template


class Detector:
    """A loaded model + the template on its grid, ready to run on any number of volumes.

    background=True loads the engine (importing torch and MONAI, reading the weights: about
    2-3 s on a laptop CPU) in a thread, so that it overlaps the first volume's reading and
    registration, which need neither; `engine` and `device` wait for it. Errors of the load
    are raised where they are first needed, as ModelLoadError (see `engine`). lean_imports: see
    _load_engine (for processes that only detect). statistics_required=False loads a model whose
    healthy statistics are outdated or absent (for `uadc calibrate`): its maps are raw residuals."""

    def __init__(self, model: str | Path | None = None, device: str = "auto", background: bool = False,
                 lean_imports: bool = False, statistics_required: bool = True):
        from ..preprocess.templates import template_for_model
        from ..zoo import ModelCard, resolve_model
        from .anomaly_map import read_statistics

        self.model_dir = resolve_model(model)
        self.card = ModelCard.read(self.model_dir)  # the only read: the load and the report share it
        self._loading = None
        if background:
            self._loading = _in_background(_load_engine, self.card, device, lean_imports)
        else:
            self._engine, self._device = _load_engine(self.card, device, lean_imports)
        self.template = template_for_model(self.card.template, self.card.model_grid, self.card.path)
        self.postprocess = self.card.postprocess
        # statistics_required=False: a model about to be (re)calibrated may hold outdated statistics
        self.statistics = read_statistics(self.model_dir, self.card) if statistics_required else None
        # The model as the report names it. The checksums are the card's: the load checks every
        # file against them before it loads a weight, and a detection runs only after the load.
        self.summary = {"name": self.card.name, "version": self.card.version, "engine": self.card.engine,
                        "path": str(self.model_dir), "sha256": dict(self.card.files)}

    def _wait_for_engine(self) -> None:
        if self._loading is not None:
            try:
                self._engine, self._device = self._loading.result()
            except ModelError as error:  # not the current input's fault: stop the run, not only this input
                raise ModelLoadError(error) from None
            self._loading = None

    def after_load(self, function) -> None:
        """function() in the loading thread once the model has loaded (here and now when it already
        has): for work needed later that should neither delay the load nor wait until it is needed.
        Its errors are ignored: whoever needs the work done does it again and sees them."""
        def call(_=None):
            with contextlib.suppress(Exception):  # see the docstring
                function()

        if self._loading is None:
            call()
        else:
            self._loading.add_done_callback(call)

    @property
    def engine(self):
        self._wait_for_engine()
        return self._engine

    @property
    def device(self) -> str:
        self._wait_for_engine()
        return self._device

    def default_threshold(self) -> tuple[float, str]:
        return self.card.default_threshold()

    def default_min_size(self) -> float:
        """The minimum component size the card's thresholds were calibrated with."""
        return self.card.thresholds.min_size_mm3

    @property
    def chain(self):
        """The model's anomaly-map chain (detection.anomaly_map): residual -> score -> map -> input grid."""
        from .anomaly_map import AnomalyMapChain

        return AnomalyMapChain(self.engine.residual, self.statistics, self.postprocess, self.template.grid.spacing)

    def reconstruct_scan(self, image: sitk.Image, brain_mask: sitk.Image | None = None, uncertainty_samples: int = 0,
                         progress=None, source: str | None = None) -> Reconstruction:
        """The first half of a detection: preprocessing onto the model grid and the engine's healthy
        reconstruction (what calibration needs before any map is made)."""
        import SimpleITK as sitk

        from ..preprocess.checked import preprocess_checked

        report = progress or (lambda stage, fraction, message="": None)
        timings = {}
        start = time.perf_counter()
        report(PREPROCESS, 0.0, "registration to the template")
        pre, quality = preprocess_checked(image, self.template, brain_mask, self.card.modality, source)
        timings["preprocess"] = time.perf_counter() - start

        start = time.perf_counter()
        engine = self.engine  # a model loading in the background is waited for here
        timings["model_wait"] = time.perf_counter() - start
        start = time.perf_counter()
        # the stage begins now (the engine's own records come only after its first pass)
        report(RECONSTRUCT, 0.0)
        volume = sitk.GetArrayFromImage(pre.model_input)
        brain = sitk.GetArrayFromImage(pre.brain_mask_model) > 0
        reconstruction_progress = lambda fraction: report(RECONSTRUCT, fraction)  # noqa: E731
        spread = None
        if uncertainty_samples > 0:
            healthy, spread = engine.reconstruct_with_uncertainty(
                volume, brain, samples=uncertainty_samples, progress=reconstruction_progress)
        else:
            healthy = engine.reconstruct(volume, brain, progress=reconstruction_progress)
        timings["reconstruct"] = time.perf_counter() - start
        return Reconstruction(pre, quality, volume, healthy, brain, spread, timings)

    def run(self, image: sitk.Image, brain_mask: sitk.Image | None = None, threshold: float | None = None,
            min_size_mm3: float | None = None, uncertainty_samples: int = 0, progress=None,
            source: str | None = None) -> Detection:
        import numpy as np
        import SimpleITK as sitk

        from ..io import image_like
        from ..postprocess.components import threshold_components

        report = progress or (lambda stage, fraction, message="": None)
        rebuilt = self.reconstruct_scan(image, brain_mask, uncertainty_samples, progress, source)
        pre, quality, volume, healthy, brain, spread = (rebuilt.preprocessed, rebuilt.quality, rebuilt.volume,
                                                         rebuilt.healthy, rebuilt.brain, rebuilt.spread)
        timings = rebuilt.timings
        start = time.perf_counter()
        report(ANOMALY_MAP, 0.0)
        chain = self.chain
        model_map = chain.model_map(volume, healthy, brain)
        # Input-grid arrays are large (9 M voxels at 1 mm): views and in-place edits, no extra copies.
        brain_input = sitk.GetArrayViewFromImage(pre.brain_mask_input) > 0
        anomaly_map = image_like(chain.on_input_grid(model_map, pre), image)
        healthy_on_input = pre.to_input_grid(pre.intensity_to_input(healthy))  # the view below needs it alive
        healthy_input = sitk.GetArrayViewFromImage(healthy_on_input)
        # outside the brain the healthy image is the input
        healthy_array = sitk.GetArrayFromImage(image).astype(np.float32, copy=False)
        np.copyto(healthy_array, healthy_input, where=brain_input)
        healthy_image = image_like(healthy_array, image)
        uncertainty = None
        if spread is not None:
            spread_input = sitk.GetArrayFromImage(pre.to_input_grid(spread.astype(np.float32)))
            spread_input[~brain_input] = 0.0
            uncertainty = image_like(spread_input.astype(np.float32), image)
        timings["anomaly_map"] = time.perf_counter() - start

        start = time.perf_counter()
        if threshold is None:
            threshold, method = self.default_threshold()
        else:
            method = "given on the command line"
        min_size = self.default_min_size() if min_size_mm3 is None else float(min_size_mm3)
        mask_array, components = threshold_components(
            sitk.GetArrayViewFromImage(anomaly_map), threshold, min_size, image.GetSpacing())
        anomaly_mask = image_like(mask_array.astype(np.uint8), image)
        warning = widespread_flagging_warning(mask_array, sitk.GetArrayViewFromImage(pre.brain_mask_input) > 0)
        if warning:
            quality = {**quality, "warnings": [*quality.get("warnings", []), warning]}
        timings["threshold"] = time.perf_counter() - start
        report(ANOMALY_MAP, 1.0)
        return Detection(pre, healthy_image, anomaly_map, anomaly_mask, components, float(threshold), method,
                         min_size, uncertainty, timings, quality, model=dict(self.summary), device=self.device,
                         thresholds_available=dict(self.card.thresholds.values), template=self.template)
