"""Writing a file all at once: a reader sees the old file or the whole new one, and a
failed write leaves no partial file behind."""

import os
import tempfile


def write_atomically(content, path, suffix=".tflite.tmp"):
  """Writes `content` to `path` through a temporary file in the same directory and a
  rename (atomic on POSIX and Windows), with the permissions `open()` would give.

  Args:
    content: The bytes to write.
    path: Where to write them (str or path-like); missing directories are created.
    suffix: The temporary file's suffix.

  Raises:
    OSError: If the directory or file cannot be written (the temporary file is removed
      and any previous file at `path` is untouched).

  Example:

  ```python
  write_atomically(flatbuffer, "/tmp/model.tflite")
  ```
  """
  path = os.fspath(path)
  directory = os.path.dirname(os.path.abspath(path))
  os.makedirs(directory, exist_ok=True)
  fd, tmp = tempfile.mkstemp(dir=directory, suffix=suffix)
  try:
    with os.fdopen(fd, "wb") as f:
      f.write(content)
    # mkstemp makes the file 0600; give it what open() would: 0666 less the umask.
    os.chmod(tmp, 0o666 & ~_umask())
    os.replace(tmp, path)
  except BaseException:
    if os.path.exists(tmp):
      os.remove(tmp)
    raise


def _umask():
  """The process umask (read by setting it and putting it back at once)."""
  mask = os.umask(0o022)
  os.umask(mask)
  return mask
