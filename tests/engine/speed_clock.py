"""A fake clock for the speed trial: each reading advances it by the cost the test gives the
candidate being timed (``trial.timing``), so a test chooses which candidate is fastest and
never asserts a measured time."""

from __future__ import annotations

from cluster_ssl.engine.speed_trial import SpeedTrial


class CandidateClock:
    def __init__(self, costs: dict[str, float] | None = None, default: float = 1.0) -> None:
        self.costs = costs or {}
        self.default = default
        self.now = 0.0
        self.readings = 0
        self.trial: SpeedTrial | None = None

    def __call__(self) -> float:
        self.readings += 1
        label = "" if self.trial is None else self.trial.timing
        self.now += self.costs.get(label, self.default)
        return self.now


def fake_trial(
    costs: dict[str, float] | None = None, **options
) -> tuple[SpeedTrial, CandidateClock]:
    """A trial on a :class:`CandidateClock` (any run long enough to be measured)."""
    clock = CandidateClock(costs)
    trial = SpeedTrial(clock=clock, min_run_steps=0, **options)
    clock.trial = trial
    return trial, clock
