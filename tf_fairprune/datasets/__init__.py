"""Offline, deterministic datasets with sensitive-group ids.

Each loader returns a `TabularDataset` with train / validation / test `Split`s holding
features, labels and group ids. Real data only (UCI Adult, ProPublica COMPAS, your CSV);
a missing source raises an error that says how to get it.
"""

from tf_fairprune.datasets.adult import load_adult
from tf_fairprune.datasets.compas import load_compas
from tf_fairprune.datasets.tabular import load_csv
from tf_fairprune.datasets.tabular import Split
from tf_fairprune.datasets.tabular import TabularDataset

__all__ = ["Split", "TabularDataset", "load_adult", "load_compas", "load_csv"]
