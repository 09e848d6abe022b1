"""One forward-only progress value from the detection's per-stage fractions.

`uadc detect --json-progress` reports each stage's own fraction, which restarts at 0 for
every stage; a bar fed those directly jumps back at each stage. Each stage gets a share of
the bar in the order the detection runs them (shares measured from CPU runs: the
reconstruction dominates), and the bar never moves backwards, whatever arrives (messages
such as "info" lines, a stage reported twice, several inputs in one run).
"""
from __future__ import annotations

# (stage name as printed by `uadc detect`, share of the whole run)
STAGE_WEIGHTS = (
    ("load model", 0.05),
    ("preprocess", 0.15),
    ("reconstruct", 0.65),
    ("anomaly map", 0.08),
    ("write", 0.07),
)
FINAL_STAGES = ("done",)


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
