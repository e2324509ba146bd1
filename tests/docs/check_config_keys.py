#!/usr/bin/env python3
"""Every configuration key the parsers accept has a row in the reference.

Reads the key tables of dataplane/config.cc (`constexpr std::string_view
<section>_keys[]`) and the key rules of controlplane/ike/config.cc
(`{"key", set_...}` and friends), and checks that each key is the first
cell of a table row in docs/configuration.md (in its section's part of the
document) and docs/iked-configuration.md. Also the reverse for the data
plane: a documented key the parser does not accept is an error.

    check_config_keys.py <repository root>      exit 0 = all documented
"""
from __future__ import annotations

import re
import sys
from pathlib import Path

DP_SECTION_TITLES = {"dataplane": "`[dataplane]`", "port": "`[[port]]`", "route": "`[[route]]`",
                     "neighbor": "`[[neighbor]]`",
                     "sa": "`[[sa]]`", "policy": "`[[policy]]`"}


def first_cells(markdown: str) -> list[str]:
    """The first cell of every table row (header and separator rows skipped)."""
    cells = []
    for line in markdown.splitlines():
        if line.startswith("|") and not re.match(r"^\|\s*-", line):
            cells.append(line.split("|")[1].strip())
    return cells


def names_in(cell: str) -> set[str]:
    return set(re.findall(r"`([^`]+)`", cell))


def doc_sections(markdown: str) -> dict[str, str]:
    """'## title' -> text up to the next '## '."""
    out, title, buf = {}, None, []
    for line in markdown.splitlines():
        if line.startswith("## "):
            if title:
                out[title] = "\n".join(buf)
            title, buf = line[3:].strip(), []
        else:
            buf.append(line)
    if title:
        out[title] = "\n".join(buf)
    return out


def dataplane_keys(source: str) -> dict[str, list[str]]:
    tables = re.findall(r"constexpr std::string_view (\w+)_keys\[\] = \{([^}]*)\}", source)
    return {name: re.findall(r'"([^"]+)"', body) for name, body in tables}


def ike_keys(source: str) -> set[str]:
    return set(re.findall(r'\{"([a-z_][a-z_0-9]*\*?)",\s*(?:set_\w+\(|keep\(|\[&\]|\[\]|as_\w+)', source))


def main(root: Path) -> int:
    errors = []
    dp = dataplane_keys((root / "dataplane/config.cc").read_text())
    if set(dp) != {"top", *DP_SECTION_TITLES}:
        errors.append(f"dataplane/config.cc: key tables {sorted(dp)}; this check knows "
                      f"{sorted(DP_SECTION_TITLES)} and top")
    sections = doc_sections((root / "docs/configuration.md").read_text())
    for section, title in DP_SECTION_TITLES.items():
        text = sections.get(title)
        if text is None:
            errors.append(f"docs/configuration.md: no '## {title}' section")
            continue
        documented = set().union(*(names_in(c) for c in first_cells(text)))
        for key in dp.get(section, []):
            if key not in documented:
                errors.append(f"docs/configuration.md {title}: key `{key}` has no table row")
        table_keys = {k for k in documented if re.fullmatch(r"[a-z_0-9]+", k) and k in
                      set().union(*dp.values())}
        for key in sorted(table_keys - set(dp.get(section, []))):
            errors.append(f"docs/configuration.md {title}: `{key}` is documented but not accepted there")

    ike = ike_keys((root / "controlplane/ike/config.cc").read_text())
    if len(ike) < 40:
        errors.append(f"controlplane/ike/config.cc: only {len(ike)} keys found; has the rule syntax changed?")
    iked_doc = (root / "docs/iked-configuration.md").read_text()
    documented = set().union(*(names_in(c) for c in first_cells(iked_doc)))
    for key in sorted(ike):
        want = key.replace("*", "<anything>")
        if want not in documented:
            errors.append(f"docs/iked-configuration.md: key `{want}` has no table row")

    for e in errors:
        print(e, file=sys.stderr)
    print(f"{sum(len(v) for k, v in dp.items() if k != 'top')} data-plane keys, {len(ike)} ravelin-iked keys: "
          f"{'all documented' if not errors else f'{len(errors)} problem(s)'}")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parents[2]))
