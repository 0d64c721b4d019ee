#!/usr/bin/env python3
"""check-layers.py - the agent's folders form layers: a folder includes headers only of
itself, of the folders agent/CMakeLists.txt lists after it, and of the libraries outside
agent/. Prints every include that breaks the order (or forms a circle) and exits 1.

The order is the one agent/CMakeLists.txt's comment table declares ("#   NAME ... [DEPS]").
"""
import os
import re
import sys

root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "agent")
table = open(os.path.join(root, "CMakeLists.txt")).read()
allowed = {}
for m in re.finditer(r"^#   (\w+)\s[^\n]*?(?:\n#\s{6,}[^\n]*?)*\[([\w ]*)\]\s*$", table, re.M):
    allowed[m.group(1)] = set(m.group(2).split())
header_of = {}
for folder in sorted(os.listdir(root)):
    d = os.path.join(root, folder)
    if not os.path.isdir(d):
        continue
    if folder not in allowed:
        sys.exit(f"check-layers: agent/{folder}/ is not in agent/CMakeLists.txt's table")
    for f in os.listdir(d):
        if f.endswith(".h"):
            if f in header_of:
                sys.exit(f"check-layers: {f} in agent/{header_of[f]}/ and agent/{folder}/")
            header_of[f] = folder

bad = 0
edges = {}
for folder in sorted(allowed):
    d = os.path.join(root, folder)
    for f in sorted(os.listdir(d)):
        if not f.endswith((".c", ".h")):
            continue
        for inc in re.findall(r'^#\s*include\s+"([^"]+)"', open(os.path.join(d, f)).read(), re.M):
            other = header_of.get(os.path.basename(inc))
            if other is None or other == folder:
                continue
            edges.setdefault(folder, set()).add(other)
            if other not in allowed[folder]:
                print(f"agent/{folder}/{f}: includes {inc} of agent/{other}/, "
                      f"not below {folder}")
                bad += 1


def reach(a):
    seen, todo = set(), [a]
    while todo:
        for b in edges.get(todo.pop(), ()):
            if b not in seen:
                seen.add(b)
                todo.append(b)
    return seen


for a in sorted(edges):
    if a in reach(a):
        print(f"agent/{a}/: on an include circle")
        bad += 1
if bad:
    sys.exit(1)
print(f"check-layers: {len(allowed)} agent folders, {sum(len(v) for v in edges.values())} "
      "edges between them, no circle")
