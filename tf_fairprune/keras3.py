"""The Keras 3 classes under their public names: `tf_fairprune.keras3.FairPruneModel`
(subclass it for a subclassed Keras 3 model), `FairPruneWrapper` and
`FunctionalFairPruneModel`. The tf_keras ones are `tf_fairprune.FairPruneModel`, ...;
`fair_prune_wrapper` and `FairPruneWrapper(layer)` pick the Keras 3 classes for Keras 3
objects on their own. The flavour's table and classes live in `flavour_keras3.py`.

Raises ImportError on import when Keras 3 is not installed.

Example:

```python
import keras
import tf_fairprune

class Net(tf_fairprune.keras3.FairPruneModel):
  def __init__(self):
    super().__init__(target_sparsity=0.8)
    self.out = tf_fairprune.FairPruneWrapper(keras.layers.Dense(2))

  def call(self, x):
    return self.out(x)
```
"""

from tf_fairprune.flavour_keras3 import FairPruneModel
from tf_fairprune.flavour_keras3 import FairPruneWrapper
from tf_fairprune.flavour_keras3 import FunctionalFairPruneModel

__all__ = ["FairPruneModel", "FairPruneWrapper", "FunctionalFairPruneModel"]
