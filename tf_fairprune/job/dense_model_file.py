"""The main job's --dense_model: which Keras saved the file, and the loaded model checked
against the dataset and read as logits.

`saved_flavour` and `keras_for` run before TensorFlow is imported (they read the file's
metadata with zipfile / h5py); `load` runs after, with the Keras module chosen. Every
problem is one line: a `flag_checks.FlagError` before the import, a `ValueError` after.

The job trains, audits and packs the dense outputs (for the degradation constraints) as
logits. A model whose last layer applies a sigmoid (binary) or a softmax (multi-class)
outputs probabilities: `load` returns a copy without that activation (the same
decisions; the loss is then computed from logits) and a note saying so. Activations it
cannot remove, or outputs that only look like probabilities, are refused with the
remedy.
"""

import json
import os
import zipfile

from .flag_checks import FlagError
from .flag_checks import TF_KERAS_ONLY

KERAS_NAME = {"2": "tf_keras", "3": "Keras 3"}
HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
PROBABILITIES = ("sigmoid", "softmax")
LOGITS = ("linear", "log_softmax")  # log_softmax outputs are logits of the same softmax.


def saved_flavour(path):
  """The Keras that saved a model file: "2" (tf_keras) or "3" (Keras 3).

  Reads the `keras_version` a .keras file (a zip) keeps in metadata.json and an .h5
  file in its attributes; TensorFlow is not imported.

  Args:
    path: The --dense_model file.

  Returns:
    "2" or "3".

  Raises:
    FlagError: For a file that is not a Keras model file (or holds weights only), a
      name whose extension the loaders would not accept, or an unknown version.

  Example:

  ```python
  saved_flavour("dense.keras")  # "3" when Keras 3 saved it
  ```
  """
  flag = f"--dense_model={path}"
  if os.path.isdir(path):
    raise FlagError(f"{flag} is a directory (a SavedModel?): save the model with "
                    "model.save('dense.keras') and pass that file.")
  if not os.path.isfile(path):
    raise FlagError(f"{flag}: the file does not exist.")
  extension = os.path.splitext(path)[1].lower()
  if zipfile.is_zipfile(path):
    version = _zip_version(path, flag)
    if extension != ".keras":
      raise FlagError(f"{flag} is a .keras model file without the .keras extension, which "
                      "Keras needs to load it: rename it.")
  elif _is_hdf5(path):
    version = _h5_version(path, flag)
    if extension not in (".h5", ".hdf5"):
      raise FlagError(f"{flag} is an HDF5 model file without the .h5 extension, which Keras "
                      "needs to load it: rename it.")
  else:
    raise FlagError(f"{flag} is not a Keras model file: pass a .keras or .h5 file written "
                    "by model.save().")
  major = version.split(".")[0]
  if major not in KERAS_NAME:
    raise FlagError(f"{flag} was saved by Keras {version}: the job reads files of Keras 3 "
                    "or tf_keras (Keras 2).")
  return major


def _zip_version(path, flag):
  try:
    with zipfile.ZipFile(path) as archive:
      names = set(archive.namelist())
      if not {"config.json", "metadata.json"} <= names:
        raise FlagError(f"{flag} is a zip file but not a .keras model (no config.json and "
                        "metadata.json): save the model with model.save('dense.keras').")
      metadata = json.loads(archive.read("metadata.json"))
  except (zipfile.BadZipFile, ValueError, OSError) as err:
    if isinstance(err, FlagError):
      raise
    raise FlagError(f"{flag} cannot be read as a .keras file: {_first_line(err)}") from err
  return str(metadata.get("keras_version", ""))


def _is_hdf5(path):
  """HDF5's signature sits at offset 0, 512, 1024, 2048, ... (a user block before it)."""
  with open(path, "rb") as f:
    for offset in (0, 512, 1024, 2048, 4096):
      f.seek(offset)
      if f.read(len(HDF5_SIGNATURE)) == HDF5_SIGNATURE:
        return True
  return False


def _h5_version(path, flag):
  import h5py  # pylint: disable=g-import-not-at-top  (TensorFlow's dependency; light)
  try:
    with h5py.File(path, "r") as f:
      if "model_config" not in f.attrs:
        raise FlagError(f"{flag} holds weights only, not a model: save the whole model with "
                        "model.save('dense.keras') (not save_weights).")
      version = f.attrs.get("keras_version", "")
  except OSError as err:
    raise FlagError(f"{flag} cannot be read as an .h5 file: {_first_line(err)}") from err
  return version.decode() if isinstance(version, bytes) else str(version)


