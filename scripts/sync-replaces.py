#!/usr/bin/env python3
"""Give every module of the workspace a replace directive for every local
module it may reach (directly or through another local module), so that
each module builds and tidies on its own with GOWORK=off — as a
per-service image build does. Unused replace directives are harmless.
Run `make tidy` after it."""
import os, re, subprocess

root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
dirs = subprocess.check_output(["go", "list", "-m", "-f", "{{.Dir}}"], cwd=root, text=True).split()
mods = {}
for d in dirs:
    with open(os.path.join(d, "go.mod")) as f:
        m = re.search(r"^module (\S+)", f.read(), re.M)
    mods[m.group(1)] = d
# Only libraries, policies and services are dependencies of others.
targets = {p: d for p, d in mods.items() if "/libs/" in p or "/services/" in p or p.endswith("/policies")}
for path, d in mods.items():
    gomod = os.path.join(d, "go.mod")
    with open(gomod) as f:
        text = f.read()
    if not re.search(r"^\s*github\.com/agentidp/agentidp/\S+ v", text, re.M):
        continue  # depends on no local module: needs no replace directive
    existing = set(re.findall(r"^\s*(\S+) => ", text, re.M))
    lines = []
    for tp, td in sorted(targets.items()):
        if tp == path or tp in existing:
            continue
        lines.append("\t%s => %s" % (tp, os.path.relpath(td, d)))
    if not lines:
        continue
    text = text.rstrip("\n") + "\n\nreplace (\n" + "\n".join(lines) + "\n)\n"
    with open(gomod, "w") as f:
        f.write(text)
    print("%s: +%d replace directives" % (os.path.relpath(d, root), len(lines)))
