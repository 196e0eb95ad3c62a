"""The scikit-learn front of a recipe: ``fit`` trains its stages on an array, as the CLI does.

An estimator holds no algorithm of its own: ``fit`` builds the recipe's configuration from
its CPU preset (``digits``) and the estimator's parameters, wraps the array as an in-memory
dataset, builds the recipe's stages, and trains them with the same :class:`Trainer` the CLI
uses (checkpoints go to a temporary directory and are removed). ``predict`` and
``transform`` use the trained method's ``predict_new``: new samples join the clusters
learned on the training data (``cluster_centers_`` for the k-means methods, so the
training data is not embedded again).
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClusterMixin, TransformerMixin
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_is_fitted, validate_data

from cluster_ssl.cluster.prediction import Prediction
from cluster_ssl.config import build_config
from cluster_ssl.data.base import TensorImageDataset
from cluster_ssl.data.common import resize_images
from cluster_ssl.engine.logging import RunLogger
from cluster_ssl.engine.stages import build_stages, fit_stages
from cluster_ssl.engine.trainer import Stage, Trainer, TrainSettings
from cluster_ssl.estimators.arrays import INPUT_KINDS, PixelScale, image_layout, to_tensor
from cluster_ssl.methods.base import Method, StageContext
from cluster_ssl.runtime.device import resolve_device, resolve_precision
from cluster_ssl.runtime.distributed import DistInfo
from cluster_ssl.runtime.errors import UserError
from cluster_ssl.runtime.lock import lock_directory
from cluster_ssl.runtime.state import seed_everything
from recipes import RECIPES


class DeepClusteringEstimator(ClusterMixin, TransformerMixin, BaseEstimator):
    """Base of the estimators; a subclass names its ``recipe`` and ``input_kind``.

    Parameters:
        n_clusters: K.
        epochs: length of the recipe's main stage (its pretraining / pretext for multi-stage
            recipes); None keeps the preset's.
        batch_size: None keeps the preset's.
        options: any other recipe setting, as ``--set`` takes them (``{"lr": 0.01}``).
        random_state: None, an int or a ``RandomState``; an int makes ``fit`` repeatable
            and is the run's seed, as ``cluster-ssl train --seed`` takes it.
        device: ``auto`` (CUDA when present), ``cpu`` or ``cuda``.
        verbose: print the trainer's stage messages and progress bars.

    Attributes (after ``fit``): ``labels_``, ``cluster_centers_`` (methods with centres: the
    DEC family's clustering layer, k-means in the embedding for the others),
    ``n_features_in_``, ``method_`` (the trained :class:`~cluster_ssl.methods.base.Method`).
    """

    recipe: ClassVar[str]
    input_kind: ClassVar[str]
    #: the recipe preset that gives the defaults
    preset: ClassVar[str] = "digits"

    def __init__(
        self,
        n_clusters: int = 8,
        *,
        epochs: int | None = None,
        batch_size: int | None = None,
        options: dict[str, Any] | None = None,
        random_state: int | np.random.RandomState | None = None,
        device: str = "auto",
        verbose: bool = False,
    ) -> None:
        self.n_clusters = n_clusters
        self.epochs = epochs
        self.batch_size = batch_size
        self.options = options
        self.random_state = random_state
        self.device = device
        self.verbose = verbose

    # ----------------------------------------------------------------------- scikit-learn API
    def fit(self, X: Any, y: Any = None) -> DeepClusteringEstimator:
        """Train the recipe's stages on ``X``.

        Args:
            X: (n_samples, n_features) vectors, or images (N, H, W), (N, H, W, C) or
                (N, C, H, W), as the recipe's ``input_kind`` says; uint8 or float.
            y: ignored (scikit-learn's signature).

        Returns:
            The fitted estimator, with ``labels_`` and ``cluster_centers_`` set.
        """
        assert self.input_kind in INPUT_KINDS
        x = self._validated(X, reset=True)
        if not isinstance(self.n_clusters, int | np.integer) or self.n_clusters < 1:
            raise ValueError(f"n_clusters must be a positive int, got {self.n_clusters!r}")
        if len(x) < self.n_clusters:
            raise ValueError(
                f"n_samples={len(x)} should be >= n_clusters={self.n_clusters}; "
                "pass fewer clusters or more samples"
            )
        try:
            stages, ctx = self._train(x)
        except UserError as error:  # a bad option or setting: scikit-learn raises ValueError
            message = str(error)
            if "--set" in message:  # the CLI's wording; say how an estimator takes it
                message += "; in an estimator, pass settings as options={'key': value}"
            raise ValueError(message) from None
        self.method_: Method = stages[-1].method.eval()
        self.train_dataset_ = ctx.dataset
        prediction = self._predict(ctx)
        self.labels_ = prediction.labels
        if prediction.centres is not None:
            self.cluster_centers_ = prediction.centres
        return self

    def predict(self, X: Any) -> np.ndarray:
        """The training clusters each sample of ``X`` joins.

        Args:
            X: samples shaped as in :meth:`fit`.

        Returns:
            (n_samples,) cluster indices.
        """
        return self._new_prediction(X).labels

    def transform(self, X: Any) -> np.ndarray:
        """The embedding the clusters live in.

        Args:
            X: samples shaped as in :meth:`fit`.

        Returns:
            (n_samples, d) features.
        """
        embedding = self._new_prediction(X).embedding
        assert embedding is not None
        return np.asarray(embedding, dtype=np.float32)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.three_d_array = self.input_kind == "images"
        tags.non_deterministic = self.random_state is None
        return tags

    # ------------------------------------------------------------------------------- helpers
    def _train(self, x: np.ndarray) -> tuple[list[Stage], StageContext]:
        """Build the recipe's stages for ``x`` and train them (the CLI's code path)."""
        self.pixel_scale_ = PixelScale.fit(x) if self.input_kind == "images" else None
        self.seed_ = seed = run_seed(self.random_state)
        recipe = RECIPES.get(self.recipe)
        self.config_ = build_config(recipe.config, recipe.preset(self.preset), self._overrides())
        dataset = self._dataset(x)
        seed_everything(seed)  # model initialisation happens in build_stages
        stages = build_stages(recipe, self.config_, dataset, int(self.n_clusters))
        device = resolve_device(self.device)
        settings = TrainSettings(
            seed=seed,
            precision=resolve_precision("auto", device),
            progress=self.verbose,
            nan_hint="lower the learning rate (options={'lr': ...} or {'pretrain.lr': ...})",
        )
        ctx = StageContext(dataset, device, seed, DistInfo(), num_workers=0)
        with (
            tempfile.TemporaryDirectory(prefix="cluster-ssl-") as scratch,
            lock_directory(scratch, "the scratch directory"),
        ):
            logger = RunLogger(Path(scratch), enabled=self.verbose)
            fit_stages(stages, ctx, Trainer(settings, logger), Path(scratch), run_config={})
        return stages, ctx

    def _overrides(self) -> dict[str, Any]:
        overrides = dict(self.options or {})
        if self.epochs is not None:
            overrides["epochs"] = self.epochs
        if self.batch_size is not None:
            overrides["batch_size"] = self.batch_size
        return overrides

    def _validated(self, X: Any, *, reset: bool) -> np.ndarray:
        if self.input_kind == "vectors":
            return validate_data(
                self,
                X,
                reset=reset,
                dtype=[np.float32, np.float64],
                ensure_min_samples=2 if reset else 1,  # fit needs 2, predict takes 1
            )
        x = validate_data(self, X, reset=reset, allow_nd=True, dtype="numeric")
        return image_layout(x, type(self).__name__)

    def _dataset(self, x: np.ndarray) -> TensorImageDataset:
        tensor = to_tensor(x, self.input_kind, self.pixel_scale_)
        if self.input_kind == "images" and self.config_.image_size is not None:
            tensor = resize_images(tensor, self.config_.image_size)
        return TensorImageDataset(name="X", images=tensor)

    def _predict(self, ctx: StageContext) -> Prediction:
        with torch.no_grad():
            return self.method_.predict(ctx)

    def _new_prediction(self, X: Any) -> Prediction:
        check_is_fitted(self, "method_")
        x = self._validated(X, reset=False)
        device = next(self.method_.parameters()).device
        passes = {"num_workers": 0, "network": self.method_.network()}
        training = StageContext(self.train_dataset_, device, self.seed_, **passes)
        new = StageContext(self._dataset(x), device, self.seed_, training_data=False, **passes)
        with torch.no_grad():  # the fit's centres: a k-means method need not redo them
            return self.method_.predict_new(
                training, new, centres=getattr(self, "cluster_centers_", None)
            )


def run_seed(random_state: int | np.random.RandomState | None) -> int:
    """The trainer's seed for a scikit-learn ``random_state``.

    Args:
        random_state: an int (used as is, so ``random_state=S`` trains the run
            ``cluster-ssl train --seed S`` trains on the same data), a ``RandomState`` or
            None (a draw from it).

    Returns:
        A non-negative int seed.
    """
    if isinstance(random_state, int | np.integer) and not isinstance(random_state, bool):
        if not 0 <= random_state < 2**32:
            raise ValueError(f"random_state must be in [0, 2**32), got {random_state}")
        return int(random_state)
    return int(check_random_state(random_state).randint(2**31 - 1))
