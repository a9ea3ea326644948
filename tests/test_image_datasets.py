"""Colored Fashion-MNIST (semi-synthetic groups) and CelebA through tfds mock data."""

import gzip
import importlib.util
import os

import numpy as np
import pytest

from tf_fairprune import datasets
from tf_fairprune.datasets import fashion_mnist


def _write_idx(path, array):
  header = bytes([0, 0, 8, array.ndim]) + b"".join(d.to_bytes(4, "big") for d in array.shape)
  with gzip.open(path, "wb") as f:
    f.write(header + array.astype(np.uint8).tobytes())


@pytest.fixture
def fmnist_dir(tmp_path):
  rng = np.random.default_rng(0)
  for prefix, n in (("train", 400), ("t10k", 100)):
    _write_idx(tmp_path / f"{prefix}-images-idx3-ubyte.gz", rng.integers(0, 256, (n, 28, 28)))
    _write_idx(tmp_path / f"{prefix}-labels-idx1-ubyte.gz", np.arange(n) % 10)
  return str(tmp_path)


def test_colored_fashion_mnist_groups_colours_and_labels(fmnist_dir):
  data = datasets.load_colored_fashion_mnist(0.25, data_dir=fmnist_dir, seed=1)
  assert data.semi_synthetic and data.num_classes == 10 and data.num_groups == 2
  assert (len(data.train), len(data.validation), len(data.test)) == (360, 40, 100)
  assert data.train.x.shape == (360, 28, 28, 3) and data.train.x.dtype == np.float32
  assert data.train.y.dtype == np.int32
  for split in (data.train, data.test):
    # The colour is the group: each group lives in its own channel mix.
    red, blue = split.x[..., 0].sum(axis=(1, 2)), split.x[..., 2].sum(axis=(1, 2))
    np.testing.assert_array_equal(split.groups == 1, blue > red)
  share = np.mean(np.concatenate([data.train.groups, data.test.groups]))
  assert 0.15 < share < 0.35
  again = datasets.load_colored_fashion_mnist(0.25, data_dir=fmnist_dir, seed=1)
  np.testing.assert_array_equal(again.train.groups, data.train.groups)


def test_colour_label_correlation():
  labels = np.arange(10)
  np.testing.assert_allclose(fashion_mnist.minority_probabilities(labels, 0.1, 0.0), 0.1)
  p = fashion_mnist.minority_probabilities(labels, 0.1, 1.0)
  assert p[0] == 0.0 and p[-1] == pytest.approx(0.2) and p.mean() == pytest.approx(0.1)


def test_colored_fashion_mnist_errors(tmp_path, fmnist_dir):
  with pytest.raises(FileNotFoundError, match="apt-get install dataset-fashion-mnist"):
    datasets.load_colored_fashion_mnist(data_dir=str(tmp_path / "none"))
  with pytest.raises(ValueError, match="minority_fraction"):
    datasets.load_colored_fashion_mnist(0.7, data_dir=fmnist_dir)
  with pytest.raises(ValueError, match="correlation"):
    datasets.load_colored_fashion_mnist(0.1, correlation=2.0, data_dir=fmnist_dir)


@pytest.mark.skipif(not os.path.exists(fashion_mnist.DEFAULT_DIR),
                    reason="Debian's dataset-fashion-mnist is not installed")
def test_real_fashion_mnist_sizes():
  data = datasets.load_colored_fashion_mnist(0.05, train_size=2000, seed=0)
  assert len(data.test) == 10000 and len(data.train) == 2000
  assert data.train.x.max() <= 1.0 and set(np.unique(data.test.y)) == set(range(10))


tfds = pytest.importorskip("tensorflow_datasets")


def test_celeba_on_tfds_mock_data(tmp_path):
  manual = tmp_path / "manual"
  manual.mkdir()
  for name in datasets.celeba.MANUAL_FILES:
    (manual / name).write_bytes(b"")
  with tfds.testing.mock_data(num_examples=6):
    data = datasets.load_celeba("Smiling", "Male", manual_dir=str(manual),
                                data_dir=str(tmp_path / "tfds"), image_size=32)
    assert data.group_names == ["Female", "Male"] and not data.semi_synthetic
    batches = list(data.test.batch(6))
  image, label, group = batches[0]
  assert image.shape == (6, 32, 32, 3) and image.dtype.name == "float32"
  assert float(image.numpy().max()) <= 1.0
  assert set(label.numpy().tolist()) <= {0.0, 1.0} and set(group.numpy().tolist()) <= {0, 1}


def test_celeba_errors(tmp_path):
  with pytest.raises(FileNotFoundError, match="img_align_celeba.zip"):
    datasets.load_celeba(data_dir=str(tmp_path))
  with pytest.raises(ValueError, match="CelebA attribute"):
    datasets.load_celeba("Happy", data_dir=str(tmp_path))
  with pytest.raises(ValueError, match="both"):
    datasets.load_celeba("Male", "Male", data_dir=str(tmp_path))
