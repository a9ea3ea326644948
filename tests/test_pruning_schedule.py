"""Target sparsity over steps: floats, TFMOT schedules, begin_step, (de)serialisation."""

import numpy as np
import pytest
import tensorflow as tf

from tf_fairprune import pruning_schedule
from tf_fairprune._compat import tfmot


@pytest.mark.parametrize("bad,error", [(1.0, ValueError), (-0.1, ValueError), (True, TypeError),
                                       ("0.5", TypeError)])
def test_validate_rejects_bad_values(bad, error):
  with pytest.raises(error, match="target_sparsity"):
    pruning_schedule.validate(bad)


def test_float_and_schedule_over_steps():
  assert float(pruning_schedule.sparsity_at(0.7, tf.constant(5, tf.int64))) == pytest.approx(0.7)
  decay = tfmot.sparsity.keras.PolynomialDecay(0.2, 0.8, begin_step=10, end_step=20)
  values = [float(pruning_schedule.sparsity_at(decay, tf.constant(s, tf.int64)))
            for s in (0, 9, 10, 15, 20, 30)]
  assert values[:2] == [0.0, 0.0]  # Nothing pruned before begin_step.
  assert values[2] == pytest.approx(0.2) and values[4] == pytest.approx(0.8)
  assert values[2] < values[3] < values[4] == pytest.approx(values[5])


@pytest.mark.parametrize("schedule", [
    0.6, tfmot.sparsity.keras.ConstantSparsity(0.5, begin_step=3),
    tfmot.sparsity.keras.PolynomialDecay(0.1, 0.9, begin_step=0, end_step=50, power=2)])
def test_serialize_round_trip(schedule):
  restored = pruning_schedule.deserialize(pruning_schedule.serialize(schedule))
  assert type(restored) is type(schedule)
  for step in (0, 3, 25, 60):
    np.testing.assert_allclose(
        float(pruning_schedule.sparsity_at(restored, tf.constant(step, tf.int64))),
        float(pruning_schedule.sparsity_at(schedule, tf.constant(step, tf.int64))))


def test_unknown_schedule_class_is_named():
  with pytest.raises(ValueError, match="Unknown pruning schedule 'Mystery'"):
    pruning_schedule.deserialize({"class_name": "Mystery", "config": {}})
