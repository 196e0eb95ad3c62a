"""The speed settings of a run (``--speed``): the ones that change how fast it computes, not
what it computes, as chosen once at its start and kept in ``run.json`` so that ``--resume``
runs on exactly the same ones (a resumed run stays bit-identical to an uninterrupted one).

What is a candidate, and what is not, is declared here once:

* ``channels_last``: NHWC convolution weights and activations; the same convolutions,
  summed in another order at most (float rounding).
* ``pass_batch_size``: the batch of whole-dataset passes without gradients (k-means
  features, DEC's Q, neighbour mining, evaluation); the modules are in eval mode, so each
  row is computed alone (float rounding at most).
* ``threads`` and ``workers``: torch's threads against DataLoader processes decoding
  file-backed images; the samples and their order stay the same.
* ``compile_backend``: ``torch.compile`` of the backbone, on CUDA only, and only where its
  compile time is paid back by the steps of the run.

Not candidates, because they change the numbers: ``views_in_one_batch`` (BatchNorm's batch
statistics over one view or both) and bf16 (the trial says when bf16 would be faster; the
choice stays ``--precision``'s).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import torch

#: a setting other than today's default is kept only when it is at least this much faster:
#: a smaller difference is within the noise of a few timed steps
MIN_GAIN = 0.05


@dataclass(frozen=True)
class SpeedChoice:
    """The settings a run trains with (None: today's default for it).

    ``measured`` holds the seconds the trial found per candidate (a step, or an image of a
    whole-dataset pass), ``bf16_speedup`` how much faster a step under bf16 autocast was
    (None: not measured), and ``note`` why candidates were left untried.
    """

    mode: str = "off"
    channels_last: bool = False
    pass_batch_size: int | None = None
    compile_backend: str | None = None
    threads: int | None = None
    workers: int | None = None
    bf16_speedup: float | None = None
    trial_seconds: float = 0.0
    measured: dict[str, float] = field(default_factory=dict)
    note: str = ""

    def as_record(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> SpeedChoice:
        known = set(cls.__dataclass_fields__)
        return cls(**{key: value for key, value in record.items() if key in known})

    def describe(self, device: torch.device) -> str:
        """One line: what the run trains with, and how it was chosen."""
        parts = [
            f"channels_last {'on' if self.channels_last else 'off'}",
            "whole-dataset passes in batches of "
            + (str(self.pass_batch_size) if self.pass_batch_size else "the device's default"),
        ]
        if self.threads is not None or self.workers is not None:
            threads = self.threads or torch.get_num_threads()
            parts.append(
                f"{threads} thread{'s' * (threads != 1)} + {self.workers} DataLoader "
                f"worker{'s' * (self.workers != 1)}"
            )
        if device.type == "cuda":
            parts.append(f"torch.compile {self.compile_backend or 'off'}")
        if self.mode == "off":
            how = "speed off (fixed defaults)"
        elif self.trial_seconds:
            how = f"speed auto (measured in {self.trial_seconds:.1f} s)"
        else:
            how = "speed auto"
        note = f"; {self.note}" if self.note else ""
        return f"{how}: {', '.join(parts)}{note}"

    def bf16_line(self) -> str | None:
        """The line saying whether bf16 would be faster (None when it was not measured)."""
        if self.bf16_speedup is None:
            return None
        if self.bf16_speedup < 1 + MIN_GAIN:
            return f"bf16: a step would not be faster here ({self.bf16_speedup:.2f}x)"
        return (
            f"bf16: a step would be {self.bf16_speedup:.2f}x faster here with --precision "
            "bf16 (it changes the numbers, so it is not chosen for you)"
        )


def fastest(seconds: dict[Any, float], default: Any) -> Any:
    """The candidate of least ``seconds``, kept only when it beats ``default`` by
    :data:`MIN_GAIN`; else ``default`` (which must have been measured)."""
    best = min(seconds, key=seconds.__getitem__)
    return best if seconds[best] < (1 - MIN_GAIN) * seconds[default] else default


def compile_is_candidate(device: torch.device, given: str | None) -> bool:
    """torch.compile is tried on CUDA only (on CPUs its compile time is rarely paid back and
    cannot be bounded here), and never when ``--compile`` chose it already."""
    return device.type == "cuda" and given is None


def compile_pays_back(
    eager_step: float, compiled_step: float, compile_seconds: float, steps: int
) -> bool:
    """Whether compiling saves time within the run: the seconds saved over its ``steps``
    exceed the compile time (which the run pays again for its own model), by
    :data:`MIN_GAIN` of the eager step at least."""
    if compiled_step >= (1 - MIN_GAIN) * eager_step:
        return False
    return (eager_step - compiled_step) * steps > compile_seconds
