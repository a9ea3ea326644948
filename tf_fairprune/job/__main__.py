"""`python -m tf_fairprune.job`: the main job (see `tf_fairprune.job.main`)."""

from tf_fairprune.job import main

if __name__ == "__main__":
  main.run()
