"""Datasets: annotations, feature stores, loaders of the standard layouts, synthetic data."""

from acn.data.annotations import Annotations, Segment, Video
from acn.data.features import Dataset, FeatureStore

__all__ = ["Annotations", "Dataset", "FeatureStore", "Segment", "Video"]
