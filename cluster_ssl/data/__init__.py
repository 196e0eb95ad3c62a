"""Datasets: one registry of name -> builder, uint8 images with labels and sample indices."""

from cluster_ssl.data.base import ImageDataset, TensorImageDataset
from cluster_ssl.data.folder import FileImageDataset, scan_images
from cluster_ssl.data.registry import DATASETS, DatasetSpec, build_dataset, list_datasets

__all__ = [
    "DATASETS",
    "DatasetSpec",
    "FileImageDataset",
    "ImageDataset",
    "TensorImageDataset",
    "build_dataset",
    "list_datasets",
    "scan_images",
]
