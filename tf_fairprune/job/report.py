"""report.md and the verdict fields of results.json for the main job (`tf_fairprune.job`).

Built from the library's audits (`tf_fairprune.fairness.evaluate_fairness` reports of the
validation and test splits, for the pruned, dense and fairness-off models) and the
pruning run's outcome. Everything a person reads is in points (1 point = 0.01 of
accuracy), labelled; results.json keeps fractions (its `units` field says so).
"""

import math

from tf_fairprune.fairness import group_verdicts as group_verdicts_lib
from tf_fairprune.fairness import verdict as verdict_lib

points = verdict_lib.points
interval_text = verdict_lib.interval_text
# What the job's flags offer against levelling down (the library's text names the API).
JOB_REMEDIES = ("to close a gap without making a group worse off, add a floor on every "
                "group's loss against the dense model (--max_group_loss=δ, the group_loss "
                "constraint), or cap the accuracy given up (--max_accuracy_loss); the "
                "one-sided 'do no harm' constraint (--fairness=excess) bounds only the loss "
                "beyond the average, which a loss for every group also meets")


def percent(fraction):
  """A sparsity as a percentage with as many digits as it needs: 90%, 99.5%, 99.95%."""
  value = 100 * fraction
  for digits in range(0, 4):
    if abs(round(value, digits) - value) < 1e-9:
      return f"{value:.{digits}f}%"
  return f"{value:.3f}%"


def constraint_verdicts(constraints, val, test, harm_tolerance, off_val=None, off_test=None):
  """Per constraint: its validation and test `Verdict`s (dicts) with the dense and
  fairness-off models' gaps.

  Args:
    constraints: (flag name, audit gap name, ε) triples.
    val, test: `FairnessReport`s of the pruned model (with the dense model).
    harm_tolerance: δ of the levelling-down check.
    off_val, off_test: The fairness-off model's reports, or None.
  """
  out = []
  for name, gap, epsilon in constraints:
    entry = {"constraint": name, "gap": gap, "epsilon": epsilon}
    for split, report, off in (("validation", val, off_val), ("test", test, off_test)):
      # Levelling down is judged against fairness off when it ran, else the dense model.
      entry[split] = report.verdict(gap, epsilon, harm_tolerance, reference=off).to_dict()
      entry[split]["dense"] = report.dense_gaps.get(gap)
      entry[split]["fairness_off"] = None if off is None else off.gaps.get(gap)
    out.append(entry)
  return out


def what_fairness_did(selected, multipliers, identical_to_off, off_method, steered,
                      off_verdicts=()):
  """A paragraph (and a dict) on whether the constraints bound and why the returned
  model is what it is.

  Args:
    selected: `HeldOutFairness.selected` (None without held-out steering).
    multipliers: The largest multiplier of each constraint at the end.
    identical_to_off: Whether the returned weights equal the fairness-off model's
      (None when there is no fairness-off run).
    off_method: The fairness-off method's name, or None.
    steered: Whether the constraints' rules have multipliers that measured rates steer
      (`rule.drives_multipliers`; False for fixed `Penalty` weights).
    off_verdicts: The fairness-off model's validation `Verdict` dicts, one per constraint.
  """
  largest = max(multipliers, default=0.0)
  if not steered:
    bound = True
    text = ("Penalty mode: the fairness term had a fixed weight all run (nothing is "
            "steered, so ε is a dead zone of the penalty, not a target).")
  elif selected is None:
    bound = largest > 0
    text = (f"No held-out steering: the multipliers were steered on the training batches "
            f"(largest at the end {largest:.3g}).")
  else:
    bound = bool(selected.get("bound"))
    if not bound:
      text = ("The constraints never bound: no validation violation was beyond what the "
              "validation split can tell from noise, so the multipliers stayed 0 and "
              "training was that of fairness off; the returned model is the final iterate.")
    else:
      steps = selected.get("bound_at") or []
      shown = ", ".join(str(s) for s in steps[:8]) + (", …" if len(steps) > 8 else "")
      text = (f"The constraints bound at {len(steps)} of {selected.get('measurements', '?')} "
              f"validation measurements (steps {shown}; a violation beyond what the split "
              "can tell from noise), so training differed from fairness off from the first "
              "of them; the largest multiplier reached "
              f"{selected.get('largest_multiplier', largest):.3g} ({largest:.3g} at the "
              f"returned iterate). The returned iterate: {selected.get('reason')}.")
      step, final = selected.get("step"), selected.get("final_step")
      if step is not None and final is not None and step < final:
        text += (f" It is an earlier iterate (step {step} of {final}), selected on the "
                 "validation split.")
  for v in off_verdicts:
    text += (f" Fairness off ({off_method}) on the validation split: {v['gap']} "
             f"{points(v['value'])} points {interval_text(v['lower'], v['upper'])}, "
             f"{v['verdict']} at ε = {points(v['epsilon'])}.")
  if identical_to_off is not None:
    if identical_to_off:
      text += f" Its weights are identical to {off_method}'s (fairness off)."
    elif not bound:
      text += (f" It differs from {off_method}'s (fairness off) although nothing bound: the "
               "fairness-off run is a separate training run (its data order or "
               "initialisation differ).")
    else:
      text += f" It differs from {off_method}'s (fairness off) because the constraints bound."
  return {"bound": bound, "max_multiplier": largest, "identical_to_fairness_off":
          identical_to_off, "steered": bool(steered), "text": text}


