"""One forward-only progress value from the detection's per-stage fractions.

`uadc detect --json-progress` reports each stage's own fraction, which restarts at 0 for
every stage; a bar fed those directly jumps back at each stage. Each stage gets a share of
the bar in the order the detection runs them (shares measured from CPU runs: the
reconstruction dominates), and the bar never moves backwards, whatever arrives (messages
such as "info" lines, a stage reported twice, several inputs in one run).
"""
from __future__ import annotations

from . import core

# The stage names come from the core's protocol (standard library only: importing it here
# loads none of the core's dependencies, which may not be installed yet).
_protocol = core.protocol()

# (stage name as printed by `uadc detect`, share of the whole run)
STAGE_WEIGHTS = (
    (_protocol.LOAD_MODEL, 0.05),
    (_protocol.PREPROCESS, 0.15),
    (_protocol.RECONSTRUCT, 0.65),
    (_protocol.ANOMALY_MAP, 0.08),
    (_protocol.WRITE, 0.07),
)
FINAL_STAGES = (_protocol.DONE,)


class StageProgress:
    """Feed it (stage, fraction) events; read `.percent` (0-100, never decreasing)."""

    def __init__(self, weights=STAGE_WEIGHTS):
        total = float(sum(w for _, w in weights))
        self._start = {}
        self._weight = {}
        position = 0.0
        for name, weight in weights:
            self._start[name] = position / total
            self._weight[name] = weight / total
            position += weight
        self.fraction = 0.0

    def update(self, stage: str, fraction: float) -> float:
        """The overall fraction after this event (unknown stages leave it unchanged)."""
        if stage in FINAL_STAGES:
            overall = 1.0
        elif stage in self._start:
            overall = self._start[stage] + self._weight[stage] * min(max(float(fraction), 0.0), 1.0)
        else:
            overall = self.fraction
        self.fraction = max(self.fraction, min(overall, 1.0))
        return self.fraction

    @property
    def percent(self) -> int:
        return int(self.fraction * 100)


# What the panel says for each stage (the CLI's stage names are terse).
STAGE_TEXTS = {
    _protocol.LOAD_MODEL: "Loading the model",
    _protocol.PREPROCESS: "Preparing the image (registration, brain mask)",
    _protocol.RECONSTRUCT: "Reconstructing a healthy brain",
    _protocol.ANOMALY_MAP: "Computing the anomaly map",
    _protocol.WRITE: "Writing the results",
    _protocol.DONE: "Loading the results",
}
# Stages whose message is meant for the reader as it is ("info" lines, errors).
MESSAGE_STAGES = (_protocol.INFO, _protocol.ERROR)


def stage_text(stage: str, message: str, percent: int) -> str:
    """One line for the stage label: never the raw "stage: message" record."""
    if stage in MESSAGE_STAGES:
        text = message.removeprefix("uadc: ").strip()
        return text[:1].upper() + text[1:] if text else ""
    label = STAGE_TEXTS.get(stage, stage[:1].upper() + stage[1:])
    return f"{label}... {percent} %"