def keras_for(path, keras_flag, method):
  """The Keras flavour to run with a --dense_model file: the file's own.

  Args:
    path: The --dense_model file.
    keras_flag: --keras ("2", "3" or None when not given).
    method: --method.

  Returns:
    "2" or "3".

  Raises:
    FlagError: When --keras names the other flavour, or the method needs tf_keras
      (TFMOT) and Keras 3 saved the file.
  """
  flavour = saved_flavour(path)
  name = KERAS_NAME[flavour]
  if method in TF_KERAS_ONLY and flavour == "3":
    raise FlagError(f"--dense_model={path} was saved by Keras 3, and --method={method} uses "
                    "TFMOT, which reads tf_keras models only: save the dense model with "
                    "tf_keras, or use a method that runs on Keras 3.")
  if keras_flag is not None and keras_flag != flavour:
    raise FlagError(f"--dense_model={path} was saved by {name}: load it with "
                    f"--keras={flavour} (or leave --keras out: the file's Keras is used).")
  return flavour


def load(path, k, data, sample_rows=256):
  """Loads the dense model and checks it against `data`; probabilities become logits.

  Args:
    path: The --dense_model file (checked by `saved_flavour`).
    k: The Keras module that saved it (`tf_keras` or Keras 3's `keras`).
    data: The `GroupDataset` the job trains on.
    sample_rows: Training rows that show whether outputs of an unknown last layer look
      like probabilities (and check the conversion to logits).

  Returns:
    (model, notes): a model of `k` that outputs logits, and what the job did to it.

  Raises:
    ValueError: One line, for a file the Keras cannot load, a model with several
      inputs or outputs, an input shape other than the dataset's features, output units
      other than 1 (binary) or the number of classes, or an output activation that is
      neither logits nor probabilities the job can turn into logits.

  Example:

  ```python
  dense, notes = load("dense.keras", keras, data)
  ```
  """
  import numpy as np  # pylint: disable=g-import-not-at-top
  flag = f"--dense_model={path}"
  name = "tf_keras" if k.__name__.startswith("tf_keras") else "Keras 3"
  try:
    model = k.models.load_model(path, compile=False)  # The job compiles its own loss.
  except Exception as err:  # pylint: disable=broad-except  (any loader error is one line)
    raise ValueError(f"{flag} cannot be loaded with {name}: {_first_line(err)}") from err
  if not isinstance(model, k.Model):
    raise ValueError(f"{flag} holds a {type(model).__name__}, not a model.")
  try:
    inputs, outputs = list(model.inputs or []), list(model.outputs or [])
  except (AttributeError, ValueError):
    inputs, outputs = [], []
  if not inputs or not outputs:
    raise ValueError(f"{flag}: the model has no input shape (never built): give it an "
                     "Input layer and save it again.")
  if len(inputs) != 1 or len(outputs) != 1:
    raise ValueError(f"{flag}: the model has {len(inputs)} input(s) and {len(outputs)} "
                     "output(s); the job prunes a model with one input (the dataset's "
                     "features) and one output.")
  expected, shape = tuple(data.train.x.shape[1:]), tuple(inputs[0].shape[1:])
  if len(shape) != len(expected) or any(s is not None and s != e
                                        for s, e in zip(shape, expected)):
    raise ValueError(
        f"{flag} takes inputs of shape {shape}; the dataset's are {expected}: was it "
        "trained on other data, or on this CSV with another --seed (the one-hot columns "
        "are the training split's categories)?")
  units = 1 if data.num_classes == 2 else data.num_classes
  out_shape = tuple(outputs[0].shape[1:])
  if out_shape != (units,):
    want = ("1 unit (one logit: the label is binary)" if units == 1 else
            f"{units} units (one per class)")
    raise ValueError(f"{flag} outputs shape {out_shape}; the dataset needs {want}.")
  activation, layer = output_activation(model)
  sample = data.train.x[:sample_rows]
  if activation in LOGITS and not (units == 1 and activation == "log_softmax"):
    return model, []
  where = f"its last layer '{layer.name}' ({type(layer).__name__})"
  if activation is None:
    out = np.asarray(model.predict(sample, verbose=0), np.float64)
    if _look_like_probabilities(out, units):
      raise ValueError(
          f"{flag}: its outputs on {len(out)} training rows all look like probabilities "
          f"({'in [0, 1]' if units == 1 else 'summing to 1'}) and {where} does not say "
          "what it applies: the job needs logits; save the model without its final "
          f"{'sigmoid' if units == 1 else 'softmax'}.")
    return model, []
  wanted = "sigmoid" if units == 1 else "softmax"
  if activation != wanted:
    raise ValueError(
        f"{flag} ends in {activation} ({where}): the job needs logits (no activation) or "
        f"{wanted} probabilities for {'a binary label' if units == 1 else f'{units} classes'}.")
  logits = _without_activation(model, layer, k)
  if logits is None:
    raise ValueError(f"{flag} ends in a {activation} that {where} applies, which the job "
                     "cannot remove: save the model without it (the job needs logits).")
  _check_same_decisions(model, logits, sample, activation, flag)
  return logits, [
      f"the dense model ends in a {activation} (probabilities): the job prunes the logits "
      f"under it (the {activation} removed: the same decisions, the loss computed from "
      f"logits); model.tflite and dense.tflite output logits: apply a {activation} to them "
      "for probabilities"]