def verdict_warnings(constraints):
  """Warnings (in points) for every test verdict other than a plain "met"."""
  out = []
  for c in constraints:
    t, v = c["test"], c["validation"]
    eps = points(c["epsilon"])
    if t["value"] is None:
      out.append(f"{c['gap']} is not defined on the test split (multi-class outputs, or "
                 "fewer than two groups with rows it counts): ε cannot be checked.")
      continue
    where = (f"{c['gap']} {points(t['value'])} points, 95% interval "
             f"{interval_text(t['lower'], t['upper'])} (validation {points(v['value'])}: "
             f"{v['verdict']})")
    if t["verdict"] == verdict_lib.NOT_MET:
      out.append(f"ε = {eps} points was NOT met on the test split: {where}.")
    elif t["verdict"] == verdict_lib.CANNOT_TELL:
      out.append(f"whether ε = {eps} points holds cannot be told on the test split: {where}; "
                 f"this split shows gaps met down to about {points(t['resolution'])} points.")
    if t["levelled_down"]:
      moved = "closed" if t["verdict"] == verdict_lib.LEVELLED_DOWN else "narrowed"
      out.append(f"{c['gap']} {moved} on the test split by levelling down (against "
                 f"{t['reference_name']}): "
                 + "; ".join(_harm_text(g) for g in t["harmed"])
                 + "".join(f"; {name} rose {points(ref)} → {points(value)} points"
                           for name, value, ref in t["worse_gaps"])
                 + f" — {JOB_REMEDIES}.")
  return out


def _harm_text(group):
  return (f"{group['name']} (n={group['size']}) lost {points(group['loss'])} points "
          f"{interval_text(group['lower'], group['upper'])}")


def _steering(results):
  if results.get("held_out_selection") is not None:
    return "multipliers steered on the validation split, the iterate selected there"
  if not (results.get("fairness_did") or {}).get("steered", True):
    return "penalty weights, nothing steered"
  return "multipliers steered on the training batches"


