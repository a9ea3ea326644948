"""Every pruning method by name, with the same budget: the bi-level methods (BiFP, BiP
and their per-layer variants and ablations) and the baselines — TFMOT's gradual magnitude
pruning (GMP), a one-shot magnitude mask with fine-tuning, Balancing Act's CEAG and the
two-stage GMP-then-fair-fine-tuning.

Example:

```python
outcome = prune("gmp", dense, data, sparsity=0.9, epochs=5, batch_size=256)
outcome["model"]  # the stripped pruned model
```
"""

import tf_keras as keras

import tf_fairprune
from tf_fairprune._compat import tfmot
from tf_fairprune.baselines import named_constraints
from tf_fairprune.baselines import results
from tf_fairprune.baselines import tracking
from tf_fairprune.baselines.names import DEFAULT_OPTIMIZER
from tf_fairprune.baselines.names import FIXED_MASK
from tf_fairprune.baselines.names import LEVELS
from tf_fairprune.baselines.names import METHODS
from tf_fairprune.baselines.names import parse_optimizer
from tf_fairprune.baselines.names import PER_LAYER
from tf_fairprune.baselines.names import TF_KERAS_ONLY


def loss_for(data, k=keras):
  """The loss of `data`'s labels on logits: binary or sparse categorical cross-entropy,
  of the Keras module `k`."""
  if data.num_classes == 2:
    return k.losses.BinaryCrossentropy(from_logits=True)
  return k.losses.SparseCategoricalCrossentropy(from_logits=True)


def make_optimizer(spec=DEFAULT_OPTIMIZER, k=keras):
  """An optimizer (of the Keras module `k`) from "sgd:LR" (momentum 0.9) or "adam:LR".

  Raises:
    ValueError: For another name or a learning rate that is not a positive number.
  """
  name, rate = parse_optimizer(spec)
  if name == "adam":
    return k.optimizers.Adam(rate)
  return k.optimizers.SGD(rate, momentum=0.9)


def _frozen_mask_optimizer(k):
  return k.optimizers.SGD(0.0)


