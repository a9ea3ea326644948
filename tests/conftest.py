"""Shared fixtures: tiny models and data so that every test runs in well under a second."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # pylint: disable=g-import-not-at-top
import pytest  # pylint: disable=g-import-not-at-top
import tensorflow as tf  # pylint: disable=g-import-not-at-top
import tf_keras as keras  # pylint: disable=g-import-not-at-top

from tf_fairprune import flavours  # pylint: disable=g-import-not-at-top

# Slow end-to-end tests (whole jobs in subprocesses, many XLA compiles) are opt-in:
# `--run-slow` (what .ci/run passes) or TF_FAIRPRUNE_SLOW_TESTS=1 runs them too.
SLOW_OPTION = "--run-slow"


def pytest_addoption(parser):
  parser.addoption(SLOW_OPTION, action="store_true", default=False,
                   help="also run the tests marked slow (whole jobs end to end)")


def pytest_configure(config):
  config.addinivalue_line("markers", "slow: an end-to-end test run only with --run-slow")


def pytest_collection_modifyitems(config, items):
  if config.getoption(SLOW_OPTION) or os.environ.get("TF_FAIRPRUNE_SLOW_TESTS") == "1":
    return
  skip = pytest.mark.skip(reason=f"slow end-to-end test: run with {SLOW_OPTION} (CI does)")
  for item in items:
    if "slow" in item.keywords:
      item.add_marker(skip)


# The Keras flavours the core tests run on: tf_keras always, Keras 3 when installed.
KERAS3 = flavours.keras3()
FLAVOURS = ["tf_keras"] + (["keras3"] if KERAS3 is not None else [])


@pytest.fixture(autouse=True)
def _fresh_session():
  keras.backend.clear_session()
  keras.utils.set_random_seed(0)
  if KERAS3 is not None:
    KERAS3.utils.set_random_seed(0)
  yield


@pytest.fixture(params=FLAVOURS)
def k(request):
  """The Keras module of the flavour under test (tf_keras or Keras 3)."""
  module = keras if request.param == "tf_keras" else KERAS3
  module.utils.set_random_seed(0)
  return module


def make_mlp(inputs=8, hidden=16, outputs=1, name="mlp", k=keras):
  return k.Sequential([
      k.Input((inputs,)),
      k.layers.Dense(hidden, activation="relu", name="hidden"),
      k.layers.Dense(outputs, name="logits"),
  ], name=name)


def make_data(n=256, inputs=8, seed=0):
  rng = np.random.default_rng(seed)
  x = rng.standard_normal((n, inputs)).astype("float32")
  y = (x[:, 0] + 0.5 * x[:, 1] > 0).astype("float32")
  return x, y


def compile_binary(model, lr=0.05, **kwargs):
  k = flavours.of(model).keras
  model.compile(optimizer=k.optimizers.SGD(lr, momentum=0.9),
                loss=k.losses.BinaryCrossentropy(from_logits=True),
                metrics=[k.metrics.BinaryAccuracy(threshold=0.0, name="accuracy")],
                **kwargs)
  return model


@pytest.fixture
def mlp():
  return make_mlp()


@pytest.fixture
def data():
  return make_data()


class MaskAudit:
  """After every training batch: do the masks equal the full top-k of the scores (the
  stable sort's, the reference the fast selections are tested against)?

  `callback()` is the Keras callback; `checked` counts the batches, `wrong` lists those
  whose masks differed.
  """

  def __init__(self, model):
    self.model, self.checked, self.wrong = model, 0, []

  def __call__(self, batch, logs=None):
    from tf_fairprune import masking  # pylint: disable=g-import-not-at-top
    wrappers = self.model.fair_prune_wrappers
    scope = self.model.mask_scope
    # Wrappers with mask_scope="layer" are ranked on their own, outside a global ranking.
    alone = [getattr(w, "mask_scope", None) == "layer" and scope == "global" for w in wrappers]
    if all(alone):
      alone = [False] * len(wrappers)
    expected, actual = [], []
    for part, part_scope in ((True, "layer"), (False, scope)):
      ranked = [w for w, a in zip(wrappers, alone) if a == part]
      if not ranked:
        continue
      expected += masking.structured_masks(
          [s for w in ranked for s in w.score_variables], self.model.sparsity_at(),
          [w.structure for w in ranked for _ in w.score_variables], part_scope,
          method="sort", layer_floor=self.model._mask_updater.layer_floor)  # pylint: disable=protected-access
      actual += [m for w in ranked for m in w.mask_variables]
    self.checked += 1
    if not all(np.array_equal(a.numpy(), e.numpy()) for a, e in zip(actual, expected)):
      self.wrong.append(batch)

  def callback(self):
    return flavours.of(self.model).keras.callbacks.LambdaCallback(on_train_batch_end=self)
