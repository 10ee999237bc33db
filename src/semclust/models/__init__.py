"""Backbones, projection heads and cluster heads."""

from semclust.models.backbones import build_backbone
from semclust.models.heads import ClusterHeads, ClusteringModel, ProjectionHead, head_logits

__all__ = ["ClusterHeads", "ClusteringModel", "ProjectionHead", "build_backbone", "head_logits"]
