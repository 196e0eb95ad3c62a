"""One estimator per recipe: its name, and whether it takes images or feature vectors.

Each is a :class:`~cluster_ssl.estimators.base.DeepClusteringEstimator` over the recipe of
the same name (``recipes/<name>.py``) with the recipe's ``digits`` CPU preset as defaults.
"""

from __future__ import annotations

from cluster_ssl.estimators.base import DeepClusteringEstimator


class DEC(DeepClusteringEstimator):
    """DEC (Xie et al. 2016) on (n_samples, n_features) vectors: MLP autoencoder, k-means,
    KL(P || Q) self-training. ``cluster_centers_`` are the clustering layer's centres."""

    recipe = "dec"
    input_kind = "vectors"


class IDEC(DeepClusteringEstimator):
    """IDEC (Guo et al. 2017) on (n_samples, n_features) vectors: DEC keeping the decoder's
    reconstruction (gamma = 0.1)."""

    recipe = "idec"
    input_kind = "vectors"


class DCEC(DeepClusteringEstimator):
    """DCEC (Guo et al. 2017) on images: IDEC with a convolutional autoencoder."""

    recipe = "dcec"
    input_kind = "images"


class SimCLRKMeans(DeepClusteringEstimator):
    """SimCLR (Chen et al. 2020) on images, clustered by k-means on the embedding."""

    recipe = "simclr"
    input_kind = "images"


class CC(DeepClusteringEstimator):
    """Contrastive Clustering (Li et al. 2021) on images: clusters from its cluster head
    (no centres)."""

    recipe = "cc"
    input_kind = "images"


class IDFD(DeepClusteringEstimator):
    """IDFD (Tao et al. 2021) on images: instance discrimination and feature
    decorrelation, then k-means."""

    recipe = "idfd"
    input_kind = "images"


class PCL(DeepClusteringEstimator):
    """Prototypical Contrastive Learning (Li et al. 2021) on images, then k-means."""

    recipe = "pcl"
    input_kind = "images"


class SCAN(DeepClusteringEstimator):
    """SCAN (Van Gansbeke et al. 2020) on images: SimCLR pretext, neighbour-consistency
    clustering and self-labelling; clusters from the kept head (no centres). The head is
    chosen on the training images (there is no held-out split)."""

    recipe = "scan"
    input_kind = "images"


class DeepCluster(DeepClusteringEstimator):
    """DeepCluster (Caron et al. 2018) on images: k-means pseudo-labels every epoch, then
    k-means on the learned embedding."""

    recipe = "deepcluster"
    input_kind = "images"


ESTIMATORS = (DEC, IDEC, DCEC, SimCLRKMeans, CC, IDFD, PCL, SCAN, DeepCluster)
