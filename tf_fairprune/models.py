"""Reference models used by the examples and benchmarks."""

from tf_fairprune._compat import keras


def mlp(num_features, hidden=(256, 256), outputs=1, name="mlp"):
  """A ReLU MLP for tabular data, returning logits.

  Args:
    num_features: Input width.
    hidden: Widths of the hidden layers (DESIGN.md's 2x256 by default).
    outputs: Output width (1 for binary logits).
    name: Model name.

  Returns:
    A built `tf_keras.Sequential` model.
  """
  layers = [keras.Input((num_features,))]
  layers += [keras.layers.Dense(width, activation="relu") for width in hidden]
  layers.append(keras.layers.Dense(outputs))
  return keras.Sequential(layers, name=name)
