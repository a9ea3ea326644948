"""The job's inputs: its datasets by name and its dense model (built, trained, or copied
into the other Keras flavour).

Example:

```python
data = load_dataset("compas-race", seed=0)
dense = train_dense(data, epochs=5, batch_size=256, k=keras_module("3"))
```
"""

import numpy as np

import tf_keras as keras

import tf_fairprune
from tf_fairprune import datasets
from tf_fairprune import models
from tf_fairprune.baselines import pruning

from . import flag_checks


def load_dataset(name, seed=0, label=None, group=None, image_train_size=None,
                 minority_fraction=0.05, correlation=0.0, image_validation_size=None):
  """A `GroupDataset` by name: one of `flag_checks.DATASETS` or `csv:PATH` (then label and group).

  `group` ("race,sex": any number of columns) picks the sensitive attribute(s) of a
  built-in dataset named without one ("adult", "compas", "german", "colored-fmnist");
  several form one group per combination. `image_train_size` / `image_validation_size`
  subsample colored-fmnist's training / validation images (the validation default: a
  tenth of `image_train_size`, or all 6,000).

  Raises:
    ValueError: For an unknown name, a CSV without label/group columns, or a group given
      for a dataset whose name already fixes one.
  """
  if name.startswith("csv:"):
    if not label or not group:
      raise ValueError("--dataset=csv:PATH needs --label=COL and --group=COL.")
    return datasets.load_csv(name[4:], label, group, seed)
  base, sensitive = flag_checks.builtin_group(name, group)
  if base == "colored-fmnist":
    return datasets.load_colored_fashion_mnist(
        minority_fraction=minority_fraction, correlation=correlation,
        train_size=image_train_size, validation_size=image_validation_size, seed=seed,
        sensitive=sensitive)
  loaders = {"adult": datasets.load_adult, "compas": datasets.load_compas,
             "german": datasets.load_german}
  return loaders[base](sensitive, seed=seed)


def keras_module(version):
  """`tf_keras` for "2", Keras 3's `keras` for "3".

  Raises:
    ValueError: For another version, or "3" without Keras 3 installed.
  """
  if str(version) == "2":
    return keras
  if str(version) == "3":
    module = tf_fairprune.flavours.keras3()
    if module is None:
      raise ValueError("--keras=3 needs Keras 3 (pip install 'keras>=3').")
    return module
  raise ValueError(f"--keras must be 3 or 2, got {version!r}.")


def default_keras(method):
  """Keras 3 wherever the method runs there; tf_keras for the TFMOT methods."""
  return "2" if method in flag_checks.TF_KERAS_ONLY or tf_fairprune.flavours.keras3() is None else "3"


def build_model(data, arch="auto", width=None, k=keras):
  """The dense model for `data`: an MLP for tabular data, a CNN family model for images.

  `k` is the Keras module to build it with (`tf_keras` or Keras 3's `keras`).
  """
  outputs = 1 if data.num_classes == 2 else data.num_classes
  shape = data.train.x.shape[1:]
  if arch == "auto":
    arch = "mlp" if len(shape) == 1 else "cnn"
  if arch == "mlp":
    return models.mlp(shape[0], outputs=outputs, keras_module=k)
  builders = {"cnn": (models.cnn, 32), "resnet10": (models.resnet10, 64),
              "mobilenet_v2": (models.mobilenet_v2, 1.0)}
  if arch not in builders:
    raise ValueError(f"Unknown model {arch!r}: mlp, cnn, resnet10 or mobilenet_v2.")
  build, default_width = builders[arch]
  return build(shape, outputs, width or default_width, keras_module=k)


def train_dense(data, epochs, batch_size, arch="auto", width=None, jit_compile=False,
                patience=None, verbose=2, k=keras):
  """Trains the dense model (built with the Keras module `k`) with Adam(1e-3).

  With `patience`, `epochs` is a maximum: training stops once the validation loss has not
  improved for `patience` epochs and the best epoch's weights are kept; the model's
  `dense_epochs` attribute then holds (best epoch, epochs run).
  """
  model = build_model(data, arch, width, k)
  model.compile(k.optimizers.Adam(1e-3), pruning.loss_for(data, k), jit_compile=jit_compile)
  kwargs = {}
  if patience:
    stop = k.callbacks.EarlyStopping("val_loss", patience=patience, restore_best_weights=True)
    kwargs = {"validation_data": (data.validation.x, data.validation.y), "callbacks": [stop]}
  history = model.fit(data.train.x, data.train.y, batch_size=batch_size, epochs=epochs,
                      verbose=verbose, **kwargs)
  if patience:
    losses = history.history["val_loss"]
    model.dense_epochs = (int(np.argmin(losses)) + 1, len(losses))
  return model


def copy_to(model, data, k, arch="auto", width=None):
  """The same dense model built with the Keras module `k`, weights copied.

  Raises:
    ValueError: If the architectures differ (weights that do not line up).
  """
  copy = build_model(data, arch, width, k)
  weights = model.get_weights()
  if [w.shape for w in weights] != [tuple(w.shape) for w in copy.get_weights()]:
    raise ValueError("The model is not the one build_model makes: its weights do not line "
                     "up with a copy in the other Keras.")
  copy.set_weights(weights)
  copy.compile(k.optimizers.Adam(1e-3), pruning.loss_for(data, k))
  return copy
