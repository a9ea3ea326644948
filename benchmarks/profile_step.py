r"""Where the bi-level step's time goes: a per-op profile grouped by the step's parts.

Runs one configuration of the engine benchmark (`benchmark_engine.build`: BiP, BiFP
default, TFMOT or dense; tf_keras or Keras 3), traces its step, then profiles whole
epochs with TensorFlow's profiler (`tf.profiler.experimental`) and reads the trace
(`.xplane.pb`) directly: every op the step's executor runs is one event named
`op_name:OpType` on a `tf_Compute` thread.

To attribute ops to the step's parts, the parts are wrapped in `tf.name_scope`s while
the step is traced (this script patches the library's functions in memory only: the
scopes change op names, not what is computed). An op belongs to the innermost part
whose scope is in its name; the backward ops of a part carry `gradient_tape/<part>`.

Reported per configuration, per step (averaged over the profiled steps):
* per part: summed op time (ms), its share of all op time, and the number of ops;
* executor time outside any op (scheduling the ops: the per-op fixed cost), the
  step function's wall time, and the host time outside it (Python: callbacks, logs);
* the wall time per step measured without the profiler (the profiler slows every op
  by a roughly fixed amount, so shares of tiny ops are inflated).

  python benchmarks/profile_step.py                          # MLP: tfmot, bip, bifp, both flavours
  python benchmarks/profile_step.py --model=cnn --configs=bifp/3 --top_ops=20
  python benchmarks/profile_step.py --configs=bifp/2 --jit_compile
"""

import collections
import functools
import glob
import json
import os
import sys
import tempfile
import time

from absl import app
from absl import flags
import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tensorflow as tf  # pylint: disable=g-import-not-at-top

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchmark_engine as engine  # pylint: disable=g-import-not-at-top
from tf_fairprune import bilevel  # pylint: disable=g-import-not-at-top
from tf_fairprune import flavours  # pylint: disable=g-import-not-at-top
from tf_fairprune import mask_updater  # pylint: disable=g-import-not-at-top
from tf_fairprune import replicas  # pylint: disable=g-import-not-at-top
from tf_fairprune import step_guard  # pylint: disable=g-import-not-at-top
from tf_fairprune import training  # pylint: disable=g-import-not-at-top
from tf_fairprune.fairness import objective  # pylint: disable=g-import-not-at-top

FLAGS = flags.FLAGS
flags.DEFINE_enum("model", "mlp", ["mlp", "cnn"], "The engine benchmark's model.")
# --configs (benchmark_engine's flag: labels method/flavour), --sparsity and
# --jit_compile are the engine benchmark's flags.
DEFAULT_CONFIGS = ["tfmot/2", "bip/2", "bifp/2", "bip/3", "bifp/3"]
flags.DEFINE_integer("profile_epochs", 1, "Profiled epochs per configuration.")
flags.DEFINE_integer("timing_epochs", 5, "Unprofiled epochs timed per configuration "
                     "(fastest reported).")
flags.DEFINE_integer("top_ops", 0, "Also list this many most expensive op names.")
flags.DEFINE_string("profile_output", None, "Also write the results as JSON here.")
flags.DEFINE_string("profile_input", None, "Render the results of an earlier run "
                    "(its --profile_output JSON) instead of profiling.")
flags.DEFINE_bool("profile_markdown", False, "Write the summary table into BENCHMARKS.md "
                  "(section engine_profile).")

# The table of BENCHMARKS.md groups the parts.
GROUPS = collections.OrderedDict([
    ("model forward + backward (incl. task loss)",
     ("model_forward", "tfmot_forward", "task_loss", "gradients")),
    ("mask re-rank (top-k, in a cond)", ("mask_update",)),
    ("optimizers (weights; scores)", ("apply_weights", "apply_scores", "optimizer (other)")),
    ("implicit-gradient term", ("implicit_grad",)),
    ("finite check", ("finite_check",)),
    ("fairness: group statistics, penalty, multipliers",
     ("fair_stats", "fair_penalty", "multiplier_update")),
    ("metrics and logs", ("metrics", "logs")),
    ("step guard, unpack, other", ("guard_snapshot", "guard_finish", "unpack", "other")),
])

