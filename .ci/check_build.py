#!/usr/bin/env python3
"""Checks that BUILD matches the code: sources exist, and each target's deps are its imports.

  python .ci/check_build.py            # report every mismatch; exit 1 if there is one
  python .ci/check_build.py --write    # rewrite BUILD's deps (and add / drop targets) from the imports

BUILD is Starlark, whose call syntax is Python's, so it is read with `ast` (literal
lists, `+` and `glob([...])` only; the code's imports are read the same way, nothing is
imported, TensorFlow neither; it runs in about a second). The rules:

* every file in a target's `srcs` and `data` exists;
* every .py file under tf_fairprune/ is in the `srcs` of exactly one `py_library`, and
  every tests/test_*.py has a `py_test`;
* a target's in-repo deps are exactly the targets providing the in-repo modules its
  srcs import (`tf_fairprune.X`, `from tf_fairprune import X`, a module next to a test
  such as `conftest`), at any depth (imports inside functions count: Bazel needs them
  too), and those that the scripts in its `data` import (a test runs them in a
  subprocess; the scripts of examples/ and benchmarks/ they import must be in `data`
  too). A `py_test` also depends on the target holding tests/conftest.py, which pytest
  loads without an import. A target never lists itself. A dep that no import shows
  (code in a subprocess's `-c` string) stays with a gazelle-style `# keep` comment:
  `":tf_fairprune",  # keep: the probe subprocess imports it`;
* the external packages a `py_library` imports (not the standard library) are listed as
  TFMOT-style placeholder comments inside its deps, one `# <package> dep1,` line each;
* the targets' dependency graph has no cycle (Bazel refuses one; `--allow_cycles` only
  warns, for the lazy imports that issue 21 removes).

`--write` regenerates every `deps` list (and its placeholder comments) from the imports,
adds a `py_library` for a tf_fairprune module no target holds and a `py_test` for a test
module without one, and drops a target whose sources are all gone; it then re-checks.
Everything else in BUILD (comments, `data`, `size`, order) is left as it is.
"""

import argparse
import ast
import glob
import os
import re
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGE = "tf_fairprune"
RULES = ("py_library", "py_test")
# Imported by pytest itself (no import statement names it) for every test in tests/.
IMPLICIT_TEST_SRC = "tests/conftest.py"
_PLACEHOLDER = re.compile(r"#\s*([A-Za-z_][\w.-]*)\s+dep1\b")
# A dep the imports do not show (e.g. code run in a subprocess), kept as gazelle does:
#   ":tf_fairprune",  # keep: the subprocess imports it
_KEEP = re.compile(r'"(:?[\w/-]+)"\s*,?\s*(#\s*keep\b[^\n]*)')
# The example and benchmark scripts put both directories on sys.path.
SCRIPT_DIRS = ("examples", "benchmarks")


class Target:
  """One py_library / py_test call of BUILD, with where its text and its deps list are."""

  def __init__(self, call, text_lines):
    self.rule = call.func.id
    self.kwargs = {k.arg: k.value for k in call.keywords if k.arg}
    self.name = ast.literal_eval(self.kwargs["name"])
    self.srcs = self._strings("srcs")
    self.data = self._strings("data")
    self.deps_node = self.kwargs.get("deps")
    self.deps = set(self._strings("deps"))
    self.call = call
    self.placeholders, self.kept = set(), {}
    if self.deps_node is not None:
      deps_text = _span(text_lines, self.deps_node)
      self.placeholders = set(_PLACEHOLDER.findall(deps_text))
      self.kept = {d.lstrip(":"): comment.strip() for d, comment in _KEEP.findall(deps_text)}

  def _strings(self, key):
    node = self.kwargs.get(key)
    if node is None:
      return []
    try:
      value = _evaluate(node)
    except ValueError as err:
      raise SystemExit(f"BUILD: {self.rule}({self.name!r}): {key}: {err}") from None
    return [value] if isinstance(value, str) else list(value)


def _evaluate(node, root=ROOT):
  """A literal string list, `a + b` of them, or `glob([patterns])` (files under root)."""
  if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
    return _evaluate(node.left, root) + _evaluate(node.right, root)
  if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
      and node.func.id == "glob" and len(node.args) == 1 and not node.keywords):
    return sorted(os.path.relpath(p, root).replace(os.sep, "/")
                  for pattern in ast.literal_eval(node.args[0])
                  for p in glob.glob(os.path.join(root, pattern)) if os.path.isfile(p))
  try:
    value = ast.literal_eval(node)
  except ValueError:
    raise ValueError("only literal lists, `+` and glob([...]) are read here") from None
  return [value] if isinstance(value, str) else list(value)


