"""The main job: train (or load) a dense model, fair-prune it, strip, export, report.

  python examples/fair_prune.py --help
  python examples/fair_prune.py --method=gmp --sparsity=0.95 --output_dir=/tmp/gmp

The job is `tf_fairprune.job` (also installed as the `tf-fairprune` command); this
script runs it after loading only its own modules, without `import tf_fairprune`, which
imports TensorFlow (10-15 s): the job checks its flags first, so a bad flag fails in a
second. It needs nothing but the installed library.
"""

import importlib
import importlib.util
import os
import sys


def job_main():
  """`tf_fairprune.job.main`, loaded as the package `_tf_fairprune_job` from the installed
  library's job/ directory (whose pre-TensorFlow modules import each other relatively)."""
  library = importlib.util.find_spec("tf_fairprune")  # Finds the package, runs nothing.
  if library is None:
    sys.exit("fair_prune.py: error: tf_fairprune is not installed (pip install tf_fairprune).")
  job = os.path.join(library.submodule_search_locations[0], "job")
  spec = importlib.util.spec_from_file_location(
      "_tf_fairprune_job", os.path.join(job, "__init__.py"), submodule_search_locations=[job])
  sys.modules[spec.name] = package = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(package)
  return importlib.import_module(f"{spec.name}.main")


if __name__ == "__main__":
  job_main().run()
