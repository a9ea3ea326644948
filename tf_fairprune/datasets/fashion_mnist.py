"""Colored Fashion-MNIST: a SEMI-SYNTHETIC group attribute on real images.

No real image set with a demographic attribute can be had offline, so this loader makes
one up, Colored-MNIST style: each Fashion-MNIST image is drawn in one of two colours, and
the colour is the group. The minority colour is rare (`minority_fraction`), so the
filters that read it are trained on few examples: exactly the weights that magnitude
pruning removes first, which is how pruning comes to hurt one group more than another.
Results on this data are semi-synthetic and every report must say so
(`GroupDataset.semi_synthetic` is True).

Images come from Debian's `dataset-fashion-mnist` package
(`/usr/share/datasets/fashion-mnist/`, the original idx files, MIT licence) or any
directory holding the four original `*-ubyte.gz` files.
"""

import gzip
import os

import numpy as np

from tf_fairprune import intersections
from tf_fairprune.datasets import tabular

DEFAULT_DIR = "/usr/share/datasets/fashion-mnist"
FILES = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
         "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")
CLASS_NAMES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
               "Sneaker", "Bag", "Ankle boot"]
# RGB of the garment per group. They share a little green so that one set of filters
# can serve both groups, but each group mostly lives in its own channel.
COLOURS = np.array([[1.0, 0.25, 0.0],   # group 0: majority (orange-red)
                    [0.0, 0.25, 1.0]],  # group 1: minority (blue)
                   dtype=np.float32)
GROUP_NAMES = ["majority colour", "minority colour"]


def _read_idx(path):
  with gzip.open(path, "rb") as f:
    data = f.read()
  ndim = data[3]
  shape = [int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim)]
  return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(shape)


def minority_probabilities(labels, minority_fraction, correlation, num_classes=10):
  """P(minority colour | label): `minority_fraction · (1 + correlation · t)`, where t
  runs linearly from -1 (class 0) to +1 (the last class).

  With balanced classes the overall minority share stays `minority_fraction`;
  `correlation` = 0 makes colour independent of the label, 1 makes class 0 never and
  the last class twice as often minority-coloured.
  """
  t = 2.0 * labels / (num_classes - 1) - 1.0
  return minority_fraction * (1.0 + correlation * t)


def colorize(images, groups):
  """uint8 [n, 28, 28] grey images -> float32 [n, 28, 28, 3] in [0, 1] in the group's colour."""
  grey = images.astype(np.float32)[..., None] / 255.0
  return grey * COLOURS[groups][:, None, None, :]


def load_colored_fashion_mnist(minority_fraction=0.05, correlation=0.0, data_dir=None,
                               validation_fraction=0.1, train_size=None, test_size=None,
                               seed=0, sensitive="colour", validation_size=None):
  """Fashion-MNIST with a colour group (semi-synthetic), 10 classes.

  Args:
    minority_fraction: Expected share of images drawn in the minority colour, in (0, 0.5].
    correlation: Colour–label correlation in [0, 1] (see `minority_probabilities`).
    data_dir: Directory with the four original idx `.gz` files; default Debian's
      `/usr/share/datasets/fashion-mnist`.
    validation_fraction: Share of the 60,000 training images held out for validation.
    train_size: Keep only this many training images (a random subset), for quick runs.
    test_size: Keep only this many test images.
    validation_size: Keep only this many validation images; default: all of them, or
      `train_size · validation_fraction` when `train_size` is given.
    seed: Seed of the colours, the validation split and the subsets.
    sensitive: `"colour"` (the two colours), or `"class,colour"`: one group per
      garment class and colour that occur (up to 20), named
      "class=Coat, colour=minority colour".

  Returns:
    A `GroupDataset` (semi_synthetic=True) with images [n, 28, 28, 3] and int32 labels.

  Raises:
    FileNotFoundError: If the images are missing (the message says how to get them).
    ValueError: For a fraction or correlation out of range, or another `sensitive`.
  """
  columns = tabular.sensitive_columns(sensitive, {"colour": None, "class": None})
  if "colour" not in columns:
    raise ValueError(f"sensitive must include 'colour' (the semi-synthetic attribute), got "
                     f"{sensitive!r}.")
  if not 0.0 < minority_fraction <= 0.5:
    raise ValueError(f"minority_fraction must be in (0, 0.5], got {minority_fraction}.")
  if not 0.0 <= correlation <= 1.0:
    raise ValueError(f"correlation must be in [0, 1], got {correlation}.")
  data_dir = data_dir or DEFAULT_DIR
  paths = [os.path.join(data_dir, f) for f in FILES]
  missing = [p for p in paths if not os.path.exists(p)]
  if missing:
    raise FileNotFoundError(
        f"Fashion-MNIST not found: {', '.join(missing)}. On Debian/Ubuntu run "
        "`sudo apt-get install dataset-fashion-mnist` (it installs the files in "
        f"{DEFAULT_DIR}), or download the four idx .gz files from "
        "github.com/zalandoresearch/fashion-mnist and pass their directory as data_dir.")
  train_x, train_y, test_x, test_y = (_read_idx(p) for p in paths)
  rng = np.random.default_rng(seed)

  def make(images, labels, size):
    if size is not None and size < len(labels):
      keep = np.sort(rng.choice(len(labels), size, replace=False))
      images, labels = images[keep], labels[keep]
    groups = (rng.random(len(labels)) <
              minority_probabilities(labels, minority_fraction, correlation)).astype(np.int32)
    return tabular.Split(colorize(images, groups), labels.astype(np.int32), groups)

  order = rng.permutation(len(train_y))
  n_val = int(round(validation_fraction * len(train_y)))
  val_idx, fit_idx = np.sort(order[:n_val]), np.sort(order[n_val:])
  train = make(train_x[fit_idx], train_y[fit_idx], train_size)
  if validation_size is None and train_size is not None:
    validation_size = max(1, int(train_size * validation_fraction))
  validation = make(train_x[val_idx], train_y[val_idx], validation_size)
  test = make(test_x, test_y, test_size)
  name = f"colored-fmnist-p{minority_fraction:g}-c{correlation:g}"
  names = list(GROUP_NAMES)
  if len(columns) > 1:
    name += "-" + "+".join(columns)
    train, validation, test, names = _intersect(columns, (train, validation, test))
  return tabular.GroupDataset(name=name, train=train, validation=validation, test=test,
                              group_names=names, feature_names=[], semi_synthetic=True)


def _intersect(columns, splits):
  """The splits with one group per (class, colour) combination that occurs in any."""
  value = {"class": lambda s: np.asarray(CLASS_NAMES, object)[s.y],
           "colour": lambda s: np.asarray(GROUP_NAMES, object)[s.groups]}
  order = {"class": CLASS_NAMES, "colour": GROUP_NAMES}
  combined = intersections.Intersections(
      {c: np.concatenate([value[c](s) for s in splits]) for c in columns},
      categories={c: order[c] for c in columns})
  out = [tabular.Split(s.x, s.y, combined.ids({c: value[c](s) for c in columns}))
         for s in splits]
  return (*out, list(combined.group_names))
