"""Structure figures of the library: modules and sizes, the longest functions, and the
import graph (cycles; imports made inside functions, which hide them).

  python .ci/code_metrics.py [--top=10]

Pure Python (ast), no TensorFlow. The before/after of a restructuring quotes it.
"""

import argparse
import ast
import os

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGE = "tf_fairprune"


def modules():
  found = {}
  for folder, _, files in os.walk(os.path.join(ROOT, PACKAGE)):
    for f in files:
      if f.endswith(".py"):
        path = os.path.join(folder, f)
        name = os.path.relpath(path, ROOT)[:-3].replace(os.sep, ".")
        found[name.removesuffix(".__init__")] = path
  return found


def imports(tree, name, known):
  """(module imported, at top level?) for every in-package import."""
  out = []
  for node in ast.walk(tree):
    targets = []
    if isinstance(node, ast.Import):
      targets = [a.name for a in node.names]
    elif isinstance(node, ast.ImportFrom) and node.module:
      targets = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
    for t in targets:
      if t.startswith(PACKAGE) and t in known and t != name:
        out.append((t, node.col_offset == 0))
  return out


def cycles(graph):
  """Strongly connected components with more than one module (Tarjan)."""
  index, low, stack, on, comps, counter = {}, {}, [], set(), [], [0]
  def visit(v):
    index[v] = low[v] = counter[0]
    counter[0] += 1
    stack.append(v)
    on.add(v)
    for w in graph.get(v, ()):
      if w not in index:
        visit(w)
        low[v] = min(low[v], low[w])
      elif w in on:
        low[v] = min(low[v], index[w])
    if low[v] == index[v]:
      comp = []
      while True:
        w = stack.pop()
        on.discard(w)
        comp.append(w)
        if w == v:
          break
      if len(comp) > 1:
        comps.append(sorted(comp))
  for v in list(graph):
    if v not in index:
      visit(v)
  return comps


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("--top", type=int, default=10)
  args = parser.parse_args()
  mods = modules()
  sizes, funcs, graph, lazy = {}, [], {}, []
  for name, path in sorted(mods.items()):
    source = open(path).read()
    tree = ast.parse(source)
    sizes[name] = len(source.splitlines())
    for node in ast.walk(tree):
      if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
        funcs.append((node.end_lineno - node.lineno + 1, f"{name}.{node.name}"))
      if isinstance(node, ast.ClassDef):
        methods = [n for n in node.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]
        funcs.append((-len(methods), f"class {name}.{node.name}"))
    # Edges between modules that are not packages' __init__ re-exports.
    edges = set()
    for target, top in imports(tree, name, mods):
      if mods[target].endswith("__init__.py") and name.startswith(target):
        continue
      if target.startswith(name + ".") and path.endswith("__init__.py"):
        continue
      edges.add(target)
      if not top:
        lazy.append(f"{name} -> {target}")
    graph[name] = edges
  core = {n: s for n, s in sizes.items() if not n.startswith(f"{PACKAGE}.datasets")}
  print(f"modules: {len(sizes)} ({len(core)} outside datasets/), lines: {sum(sizes.values())}")
  print("largest: " + ", ".join(f"{n.split('.', 1)[-1]} {s}" for n, s in
                                 sorted(sizes.items(), key=lambda kv: -kv[1])[:args.top]))
  longest = sorted((f for f in funcs if f[0] > 0), reverse=True)[:args.top]
  print("longest functions: " + ", ".join(f"{n.split('.', 1)[-1]} {l}" for l, n in longest))
  classes = sorted((f for f in funcs if f[0] < 0))[:5]
  print("most methods: " + ", ".join(f"{n.split(' ')[1].split('.', 1)[-1]} {-c}"
                                     for c, n in classes))
  comps = cycles(graph)
  print(f"import cycles between modules: {len(comps)}" + "".join(
      f"\n  {' <-> '.join(m.split('.', 1)[-1] for m in c)}" for c in comps))
  # A subpackage counts as one node: importing any of its modules runs its __init__.
  def unit(m):
    parts = m.split(".")
    return ".".join(parts[:2]) if len(parts) > 2 else m
  packed = {}
  for m, targets in graph.items():
    packed.setdefault(unit(m), set()).update(unit(t) for t in targets if unit(t) != unit(m))
  comps = cycles(packed)
  print(f"import cycles between modules and subpackages: {len(comps)}" + "".join(
      f"\n  {' <-> '.join(m.split('.', 1)[-1] for m in c)}" for c in comps))
  print(f"imports inside functions: {len(lazy)}" + "".join(f"\n  {l}" for l in lazy))


if __name__ == "__main__":
  main()
