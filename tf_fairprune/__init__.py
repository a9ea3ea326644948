"""tf_fairprune: prune a Keras model and keep it fair across groups, in one `fit`.

Bi-level fair pruning (BiFP) for Keras 3 (`import keras`, TensorFlow backend) and
tf_keras (Keras 2, TFMOT's flavour): trainable mask scores (upper level) and weights
(lower level) are updated in one custom `train_step`, each with an optional fairness
penalty. The flavour follows the model passed. The flow mirrors TFMOT:

```python
import keras                      # or: import tf_keras as keras
import tf_fairprune

pruned = tf_fairprune.fair_prune_wrapper(model, target_sparsity=0.9)
pruned.compile(optimizer="sgd", loss="binary_crossentropy")
pruned.fit(x, y, epochs=3)
final = tf_fairprune.strip_fair_pruning(pruned)
tf_fairprune.export_tflite(final, "model.tflite")
```
"""

from tf_fairprune import fairness
from tf_fairprune import flavours
from tf_fairprune import flavour_tf_keras  # Registers the tf_keras flavour and its classes.
from tf_fairprune import masking
from tf_fairprune import training
from tf_fairprune.callbacks import FairPruningSummaries
from tf_fairprune.export import export_tflite
from tf_fairprune.export import TFLiteExport
from tf_fairprune.fairness.held_out import HeldOutFairness
from tf_fairprune.groups import intersectional_groups
from tf_fairprune.groups import pack_group_data
from tf_fairprune.intersections import Intersections
from tf_fairprune.flavour_tf_keras import FairPruneModel
from tf_fairprune.flavour_tf_keras import FairPruneWrapper
from tf_fairprune.flavour_tf_keras import FunctionalFairPruneModel
from tf_fairprune.prune import fair_prune_scope
from tf_fairprune.prune import fair_prune_wrapper
from tf_fairprune.quantization import quantize_preserving_sparsity
from tf_fairprune.batch_norm import recalibrate_batch_norm
from tf_fairprune.registry import register_prunable_layer
from tf_fairprune.strip import strip_fair_pruning

if flavours.keras3() is not None:
  # Registers the Keras 3 flavour and classes, so that Keras 3 .keras files load after
  # `import tf_fairprune` alone (importing Keras 3 leaves tf.keras as it was).
  from tf_fairprune import flavour_keras3
  from tf_fairprune import keras3  # The Keras 3 classes' public names.

__version__ = "0.1.0"

__all__ = [
    "FairPruneModel",
    "FairPruningSummaries",
    "FairPruneWrapper",
    "HeldOutFairness",
    "Intersections",
    "FunctionalFairPruneModel",
    "TFLiteExport",
    "export_tflite",
    "fair_prune_scope",
    "fair_prune_wrapper",
    "fairness",
    "intersectional_groups",
    "masking",
    "pack_group_data",
    "quantize_preserving_sparsity",
    "recalibrate_batch_norm",
    "register_prunable_layer",
    "strip_fair_pruning",
]
