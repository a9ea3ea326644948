"""What the benchmark scripts share: the library's baselines and the job's inputs under
the names the scripts use (`pipeline.prune`, `pipeline.load_dataset`, ...), and the
benchmarks' own defaults (batch size, seed count).

The methods, their budgets and the audit live in the library (`tf_fairprune.baselines`,
`tf_fairprune.job`); the benchmarks import them from there, never the reverse.
"""

import numpy as np

# The library's pieces, under the names the benchmark scripts use.
from tf_fairprune.baselines import audit  # pylint: disable=unused-import
from tf_fairprune.baselines import CONSTRAINED  # pylint: disable=unused-import
from tf_fairprune.baselines import DEFAULT_EPSILON  # pylint: disable=unused-import
from tf_fairprune.baselines import DEFAULT_OPTIMIZER  # pylint: disable=unused-import
from tf_fairprune.baselines import loss_for  # pylint: disable=unused-import
from tf_fairprune.baselines import make_constraints  # pylint: disable=unused-import
from tf_fairprune.baselines import make_optimizer  # pylint: disable=unused-import
from tf_fairprune.baselines import METHODS  # pylint: disable=unused-import
from tf_fairprune.baselines import predicted_share  # pylint: disable=unused-import
from tf_fairprune.baselines import prune  # pylint: disable=unused-import
from tf_fairprune.baselines import result_row  # pylint: disable=unused-import
from tf_fairprune.baselines import TF_KERAS_ONLY  # pylint: disable=unused-import
from tf_fairprune.fairness import held_out as held_out_lib
from tf_fairprune.job.inputs import build_model  # pylint: disable=unused-import
from tf_fairprune.job.inputs import copy_to  # pylint: disable=unused-import
from tf_fairprune.job.inputs import keras_module  # pylint: disable=unused-import
from tf_fairprune.job.inputs import load_dataset
from tf_fairprune.job.inputs import train_dense  # pylint: disable=unused-import


def default_batch_size(data, largest=256):
  """The benchmarks' batch size: min(largest, max(32, training rows / 50)), so that
  small datasets still get at least 50 steps an epoch."""
  return int(min(largest, max(32, len(data.train) // 50)))


def default_seeds(name, image_train_size=None):
  """The benchmarks' seed count for a dataset: 5 below 10,000 test rows, else 3."""
  return 5 if len(load_dataset(name, 0, image_train_size=image_train_size).test) < 10000 else 3


def resolvable_gap(sizes):
  """The smallest gap between two groups' rates a split can tell from zero (95%, its two
  smallest groups; `HeldOutFairness`'s measure); None with fewer than two groups."""
  value = held_out_lib.resolvable_gap(sizes)
  return None if np.isinf(value) else value
