"""Trains a small fair-pruned model in its own process (used by test_saving.py).

  python resume_helper.py full OUT.npz          4 epochs in one go
  python resume_helper.py first MODEL.keras     2 epochs, then save
  python resume_helper.py resume MODEL.keras OUT.npz   load, 2 more epochs

TF_FAIRPRUNE_TEST_KERAS=3 runs it on Keras 3 (default 2: tf_keras).
"""

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

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from conftest import compile_binary, make_data, make_mlp  # pylint: disable=g-import-not-at-top


def _state(model):
  return {
      **{f"w{i}": w for i, w in enumerate(model.get_weights())},
      **{f"opt{i}": v.numpy() for i, v in enumerate(model.optimizer.variables)},
      **{f"mopt{i}": v.numpy() for i, v in enumerate(model.mask_optimizer.variables)},
  }


def main(argv):
  keras.utils.set_random_seed(0)
  tf.config.experimental.enable_op_determinism()
  x, y = make_data(n=192)
  fit = dict(batch_size=32, shuffle=False, verbose=0)
  if argv[1] in ("full", "first"):
    model = compile_binary(tf_fairprune.fair_prune_wrapper(
        make_mlp(k=keras), target_sparsity=tf_fairprune._compat.tfmot.sparsity.keras.PolynomialDecay(  # pylint: disable=protected-access
            0.2, 0.8, begin_step=0, end_step=20)))
    model.fit(x, y, epochs=4 if argv[1] == "full" else 2, **fit)
    if argv[1] == "full":
      np.savez(argv[2], **_state(model))
    else:
      model.save(argv[2])
  else:
    model = keras.models.load_model(argv[2])
    model.fit(x, y, epochs=2, **fit)
    np.savez(argv[3], **_state(model))


if __name__ == "__main__":
  main(sys.argv)