def _offset(lines, lineno, col):
  """Character offset of (1-based line, 0-based UTF-8 byte column) in the joined text."""
  line = lines[lineno - 1]
  return sum(len(l) for l in lines[:lineno - 1]) + len(line.encode("utf-8")[:col].decode("utf-8"))


def _span(lines, node):
  text = "".join(lines)
  return text[_offset(lines, node.lineno, node.col_offset):
              _offset(lines, node.end_lineno, node.end_col_offset)]


def read_build(path):
  """(the BUILD text as lines, its Target list in file order)."""
  with open(path, encoding="utf-8") as f:
    text = f.read()
  lines = text.splitlines(keepends=True)
  targets = []
  for stmt in ast.parse(text, path).body:
    call = stmt.value if isinstance(stmt, ast.Expr) else None
    if isinstance(call, ast.Call) and isinstance(call.func, ast.Name) and call.func.id in RULES:
      targets.append(Target(call, lines))
  return lines, targets


def module_file(dotted, root=ROOT):
  """The repository file of module `dotted` (a package's __init__.py), or None."""
  base = os.path.join(root, *dotted.split("."))
  for candidate in (base + ".py", os.path.join(base, "__init__.py")):
    if os.path.isfile(candidate):
      return os.path.relpath(candidate, root).replace(os.sep, "/")
  return None


def _search_dirs(relpath):
  """Where a top-level `import name` of this file finds in-repo modules besides the root."""
  top = relpath.split("/")[0]
  if top == "tests":
    return ["tests"]  # pytest puts tests/ on sys.path.
  if top in SCRIPT_DIRS:
    return list(SCRIPT_DIRS)
  return []


def imports_of(relpath, root=ROOT):
  """(in-repo files, external top-level packages) that the file at `relpath` imports."""
  with open(os.path.join(root, relpath), encoding="utf-8") as f:
    tree = ast.parse(f.read(), relpath)
  here = os.path.dirname(relpath).replace("/", ".")  # The package of the file.
  files, external = set(), set()

  def add(dotted):
    found = module_file(dotted, root)
    for directory in _search_dirs(relpath):
      if found is None and not dotted.startswith(PACKAGE):
        found = module_file(f"{directory}.{dotted}", root)
    if found is not None:
      files.add(found)
      return True
    return False

  for node in ast.walk(tree):
    if isinstance(node, ast.Import):
      for alias in node.names:
        if not add(alias.name):
          external.add(alias.name.split(".")[0])
    elif isinstance(node, ast.ImportFrom):
      if node.level:
        parts = here.split(".") if here else []
        parts = parts[:len(parts) - (node.level - 1)]
        base = ".".join(p for p in parts + [node.module or ""] if p)
      else:
        base = node.module
      # `from a import b`: b is a module of package a, or a name inside module a.
      resolved = [add(f"{base}.{alias.name}") for alias in node.names if alias.name != "*"]
      if not all(resolved) or not resolved:
        if not add(base) and not node.level:
          external.add(base.split(".")[0])
  stdlib = set(sys.stdlib_module_names) | {"__future__"}
  return files, {e for e in external if e not in stdlib}


def python_files(subdir, root=ROOT):
  out = []
  for dirpath, dirnames, filenames in os.walk(os.path.join(root, subdir)):
    dirnames[:] = sorted(d for d in dirnames if not d.startswith((".", "__pycache__")))
    out += [os.path.relpath(os.path.join(dirpath, f), root).replace(os.sep, "/")
            for f in sorted(filenames) if f.endswith(".py")]
  return out


def new_library_name(relpath):
  """tf_fairprune/x.py -> x; tf_fairprune/a/b.py -> a_b; tf_fairprune/a/__init__.py -> a."""
  parts = relpath[len(PACKAGE) + 1:-len(".py")].split("/")
  if parts[-1] == "__init__":
    parts = parts[:-1] or [PACKAGE]
  return "_".join(parts)


