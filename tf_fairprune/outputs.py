"""Multi-output models: which output the fairness constraints and group metrics judge,
and the output names the user wrote.

A wrapped model's output layers are `FairPruneWrapper`s named `fair_prune_<name>`;
losses and metrics keyed by the original names keep working because the model keeps
those names. `fairness_output` (a name or an index) picks the judged output; a model
with one output needs none.
"""

from tf_fairprune import _private
from tf_fairprune import wrapper as wrapper_lib


def original_output_names(model):
  """The model's output names with each wrapper's name replaced by its layer's, or None
  when there is nothing to rename (or the renaming would collide)."""
  names = getattr(model, "output_names", None)
  outputs = getattr(model, "outputs", None)
  if not names or not outputs or len(names) != len(outputs):
    return None
  layers = [_private.output_layer(t) for t in outputs]
  renamed = [l.layer.name if wrapper_lib.is_wrapper(l) and n == l.name else n
             for n, l in zip(names, layers)]
  return renamed if len(set(renamed)) == len(renamed) else None


def use_original_names(model):
  """Gives `model` its `original_output_names` (a plain list, as Keras sets it), if any."""
  names = original_output_names(model)
  if names is not None:
    _private.untracked(model, "output_names", names)


def judges_an_output(model):
  """Whether `model` keeps group statistics: it has one output, names the judged output
  (`fairness_output`), or has constraints (which then require one). A model with
  several outputs and neither trains as a plain pruned model, without group metrics."""
  outputs = getattr(model, "outputs", None)
  return (not outputs or len(outputs) <= 1 or model.fairness_output is not None or
          bool(model.fairness))


def judged_loss(model, loss):
  """The judged output's entry of `compile`'s `loss` (which says whether that output is
  logits); `loss` itself when it is one loss or nothing is judged."""
  if isinstance(loss, (dict, list, tuple)) and (model.fairness or
                                                model.fairness_output is not None):
    return judged(model, model.fairness_output, loss)
  return loss


def judged_index(model, choice):
  """Index of the output `choice` (a name, an index or None) names in `model`.

  Raises:
    ValueError: For None with several outputs, an unknown name or an index out of range.
  """
  outputs = getattr(model, "outputs", None)
  count = len(outputs) if outputs else 1
  if choice is None:
    if count > 1:
      raise ValueError(
          f"Model '{model.name}' has {count} outputs {list(model.output_names)}: say which "
          "one the fairness constraints and group metrics judge with "
          "fair_prune_wrapper(..., fairness_output=NAME_OR_INDEX).")
    return 0
  if isinstance(choice, str):
    names = list(getattr(model, "output_names", None) or [])
    if choice not in names:
      raise ValueError(f"fairness_output={choice!r} is not an output of '{model.name}'; its "
                       f"outputs are {names}.")
    return names.index(choice)
  if not -count <= choice < count:
    raise ValueError(f"fairness_output={choice} is out of range: '{model.name}' has "
                     f"{count} output(s).")
  return choice % count


def judged(model, choice, value):
  """The judged output's entry of a per-output structure (predictions, targets, sample
  weights or losses) of `model`; a single value is returned as it is."""
  if isinstance(value, dict):
    return value.get(model.output_names[judged_index(model, choice)])
  if isinstance(value, (list, tuple)):
    if len(value) == 1:
      return value[0]
    return value[judged_index(model, choice)]
  return value
