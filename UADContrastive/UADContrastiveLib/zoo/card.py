"""The model card (`model.json`): one typed class that reads, validates and writes it.

Every reader and writer of a card goes through ModelCard, so a field has one meaning
everywhere. A missing or malformed field is a ModelError naming the card file and the
field. Fields a version does not interpret (description, validation figures, notes on
choices) are kept verbatim in `extra` and written back unchanged.
"""
from __future__ import annotations

import copy
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import ModelError

CARD = "model.json"
DEFAULT_TEMPLATE = "ixi-head-2mm"
DEFAULT_MIN_SIZE_MM3 = 64.0
# Written in this order; any other field follows, in the order the card had it.
_TYPED_FIELDS = ("name", "version", "engine", "modality", "template", "model_grid", "preprocessing",
                 "network", "inference", "postprocess", "thresholds", "training", "evaluation", "files")

# the card's training records of the stages a training state resumes; each counts its minutes
# and steps over every run of its checkpoint (training.stage_runner)
RESUMABLE_STAGES = ("encoder", "diffusion", "autoencoder", "denoiser")


def cumulative_training(training: dict) -> dict:
    """{"minutes", "steps"} the weights of a card took over every run that trained them: the sum
    of its stages' records, whichever resumed run wrote the card (a card without stage records,
    the atlas, has its one run's wall time). The figures a card records (`training_minutes`,
    `training_steps`) come first; older cards are read from their stage records."""
    if training.get("training_minutes") is not None:
        return {"minutes": training["training_minutes"], "steps": training.get("training_steps") or {}}
    stages = {name: training[name] for name in RESUMABLE_STAGES
              if isinstance(training.get(name), dict) and training[name].get("minutes") is not None}
    if not stages:  # one run: its wall time (older cards: wall_time_minutes)
        return {"minutes": training.get("this_run_minutes", training.get("wall_time_minutes")), "steps": {}}
    return {"minutes": round(sum(float(stage["minutes"]) for stage in stages.values()), 1),
            "steps": {name: stage["steps"] for name, stage in stages.items() if stage.get("steps") is not None}}


def status_kind(status) -> str:
    """The one-word kind of a card's `status` line ("experimental: trained 25 min..." ->
    "experimental"; "ablation: ..." -> "ablation"); "" without one: a model meant for use."""
    kind = str(status or "").partition(":")[0].strip()
    return kind if kind and " " not in kind else ""

@dataclass
class Thresholds:
    """Calibrated thresholds: {key: value}, the key used by default, and the minimum component
    size (mm^3) the values were calibrated for: detection uses that size unless told otherwise,
    or the calibrated false-positive rates would not hold."""

    values: dict[str, float] = field(default_factory=dict)
    default: str | None = None
    min_size_mm3: float = DEFAULT_MIN_SIZE_MM3
    notes: dict = field(default_factory=dict)  # how they were calibrated: rule, scans, seconds

    def to_dict(self) -> dict:
        out = {**self.notes, "values": dict(self.values), "min_size_mm3": self.min_size_mm3}
        if self.default is not None:
            out = {"default": self.default, **out}
        return out


@dataclass
class ModelCard:
    """A model folder's card. `folder` is where model.json and the weight files live."""

    folder: Path
    name: str
    engine: str
    files: dict[str, str]
    version: str = "0.0.0"
    modality: str = "T1"
    template: str = DEFAULT_TEMPLATE
    model_grid: object = None  # preprocess.templates.ModelGrid; None until read (the default grid)
    preprocessing: dict = field(default_factory=dict)
    network: dict = field(default_factory=dict)
    inference: dict = field(default_factory=dict)
    postprocess: object = None  # postprocess.filtering.PostprocessConfig
    thresholds: Thresholds = field(default_factory=Thresholds)
    training: dict = field(default_factory=dict)
    evaluation: dict = field(default_factory=dict)
    extra: dict = field(default_factory=dict)

    def __post_init__(self):
        from ..postprocess.filtering import PostprocessConfig
        from ..preprocess.templates import ModelGrid

        self.folder = Path(self.folder)
        if self.model_grid is None:
            self.model_grid = ModelGrid()
        if self.postprocess is None:
            self.postprocess = PostprocessConfig()

    @property
    def path(self) -> Path:
        return self.folder / CARD

    # ------------------------------------------------------------------ reading
    @classmethod
    def read(cls, folder: str | Path) -> ModelCard:
        """The card of a model folder; ModelError when missing, not JSON, or a field is malformed."""
        path = Path(folder) / CARD
        if not path.is_file():
            raise ModelError(path, "is missing: this folder is not a model.",
                             "Point to a folder holding model.json and its weight files.")
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as error:
            raise ModelError(path, f"is not a valid model card ({error}).") from None
        if not isinstance(data, dict):
            raise ModelError(path, "is not a valid model card (a JSON object is needed).")
        return cls.from_dict(data, Path(folder))

    @classmethod
    def from_dict(cls, data: dict, folder: str | Path) -> ModelCard:
        from ..postprocess.filtering import PostprocessConfig

        path = Path(folder) / CARD
        reader = _FieldReader(data, path)
        postprocess = dict(reader.mapping("postprocess"))
        # Older cards (and test models) kept the minimum size under postprocess; it belongs to
        # the thresholds it was calibrated with.
        legacy_min_size = postprocess.pop("min_size_mm3", None)
        return cls(
            folder=Path(folder),
            name=reader.text("name", required=True),
            engine=reader.text("engine", required=True),
            files=reader.files(),
            version=reader.text("version", default="0.0.0"),
            modality=reader.text("modality", default="T1"),
            template=reader.text("template", default=DEFAULT_TEMPLATE),
            model_grid=reader.model_grid(),
            preprocessing=reader.mapping("preprocessing"),
            network=reader.mapping("network"),
            inference=reader.mapping("inference"),
            postprocess=PostprocessConfig.from_dict(postprocess, path),
            thresholds=reader.thresholds(legacy_min_size),
            training=reader.mapping("training"),
            evaluation=reader.mapping("evaluation"),
            extra={k: copy.deepcopy(v) for k, v in data.items() if k not in _TYPED_FIELDS},
        )

    # ------------------------------------------------------------------ writing
    def to_dict(self) -> dict:
        from dataclasses import asdict

        card = {"name": self.name, "version": self.version, "engine": self.engine, "modality": self.modality,
                "template": self.template, "model_grid": self.model_grid.to_dict()}
        for key in ("preprocessing", "network", "inference"):
            if getattr(self, key):
                card[key] = copy.deepcopy(getattr(self, key))
        card["postprocess"] = asdict(self.postprocess)  # every setting explicit: a detection is reproducible
        card["thresholds"] = self.thresholds.to_dict()
        for key in ("training", "evaluation"):
            if getattr(self, key):
                card[key] = copy.deepcopy(getattr(self, key))
        card["files"] = dict(self.files)
        card.update(copy.deepcopy(self.extra))
        return card

    def write(self) -> Path:
        """Write model.json atomically (the weight files it lists are written before it)."""
        from ..io import write_text

        self.folder.mkdir(parents=True, exist_ok=True)
        return write_text(json.dumps(self.to_dict(), indent=2, default=_json_default) + "\n", self.path)

    def default_threshold(self) -> tuple[float, str]:
        """(value, how it was chosen) of the card's default threshold."""
        key = self.thresholds.default
        if key and key in self.thresholds.values:
            return float(self.thresholds.values[key]), f"calibrated on healthy brains: {key}"
        raise ModelError(self.path, "has no calibrated threshold (field 'thresholds').",
                         "Run `uadc calibrate --model ... --healthy DIR`, or pass --threshold VALUE.")


