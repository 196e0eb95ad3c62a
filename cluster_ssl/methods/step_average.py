"""SCAN's exponential moving average of the weights during self-labelling."""

from __future__ import annotations

import torch
from torch import nn


class StepAverage:
    """Damps every optimiser step towards the weights before it, as SCAN's ``utils/ema.py``
    runs in ``selflabel_train`` (``update_params`` then ``apply_shadow`` after each step).

    SCAN keeps a shadow copy that starts as the model and, after each step, becomes

        theta_shadow <- alpha * theta_shadow + (1 - alpha) * theta

    and is loaded back into the model. The model's parameters therefore equal the shadow
    before every step, so the update reads

        theta <- alpha * theta_before + (1 - alpha) * theta_after_step

    which needs no state beyond the step (a resumed run continues bit for bit). The
    shadow's buffers are never updated, so BatchNorm's running statistics are put back to
    their values before the step: they stay as the stage started.

    Args:
        modules: the networks averaged (SCAN's model: backbone and cluster head).
        alpha: the shadow's weight (0.999 in SCAN's ImageNet configs); 0 turns it off.
    """

    def __init__(self, modules: list[nn.Module], alpha: float) -> None:
        self.modules = modules
        self.alpha = alpha
        #: (tensor, its value before the step, whether it is a parameter)
        self._before: list[tuple[torch.Tensor, torch.Tensor, bool]] = []

    def _tensors(self) -> list[tuple[torch.Tensor, bool]]:
        """Every parameter (True) and buffer (False) of the modules, each once."""
        seen: set[int] = set()
        out = []
        for module in self.modules:
            for tensor, is_parameter in [(p, True) for p in module.parameters()] + [
                (b, False) for b in module.buffers()
            ]:
                if id(tensor) not in seen:
                    seen.add(id(tensor))
                    out.append((tensor, is_parameter))
        return out

    def before_step(self) -> None:
        """Remember the weights and buffers the step starts from."""
        if self.alpha == 0:
            return
        self._before = [(t, t.detach().clone(), is_p) for t, is_p in self._tensors()]

    @torch.no_grad()
    def after_step(self) -> None:
        """Average the stepped parameters with their values before; restore the buffers."""
        for tensor, before, is_parameter in self._before:
            tensor.copy_(
                self.alpha * before + (1 - self.alpha) * tensor if is_parameter else before
            )
        self._before = []
