"""Reference models used by the examples and benchmarks. All return logits.

`mlp` for tabular data; `cnn`, `resnet10` and `mobilenet_v2` for images, each with a
width setting so that the same code serves a quick CPU run and the paper's setting.
Each takes `keras_module`: `tf_keras` (default) or Keras 3's `keras`.
"""

from tf_fairprune._compat import keras as _tf_keras


def mlp(num_features, hidden=(256, 256), outputs=1, name="mlp", keras_module=None):
  """A ReLU MLP for tabular data.

  Args:
    num_features: Input width.
    hidden: Widths of the hidden layers (DESIGN.md's 2x256 by default).
    outputs: Output width (1 for binary logits).
    name: Model name.
    keras_module: `tf_keras` (default) or Keras 3's `keras`.

  Returns:
    A built `tf_keras.Sequential` model.
  """
  keras = keras_module or _tf_keras
  layers = keras.layers
  stack = [keras.Input((num_features,))]
  stack += [layers.Dense(width, activation="relu") for width in hidden]
  stack.append(layers.Dense(outputs))
  return keras.Sequential(stack, name=name)


def cnn(input_shape=(28, 28, 3), outputs=10, width=32, name="cnn", keras_module=None):
  """Small CNN: two conv + max-pool stages, then a 128-unit dense layer.

  Args:
    input_shape: Image shape (h, w, c).
    outputs: Number of logits (1 for a binary task).
    width: Filters of the first conv layer (the second has twice as many).
    name: Model name.
    keras_module: `tf_keras` (default) or Keras 3's `keras`.

  Returns:
    A built `tf_keras.Sequential` model.
  """
  keras = keras_module or _tf_keras
  layers = keras.layers
  return keras.Sequential([
      keras.Input(input_shape),
      layers.Conv2D(width, 3, activation="relu"),
      layers.MaxPooling2D(),
      layers.Conv2D(2 * width, 3, activation="relu"),
      layers.MaxPooling2D(),
      layers.Flatten(),
      layers.Dense(128, activation="relu"),
      layers.Dense(outputs),
  ], name=name)


def _conv_bn(layers, x, filters, kernel, stride=1, activation="relu", name=None):
  x = layers.Conv2D(filters, kernel, stride, padding="same", use_bias=False,
                    name=f"{name}_conv")(x)
  x = layers.BatchNormalization(name=f"{name}_bn")(x)
  return layers.Activation(activation, name=f"{name}_{activation}")(x) if activation else x


def resnet10(input_shape=(64, 64, 3), outputs=1, width=64, name="resnet10",
             keras_module=None):
  """ResNet-10: a 3x3 stem and four stages of one basic block each (the paper's model).

  Args:
    input_shape: Image shape (h, w, c).
    outputs: Number of logits (1 for a binary task).
    width: Filters of the first stage (64 in the paper); stages use 1, 2, 4, 8 times it.
    name: Model name.
    keras_module: `tf_keras` (default) or Keras 3's `keras`.

  Returns:
    A built functional `tf_keras.Model` with residual adds and batch normalisation.
  """
  keras = keras_module or _tf_keras
  layers = keras.layers
  inputs = keras.Input(input_shape)
  x = _conv_bn(layers, inputs, width, 3, name="stem")
  for stage, mult in enumerate((1, 2, 4, 8)):
    stride = 1 if stage == 0 else 2
    prefix = f"stage{stage + 1}"
    shortcut = x
    y = _conv_bn(layers, x, width * mult, 3, stride, name=f"{prefix}_a")
    y = _conv_bn(layers, y, width * mult, 3, activation=None, name=f"{prefix}_b")
    if stride != 1 or shortcut.shape[-1] != width * mult:
      shortcut = _conv_bn(layers, shortcut, width * mult, 1, stride, activation=None,
                          name=f"{prefix}_shortcut")
    x = layers.Activation("relu", name=f"{prefix}_out")(layers.Add(name=f"{prefix}_add")(
        [shortcut, y]))
  x = layers.GlobalAveragePooling2D(name="pool")(x)
  return keras.Model(inputs, layers.Dense(outputs, name="logits")(x), name=name)


# (expansion, output channels, repeats, first stride) of MobileNetV2 (Sandler et al. 2018).
MOBILENET_V2_BLOCKS = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2),
                       (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1))


def _round8(channels):
  return max(8, int(channels + 4) // 8 * 8)


def mobilenet_v2(input_shape=(64, 64, 3), outputs=1, width=1.0, blocks=MOBILENET_V2_BLOCKS,
                 name="mobilenet_v2", keras_module=None):
  """MobileNetV2: inverted residual blocks (1x1 expand, 3x3 depthwise, 1x1 project).

  Args:
    input_shape: Image shape (h, w, c).
    outputs: Number of logits (1 for a binary task).
    width: Width multiplier (alpha); channel counts are rounded to multiples of 8.
    blocks: (expansion, channels, repeats, stride) per stage; pass fewer stages for
      small images.
    name: Model name.
    keras_module: `tf_keras` (default) or Keras 3's `keras`.

  Returns:
    A built functional `tf_keras.Model`.
  """
  keras = keras_module or _tf_keras
  layers = keras.layers
  inputs = keras.Input(input_shape)
  x = _conv_bn(layers, inputs, _round8(32 * width), 3, 2, activation="relu6", name="stem")
  index = 0
  for expansion, channels, repeats, first_stride in blocks:
    out = _round8(channels * width)
    for r in range(repeats):
      prefix = f"block{index}"
      stride = first_stride if r == 0 else 1
      y = x
      if expansion != 1:
        y = _conv_bn(layers, y, x.shape[-1] * expansion, 1, activation="relu6",
                     name=f"{prefix}_expand")
      y = layers.DepthwiseConv2D(3, stride, padding="same", use_bias=False,
                                 name=f"{prefix}_dw")(y)
      y = layers.BatchNormalization(name=f"{prefix}_dw_bn")(y)
      y = layers.Activation("relu6", name=f"{prefix}_dw_relu6")(y)
      y = _conv_bn(layers, y, out, 1, activation=None, name=f"{prefix}_project")
      if stride == 1 and x.shape[-1] == out:
        y = layers.Add(name=f"{prefix}_add")([x, y])
      x = y
      index += 1
  x = _conv_bn(layers, x, _round8(1280 * max(1.0, width)), 1, activation="relu6", name="head")
  x = layers.GlobalAveragePooling2D(name="pool")(x)
  return keras.Model(inputs, layers.Dense(outputs, name="logits")(x), name=name)
