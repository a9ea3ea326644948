r"""Which wrapped tensors the layer floor holds in the first mask of the benchmarks' MLPs.

The default rescale (`mask_updater.DEFAULT_RESCALE_CAP`, "floor") differs from rescaling every
tensor only on tensors the floor holds. This prints, per tabular dataset and sparsity,
each wrapped tensor's kept count, its floor, its rescale gain and which tensors are
floor-held in the first mask of the trained dense MLP (the fairness and main benchmarks'
setup: 5 dense epochs, seed 0). None held: those benchmarks' rows are unchanged by the
rule.

  python benchmarks/floor_held_tensors.py
"""

import contextlib
import io
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import numpy as np  # pylint: disable=g-import-not-at-top
import tf_keras as keras  # pylint: disable=g-import-not-at-top

import pipeline  # pylint: disable=g-import-not-at-top
import tf_fairprune  # pylint: disable=g-import-not-at-top
from tf_fairprune import mask_updater  # pylint: disable=g-import-not-at-top
from tf_fairprune import masking  # pylint: disable=g-import-not-at-top


def main():
  for name in ("adult-sex", "compas-race", "german-sex"):
    data = pipeline.load_dataset(name, 0)
    batch_size = pipeline.default_batch_size(data)
    keras.utils.set_random_seed(0)
    with contextlib.redirect_stdout(io.StringIO()):
      dense = pipeline.train_dense(data, 5, batch_size)
    for sparsity in (0.9, 0.95, 0.98, 0.99):
      pruned = tf_fairprune.fair_prune_wrapper(dense, sparsity, rescale=False)
      wrappers = pruned.fair_prune_wrappers
      thetas = [t for w in wrappers for t in w.prunable_weights]
      masks = [m for w in wrappers for m in w.mask_variables]
      gains = {cap: [float(g) for g in mask_updater.rescale_gains(
          thetas, masks, sparsity, "global", masking.LAYER_FLOOR, cap)]
               for cap in ("none", "floor")}
      floors = masking.layer_floors([int(np.prod(m.shape)) for m in masks], sparsity,
                                    masking.LAYER_FLOOR)
      held = [w.layer.name for w, a, b in zip(wrappers, gains["none"], gains["floor"])
              if abs(a - b) > 1e-6]
      print(f"{name} {sparsity:.0%}: kept {[int(m.numpy().sum()) for m in masks]}, floors "
            f"{[int(f) for f in floors]}, gains {np.round(gains['none'], 2).tolist()}, "
            f"floor-held: {held or 'none'}", flush=True)


if __name__ == "__main__":
  main()
