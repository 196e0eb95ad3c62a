"""Training objectives; ``METHODS`` names each one for ``cluster-ssl list`` and configs."""

from cluster_ssl.methods.autoencoder import AutoencoderPretraining
from cluster_ssl.methods.base import Method, Prediction, StageContext
from cluster_ssl.methods.cc import ContrastiveClustering
from cluster_ssl.methods.dec import DECClustering
from cluster_ssl.methods.deepcluster import DeepCluster
from cluster_ssl.methods.idfd import IDFD
from cluster_ssl.methods.pcl import PCL
from cluster_ssl.methods.pretext_dec import PretextDEC
from cluster_ssl.methods.scan import SCANClustering
from cluster_ssl.methods.selflabel import SelfLabelling
from cluster_ssl.methods.simclr import SimCLR
from cluster_ssl.registry import Registry

METHODS: Registry[type[Method]] = Registry("method")
METHODS.register("autoencoder")(AutoencoderPretraining)
METHODS.register("dec")(DECClustering)
METHODS.register("simclr")(SimCLR)
METHODS.register("cc")(ContrastiveClustering)
METHODS.register("idfd")(IDFD)
METHODS.register("deepcluster")(DeepCluster)
METHODS.register("pcl")(PCL)
METHODS.register("pretext_dec")(PretextDEC)
METHODS.register("scan")(SCANClustering)
METHODS.register("selflabel")(SelfLabelling)

__all__ = [
    "METHODS",
    "AutoencoderPretraining",
    "ContrastiveClustering",
    "DECClustering",
    "DeepCluster",
    "IDFD",
    "Method",
    "PCL",
    "PretextDEC",
    "Prediction",
    "SCANClustering",
    "SelfLabelling",
    "SimCLR",
    "StageContext",
]
