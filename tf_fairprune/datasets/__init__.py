"""Offline, deterministic datasets with sensitive-group ids.

Each in-memory loader returns a `GroupDataset` with train / validation / test `Split`s
holding inputs, labels and group ids: UCI Adult, ProPublica COMPAS, German credit and any CSV (real
data), and colored Fashion-MNIST (real images, SEMI-SYNTHETIC colour group). CelebA,
too large for memory, comes as tf.data splits (`ImageDataset`) through tfds. A missing
source raises an error that says how to get it.
"""

from tf_fairprune.datasets.adult import load_adult
from tf_fairprune.datasets.celeba import ImageDataset
from tf_fairprune.datasets.celeba import load_celeba
from tf_fairprune.datasets.compas import load_compas
from tf_fairprune.datasets.fashion_mnist import load_colored_fashion_mnist
from tf_fairprune.datasets.german import load_german
from tf_fairprune.datasets.tabular import check_training_rows
from tf_fairprune.datasets.tabular import GroupDataset
from tf_fairprune.datasets.tabular import load_csv
from tf_fairprune.datasets.tabular import merge_small_groups
from tf_fairprune.datasets.tabular import Split
from tf_fairprune.datasets.tabular import TabularDataset

__all__ = ["check_training_rows", "GroupDataset", "ImageDataset", "Split", "TabularDataset", "load_adult",
           "load_celeba", "load_colored_fashion_mnist", "load_compas", "load_csv", "load_german",
           "merge_small_groups"]
