"""The file format a model being fair-pruned saves to: `.keras` only.

`.h5` keeps neither the mask optimizer nor the fairness constraints' state, and a
SavedModel does not reload the training metrics; a stripped model (a plain Keras
model) saves in any format.
"""


def check_keras_format(filepath, *args, **kwargs):
  """Raises unless `model.save(filepath, *args, **kwargs)` writes a `.keras` file.

  Args:
    filepath, *args, **kwargs: The arguments of `keras.Model.save` (`save_format`
      positionally second or as a keyword, as tf_keras takes it).

  Raises:
    ValueError: Naming the format asked for and what to do instead; nothing is written.

  Example:

  ```python
  check_keras_format("model.keras")  # Passes.
  check_keras_format("model.h5")     # ValueError: ... saves as .keras only ...
  ```
  """
  fmt = kwargs.get("save_format") or (args[1] if len(args) > 1 else None)
  path = str(filepath)
  if fmt == "keras" or (fmt is None and path.endswith(".keras")):
    return
  kind = (".h5" if fmt in ("h5", "hdf5") or path.endswith((".h5", ".hdf5"))
          else "a SavedModel directory")
  raise ValueError(
      f"tf_fairprune: a model being fair-pruned saves as .keras only, not as {kind} "
      f"({path}): .h5 keeps neither the mask optimizer nor the fairness constraints' "
      "state (training would not resume where it stopped), and a SavedModel does not "
      "reload its training metrics. Save it as .keras (model.save('model.keras')); for "
      "serving, strip it first (strip_fair_pruning) — a plain model saves in any "
      "format. Nothing was written.")
