"""Offline, deterministic datasets with sensitive-group ids."""

from tf_fairprune.datasets.adult import load_adult
from tf_fairprune.datasets.adult import Split
from tf_fairprune.datasets.adult import TabularDataset

__all__ = ["Split", "TabularDataset", "load_adult"]
