"""Runs bi-level fair pruning on one device and under tf.distribute (for test_distribute.py).

  python distributed_helper.py mirrored OUT.json MODE
      Two logical CPUs: one run without a strategy, one under MirroredStrategy over both
      devices, same global batch. Writes the max abs differences.
  python distributed_helper.py single OUT.npz MODE
  python distributed_helper.py worker OUT.npz MODE     (with TF_CONFIG set)
      One run without a strategy / one worker of a MultiWorkerMirroredStrategy.
  python distributed_helper.py mirrored_resume OUT.json MODE
      As `mirrored`, but the mirrored run saves after one epoch, loads the .keras file
      under the strategy and trains the second epoch.

TF_FAIRPRUNE_TEST_KERAS=3 runs it on Keras 3 (default 2: tf_keras). A kind ending in
`_held_out` (e.g. `mirrored_held_out`) steers the multipliers with `HeldOutFairness` on a
second dataset, measured every 2 steps; a kind ending in `_every3` (e.g.
`mirrored_every3`) re-ranks the masks every 3 steps instead of every step.
"""

import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # pylint: disable=g-import-not-at-top
import tensorflow as tf  # pylint: disable=g-import-not-at-top
# The Keras flavour under test: TF_FAIRPRUNE_TEST_KERAS=3 (Keras 3) or 2 (tf_keras).
if os.environ.get("TF_FAIRPRUNE_TEST_KERAS", "2") == "3":
  import keras  # pylint: disable=g-import-not-at-top
else:
  import tf_keras as keras  # pylint: disable=g-import-not-at-top

import tf_fairprune  # pylint: disable=g-import-not-at-top
from tf_fairprune.fairness import DegradationFairness, Lagrangian, Penalty, PerformanceFairness  # pylint: disable=g-import-not-at-top

GLOBAL_BATCH = 32
STEPS = 6
HELD_OUT = False
MASK_UPDATE_FREQUENCY = 1


def data(seed=0):
  rng = np.random.default_rng(seed)
  x = rng.standard_normal((GLOBAL_BATCH * STEPS, 8)).astype("float32")
  g = (rng.uniform(size=len(x)) < 0.35).astype("int32")
  y = np.where(g == 0, x[:, 0] > 0, x[:, 1] > 0).astype("float32")
  dense_correct = (rng.uniform(size=len(x)) < 0.8).astype("float32")
  return tf_fairprune.pack_group_data(x, g, dense_correct=dense_correct), y


def build(mode):
  keras.utils.set_random_seed(0)
  dense = keras.Sequential([
      keras.Input((8,)),
      keras.layers.Dense(16, activation="relu", kernel_regularizer=keras.regularizers.l2(1e-3)),
      keras.layers.Dense(1)])
  model = tf_fairprune.fair_prune_wrapper(
      dense, 0.6, implicit_gradient_scale=0.5, update_mode=mode,
      mask_update_frequency=MASK_UPDATE_FREQUENCY,
      fairness=[PerformanceFairness(enforcement=Lagrangian(multiplier_lr=0.5, noise_margin=0.0),
                                    tolerance=0.0),
                DegradationFairness(enforcement=Penalty(weight=2.0))])
  model.set_reference_model(None)
  model.compile(optimizer=keras.optimizers.SGD(0.1, momentum=0.9),
                mask_optimizer=keras.optimizers.SGD(1.0, momentum=0.9),
                loss=keras.losses.BinaryCrossentropy(from_logits=True))
  return model


def state(model):
  return {
      **{f"w{i}": w for i, w in enumerate(model.get_weights())},
      **{f"opt{i}": v.numpy() for i, v in enumerate(model.optimizer.variables)},
      **{f"mopt{i}": v.numpy() for i, v in enumerate(model.mask_optimizer.variables)},
  }


def dataset(strategy):
  x, y = data()
  ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(GLOBAL_BATCH)
  if strategy is not None and isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    ds = ds.with_options(options)
  return ds


AUDIT = {"checked": 0, "wrong": []}  # The mirrored run's re-ranks against a full top-k.