def gmp_schedule(sparsity, ramp_steps):
  """TFMOT's polynomial schedule over `ramp_steps`, pruning every 100 steps (its guide's
  default) or more often on small datasets (at least 10 pruning events).

  `end_step` is a multiple of the frequency from 0: TFMOT only prunes on steps where
  (step - begin_step) % frequency == 0, so another end step never reaches the target.
  """
  frequency = max(1, min(100, ramp_steps // 10))
  end = max(frequency, ramp_steps // frequency * frequency)
  return tfmot.sparsity.keras.PolynomialDecay(0.0, sparsity, begin_step=0, end_step=end,
                                              frequency=frequency)


def _packed(split, dense):
  """A split's inputs with group ids and the dense model's outputs (for degradation)."""
  outputs = dense.predict(split.x, batch_size=1024, verbose=0)
  return tf_fairprune.pack_group_data(split.x, split.groups, dense_outputs=outputs)


def _packed_train(data, dense):
  return _packed(data.train, dense)


def prune(method, dense, data, sparsity, epochs, batch_size, fairness=None,
          target_metric="degradation_gap", target_gap=0.01, tolerance=0.01,
          jit_compile=False, verbose=2, structure=None, prepare=None,
          optimizer=DEFAULT_OPTIMIZER, ramp_epochs=None, held_out=True,
          max_accuracy_loss=None, mask_update_frequency=None):
  """Prunes `dense` with `method` and returns a result dict.

  Budgets (E = `epochs`, R = `ramp_epochs`, default max(1, E // 2)):
    - bi-level methods (bifp, bip, their `_layer` variants and ablations): E epochs, the
      mask at the target sparsity from the first step.
    - magnitude_ft / ceag: one-shot global magnitude mask of the dense model, then E
      epochs of weight training with the mask fixed (ceag: with the constraints).
    - gmp: TFMOT's `prune_low_magnitude`, per layer, polynomial ramp over R epochs,
      then E epochs of fine-tuning at the target (as many as the bi-level methods
      train at the target).
    - two_stage: GMP ramp over R epochs, then max(1, E - R) epochs of fine-tuning with
      the constraints and the GMP mask fixed: E epochs in all, as BiFP.

  Args:
    optimizer: The weights' optimizer, "sgd:LR" or "adam:LR" (see `make_optimizer`).
      The scores of the bi-level methods always use SGD(0.1, momentum 0.9).
    fairness: The constraints of the fair methods (`CONSTRAINED`; default
      `named_constraints.make_constraints()`, BiFP's default); the other methods ignore it.
    held_out: Constrained methods steer their Lagrangian multipliers on the validation
      split and return the iterate selected on it (`tf_fairprune.HeldOutFairness`);
      False: on the training batches (the earlier behaviour). The test split is
      never read.
    max_accuracy_loss: `HeldOutFairness`'s accuracy budget (None: no budget).
    mask_update_frequency: Steps between mask re-rankings of the bi-level methods
      (None: the library's default); fixed-mask methods never re-rank.
    structure: e.g. {"block_size": (4, 1)} or {"granularity": "channel"}, passed to
      `fair_prune_wrapper` for the bi-level methods; `prepare(dense)` may return a
      copy with `FairPruneWrapper`s on the layers to prune (selective pruning).

  Returns:
    {"model": the stripped model, "train_seconds", "train_steps",
     "seconds_to_target", "steps_to_target" (None if never reached), "history",
     "held_out": the HeldOutFairness selection and candidates, or None}.
  """
  k = tf_fairprune.flavours.of(dense).keras
  if method in TF_KERAS_ONLY and k is not keras:
    raise ValueError(f"{method} uses TFMOT, which works on tf_keras models only: run it "
                     "with --keras=2.")
  dense_val_accuracy = results.audit(dense, None, data.validation, data).accuracy
  if fairness is None:
    fairness = named_constraints.make_constraints()
  loss = loss_for(data, k)
  steps_per_epoch = -(-len(data.train) // batch_size)
  ramp_epochs = ramp_epochs or max(1, epochs // 2)

  def tracker(**kwargs):
    return tracking.target_tracker(k, data, dense, target_metric, target_gap, tolerance,
                          dense_val_accuracy, **kwargs)

  def bilevel(model, levels, constraints, frozen_mask=False, **kwargs):
    pruned = tf_fairprune.fair_prune_wrapper(
        model, sparsity, fairness=constraints if levels else [], fairness_on=levels,
        num_groups=data.num_groups,
        # A frozen mask never re-ranks (the cond skips the top-k), so these baselines
        # pay little for running on the bi-level engine.
        **(dict(implicit_gradient_scale=0.0, mask_update_frequency=2**30) if frozen_mask
           else {} if mask_update_frequency is None
           else dict(mask_update_frequency=mask_update_frequency)), **kwargs)
    pruned.set_reference_model(None)  # The dense outputs travel with the data.
    pruned.compile(optimizer=make_optimizer(optimizer, k),
                   mask_optimizer=(_frozen_mask_optimizer(k) if frozen_mask else
                                   k.optimizers.SGD(0.1, momentum=0.9)),
                   loss=loss, jit_compile=jit_compile)
    return pruned

  def fit_bilevel(pruned, fit_epochs, track):
    callbacks = [track]
    steer = None
    if held_out and any(c.enforcement.uses_held_out for c in pruned.fairness):
      steer = tf_fairprune.HeldOutFairness(
          (_packed(data.validation, dense), data.validation.y),
          max_accuracy_loss=max_accuracy_loss, verbose=0, group_names=data.group_names)
      callbacks.insert(0, steer)  # Before the tracker: it sees the multipliers' update.
    pruned.fit(_packed_train(data, dense), data.train.y, batch_size=batch_size,
               epochs=fit_epochs, verbose=verbose, callbacks=callbacks)
    return {"held_out": (None if steer is None else
                         {"selected": steer.selected,
                          "candidates": [c.to_dict() for c in steer.candidates],
                          "messages": list(steer.messages)}),
            "model": tf_fairprune.strip_fair_pruning(pruned),
            "pruned": pruned, "stopped_on_non_finite": pruned.stopped_on_non_finite_loss,
            "train_seconds": track.train_seconds,
            "train_steps": int(pruned.optimizer.iterations.numpy()),
            "seconds_to_target": track.seconds, "steps_to_target": track.steps,
            "history": track.history}

  def gmp(fit_epochs):
    model = keras.models.clone_model(dense)  # TFMOT reuses layers: never touch `dense`.
    model.set_weights(dense.get_weights())
    pruned = tfmot.sparsity.keras.prune_low_magnitude(
        model, pruning_schedule=gmp_schedule(sparsity, ramp_epochs * steps_per_epoch))
    pruned.compile(make_optimizer(optimizer), loss, jit_compile=jit_compile)
    track = tracker(sparse_from_epoch=ramp_epochs + 1)
    pruned.fit(data.train.x, data.train.y, batch_size=batch_size, epochs=fit_epochs,
               verbose=verbose, callbacks=[tfmot.sparsity.keras.UpdatePruningStep(), track])
    return {"model": tfmot.sparsity.keras.strip_pruning(pruned),
            "train_seconds": track.train_seconds, "train_steps": fit_epochs * steps_per_epoch,
            "seconds_to_target": track.seconds, "steps_to_target": track.steps,
            "history": track.history}

  if method == "dense":
    return {"model": dense, "train_seconds": 0.0, "train_steps": 0, "seconds_to_target": None,
            "steps_to_target": None, "history": []}
  if method in LEVELS:
    pruned = bilevel(prepare(dense) if prepare else dense, LEVELS[method], fairness,
                     mask_scope="layer" if method in PER_LAYER else None, **(structure or {}))
    return fit_bilevel(pruned, epochs, tracker())
  if method in FIXED_MASK:
    # Scores start at |θ| and never move (lr 0, no implicit term): a fixed global
    # magnitude mask, rescaled like BiP's first mask, with only the weights trained.
    pruned = bilevel(dense, ("weights",) if FIXED_MASK[method] else (), fairness,
                     frozen_mask=True, mask_scope="global")
    return fit_bilevel(pruned, epochs, tracker())
  if method == "gmp":
    return gmp(ramp_epochs + epochs)
  if method == "two_stage":
    first = gmp(ramp_epochs)
    tuned = bilevel(first["model"], ("weights",), fairness, frozen_mask=True, rescale=False)
    track = tracker(offset_seconds=first["train_seconds"], offset_steps=first["train_steps"])
    second = fit_bilevel(tuned, max(1, epochs - ramp_epochs), track)
    for entry in second["history"]:
      entry["epoch"] += ramp_epochs
    # Epochs and steps of the whole run, as the history counts them.
    held_out = second.get("held_out") or {}
    for entry in (held_out.get("candidates") or []) + [held_out.get("selected") or {}]:
      if entry.get("epoch") is not None:
        entry["epoch"] += ramp_epochs
        entry["step"] += first["train_steps"]
    return dict(second, train_seconds=first["train_seconds"] + second["train_seconds"],
                train_steps=first["train_steps"] + second["train_steps"],
                history=first["history"] + second["history"])
  raise ValueError(f"Unknown method {method!r}: one of {', '.join(METHODS)}.")
