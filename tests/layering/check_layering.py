#!/usr/bin/python3
"""Keeps the module graph of docs/architecture.md true: every #include "..."
in src/ must go from a module to itself or to a module its row of the
allowed-dependency table names, and a module's private header (internal.h,
*_internal.h) is included by that module only. The table in
docs/architecture.md (between the layering:begin/end markers) is the rule;
this script only reads it, so the document cannot drift from the code.

Usage: check_layering.py [REPO_ROOT]. Exit 0 when clean, 1 with one line
per offending include, 2 when the table cannot be read."""
import os
import re
import sys

INCLUDE = re.compile(r'^\s*#\s*include\s+"([^"]+)"', re.M)


def module_of(rel):
    """The module a path under src/ (or an include target) belongs to."""
    parts = rel.split("/")
    if rel == "main.c":
        return "main"
    if parts[0] == "flowcast":  # include/flowcast/: libflowcast's public headers
        return "client"
    if parts[0] == "cli" and len(parts) == 2 and parts[1].startswith("config"):
        return "config"  # the options table: data every layer reads
    return parts[0] if len(parts) > 1 else None


def read_table(doc):
    text = open(doc, encoding="utf-8").read()
    m = re.search(r"<!-- layering:begin -->(.*?)<!-- layering:end -->", text, re.S)
    if not m:
        print("check_layering: no <!-- layering:begin/end --> table in %s" % doc)
        sys.exit(2)
    allowed = {}
    for line in m.group(1).splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) < 2 or not cells[0].startswith("`"):
            continue  # header, separator or prose
        name = cells[0].strip("`")
        deps = re.findall(r"`([^`]+)`", cells[1])
        allowed[name] = "*" if cells[1].strip() == "any" else set(deps)
    if not allowed:
        print("check_layering: the table in %s is empty" % doc)
        sys.exit(2)
    return allowed


def resolve(src, path, target):
    """An include target as a path under src/ (the build's include roots are
    src/ and include/; a bare name is next to the including file)."""
    if target.startswith("../") or "/" not in target:
        full = os.path.normpath(os.path.join(os.path.dirname(path), target))
        return os.path.relpath(full, src)
    return target


def main():
    root = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "../..")
    src = os.path.join(root, "src")
    allowed = read_table(os.path.join(root, "docs", "architecture.md"))
    errors = []
    for dirpath, _, files in os.walk(src):
        for f in sorted(files):
            if not f.endswith((".c", ".h")):
                continue
            path = os.path.join(dirpath, f)
            rel = os.path.relpath(path, src)
            mod = module_of(rel)
            if mod not in allowed:
                errors.append("%s: module %r has no row in docs/architecture.md" % (rel, mod))
                continue
            text = open(path, encoding="utf-8").read()
            for target in INCLUDE.findall(text):
                trel = resolve(src, path, target)
                dep = module_of(trel)
                base = os.path.basename(trel)
                if (base == "internal.h" or base.endswith("_internal.h")) and dep != mod:
                    errors.append("%s: includes %s, private to %s" % (rel, target, dep))
                elif dep != mod and allowed[mod] != "*" and dep not in allowed[mod]:
                    errors.append("%s: %s may not include %s (%s)" % (rel, mod, dep, target))
    for e in errors:
        print("check_layering:", e)
    if not errors:
        print("check_layering: every include follows the module graph (%d modules)" % len(allowed))
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
