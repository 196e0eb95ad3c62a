"""Losses, one file per family, each with its paper's equation in the docstring."""

from cluster_ssl.losses.dec import dec_clustering_loss

__all__ = ["dec_clustering_loss"]
