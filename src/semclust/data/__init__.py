"""Datasets that return their index, the view transforms, and the neighbour dataset."""

from semclust.data.datasets import DigitsDataset, FeatureDataset, ImageDataset, build_dataset
from semclust.data.transforms import ViewTransforms, build_transforms, view_transforms
from semclust.data.views import MultiViewDataset, NeighborsDataset, make_loader

__all__ = [
    "DigitsDataset",
    "FeatureDataset",
    "ImageDataset",
    "MultiViewDataset",
    "NeighborsDataset",
    "ViewTransforms",
    "build_dataset",
    "build_transforms",
    "make_loader",
    "view_transforms",
]