def output_activation(model):
  """(activation name, layer) of the model's output: "linear", "sigmoid", "softmax",
  ... or None when the last layer does not say (a Lambda, a normalisation, a custom
  layer). A nested model's own last layer is looked into."""
  layer = model.outputs[0]._keras_history[0]  # pylint: disable=protected-access
  while hasattr(layer, "outputs") and getattr(layer, "layers", None) and layer.outputs:
    layer = layer.outputs[0]._keras_history[0]  # pylint: disable=protected-access
  kind = type(layer).__name__
  if kind == "Softmax":  # The layer, or Keras 3's ops.softmax in a functional model.
    return "softmax", layer
  if kind in ("Sigmoid", "LogSoftmax"):  # Keras 3 ops.
    return {"Sigmoid": "sigmoid", "LogSoftmax": "log_softmax"}[kind], layer
  symbol = getattr(layer, "symbol", None)  # tf_keras TFOpLambda: "math.sigmoid", ...
  if isinstance(symbol, str):
    for name in ("log_softmax", "softmax", "sigmoid"):
      if symbol.endswith(name):
        return name, layer
    return None, layer
  activation = getattr(layer, "activation", None)
  if callable(activation):
    return getattr(activation, "__name__", None), layer
  return None, layer


def _look_like_probabilities(out, units):
  import numpy as np  # pylint: disable=g-import-not-at-top
  if not len(out) or not np.all(np.isfinite(out)):
    return False
  if units == 1:
    return bool(np.all((out >= 0) & (out <= 1)))
  return bool(np.all(out >= 0) and np.allclose(out.sum(-1), 1.0, atol=1e-3))


def _without_activation(model, layer, k):
  """A copy of `model` (weights copied) whose output layer `layer` applies no
  activation; None when `layer` is not one of the model's own layers."""
  if not any(l is layer for l in model.layers):
    return None  # An op, or a layer inside a nested model.

  def clone(original):
    if original is layer:
      if type(original).__name__ in ("Softmax", "Activation"):
        return k.layers.Activation("linear", name=original.name)
      config = original.get_config()
      config["activation"] = "linear"
      return original.__class__.from_config(config)
    return original.__class__.from_config(original.get_config())

  try:
    copy = k.models.clone_model(model, clone_function=clone)
    copy.set_weights(model.get_weights())
  except Exception:  # pylint: disable=broad-except  (a model clone_model cannot copy)
    return None
  return copy


def _check_same_decisions(model, logits, sample, activation, flag):
  """The copy's outputs through the activation are the model's."""
  import numpy as np  # pylint: disable=g-import-not-at-top
  probabilities = np.asarray(model.predict(sample, verbose=0), np.float64)
  z = np.asarray(logits.predict(sample, verbose=0), np.float64)
  if activation == "sigmoid":
    again = 1 / (1 + np.exp(-z))
  else:
    e = np.exp(z - z.max(-1, keepdims=True))
    again = e / e.sum(-1, keepdims=True)
  if not np.allclose(again, probabilities, atol=1e-4):
    raise ValueError(f"{flag}: removing its final {activation} did not give the same "
                     "outputs: save the model without it (the job needs logits).")


def _first_line(err):
  lines = [line.strip() for line in str(err).splitlines() if line.strip()]
  return f"{type(err).__name__}: {lines[0] if lines else ''}"[:300]
