"""What a run trained on, without the images: enough to rebuild the run's networks.

A checkpoint records its training data's description, so ``cluster-ssl predict`` builds
the run again without listing, decoding or even finding the training images (the folder
may have moved, and decoding 50,000 photos to place five new ones is wasted time).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from cluster_ssl.data.base import ImageDataset


@dataclass
class DataDescription(ImageDataset):
    """A dataset's name, image shape, size and class count, holding no images."""

    name: str
    image_shape: tuple[int, int, int]
    num_images: int
    classes: int | None = None
    labels: None = None
    class_names: None = None

    @classmethod
    def of(cls, dataset: ImageDataset) -> DataDescription:
        return cls(dataset.name, tuple(dataset.image_shape), len(dataset), dataset.num_classes)

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> DataDescription:
        """From :meth:`as_record` (a checkpoint's JSON-like entry)."""
        return cls(
            record["name"],
            tuple(record["image_shape"]),  # type: ignore[arg-type]
            record["num_images"],
            record["classes"],
        )

    def as_record(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "image_shape": list(self.image_shape),
            "num_images": self.num_images,
            "classes": self.classes,
        }

    @property
    def num_classes(self) -> int | None:
        return self.classes

    def __len__(self) -> int:
        return self.num_images

    def __getitem__(self, index: int) -> dict:
        raise RuntimeError(f"{self.name}: a description of the training data holds no images")
