"""export_tflite's sample inputs: every bad one refused in one line, nothing written."""

import numpy as np
import pytest
import tensorflow as tf

import tf_fairprune


def _two_input_model(k):
  a, b = k.Input((4,), name="a"), k.Input((3,), name="b")
  h = k.layers.Concatenate()([a, b])
  return k.Model([a, b], k.layers.Dense(2, name="out")(h))


def _one_input_model(k):
  return k.Sequential([k.Input((4,)), k.layers.Dense(2, name="out")])


X = np.random.default_rng(0).standard_normal((6, 4)).astype("float32")
Y = np.random.default_rng(1).standard_normal((6, 3)).astype("float32")
BAD_ONE_INPUT = {
    "empty array": (X[:0], "empty"),
    "empty list": ([], "empty"),
    "group-packed": (tf_fairprune.pack_group_data(X, np.arange(6) % 2), "pack_group_data"),
    "a dataset": (tf.data.Dataset.from_tensor_slices(X).batch(2), "Dataset"),
    "ragged rows": ([[[0.0, 1.0, 2.0, 3.0], [1.0]]], "not an array"),
    "strings": (np.array([["a"] * 4]), "numbers"),
    "NaN": (np.where(X > 1, np.nan, X), "NaN"),
    "a scalar": (np.float32(1.0), "scalar"),
    "None in a list": ([None], "None"),
}


@pytest.mark.parametrize("case", sorted(BAD_ONE_INPUT))
def test_bad_sample_inputs_get_one_line_and_write_nothing(k, tmp_path, case):
  value, message = BAD_ONE_INPUT[case]
  path = tmp_path / "m.tflite"
  with pytest.raises(ValueError, match=message) as caught:
    tf_fairprune.export_tflite(_one_input_model(k), str(path), sample_inputs=value)
  assert "\n" not in str(caught.value) and "sample_inputs" in str(caught.value)
  assert not path.exists()


def test_structure_of_several_inputs_is_checked_by_name_and_rows(k, tmp_path):
  model = _two_input_model(k)
  path = str(tmp_path / "m.tflite")
  with pytest.raises(ValueError, match=r"keys \['a', 'nope'\]"):
    tf_fairprune.export_tflite(model, path, sample_inputs={"a": X, "nope": Y})
  with pytest.raises(ValueError, match="different numbers of rows"):
    tf_fairprune.export_tflite(model, path, sample_inputs=[X, Y[:4]])
  with pytest.raises(ValueError, match="has 1 arrays but the model has 2 inputs"):
    tf_fairprune.export_tflite(model, path, sample_inputs=X)
  # By name, in any order: the same file as a list in the model's order.
  by_name = tf_fairprune.export_tflite(model, path, sample_inputs={"b": Y, "a": X})
  assert by_name.num_samples == 6 and by_name.max_abs_diff < 1e-5


def test_num_samples_must_be_positive(tmp_path):
  import tf_keras  # pylint: disable=g-import-not-at-top
  with pytest.raises(ValueError, match="num_samples"):
    tf_fairprune.export_tflite(_one_input_model(tf_keras), str(tmp_path / "m.tflite"),
                               num_samples=0)
