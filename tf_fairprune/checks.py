"""Argument checks shared by the public API: one message style, NumPy scalars welcome.

`np.float32(0.9)`, `np.int64(5)` and friends are accepted wherever a Python number is
(what a value computed with NumPy is); booleans are not numbers here (`True` as a
tolerance is a mistake, not 1.0).
"""

import numbers

import numpy as np


def is_number(value):
  """A real number (Python or NumPy scalar), not a bool."""
  return (isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_))
          and np.ndim(value) == 0)


def is_integer(value):
  """An integral number (Python or NumPy scalar), not a bool."""
  return isinstance(value, numbers.Integral) and not isinstance(value, (bool, np.bool_))


def positive_int(name, value):
  """`value` as an int >= 1.

  Raises:
    ValueError: Naming `name` otherwise.
  """
  if not is_integer(value) or value < 1:
    raise ValueError(f"{name} must be a positive integer, got {value!r}.")
  return int(value)


def number(name, value, low=0.0, high=float("inf"), high_open=True, what=None):
  """`value` as a float in [low, high) (or [low, high] with `high_open=False`).

  Raises:
    ValueError: Naming `name` (and `what` it means) otherwise.
  """
  inside = is_number(value) and np.isfinite(float(value)) and low <= float(value) and (
      float(value) < high if high_open else float(value) <= high)
  if not inside:
    bounds = f"[{low:g}, {high:g}{')' if high_open else ']'}"
    if high == float("inf"):
      bounds = f">= {low:g}"
    raise ValueError(f"{name} must be a finite number {'in ' if '[' in bounds else ''}"
                     f"{bounds}{f' ({what})' if what else ''}, got {value!r}.")
  return float(value)
