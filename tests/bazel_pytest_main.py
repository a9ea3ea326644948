"""Entry point for Bazel `py_test` targets: runs the pytest module given as argument."""

import sys

import pytest

if __name__ == "__main__":
  sys.exit(pytest.main(["-q", *sys.argv[1:]]))
