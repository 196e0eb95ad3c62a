"""Clustering building blocks: k-means and kNN (faiss, or torch on the features' device),
DEC's Student-t assignment."""

from cluster_ssl.cluster.kmeans import KMeansResult, assign, kmeans
from cluster_ssl.cluster.knn import knn
from cluster_ssl.cluster.student_t import soft_assign, target_distribution

__all__ = ["KMeansResult", "assign", "kmeans", "knn", "soft_assign", "target_distribution"]
