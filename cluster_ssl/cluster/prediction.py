"""What clustering a dataset gives: a label per image, with confidence, embedding, centres."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class Prediction:
    """A method's clustering of a dataset, in dataset order."""

    labels: np.ndarray
    num_clusters: int
    confidence: np.ndarray | None = None
    embedding: np.ndarray | None = None
    #: (K, d) cluster centres in the embedding, for methods that have them
    centres: np.ndarray | None = None
