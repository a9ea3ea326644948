"""The reference architectures build with the shapes their docstrings promise."""

import numpy as np
import pytest

from tf_fairprune import models


@pytest.mark.parametrize("build,shape,outputs", [
    (lambda: models.mlp(7), (7,), 1),
    (lambda: models.mlp(7, hidden=(8,), outputs=3), (7,), 3),
    (lambda: models.cnn((28, 28, 3), 10, width=8), (28, 28, 3), 10),
    (lambda: models.resnet10((32, 32, 3), 1, width=8), (32, 32, 3), 1),
    (lambda: models.mobilenet_v2((32, 32, 3), 2, width=0.25,
                                 blocks=models.MOBILENET_V2_BLOCKS[:3]), (32, 32, 3), 2),
])
def test_builds_and_predicts(build, shape, outputs):
  model = build()
  assert model.built and model.output_shape == (None, outputs)
  out = model.predict(np.zeros((2,) + shape, "float32"), verbose=0)
  assert out.shape == (2, outputs) and np.all(np.isfinite(out))


def test_mlp_is_two_by_256_by_default():
  model = models.mlp(10)
  assert [l.units for l in model.layers if hasattr(l, "units")] == [256, 256, 1]
  assert model.count_params() == 10 * 256 + 256 + 256 * 256 + 256 + 256 + 1