class MaskAudit(keras.callbacks.Callback):
  """After every re-rank: are the masks the full (stable sort) top-k of the scores?"""

  def on_train_batch_end(self, batch, logs=None):
    model = self.model
    if int(model.optimizer.iterations.numpy()) % MASK_UPDATE_FREQUENCY:
      return  # Not a re-rank step.
    wrappers = model.fair_prune_wrappers
    expected = tf_fairprune.masking.topk_masks(
        [s for w in wrappers for s in w.score_variables], model.sparsity_at(),
        model.mask_scope, method="sort", layer_floor=model._mask_updater.layer_floor)  # pylint: disable=protected-access
    AUDIT["checked"] += 1
    if not all(np.array_equal(np.asarray(m), e.numpy()) for m, e in
               zip([m for w in wrappers for m in w.mask_variables], expected)):
      AUDIT["wrong"].append(int(model.optimizer.iterations.numpy()))


def unfair_data(mode, seed=1, n=1024):
  """Held-out rows labelled so that the initial model is right on every row of group 0
  and wrong on every row of group 1: a gap far beyond the set's noise, so that the
  held-out multipliers act (noise never moves them). The same rows for every run (the
  initial model is seeded)."""
  rng = np.random.default_rng(seed)
  x = rng.standard_normal((n, 8)).astype("float32")
  g = (rng.uniform(size=n) < 0.35).astype("int32")
  predicted = (build(mode).predict(x, verbose=0).reshape(-1) > 0).astype("float32")
  y = np.where(g == 0, predicted, 1.0 - predicted).astype("float32")
  dense_correct = (rng.uniform(size=n) < 0.8).astype("float32")
  return tf_fairprune.pack_group_data(x, g, dense_correct=dense_correct), y


def callbacks(mode, strategy=None):
  audit = [MaskAudit()] if strategy is not None else []
  if not HELD_OUT:
    return audit
  return audit + [tf_fairprune.HeldOutFairness(unfair_data(mode), update_every=2,
                                               restore=False, verbose=0)]


def train(strategy, mode, resume_from=None):
  """Two epochs; with `resume_from`, one epoch, save, load under the strategy, one more."""
  if strategy is None:
    model = build(mode)
  else:
    with strategy.scope():
      model = build(mode)
  ds = dataset(strategy)
  if resume_from is None:
    model.fit(ds, epochs=2, verbose=0, callbacks=callbacks(mode, strategy))
    return state(model), model
  model.fit(ds, epochs=1, verbose=0, callbacks=callbacks(mode, strategy))
  model.save(resume_from)
  with strategy.scope():
    model = keras.models.load_model(resume_from)
  model.fit(ds, epochs=1, verbose=0, callbacks=callbacks(mode, strategy))
  return state(model), model


def main(argv):
  global HELD_OUT, MASK_UPDATE_FREQUENCY
  kind, out, mode = argv[1], argv[2], argv[3]
  if kind.endswith("_every3"):
    kind, MASK_UPDATE_FREQUENCY = kind[:-len("_every3")], 3
  if kind.endswith("_held_out"):
    kind, HELD_OUT = kind[:-len("_held_out")], True
  if kind in ("mirrored", "mirrored_resume"):
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    single, model_a = train(None, mode)
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    resume = out + ".keras" if kind == "mirrored_resume" else None
    mirrored, model_b = train(strategy, mode, resume_from=resume)
    diffs = {k: float(np.max(np.abs(single[k] - mirrored[k]))) for k in single}
    moved = float(max(np.max(np.abs(a - b)) for a, b in zip(
        model_a.get_weights(), build(mode).get_weights())))
    with open(out, "w") as f:
      json.dump({"diffs": diffs, "replicas": strategy.num_replicas_in_sync, "moved": moved,
                 "multiplier": float(model_b.fairness_multipliers[0].numpy().max()),
                 "mask_audit": AUDIT}, f)
  elif kind == "single":
    np.savez(out, **train(None, mode)[0])
  else:
    strategy = tf.distribute.MultiWorkerMirroredStrategy()
    result, _ = train(strategy, mode)
    if strategy.cluster_resolver.task_id == 0:
      np.savez(out, **result)


if __name__ == "__main__":
  main(sys.argv)
