#!/usr/bin/env python3
"""docs/job.md's flag table of the main job, generated from the flag definitions.

  python .ci/flag_table.py            # exit 1 if docs/job.md's table differs from the flags
  python .ci/flag_table.py --write    # rewrite it

The table sits between `<!-- BEGIN flags -->` and `<!-- END flags -->` in docs/job.md. It
is rendered from the absl flags that tf_fairprune/job/flags.py defines (its own, then the
fairness flags of tf_fairprune/job/flag_checks.py) and the method list of the docstring of
tf_fairprune/job/main.py. The job is loaded as examples/fair_prune.py loads it: absl and
the job's pre-TensorFlow modules only, not TensorFlow, so this takes a second.
"""

import argparse
import difflib
import importlib.util
import os
import re
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
JOB = os.path.join(ROOT, "examples", "fair_prune.py")
TARGET = os.path.join(ROOT, "docs", "job.md")
TARGET_NAME = "docs/job.md"
BEGIN, END = "<!-- BEGIN flags -->", "<!-- END flags -->"


def _load_job():
  """tf_fairprune.job's `main` module, loaded as examples/fair_prune.py loads it."""
  spec = importlib.util.spec_from_file_location("fair_prune", JOB)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.job_main()


def _default(flag):
  value = flag.default
  if value is None:
    return "–"
  if isinstance(value, bool):
    return "true" if value else "false"
  if isinstance(value, (list, tuple)):
    return f"`{','.join(str(v) for v in value)}`"
  return f"`{value}`"


def _cell(text):
  return " ".join(text.split()).replace("|", "\\|")


def _row(flag):
  help_text = re.sub(r"^<[^>]*>: ", "", flag.help)  # absl's "<a|b>: " prefix of enums.
  values = getattr(flag.parser, "enum_values", None)
  if values:
    help_text += " Values: " + ", ".join(f"`{v}`" for v in values) + "."
  if flag.flag_type() == "bool" and flag.default and f"--no{flag.name}" not in help_text:
    help_text += f" (`--no{flag.name}` turns it off.)"
  return f"| `--{flag.name}` | {_default(flag)} | {_cell(help_text)} |"


def render():
  from absl import flags  # pylint: disable=g-import-not-at-top
  job = _load_job()
  module = job.job_flags.__name__  # Where the job defines its flags.
  key_flags = flags.FLAGS.get_key_flags_for_module(module)
  own_names = {f.name for f in flags.FLAGS.get_flags_for_module(module)}
  own = [f for f in key_flags if f.name in own_names]
  shared = [f for f in key_flags if f.name not in own_names]
  header = ["| flag | default | what it sets |", "|---|---|---|"]
  out = ["The main job's flags (`python examples/fair_prune.py --help` prints the same):", ""]
  out += header + [_row(f) for f in own]
  out += ["", "Fairness flags (defined in `tf_fairprune/job/flag_checks.py`, shared with "
          "`examples/celeba_resnet10.py`):", ""]
  out += header + [_row(f) for f in shared]
  methods = job.__doc__.split("Methods (E = --epochs):\n", 1)[1].rstrip()
  out += ["", "`--method` (E = `--epochs`; from the job's docstring):", "", "```text",
          methods, "```"]
  return "\n".join(out)


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--write", action="store_true", help=f"Rewrite {TARGET_NAME}'s table.")
  args = parser.parse_args(argv)
  text = open(TARGET, encoding="utf-8").read()
  pattern = re.compile(re.escape(BEGIN) + r"\n(.*?)" + re.escape(END), re.S)
  match = pattern.search(text)
  if not match:
    print(f"{TARGET_NAME} has no {BEGIN} ... {END} block.")
    return 1
  table = render() + "\n"
  if match.group(1) == table:
    print(f"{TARGET_NAME}: the flag table matches examples/fair_prune.py.")
    return 0
  if args.write:
    with open(TARGET, "w", encoding="utf-8") as f:
      f.write(text[:match.start(1)] + table + text[match.end(1):])
    print(f"{TARGET_NAME}: flag table rewritten.")
    return 0
  sys.stdout.writelines(difflib.unified_diff(
      match.group(1).splitlines(True), table.splitlines(True), TARGET_NAME, "flags"))
  print(f"\n{TARGET_NAME}: the flag table differs from the flags; run "
        "`python .ci/flag_table.py --write`.")
  return 1


if __name__ == "__main__":
  sys.exit(main())