# The parts of the step, as (scope name, what it is). Innermost scope wins.
PARTS = collections.OrderedDict([
    ("unpack", "unpack the batch, group-id range check"),
    ("model_forward", "model forward pass (masked layers)"),
    ("task_loss", "task loss (+ loss metric)"),
    ("fair_stats", "fairness group statistics (segment sums)"),
    ("fair_penalty", "fairness penalty (multipliers × smooth gap)"),
    ("gradients", "backward pass"),
    ("implicit_grad", "implicit-gradient term of the scores"),
    ("finite_check", "finite check of losses and gradients"),
    ("apply_weights", "weights' optimizer (in a cond)"),
    ("apply_scores", "scores' optimizer (in a cond)"),
    ("guard_snapshot", "step guard: snapshot of layer state"),
    ("guard_finish", "step guard: restore / counters"),
    ("mask_update", "mask re-rank: top-k (in a cond)"),
    ("multiplier_update", "running rates and multipliers' dual step"),
    ("metrics", "metrics: compiled, sparsity, group accuracy, gaps, multipliers"),
    ("logs", "logs (metric results)"),
])
_OPTIMIZER_SCOPES = {}


PROFILE_TEXT = """### Where the step's time goes

Command: `python benchmarks/profile_step.py --profile_markdown` — machine: {machine},
shared with other engineers' benchmarks (load average {load:.1f} at the end). The
{model} of the engine benchmark, one profiled epoch per configuration after a traced
warm-up: TensorFlow's profiler (`tf.profiler.experimental`), every op of the step read
from the trace and attributed to the part of the step whose `tf.name_scope` (added at
trace time by the script) it carries. ms/step = summed op time per step (two executor
threads, so it can exceed the wall time; the profiler adds a roughly fixed cost to
every op, so small ops weigh more than unprofiled) and its share of all op time. On
Keras 3 the backward ops carry the forward scope (no `gradient_tape/` prefix), so the
model's forward and backward are one row either way.

{table}
"""


def _scoped(scope, fn):
  @functools.wraps(fn)
  def wrapped(*args, **kwargs):
    with tf.name_scope(scope):
      return fn(*args, **kwargs)
  return wrapped


def _scoped_apply(fn):
  @functools.wraps(fn)
  def wrapped(ok, optimizer, grads, variables):
    with tf.name_scope(_OPTIMIZER_SCOPES.get(id(optimizer), "apply_weights")):
      return fn(ok, optimizer, grads, variables)
  return wrapped


def flavour_classes():
  """The registered flavours' `Flavour` classes (tf_keras, and Keras 3 if installed)."""
  return [type(f) for f in flavours.registered()]


def instrument():
  """Wraps the step's parts in name scopes (in memory; trace-time only)."""
  mixin = training.BiLevelTrainingMixin
  for name, scope in (("_unpack", "unpack"), ("_forward", "model_forward"),
                      ("_fairness_statistics", "fair_stats"),
                      ("_score_gradients", "implicit_grad"), ("_update_metrics", "metrics"),
                      ("_logs", "logs")):
    setattr(mixin, name, _scoped(scope, getattr(mixin, name)))
  for cls in flavour_classes():
    for name in ("task_loss", "track_loss"):
      setattr(cls, name, _scoped("task_loss", getattr(cls, name)))
  objective.FairnessObjective.level_losses = _scoped(
      "fair_penalty", objective.FairnessObjective.level_losses)
  objective.FairnessObjective.update = _scoped("multiplier_update",
                                               objective.FairnessObjective.update)
  bilevel.joint_gradients = _scoped("gradients", bilevel.joint_gradients)
  replicas.all_finite = _scoped("finite_check", replicas.all_finite)
  replicas.apply_if = _scoped_apply(replicas.apply_if)
  step_guard.StepGuard.snapshot = staticmethod(_scoped("guard_snapshot",
                                                       step_guard.StepGuard.snapshot))
  step_guard.StepGuard.finish = _scoped("guard_finish", step_guard.StepGuard.finish)
  mask_updater.MaskUpdater.after_step = _scoped("mask_update",
                                                mask_updater.MaskUpdater.after_step)


