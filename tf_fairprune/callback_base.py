"""The base class of every tf_fairprune callback, on both Keras flavours.

Policy: one class per callback, subclassing tf_keras' `Callback`, whichever flavour the
model is. A callback is made before `fit` sees the model (so it cannot follow the
model's flavour), and only tf_keras' base works in both `fit`s: tf_keras' `CallbackList`
calls private hooks that only its own base defines (`_implements_train_batch_hooks`,
...), while Keras 3's calls the public methods and reads the same `_is_default` markers
on the hooks, which tf_keras' base sets too. So `HeldOutFairness`,
`FairPruningSummaries` and the step guard's callback are each one class, not a class
per flavour.
"""

from tf_fairprune._compat import keras

Callback = keras.callbacks.Callback