def expected(targets, root=ROOT):
  """{target name: (in-repo deps, external packages)} from the imports, and the problems
  that no deps list can fix (missing files, a file in two libraries, ambiguous imports)."""
  problems = []
  providers = {}
  for t in targets:
    for src in t.srcs:
      providers.setdefault(src, []).append(t)
  libraries_of = {src: [t for t in ts if t.rule == "py_library"] for src, ts in providers.items()}
  for t in targets:
    for f in t.srcs + t.data:
      if not os.path.exists(os.path.join(root, f)):
        problems.append(f"{t.name}: {'src' if f in t.srcs else 'data'} {f} does not exist")
  for f in python_files(PACKAGE, root):
    libs = libraries_of.get(f, [])
    if len(libs) != 1:
      where = ", ".join(":" + t.name for t in libs) or "no py_library"
      problems.append(f"{f} is in {where} (must be in exactly one py_library)")
  tested = {s for t in targets if t.rule == "py_test" for s in t.srcs}
  for f in python_files("tests", root):
    if os.path.basename(f).startswith("test_") and f not in tested:
      problems.append(f"{f} has no py_test")
  want = {}
  for t in targets:
    deps, external = set(), set()
    files = set()
    for src in t.srcs:
      if src.endswith(".py") and os.path.exists(os.path.join(root, src)):
        imported, ext = imports_of(src, root)
        files |= imported
        external |= ext
    # Scripts in `data` (run in a subprocess): what they import, and the scripts beside
    # them that they import, which must be in `data` too.
    todo = [d for d in t.data if d.endswith(".py") and os.path.exists(os.path.join(root, d))]
    seen = set(todo)
    while todo:
      script = todo.pop()
      imported, _ = imports_of(script, root)
      for f in sorted(imported):
        if f.split("/")[0] in SCRIPT_DIRS:
          if f not in t.data:
            problems.append(f"{t.name}: data {script} imports {f}, which is not in data")
          if f not in seen:
            seen.add(f)
            todo.append(f)
        else:
          files.add(f)
    if t.rule == "py_test":
      files.add(IMPLICIT_TEST_SRC)
    for f in sorted(files):
      if f in t.srcs:
        continue
      candidates = libraries_of.get(f) or providers.get(f, [])
      if len(candidates) == 1:
        deps.add(candidates[0].name)
      elif not candidates:
        if f.startswith(PACKAGE + "/") or f.startswith("tests/"):
          problems.append(f"{t.name}: imports {f}, which no target provides")
      else:
        problems.append(f"{t.name}: imports {f}, provided by several targets "
                        f"({', '.join(':' + c.name for c in candidates)})")
    deps.discard(t.name)
    deps |= set(t.kept)
    want[t.name] = (deps, external if t.rule == "py_library" else set())
  return want, problems


def cycles(want):
  """The dependency cycles among targets, each as a list of names."""
  found, state, stack = [], {}, []

  def visit(name):
    state[name] = 1
    stack.append(name)
    for dep in sorted(want.get(name, (set(),))[0]):
      if state.get(dep) == 1:
        found.append(stack[stack.index(dep):] + [dep])
      elif dep not in state:
        visit(dep)
    stack.pop()
    state[name] = 2

  for name in sorted(want):
    if name not in state:
      visit(name)
  return found


def mismatches(targets, want):
  lines = []
  for t in targets:
    deps, external = want[t.name]
    have = {d[1:] if d.startswith(":") else d for d in t.deps}
    for d in sorted(deps - have):
      lines.append(f"{t.name}: missing dep :{d}")
    for d in sorted(have - deps):
      lines.append(f"{t.name}: extra dep :{d}")
    for e in sorted(external - t.placeholders):
      lines.append(f"{t.name}: missing external placeholder '# {e} dep1,'")
    for e in sorted(t.placeholders - external):
      lines.append(f"{t.name}: extra external placeholder '# {e} dep1,' (not imported)")
  return lines


def _deps_text(deps, external, indent, kept=None):
  kept = kept or {}
  items = [f'":{d}",' + (f"  {kept[d]}" if d in kept else "") for d in sorted(deps)]
  items += [f"# {e} dep1," for e in sorted(external)]
  if not items:
    return "[]"
  if not external and not kept and len(deps) <= 3:
    return "[" + ", ".join(f'":{d}"' for d in sorted(deps)) + "]"
  pad = " " * (indent + 4)
  return "[\n" + "".join(f"{pad}{i}\n" for i in items) + " " * indent + "]"


def _library_block(name, src):
  return f'py_library(\n    name = "{name}",\n    srcs = ["{src}"],\n    deps = [],\n)\n'