def part_of(op_name):
  """(part, backward?) of an op name."""
  pieces = op_name.split("/")
  backward = pieces[0] == "gradient_tape"
  part = None
  for piece in pieces:
    if piece in PARTS:
      part = piece
  if part is None:
    if "prune_low_magnitude" in op_name:
      part = "tfmot_forward"
    elif pieces[0] in ("mlp", "cnn") or pieces[0].startswith(("sequential", "mlp_", "cnn_")):
      part = "model_forward"
    elif "SGD" in op_name or pieces[0].startswith("cond"):
      part = "optimizer (other)"
    else:
      part = "other"
  return part, backward


def read_trace(logdir):
  """({op name: [count, total µs]}, executor µs outside ops, step function µs, n steps)."""
  from tensorflow.tsl.profiler.protobuf import xplane_pb2  # pylint: disable=g-import-not-at-top
  files = sorted(glob.glob(os.path.join(logdir, "**", "*.xplane.pb"), recursive=True))
  space = xplane_pb2.XSpace()
  with open(files[-1], "rb") as f:
    space.ParseFromString(f.read())
  plane = [p for p in space.planes if p.name.startswith("/host:CPU")][0]
  names = {k: v.name for k, v in plane.event_metadata.items()}
  ops = collections.defaultdict(lambda: [0, 0.0])
  process_us = op_us = 0.0
  function_us, steps = 0.0, 0
  for line in plane.lines:
    if line.name.startswith("tf_Compute"):
      for e in line.events:
        name = names[e.metadata_id]
        if name == "ExecutorState::Process":
          process_us += e.duration_ps / 1e6
        elif ":" in name and "::" not in name:
          ops[name][0] += 1
          ops[name][1] += e.duration_ps / 1e6
          op_us += e.duration_ps / 1e6
    elif not line.name.startswith("tf_"):  # The Python thread (named after the script).
      for e in line.events:
        name = names[e.metadata_id]
        if name.startswith("EagerLocalExecute: __inference_") and (
            "train_function" in name or "step_on_iterator" in name):
          function_us += e.duration_ps / 1e6
          steps += 1
  return ops, max(process_us - op_us, 0.0), function_us, steps