def render(results, report, off_report=None):
  """report.md's text.

  Args:
    results: The run's results dict (what results.json holds).
    report: The pruned model's test `FairnessReport` (with the dense model).
    off_report: The fairness-off model's test report, or None.
  """
  label = " (SEMI-SYNTHETIC groups)" if results["semi_synthetic"] else ""
  lines = [f"# {results['method']} on {results['dataset']}{label}", "",
           f"Target sparsity {percent(results['target_sparsity'])}, measured "
           f"{100 * results['sparsity']:.2f}% of the prunable weights; seed "
           f"{results['seed']}; training {results['train_seconds']:.1f} s, "
           f"{results['train_steps']} steps.", "",
           "Accuracies, gaps and ε are in points (1 point = 0.01 of accuracy). Intervals are "
           "95%, simultaneous over each gap's group comparisons. The test split was never "
           "used in training or selection.", ""]
  if results["semi_synthetic"]:
    lines += ["The groups are semi-synthetic: the group attribute was made up for the "
              "benchmark, so its fairness figures describe the method, not people.", ""]
  for note in results.get("dense_model_notes") or []:
    lines += [f"Dense model: {note}.", ""]
  constraints = results.get("constraints") or []
  off = results.get("fairness_off")
  if constraints:
    lines += ["## Verdict", "",
              f"Constraint(s) {', '.join(c['constraint'] for c in constraints)} "
              f"({results['fairness_mode']}; {_steering(results)}). A verdict is *met* when "
              "the whole interval is within ε, *not met* when it is all above ε, *cannot "
              "tell* otherwise; *met by levelling down* when the gap closed because a group "
              "lost accuracy against the dense model.", "",
              "| gap | ε | validation [95%] | verdict | test [95%] | verdict | dense (test) |"
              + (" fairness off (test) |" if off else ""),
              "|---|---|---|---|---|---|---|" + ("---|" if off else "")]
    for c in constraints:
      v, t = c["validation"], c["test"]
      lines.append(
          f"| {c['gap']} | {points(c['epsilon'])} | {points(v['value'])} "
          f"{interval_text(v['lower'], v['upper'])} | {v['verdict']} | {points(t['value'])} "
          f"{interval_text(t['lower'], t['upper'])} | **{t['verdict']}** | "
          f"{points(t['dense'])} |" + (f" {points(t['fairness_off'])} |" if off else ""))
    lines.append("")
    for c in constraints:
      lines.append(f"- Test: {_verdict_text(c['test'])}")
    lines += ["", "## What fairness did", "", results["fairness_did"]["text"]]
    selected = results.get("held_out_selection")
    if selected and selected.get("index") is not None:
      lines += ["", f"Returned iterate: epoch {selected['epoch']}, step {selected['step']} of "
                f"the run — {selected['reason']} (validation accuracy "
                f"{points(selected['accuracy'])} points)."]
    elif selected:
      lines += ["", f"Returned iterate: {selected['reason']}."]
    lines.append("")
  per_group = results.get("group_verdicts")
  off_groups = {g["name"]: g for g in off_report.groups} if off_report is not None else {}
  if per_group:
    lines += ["## Groups (test split), worst-off first", "",
              f"{per_group['summary']} Loss = dense accuracy − pruned accuracy on the same "
              "rows (positive: the group lost accuracy to pruning); beyond average = its loss "
              "minus the loss over all rows (ψ, \"do no harm\"); verdict on \"beyond "
              f"average ≤ {points(per_group['epsilon'])}\""
              + (f" and \"loss ≤ {points(per_group['max_loss'])}\""
                 if per_group.get("max_loss") is not None else "")
              + ". Intervals are 95%, simultaneous over the groups; groups the split "
              "cannot judge come last.", "",
              "| group | size | accuracy [95%] | dense accuracy | loss [95%] | beyond "
              "average [95%] | verdict |" + (" fairness off: accuracy |" if off else ""),
              "|---|---|---|---|---|---|---|" + ("---|" if off else "")]
    dense_of = {g["name"]: g.get("dense_accuracy") for g in report.groups}
    for g in per_group["groups"]:
      verdict = g["verdict"] + (f"; loss {g['loss_verdict']}" if g.get("loss_verdict") else "")
      row = (f"| {g['name']} | {g['size']} | {points(g['accuracy'])} "
             f"{interval_text(*g['accuracy_interval'])} | {points(dense_of.get(g['name']))} | "
             f"{points(g['loss'])} {interval_text(*g['loss_interval'])} | "
             f"{points(g['excess'])} {interval_text(*g['excess_interval'])} | {verdict} |")
      if off:
        row += f" {points(off_groups.get(g['name'], {}).get('accuracy'))} |"
      lines.append(row)
    absent = [g["name"] for g in report.groups if not g["size"]]
    if absent:
      lines += ["", f"No test rows: {', '.join(absent)}."]
  else:
    lines += ["## Groups (test split)", "",
              "Loss = dense accuracy − pruned accuracy on the same rows: positive means the "
              "group lost accuracy to pruning (interval simultaneous over the groups).", "",
              "| group | size | accuracy [95%] | dense accuracy | loss [95%] |"
              + (" fairness off: accuracy |" if off else ""),
              "|---|---|---|---|---|" + ("---|" if off else "")]
    for g in report.groups:
      acc = g.get("accuracy_interval") or [None, None]
      loss = g.get("degradation_interval") or [None, None]
      row = (f"| {g['name']} | {g['size']} | {points(g['accuracy'])} {interval_text(*acc)} | "
             f"{points(g.get('dense_accuracy'))} | {points(g.get('degradation'))} "
             f"{interval_text(*loss)} |")
      if off:
        row += f" {points(off_groups.get(g['name'], {}).get('accuracy'))} |"
      lines.append(row)
  lines += ["", f"Accuracy {points(results['accuracy'])} (dense "
            f"{points(results['dense_accuracy'])}"
            + (f"; {off['method']}, fairness off, {points(off['accuracy'])}" if off else "")
            + f"); overall accuracy lost to pruning "
            f"{points(results['dense_accuracy'] - results['accuracy'])} points.", "",
            "| gap (test) | this model [95%] | dense |" + (f" {off['method']} (fairness off) |"
                                                          if off else ""),
            "|---|---|---|" + ("---|" if off else "")]
  for key, value in report.gaps.items():
    if value is None or key == "degradation":  # Not a gap: the overall loss, above.
      continue
    interval = report.intervals.get(key) or [None, None]
    lines.append(f"| {key} | {points(value)} {interval_text(*interval)} | "
                 f"{points(report.dense_gaps.get(key))} |"
                 + (f" {points(off['gaps'].get(key))} |" if off else ""))
  if results.get("warnings"):
    lines += ["", "## Warnings", ""] + [f"- {w}" for w in results["warnings"]]
  ratio = results["tflite_bytes"] / results["dense_tflite_bytes"]
  lines += ["", f"TFLite: {results['tflite_bytes']:,} bytes (dense float "
                f"{results['dense_tflite_bytes']:,}; {ratio:.3f}×), max |TFLite − Keras| "
                f"{results['tflite_max_abs_diff']:.2e}.", ""]
  return "\n".join(lines)


