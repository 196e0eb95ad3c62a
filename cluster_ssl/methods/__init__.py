"""Training objectives; ``METHODS`` names each one for ``cluster-ssl list`` and configs."""

from cluster_ssl.cluster.prediction import Prediction
from cluster_ssl.methods.autoencoder import AutoencoderPretraining
from cluster_ssl.methods.base import Method, StageContext
from cluster_ssl.methods.cc import CC
from cluster_ssl.methods.dec import DEC
from cluster_ssl.methods.deepcluster import DeepCluster
from cluster_ssl.methods.idfd import IDFD
from cluster_ssl.methods.pcl import PCL
from cluster_ssl.methods.pretext_dec import PretextDEC
from cluster_ssl.methods.scan import SCAN
from cluster_ssl.methods.selflabel import SelfLabel
from cluster_ssl.methods.simclr import SimCLR
from cluster_ssl.runtime.registry import Registry

METHODS: Registry[type[Method]] = Registry("method")
METHODS.register("autoencoder")(AutoencoderPretraining)
METHODS.register("dec")(DEC)
METHODS.register("simclr")(SimCLR)
METHODS.register("cc")(CC)
METHODS.register("idfd")(IDFD)
METHODS.register("deepcluster")(DeepCluster)
METHODS.register("pcl")(PCL)
METHODS.register("pretext_dec")(PretextDEC)
METHODS.register("scan")(SCAN)
METHODS.register("selflabel")(SelfLabel)

__all__ = [
    "METHODS",
    "AutoencoderPretraining",
    "CC",
    "DEC",
    "DeepCluster",
    "IDFD",
    "Method",
    "PCL",
    "PretextDEC",
    "Prediction",
    "SCAN",
    "SelfLabel",
    "SimCLR",
    "StageContext",
]
