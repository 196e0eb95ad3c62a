"""Training objectives; ``METHODS`` names each one for ``cluster-ssl list`` and configs."""

from cluster_ssl.methods.autoencoder import AutoencoderPretraining
from cluster_ssl.methods.base import Method, Prediction, StageContext
from cluster_ssl.methods.dec import DECClustering
from cluster_ssl.registry import Registry

METHODS: Registry[type[Method]] = Registry("method")
METHODS.register("autoencoder")(AutoencoderPretraining)
METHODS.register("dec")(DECClustering)

__all__ = [
    "METHODS",
    "AutoencoderPretraining",
    "DECClustering",
    "Method",
    "Prediction",
    "StageContext",
]
