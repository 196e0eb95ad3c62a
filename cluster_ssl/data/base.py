"""What every dataset in cluster-ssl is: uint8 images, optional labels, and each sample's index."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from torch.utils.data import Dataset

SPLITS = ("train", "test", "train+test")


class ImageDataset(Dataset):
    """Base class: images as uint8 (C, H, W), labels as int64 (or None), index carried along.

    ``dataset[i]`` returns ``{"image": uint8 tensor (C, H, W), "label": int (-1 when
    unlabelled), "index": i}``.

    Subclasses either hold all images in memory (:class:`TensorImageDataset`) or decode
    files lazily (:class:`FileImageDataset` in ``data/folder.py``). ``labels`` is always
    available without decoding images, so evaluation never reads the pixels twice.
    """

    name: str
    labels: np.ndarray | None
    class_names: list[str] | None
    image_shape: tuple[int, int, int]

    @property
    def num_classes(self) -> int | None:
        if self.labels is None:
            return None
        if self.class_names is not None:
            return len(self.class_names)
        return int(self.labels.max()) + 1

    @property
    def in_memory(self) -> bool:
        return False

    def __len__(self) -> int:  # pragma: no cover - abstract
        raise NotImplementedError

    def __getitem__(self, index: int) -> dict:  # pragma: no cover - abstract
        raise NotImplementedError


@dataclass
class TensorImageDataset(ImageDataset):
    """All images in one uint8 tensor (N, C, H, W); small sets live here (and on the device).

    A float32 tensor (N, 1, 1, D) holds feature vectors instead (the scikit-learn
    estimators' (N, D) arrays), for the methods that take vectors: the MLP autoencoders of
    DEC and IDEC, which use them as given.
    """

    name: str
    images: torch.Tensor
    labels: np.ndarray | None = None
    class_names: list[str] | None = None
    image_shape: tuple[int, int, int] = field(init=False)

    def __post_init__(self) -> None:
        if self.images.dtype not in (torch.uint8, torch.float32) or self.images.ndim != 4:
            raise ValueError(
                "images must be a uint8 tensor of shape (N, C, H, W) (or float32 features "
                "(N, 1, 1, D))"
            )
        if self.labels is not None:
            self.labels = np.asarray(self.labels, dtype=np.int64)
            if len(self.labels) != len(self.images):
                raise ValueError("labels and images differ in length")
        self.image_shape = tuple(self.images.shape[1:])  # type: ignore[assignment]

    @property
    def in_memory(self) -> bool:
        return True

    def __len__(self) -> int:
        return self.images.shape[0]

    def __getitem__(self, index: int) -> dict:
        label = -1 if self.labels is None else int(self.labels[index])
        return {"image": self.images[index], "label": label, "index": index}