def group_verdicts(report, constraint_specs, harm_tolerance, max_group_loss):
  """results.json's "group_verdicts": every group's do-no-harm verdict on the test split
  (ε of the excess constraint when there is one, else `harm_tolerance`), worst-off first.

  Args:
    report: The pruned model's test `FairnessReport` (with the dense model).
    constraint_specs: (name, audit gap, ε) of each constraint.
    harm_tolerance: ε when no excess constraint is stated.
    max_group_loss: δ of each group's loss against dense, or None.
  """
  epsilon = next((eps for _, gap, eps in constraint_specs if gap == "max_excess_gap"),
                 harm_tolerance)
  verdicts = report.group_verdicts(epsilon, max_group_loss)
  return {"epsilon": epsilon, "max_loss": max_group_loss,
          "summary": group_verdicts_lib.summary(verdicts),
          "groups": [g.to_dict() for g in verdicts]}


def _verdict_text(v):
  text = (f"{v['gap']} {points(v['value'])} points, 95% interval "
          f"{interval_text(v['lower'], v['upper'])}, against ε = {points(v['epsilon'])}: "
          f"**{v['verdict']}**")
  if v["verdict"] == verdict_lib.CANNOT_TELL and v.get("resolution") is not None:
    resolution = v["resolution"]
    text += (f" (this split shows gaps met down to about {points(resolution)} points"
             + (": ε is below that." if not math.isinf(resolution) and
                v["epsilon"] < resolution else ".") + ")")
  if v["levelled_down"]:
    text += (" — " + "; ".join(f"{g['name']} lost {points(g['loss'])} points "
                               f"{interval_text(g['lower'], g['upper'])}" for g in v["harmed"])
             + "".join(f"; {name} rose {points(ref)} → {points(value)}"
                       for name, value, ref in v["worse_gaps"])
             + f", against {v['reference_name']}")
  return text + "."
