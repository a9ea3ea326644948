"""The main job's inputs checked in-process: the --dense_model file (its Keras, inputs,
outputs and output activation) and the --output_dir of an earlier run."""

import json
import os
import zipfile

import numpy as np
import pytest

from tf_fairprune import baselines
from tf_fairprune import datasets
from tf_fairprune.job import dense_model_file
from tf_fairprune.job import flag_checks as job_flags
from tf_fairprune.job import output as job_output


def _data(classes=2, features=6, n=120, seed=0):
  rng = np.random.default_rng(seed)

  def split(rows):
    x = rng.standard_normal((rows, features)).astype("float32")
    y = (x[:, 0] > 0).astype("float32") if classes == 2 else \
        (np.arange(rows) % classes).astype("int32")
    return datasets.Split(x, y, (np.arange(rows) % 2).astype("int32"))

  return datasets.GroupDataset("toy", split(n), split(n // 4), split(n // 4), ["a", "b"],
                               [f"f{i}" for i in range(features)])


def _mlp(k, units=1, activation=None, inputs=6, tail=()):
  return k.Sequential([k.Input((inputs,)), k.layers.Dense(8, activation="relu"),
                       k.layers.Dense(units, activation=activation), *tail])


def _flavour(k):
  return "2" if k.__name__.startswith("tf_keras") else "3"


@pytest.mark.parametrize("units,activation,tail", [
    (1, "sigmoid", ()), (1, None, ("sigmoid",)), (3, "softmax", ()), (3, None, ("softmax",))])
def test_probabilities_are_read_as_the_logits_under_them(tmp_path, k, units, activation, tail):
  # The job trains and audits logits: a sigmoid/softmax output used to be read as logits
  # (every probability > 0, so every row predicted positive).
  data = _data(classes=2 if units == 1 else units)
  layers = tuple(k.layers.Softmax() if t == "softmax" else k.layers.Activation(t)
                 for t in tail)
  model = _mlp(k, units, activation, tail=layers)
  path = str(tmp_path / "dense.keras")
  model.save(path)
  assert dense_model_file.saved_flavour(path) == _flavour(k)
  logits, notes = dense_model_file.load(path, k, data)
  x = data.test.x
  z, p = logits.predict(x, verbose=0), model.predict(x, verbose=0)
  name = "sigmoid" if units == 1 else "softmax"
  assert dense_model_file.output_activation(logits)[0] == "linear"
  if units == 1:
    np.testing.assert_allclose(1 / (1 + np.exp(-z)), p, atol=1e-5)
    np.testing.assert_array_equal(z > 0, p > 0.5)  # The same decisions.
  else:
    np.testing.assert_array_equal(z.argmax(-1), p.argmax(-1))
  assert len(notes) == 1 and f"ends in a {name}" in notes[0] and "output logits" in notes[0]
  assert isinstance(logits, k.Model)


@pytest.mark.filterwarnings("ignore:You are saving your model as an HDF5 file")
def test_a_logits_model_is_returned_as_it_is(tmp_path, k):
  path = str(tmp_path / "dense.h5")
  _mlp(k).save(path)
  model, notes = dense_model_file.load(path, k, _data())
  assert notes == [] and dense_model_file.output_activation(model)[0] == "linear"


def test_the_audit_reads_a_converted_model_right(tmp_path):
  import tf_keras as keras  # pylint: disable=g-import-not-at-top
  data = _data(n=400)
  model = _mlp(keras, activation="sigmoid")
  model.compile("adam", "binary_crossentropy")
  model.fit(data.train.x, data.train.y, epochs=20, verbose=0)
  path = str(tmp_path / "dense.keras")
  model.save(path)
  truth = float(np.mean((model.predict(data.test.x, verbose=0)[:, 0] > 0.5) == data.test.y))
  read, _ = dense_model_file.load(path, keras, data)
  assert baselines.audit(read, read, data.test, data).accuracy == pytest.approx(truth)
  # What the job computed when it took the file as it is: every row positive.
  assert baselines.audit(model, model, data.test, data).accuracy == pytest.approx(
      float(np.mean(data.test.y)))
  assert truth > float(np.mean(data.test.y)) + 0.1


@pytest.mark.parametrize("build,message", [
    (lambda k: _mlp(k, activation="relu"), "ends in relu"),
    (lambda k: _mlp(k, units=3, activation="softmax"), "outputs shape (3,); the dataset needs 1 unit"),
    (lambda k: _mlp(k, units=1, activation="softmax"), "the job needs logits (no activation) or sigmoid"),
    (lambda k: _mlp(k, inputs=9), "takes inputs of shape (9,); the dataset's are (6,)"),
    (lambda k: _mlp(k, activation="sigmoid", tail=(k.layers.Reshape((1,)),)),
     "look like probabilities (in [0, 1])"),
])
def test_a_model_the_job_cannot_read_is_one_line(tmp_path, k, build, message):
  path = str(tmp_path / "dense.keras")
  build(k).save(path)
  with pytest.raises(ValueError, match=_escaped(message)) as info:
    dense_model_file.load(path, k, _data())
  assert "\n" not in str(info.value)


def test_multi_class_sigmoid_and_several_outputs_are_refused(tmp_path, k):
  path = str(tmp_path / "dense.keras")
  _mlp(k, units=3, activation="sigmoid").save(path)
  with pytest.raises(ValueError, match="softmax probabilities for 3 classes"):
    dense_model_file.load(path, k, _data(classes=3))
  inputs = k.Input((6,))
  k.Model(inputs, [k.layers.Dense(1)(inputs), k.layers.Dense(1)(inputs)]).save(path)
  with pytest.raises(ValueError, match=_escaped("1 input(s) and 2 output(s)")):
    dense_model_file.load(path, k, _data())


def test_a_file_the_keras_cannot_load_is_one_line(tmp_path, k):
  # A .keras file whose config names a layer no Keras knows.
  path = str(tmp_path / "dense.keras")
  _mlp(k).save(path)
  with zipfile.ZipFile(path) as z:
    files = {n: z.read(n) for n in z.namelist()}
  files["config.json"] = files["config.json"].replace(b'"Dense"', b'"NoSuchLayer"')
  with zipfile.ZipFile(path, "w") as z:
    for name, content in files.items():
      z.writestr(name, content)
  with pytest.raises(ValueError, match="cannot be loaded with") as info:
    dense_model_file.load(path, k, _data())
  assert "\n" not in str(info.value)


def _escaped(text):
  import re  # pylint: disable=g-import-not-at-top
  return re.escape(text)


def _fake_keras_file(path, version):
  with zipfile.ZipFile(path, "w") as z:
    z.writestr("config.json", "{}")
    z.writestr("metadata.json", json.dumps({"keras_version": version}))
  return str(path)


def test_the_file_says_which_keras_to_use_before_tensorflow(tmp_path):
  keras3 = _fake_keras_file(tmp_path / "k3.keras", "3.15.1")
  tf_keras = _fake_keras_file(tmp_path / "tk.keras", "2.21.0")
  assert dense_model_file.keras_for(keras3, None, "bifp") == "3"
  assert dense_model_file.keras_for(tf_keras, None, "bifp") == "2"  # Not the default 3.
  assert dense_model_file.keras_for(tf_keras, "2", "gmp") == "2"
  for path, flag, method, message in (
      (keras3, "2", "bifp", "saved by Keras 3: load it with --keras=3"),
      (tf_keras, "3", "bifp", "saved by tf_keras: load it with --keras=2"),
      (keras3, None, "gmp", "--method=gmp uses TFMOT, which reads tf_keras models only")):
    with pytest.raises(job_flags.FlagError, match=_escaped(message)):
      dense_model_file.keras_for(path, flag, method)


@pytest.mark.parametrize("make,message", [
    (lambda p: p.write_text("not a model"), "is not a Keras model file"),
    (lambda p: zipfile.ZipFile(p, "w").close(), "is a zip file but not a .keras model"),
    (lambda p: p.mkdir(), "is a directory (a SavedModel?)"),
])
def test_a_file_that_is_no_model_is_one_line(tmp_path, make, message):
  path = tmp_path / "dense.keras"
  make(path)
  with pytest.raises(job_flags.FlagError, match=_escaped(message)):
    dense_model_file.saved_flavour(str(path))


def test_weights_only_and_misnamed_files_are_refused(tmp_path):
  import h5py  # pylint: disable=g-import-not-at-top
  weights = tmp_path / "dense.weights.h5"
  with h5py.File(weights, "w") as f:
    f.create_dataset("w", data=np.zeros(3))
  with pytest.raises(job_flags.FlagError, match="holds weights only"):
    dense_model_file.saved_flavour(str(weights))
  zipped = _fake_keras_file(tmp_path / "dense.zip", "3.15.1")
  with pytest.raises(job_flags.FlagError, match="without the .keras extension"):
    dense_model_file.saved_flavour(zipped)


# --- --output_dir: never replace another run's output silently -------------------------

FLAGS = {"dataset": "adult-sex", "epochs": 5, "seed": 0, "fairness": ["excess"],
         "epsilon": 0.01, "dense_model": None}


def _earlier_run(output_dir, flags=None, files=job_output.OUTPUTS):
  os.makedirs(output_dir, exist_ok=True)
  for name in files:
    with open(os.path.join(output_dir, name), "w") as f:
      f.write(json.dumps({"accuracy": 0.8, **({"flags": flags} if flags else {})})
              if name == job_output.RESULTS else "old")


def test_an_earlier_run_with_other_flags_is_not_replaced(tmp_path):
  out = str(tmp_path / "out")
  assert job_output.check_earlier_run(out, FLAGS, {}, overwrite=False) is None
  _earlier_run(out, dict(FLAGS, epochs=3, seed=1))
  with pytest.raises(job_flags.FlagError) as info:
    job_output.check_earlier_run(out, FLAGS, {}, overwrite=False)
  message = str(info.value)
  assert "--epochs: 3 there, 5 now" in message and "--seed: 1 there, 0 now" in message
  assert "--overwrite" in message and "another --output_dir" in message
  assert "--overwrite" in job_output.check_earlier_run(out, FLAGS, {}, overwrite=True)
  # The same flags: replaced, and said.
  _earlier_run(out, dict(FLAGS))
  assert "same flags" in job_output.check_earlier_run(out, FLAGS, {}, overwrite=False)
  # A flag the earlier run did not record counts as its default.
  _earlier_run(out, {k: v for k, v in FLAGS.items() if k != "epsilon"})
  assert "same flags" in job_output.check_earlier_run(out, FLAGS, {"epsilon": 0.01}, False)
  with pytest.raises(job_flags.FlagError, match="--epsilon: 0.05 there, 0.01 now"):
    job_output.check_earlier_run(out, FLAGS, {"epsilon": 0.05}, False)


def test_an_earlier_results_file_without_flags_or_unreadable_is_not_replaced(tmp_path):
  out = str(tmp_path / "out")
  _earlier_run(out)  # results.json without "flags" (an older job).
  with pytest.raises(job_flags.FlagError, match="flags are not recorded"):
    job_output.check_earlier_run(out, FLAGS, {}, overwrite=False)
  with open(os.path.join(out, job_output.RESULTS), "w") as f:
    f.write('{"accuracy": ')
  with pytest.raises(job_flags.FlagError, match="cannot be read"):
    job_output.check_earlier_run(out, FLAGS, {}, overwrite=False)
  assert job_output.check_earlier_run(out, FLAGS, {}, overwrite=True)


def test_publish_replaces_the_earlier_run_whole_and_leaves_other_files(tmp_path):
  out = str(tmp_path / "out")
  _earlier_run(out, dict(FLAGS))
  with open(os.path.join(out, "notes.txt"), "w") as f:
    f.write("the user's")
  staging = job_output.staging_dir(out)
  os.makedirs(staging)
  for name in ("report.md", "model.tflite", job_output.RESULTS):  # No tradeoff.png now.
    with open(os.path.join(staging, name), "w") as f:
      f.write(json.dumps({"accuracy": 0.9}) if name == job_output.RESULTS else "new")
  job_output.publish(staging, out, FLAGS)
  assert sorted(os.listdir(out)) == ["model.tflite", "notes.txt", "report.md",
                                     job_output.RESULTS]
  assert open(os.path.join(out, "report.md")).read() == "new"
  results = json.load(open(os.path.join(out, job_output.RESULTS)))
  assert results == {"accuracy": 0.9, "flags": FLAGS}
  assert job_output.check_earlier_run(out, FLAGS, {}, overwrite=False)  # Same flags.


def test_recorded_flags_make_paths_absolute(tmp_path, monkeypatch):
  from absl import flags  # pylint: disable=g-import-not-at-top
  values = flags.FlagValues()
  flags.DEFINE_string("dataset", "csv:d.csv", "", flag_values=values)
  flags.DEFINE_string("dense_model", "m.keras", "", flag_values=values)
  flags.DEFINE_list("fairness", ["excess"], "", flag_values=values)
  flags.DEFINE_string("output_dir", "x", "", flag_values=values)
  values(["job"])
  monkeypatch.chdir(tmp_path)
  recorded = job_output.recorded_flags(values, ["dataset", "dense_model", "fairness",
                                                "output_dir"])
  assert recorded == {"dataset": f"csv:{tmp_path / 'd.csv'}",
                      "dense_model": str(tmp_path / "m.keras"), "fairness": ["excess"]}


@pytest.mark.parametrize("name,group,expected", [
    ("adult-sex", None, ("adult", "sex")),
    ("adult", None, ("adult", "sex")),  # The dataset's first attribute.
    ("adult", "race,sex", ("adult", "race,sex")),
    ("compas", " sex , race ", ("compas", "sex,race")),
    ("german-age", None, ("german", "age")),
    ("colored-fmnist", "class,colour", ("colored-fmnist", "class,colour")),
])
def test_builtin_datasets_take_one_or_several_attributes(name, group, expected):
  assert job_flags.builtin_group(name, group) == expected


@pytest.mark.parametrize("name,group,message", [
    ("adult-sex", "race,sex", "fixes the group \\('sex'\\).*--dataset=adult --group=race,sex"),
    ("adult", "sex,shoe_size", "adult has the sensitive attributes sex, race"),
    ("adult", "sex,sex", "each at most once"),
    ("colored-fmnist", "class", "'colour' or 'class,colour'"),
    ("adult-shoe_size", None, "unknown dataset 'adult-shoe_size'"),
    ("mnist", None, "unknown dataset 'mnist'"),
])
def test_builtin_groups_the_job_cannot_use_are_one_line(name, group, message):
  with pytest.raises(job_flags.FlagError, match=message):
    job_flags.check_dataset(name, group=group)
