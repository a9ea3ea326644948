"""CelebA (the BiFP paper's dataset) through the tfds `celeb_a` builder and your own files.

CelebA cannot be downloaded here and its licence forbids redistribution, so the loader
reads the files you downloaded yourself: put the five files tfds expects
(`MANUAL_FILES`) in one directory and pass it as `manual_dir`; tfds then builds the
dataset once into `data_dir` without going online. Any of the 40 attributes can be the
target; the sensitive attribute is `Male` by default, as in the paper.
"""

import dataclasses
import os

from tf_fairprune import groups as groups_lib
from tf_fairprune._compat import tf

MANUAL_FILES = ("img_align_celeba.zip", "list_eval_partition.txt", "list_attr_celeba.txt",
                "list_landmarks_align_celeba.txt", "identity_CelebA.txt")


@dataclasses.dataclass
class ImageDataset:
  """tf.data splits yielding `(image [s, s, 3] float32 in [0, 1], label float32, group int32)`."""
  name: str
  train: tf.data.Dataset
  validation: tf.data.Dataset
  test: tf.data.Dataset
  group_names: list
  semi_synthetic: bool = False

  @property
  def num_groups(self):
    return len(self.group_names)

  def packed(self, split, batch_size, shuffle_seed=None):
    """Batches of `(pack_group_data(images, groups), labels)` from one split, for `fit`.

    Args:
      split: "train", "validation" or "test".
      batch_size: Batch size.
      shuffle_seed: Shuffle (buffer 10,000) with this seed; None keeps the order.
    """
    dataset = getattr(self, split)
    if shuffle_seed is not None:
      dataset = dataset.shuffle(10_000, seed=shuffle_seed)
    # Groups are packed in the same pipeline as the images so they stay aligned.
    return dataset.batch(batch_size).map(
        lambda x, y, g: (groups_lib._pack_element(x, g), y)).prefetch(  # pylint: disable=protected-access
            tf.data.AUTOTUNE)


def _import_tfds():
  try:
    import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  except ImportError as err:
    raise ImportError("CelebA is read through tensorflow-datasets: "
                      "`pip install tensorflow-datasets` (or tf_fairprune[datasets]).") from err
  return tfds


def load_celeba(target="Smiling", sensitive="Male", manual_dir=None, data_dir=None,
                image_size=64):
  """Loads CelebA with `target` as the binary label and `sensitive` as the group.

  Args:
    target: One of CelebA's 40 attribute names (e.g. "Smiling", "Attractive").
    sensitive: Attribute giving the group: id 1 where it is true, 0 where false.
    manual_dir: Directory holding `MANUAL_FILES`, needed the first time (while
      `data_dir` has no prepared copy).
    data_dir: tfds data directory (default tfds' own, ~/tensorflow_datasets).
    image_size: Images are resized to `image_size` x `image_size`.

  Returns:
    An `ImageDataset` with the official train / validation / test partition.

  Raises:
    ImportError: Without tensorflow-datasets.
    FileNotFoundError: If the dataset is neither prepared nor in `manual_dir`.
    ValueError: For an attribute CelebA does not have.
  """
  tfds = _import_tfds()
  builder = tfds.builder("celeb_a", data_dir=data_dir)
  attributes = sorted(builder.info.features["attributes"].keys())
  for flag, name in (("target", target), ("sensitive", sensitive)):
    if name not in attributes:
      raise ValueError(f"{flag} must be a CelebA attribute, got {name!r}; one of {attributes}.")
  if target == sensitive:
    raise ValueError(f"target and sensitive are both {target!r}.")
  if not os.path.isdir(builder.data_dir) or not tf.io.gfile.listdir(builder.data_dir):
    missing = [f for f in MANUAL_FILES
               if manual_dir is None or not os.path.exists(os.path.join(manual_dir, f))]
    if missing:
      raise FileNotFoundError(
          f"CelebA is not prepared in {builder.data_dir} and these files are missing from "
          f"manual_dir={manual_dir!r}: {', '.join(missing)}. Download them from "
          "https://mmlab.ie.cuhk.edu.hk/projects/CelebA.html (Align&Cropped images, "
          "Anno/ and Eval/ files), put them in one directory and pass it as manual_dir.")
    builder.download_and_prepare(
        download_config=tfds.download.DownloadConfig(manual_dir=manual_dir))

  def convert(example):
    image = tf.image.resize(tf.cast(example["image"], tf.float32) / 255.0,
                            (image_size, image_size))
    return (image, tf.cast(example["attributes"][target], tf.float32),
            tf.cast(example["attributes"][sensitive], tf.int32))

  splits = [builder.as_dataset(split=s).map(convert, num_parallel_calls=tf.data.AUTOTUNE)
            for s in ("train", "validation", "test")]
  names = ["Female", "Male"] if sensitive == "Male" else [f"not {sensitive}", sensitive]
  return ImageDataset(f"celeba-{target}-{sensitive}", *splits, group_names=names)