def run_config(config, x, y, batch):
  method, version = config.split("/")
  k = engine.keras_of(version)
  k.utils.set_random_seed(0)
  model, callbacks, inputs = engine.build(FLAGS.model, method, FLAGS.sparsity, k, x, y,
                                          jit_compile=FLAGS.jit_compile and method != "tfmot")
  if hasattr(model, "mask_optimizer"):
    _OPTIMIZER_SCOPES[id(model.optimizer)] = "apply_weights"
    _OPTIMIZER_SCOPES[id(model.mask_optimizer)] = "apply_scores"
  timer = engine.epoch_timer(k)
  fit = functools.partial(model.fit, inputs, y, batch_size=batch, verbose=0,
                          callbacks=callbacks + [timer])
  fit(epochs=1)  # Traces the step.
  walls = []
  for _ in range(FLAGS.timing_epochs):
    fit(epochs=1)
    walls.append(timer.times[-1])
  steps_per_epoch = -(-len(y) // batch)
  logdir = tempfile.mkdtemp(prefix="profile_step_")
  tf.profiler.experimental.start(logdir)
  start = time.perf_counter()
  fit(epochs=FLAGS.profile_epochs)
  profiled_wall = time.perf_counter() - start
  tf.profiler.experimental.stop()
  ops, executor_us, function_us, calls = read_trace(logdir)
  steps = FLAGS.profile_epochs * steps_per_epoch
  parts = collections.defaultdict(lambda: [0, 0.0])
  for name, (count, us) in ops.items():
    part, backward = part_of(name.split(":")[0])
    key = f"{part} (backward)" if backward else part
    parts[key][0] += count
    parts[key][1] += us
  total_op_us = sum(us for _, us in parts.values())
  return {
      "config": config, "steps": steps, "function_calls": calls,
      "unprofiled_ms_per_step_fastest": min(walls) / steps_per_epoch * 1000,
      "unprofiled_ms_per_step_median": float(np.median(walls)) / steps_per_epoch * 1000,
      "profiled_ms_per_step": profiled_wall / steps * 1000,
      "function_ms_per_step": function_us / steps / 1000,
      "executor_overhead_ms_per_step": executor_us / steps / 1000,
      "op_ms_per_step": total_op_us / steps / 1000,
      "ops_per_step": sum(c for c, _ in parts.values()) / steps,
      "parts": {p: {"ops_per_step": c / steps, "ms_per_step": us / steps / 1000,
                    "share": us / total_op_us} for p, (c, us) in parts.items()},
      "top_ops": sorted(((n, c / steps, us / steps / 1000) for n, (c, us) in ops.items()),
                        key=lambda t: -t[2])[:FLAGS.top_ops],
  }


def render(results):
  lines = []
  for r in results:
    lines.append(f"### {FLAGS.model} {r['config']}: {r['unprofiled_ms_per_step_fastest']:.2f} ms/step "
                 f"unprofiled (fastest epoch; median {r['unprofiled_ms_per_step_median']:.2f}), "
                 f"{r['profiled_ms_per_step']:.2f} profiled; step function "
                 f"{r['function_ms_per_step']:.2f} ms, {r['ops_per_step']:.0f} ops/step, op time "
                 f"{r['op_ms_per_step']:.2f} ms (2 threads), executor outside ops "
                 f"{r['executor_overhead_ms_per_step']:.2f} ms")
    lines.append("")
    lines.append("| part | ms/step (op time) | share of op time | ops/step |")
    lines.append("|---|---|---|---|")
    for part, p in sorted(r["parts"].items(), key=lambda kv: -kv[1]["ms_per_step"]):
      lines.append(f"| {part} | {p['ms_per_step']:.3f} | {p['share']:.1%} | "
                   f"{p['ops_per_step']:.1f} |")
    lines.append("")
    for name, count, ms in r["top_ops"]:
      lines.append(f"    {ms:7.3f} ms  {count:5.1f}×  {name}")
    if r["top_ops"]:
      lines.append("")
  return "\n".join(lines)


def group_of(part):
  base = part.replace(" (backward)", "")
  for group, parts in GROUPS.items():
    if base in parts:
      return group
  return "step guard, unpack, other"


def markdown(results):
  """One table: op group × configuration, ms/step of op time and share."""
  header = ["part of the step"] + [r["config"].replace("/2", " tf_keras").replace("/3", " Keras 3")
                                   for r in results]
  rows = []
  for group in GROUPS:
    row = [group]
    for r in results:
      ms = sum(p["ms_per_step"] for name, p in r["parts"].items() if group_of(name) == group)
      row.append(f"{ms:.2f} ({ms / r['op_ms_per_step']:.0%})" if ms else "–")
    rows.append(row)
  rows.append(["**all ops** (summed over the 2 threads)"] +
              [f"{r['op_ms_per_step']:.2f}" for r in results])
  rows.append(["ops per step"] + [f"{r['ops_per_step']:.0f}" for r in results])
  rows.append(["executor time outside ops"] +
              [f"{r['executor_overhead_ms_per_step']:.2f}" for r in results])
  rows.append(["step function wall (profiled)"] +
              [f"{r['function_ms_per_step']:.2f}" for r in results])
  rows.append(["epoch wall / steps (profiled)"] +
              [f"{r['profiled_ms_per_step']:.2f}" for r in results])
  rows.append(["epoch wall / steps, unprofiled (fastest of "
               f"{FLAGS.timing_epochs})"] +
              [f"{r['unprofiled_ms_per_step_fastest']:.2f}" for r in results])
  import bench_utils  # pylint: disable=g-import-not-at-top
  return bench_utils.table(header, rows)


def main(argv):
  del argv
  instrument()
  x, y, batch = engine.make_data(FLAGS.model, False)
  if FLAGS.profile_input:
    with open(FLAGS.profile_input) as f:
      results = json.load(f)
  else:
    results = [run_config(c, x, y, batch) for c in FLAGS.configs or DEFAULT_CONFIGS]
  print(render(results))
  print(markdown(results))
  if FLAGS.profile_markdown:
    import bench_utils  # pylint: disable=g-import-not-at-top
    bench_utils.write_section("engine_profile", PROFILE_TEXT.format(
        model=FLAGS.model, machine=bench_utils.machine(), table=markdown(results),
        load=os.getloadavg()[0]))
  if FLAGS.profile_output:
    with open(FLAGS.profile_output, "w") as f:
      json.dump(results, f, indent=1)


if __name__ == "__main__":
  app.run(main)
