"""SCAN's self-labelling step: confident predictions become targets for strong views."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

import torch
from torch import nn

from cluster_ssl.cluster.prediction import Prediction
from cluster_ssl.losses.scan import confident_self_label_loss
from cluster_ssl.methods.base import Batch, StageContext
from cluster_ssl.methods.contrastive import EmbeddingMethod
from cluster_ssl.methods.step_average import StepAverage
from cluster_ssl.runtime.distributed import all_reduce_mean
from cluster_ssl.runtime.errors import UserError


class SelfLabel(EmbeddingMethod):
    """Fine-tunes backbone and one linear head on their own confident predictions.

    The network starts as the clustering step kept it: ``restore`` (when given) first loads
    the clustering step's kept epoch back into the shared backbone (SCAN's ``selflabel.py``
    starts from ``scan_model``, the epoch with the lowest held-out SCAN loss), then the head
    becomes a copy of that epoch's kept head. Each step: pseudo-labels
    from the un-augmented images (no gradient), cross-entropy of the strongly augmented
    view against those whose confidence exceeds ``threshold``, class-balanced unless
    ``class_balanced`` is off (see
    :func:`~cluster_ssl.losses.scan.confident_self_label_loss`); with ``ema_alpha`` each
    optimiser step is averaged with the weights before it, as SCAN's ImageNet configs
    (:class:`~cluster_ssl.methods.step_average.StepAverage`).

    Before training, the fraction of confident training images is measured; when it is
    zero the run stops with a message naming the threshold. A batch without a confident
    sample contributes no gradient; an epoch without one stops the run the same way.

    Args:
        initial_head: returns the head to start from (read when the stage starts).
        restore: called when the stage starts, before ``initial_head``: puts the clustering
            step's kept weights back (:meth:`~cluster_ssl.methods.scan.SCAN.restore_best`).
        augmentation: the strong pipeline.
        threshold: confidence threshold (0.99 in SCAN).
        class_balanced: weight the classes by their inverse confident frequency (SCAN's
            ``apply_class_balancing``; off in its ImageNet configs).
        ema_alpha: SCAN's ``ema_alpha`` (0.999 in its ImageNet configs); 0, no averaging.
    """

    #: the head's argmax
    clusters_by: ClassVar[str] = "head"

    def __init__(
        self,
        *args,
        initial_head: Callable[[], nn.Linear],
        augmentation: nn.Module,
        threshold: float,
        restore: Callable[[], None] | None = None,
        class_balanced: bool = True,
        ema_alpha: float = 0.0,
        **kw,
    ) -> None:
        super().__init__(*args, **kw)
        self.initial_head = initial_head
        self.restore = restore
        self.head = nn.Linear(self.backbone.feature_dim, self.num_clusters)
        self.augmentation = augmentation
        self.threshold = threshold
        self.class_balanced = class_balanced
        self.step_average = StepAverage([self.backbone, self.head], ema_alpha)
        self.confident_fraction: float | None = None
        self._confident_in_epoch = torch.zeros((), dtype=torch.long)

    def on_fit_start(self, ctx: StageContext) -> None:
        if self.restore is not None:
            self.restore()
        self.head.load_state_dict(self.initial_head().state_dict())
        confidence = ctx.embed(self.probabilities).max(dim=1).values
        self.confident_fraction = float((confidence > self.threshold).float().mean())
        if self.confident_fraction == 0.0:
            raise UserError(self._nothing_confident(f"the highest is {confidence.max():.4f}"))

    def _nothing_confident(self, detail: str) -> str:
        return (
            f"self-labelling: no image passes the confidence threshold {self.threshold} "
            f"({detail}); lower it (--set selflabel.confidence_threshold=...) or train the SCAN "
            "step longer (--set scan.epochs=...)"
        )

    def probabilities(self, batch: Batch) -> torch.Tensor:
        """(B, K) cluster probabilities of the un-augmented images, the head in fp32 (as
        :meth:`head_prediction`: the threshold compares them to 0.99)."""
        h = self.backbone(self.augment(self.eval_transform, batch["image"]))
        return self.in_fp32(lambda x: self.head(x).softmax(dim=1), h)

    def on_step_start(self, ctx: StageContext) -> None:
        self.step_average.before_step()

    def on_step_end(self, ctx: StageContext) -> None:
        self.step_average.after_step()

    def on_epoch_start(self, ctx: StageContext) -> dict[str, float]:
        self._confident_in_epoch = torch.zeros((), dtype=torch.long, device=ctx.device)
        return {}

    def training_step(self, batch: Batch) -> dict[str, torch.Tensor]:
        images = batch["image"]
        with torch.no_grad():
            weak_logits = self.head(self.backbone(self.augment(self.eval_transform, images)))
        strong_logits = self.head(self.backbone(self.augment(self.augmentation, images)))
        loss, confident = confident_self_label_loss(
            weak_logits, strong_logits, self.threshold, self.class_balanced
        )
        self._confident_in_epoch = self._confident_in_epoch.to(confident.device) + confident.sum()
        if loss is None:  # keeps every rank's backward identical under DDP
            loss = strong_logits.sum() * 0.0
        return {"loss": loss, "confident": confident.float().mean()}

    def on_epoch_end(self, ctx: StageContext) -> dict[str, float]:
        if float(all_reduce_mean(self._confident_in_epoch.float())) == 0.0:  # on every rank
            raise UserError(self._nothing_confident(f"none in epoch {ctx.epoch + 1}"))
        return {"confident_at_start": self.confident_fraction}

    def predict(self, ctx: StageContext) -> Prediction:
        return self.head_prediction(ctx, lambda h: self.head(h).softmax(dim=1))

    def collapse_hint(self) -> str:
        return (
            "self-labelling leaves clusters empty: raise the confidence threshold "
            f"(--set selflabel.confidence_threshold=..., now {self.threshold}) so fewer uncertain "
            "images become targets, or raise the SCAN step's entropy_weight"
        )

    def get_extra_state(self) -> dict[str, Any]:
        return {"confident_fraction": self.confident_fraction}

    def set_extra_state(self, state: dict[str, Any]) -> None:
        self.confident_fraction = state["confident_fraction"]
