"""Projection head for SimCLR and cluster heads for SCAN and self-labeling."""

import torch
from torch import nn


class ProjectionHead(nn.Module):
    """SimCLR's MLP: linear, ReLU, linear (features -> contrastive space)."""

    def __init__(self, feature_dim: int, hidden_dim: int = 512, output_dim: int = 128) -> None:
        super().__init__()
        self.layers = nn.Sequential(
            nn.Linear(feature_dim, hidden_dim),
            nn.ReLU(inplace=True),
            nn.Linear(hidden_dim, output_dim),
        )

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.layers(features)


class ClusterHeads(nn.Module):
    """Several independent linear heads, each mapping features to ``num_clusters`` logits."""

    def __init__(self, feature_dim: int, num_clusters: int, num_heads: int = 1) -> None:
        super().__init__()
        if num_clusters < 2:
            raise ValueError(f"num_clusters must be at least 2, got {num_clusters}")
        if num_heads < 1:
            raise ValueError(f"num_heads must be at least 1, got {num_heads}")
        self.heads = nn.ModuleList(nn.Linear(feature_dim, num_clusters) for _ in range(num_heads))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """Logits of every head, ``(num_heads, B, num_clusters)``."""
        return torch.stack([head(features) for head in self.heads])

    def keep(self, head_index: int) -> None:
        """Drop every head but ``head_index``."""
        self.heads = nn.ModuleList([self.heads[head_index]])


def head_logits(model: nn.Module, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Backbone features and the single head's logits of a one-head model, for a batch."""
    features = model.backbone(images)
    return features, model.cluster_heads(features)[0]


class ClusteringModel(nn.Module):
    """Backbone plus cluster heads; the unit that SCAN trains and self-labeling refines."""

    def __init__(self, backbone: nn.Module, num_clusters: int, num_heads: int = 1) -> None:
        super().__init__()
        self.backbone = backbone
        self.cluster_heads = ClusterHeads(backbone.feature_dim, num_clusters, num_heads)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Logits of every head, ``(num_heads, B, num_clusters)``."""
        return self.cluster_heads(self.backbone(images))
