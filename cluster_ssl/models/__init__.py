"""Networks: the DEC-family autoencoders and the clustering layer."""

from cluster_ssl.models.autoencoders import ConvAutoencoder, InputShapeError, MLPAutoencoder
from cluster_ssl.models.clustering_layer import ClusteringLayer

__all__ = ["ClusteringLayer", "ConvAutoencoder", "InputShapeError", "MLPAutoencoder"]
