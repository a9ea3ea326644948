"""The main job: train (or load) a dense model, prune it with any method of
`tf_fairprune.baselines`, strip, export to TFLite, audit and report.

Run it as `tf-fairprune --help`, `python -m tf_fairprune.job` or
`python examples/fair_prune.py` (the flags: `flags`; the run: `run`).

The modules that run before TensorFlow is imported (`main`, `flags`, `flag_checks`,
`output`, `dense_model_file`) import only the standard library, absl and each other,
relatively: examples/fair_prune.py loads this directory as a package of its own, without
running `tf_fairprune/__init__.py` (which imports TensorFlow), so that a bad flag is
reported in a second. The job's modules import each other relatively for the same
reason, and import nothing else of the job absolutely. This file imports nothing.
"""