class _FieldReader:
    """Reads one field of a card's JSON, naming card and field when it is missing or malformed."""

    def __init__(self, data: dict, path: Path):
        self.data, self.path = data, path

    def fail(self, name: str, problem: str):
        raise ModelError(self.path, f"field '{name}' {problem}.",
                         "The model card is corrupt or from another version; reinstall the model.")

    def text(self, name: str, required: bool = False, default: str = "") -> str:
        if name not in self.data:
            if required:
                self.fail(name, "is missing")
            return default
        value = self.data[name]
        if not isinstance(value, str) or not value:
            self.fail(name, f"must be a non-empty string, not {value!r}")
        return value

    def mapping(self, name: str) -> dict:
        value = self.data.get(name, {})
        if value is None:
            return {}
        if not isinstance(value, dict):
            self.fail(name, f"must be an object, not {type(value).__name__}")
        return copy.deepcopy(value)

    def files(self) -> dict[str, str]:
        if "files" not in self.data:
            self.fail("files", "is missing")
        files = self.mapping("files")
        for filename, digest in files.items():
            if not isinstance(digest, str) or len(digest) != 64:
                self.fail(f"files.{filename}", f"must be a sha256 hex digest, not {digest!r}")
        return files

    def model_grid(self):
        from ..preprocess.templates import ModelGrid

        if "model_grid" not in self.data:
            return ModelGrid()  # cards from before the field existed were all made on the default grid
        grid = self.mapping("model_grid")
        try:
            size = tuple(int(v) for v in grid["size_xyz"])
            spacing = float(grid["spacing_mm"])
            center = tuple(float(v) for v in grid["center_lps_mm"])
        except (KeyError, TypeError, ValueError) as error:
            self.fail("model_grid", f"is malformed ({type(error).__name__}: {error})")
        if len(size) != 3 or min(size) < 8 or len(center) != 3 or not spacing > 0:
            self.fail("model_grid", f"must be 3 sizes >= 8, a spacing > 0 and a 3D centre, not {grid}")
        orientation = grid.get("orientation", "LPS")
        if orientation != "LPS":
            self.fail("model_grid.orientation", f"must be 'LPS', not {orientation!r}")
        return ModelGrid.from_dict(grid)

    def thresholds(self, legacy_min_size) -> Thresholds:
        data = self.mapping("thresholds")
        values = data.pop("values", {}) or {}
        if not isinstance(values, dict):
            self.fail("thresholds.values", "must be an object")
        for key, value in values.items():
            if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
                self.fail(f"thresholds.values.{key}", f"must be a finite number, not {value!r}")
        default = data.pop("default", None)
        if default is not None and not isinstance(default, str):
            self.fail("thresholds.default", f"must be a threshold key, not {default!r}")
        min_size = data.pop("min_size_mm3", legacy_min_size)
        min_size = DEFAULT_MIN_SIZE_MM3 if min_size is None else min_size
        if not isinstance(min_size, (int, float)) or isinstance(min_size, bool) or not min_size >= 0:
            self.fail("thresholds.min_size_mm3", f"must be a number >= 0, not {min_size!r}")
        return Thresholds({k: float(v) for k, v in values.items()}, default, float(min_size), data)


def _json_default(value):
    import numpy as np

    if isinstance(value, (np.integer, np.floating)):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value)}")