def _test_block(name, src):
  return (f'py_test(\n    name = "{name}",\n    size = "medium",\n'
          f'    srcs = ["{src}", "tests/bazel_pytest_main.py"],\n'
          f'    args = ["$(location {src})"],\n    main = "tests/bazel_pytest_main.py",\n'
          f'    deps = [],\n)\n')


def write(path, root=ROOT):
  """Adds / drops targets, then rewrites every deps list from the imports."""
  lines, targets = read_build(path)
  text = "".join(lines)
  # Drop targets whose sources are all gone (back to front, so offsets stay valid).
  for t in reversed(targets):
    if t.srcs and not any(os.path.exists(os.path.join(root, s)) for s in t.srcs
                          if s != "tests/bazel_pytest_main.py"):
      start = _offset(lines, t.call.lineno, t.call.col_offset)
      end = _offset(lines, t.call.end_lineno, t.call.end_col_offset)
      text = text[:start].rstrip("\n") + "\n" + text[end:].lstrip("\n")
      print(f"dropped {t.rule}({t.name!r}): its sources are gone")
  held = {s for t in targets for s in t.srcs if os.path.exists(os.path.join(root, s))}
  names = {t.name for t in targets}
  added = []
  for f in python_files(PACKAGE, root):
    if f not in held:
      name = new_library_name(f)
      name = name if name not in names else name + "_lib"
      added.append(_library_block(name, f))
      names.add(name)
      print(f"added py_library({name!r}) for {f}")
  for f in python_files("tests", root):
    base = os.path.basename(f)
    if base.startswith("test_") and not any(f in t.srcs for t in targets if t.rule == "py_test"):
      added.append(_test_block(base[:-3], f))
      print(f"added py_test({base[:-3]!r}) for {f}")
  if added:
    text = text.rstrip("\n") + "\n\n" + "\n".join(added)
  with open(path, "w", encoding="utf-8") as f:
    f.write(text)
  # Now the deps, from the rewritten file.
  lines, targets = read_build(path)
  want, _ = expected(targets, root)
  text = "".join(lines)
  for t in sorted(targets, key=lambda t: -t.call.lineno):
    deps, external = want[t.name]
    indent = t.call.col_offset + 4
    new = _deps_text(deps, external, indent, t.kept)
    if t.deps_node is not None:
      node = t.deps_node
      start = _offset(lines, node.lineno, node.col_offset)
      end = _offset(lines, node.end_lineno, node.end_col_offset)
      text = text[:start] + new + text[end:]
    else:  # No deps argument: add one before the closing parenthesis.
      end = _offset(lines, t.call.end_lineno, t.call.end_col_offset) - 1
      head = text[:end].rstrip()
      head += "" if head.endswith(",") else ","
      text = head + "\n" + " " * indent + f"deps = {new},\n" + text[end:]
  with open(path, "w", encoding="utf-8") as f:
    f.write(text)


def check(path, root=ROOT, allow_cycles=False):
  """Every problem as one line (empty: BUILD is true); cycles only warned with `allow_cycles`."""
  _, targets = read_build(path)
  names = [t.name for t in targets]
  problems = [f"target {n!r} is defined twice" for n in sorted(set(names))
              if names.count(n) > 1]
  want, found = expected(targets, root)
  problems += found + mismatches(targets, want)
  for c in cycles(want):
    line = "dependency cycle: " + " -> ".join(":" + n for n in c)
    if allow_cycles:
      print(f"BUILD: warning: {line} (allowed by --allow_cycles)")
    else:
      problems.append(line)
  return problems


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--build", default=os.path.join(ROOT, "BUILD"), help="The BUILD file.")
  parser.add_argument("--write", action="store_true",
                      help="Rewrite the deps lists (and add / drop targets) from the imports.")
  parser.add_argument("--allow_cycles", action="store_true",
                      help="Warn about dependency cycles instead of failing (the lazy imports "
                      "before issue 21's module graph).")
  args = parser.parse_args(argv)
  if args.write:
    write(args.build)
  problems = check(args.build, allow_cycles=args.allow_cycles)
  for p in problems:
    print(f"BUILD: {p}")
  if problems:
    print(f"{len(problems)} problem(s); `python .ci/check_build.py --write` regenerates the deps.")
    return 1
  print(f"BUILD: {len(read_build(args.build)[1])} targets match the imports.")
  return 0


if __name__ == "__main__":
  sys.exit(main())
