"""Importing tf_fairprune must not change what tf.keras means in the user's process."""

import os
import subprocess
import sys

import pytest

_PROBE = """
import os, tensorflow as tf
{imp}
print(tf.keras.Model.__module__.split(".")[0], os.environ.get("TF_USE_LEGACY_KERAS"))
"""


def _probe(imp, env_value):
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
  env.pop("TF_USE_LEGACY_KERAS", None)
  if env_value is not None:
    env["TF_USE_LEGACY_KERAS"] = env_value
  out = subprocess.run([sys.executable, "-c", _PROBE.format(imp=imp)], env=env,
                       capture_output=True, text=True, timeout=300, check=True)
  return out.stdout.strip().splitlines()[-1]


@pytest.mark.parametrize("env_value", [None, "1"])
def test_import_leaves_tf_keras_alone(env_value):
  baseline = _probe("", env_value)
  with_us = _probe("import tf_fairprune", env_value)
  assert with_us == baseline


@pytest.mark.slow  # A fact about TFMOT, in a fresh process.
def test_plain_tfmot_import_would_flip_tf_keras():
  # The behaviour we guard against: a bare TFMOT import switches tf.keras to Keras 2.
  assert _probe("", None).startswith("keras ")
  assert _probe("import tensorflow_model_optimization", None).startswith("tf_keras ")
