"""Measure how the notebooks' exported cells are cut: `python tools/cell_stats.py [--nbs nbs] [--missing] [NOTEBOOK ...]`.

Over the exported cells (`#| export`, `#| exports`, `#| exporti`) of every notebook in `nbs/` (files starting with `_` or `.`
are skipped, as nbdev skips them):

- lines: code lines of a cell, not counting `#|` directives and blank lines; the median over all exported cells;
- multi-definition share: the share of exported cells with more than one top-level `def`/`class`;
- followed share, per notebook: the share of public top-level definitions (name not starting with `_`) whose cell is
  directly followed, in the next code cell, by a cell that is not exported and uses the name (an example or a test).

`--missing` lists the public definitions that are not followed by an example or test.
"""
from __future__ import annotations
import argparse, ast, json, re, statistics
from pathlib import Path

EXPORT_DIRECTIVES = {'export', 'exports', 'exporti'}


def directives(source:str)->set[str]:
    "The nbdev directives of a cell (`#| export` -> 'export'; `#|export` too)."
    found = set()
    for line in source.splitlines():
        match = re.match(r'\s*#\|\s*([\w-]+)', line)
        if match: found.add(match.group(1).lower())
    return found


def code_lines(source:str)->list[str]:
    "The lines of a cell that are code: neither blank nor a `#|` directive."
    return [line for line in source.splitlines() if line.strip() and not re.match(r'\s*#\|', line)]


def top_level_definitions(source:str)->list[str]:
    "Names of the top-level functions and classes of a cell (magics and shell lines are left out before parsing)."
    python = '\n'.join('' if line.lstrip().startswith(('%', '!')) else line for line in source.splitlines())
    try: tree = ast.parse(python)
    except SyntaxError: return []
    return [node.name for node in tree.body if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))]


def notebook_stats(path:Path)->dict:
    "Exported cells' line counts and definitions, and which public definitions the next code cell uses."
    cells = [c for c in json.loads(path.read_text())['cells'] if c['cell_type'] == 'code']
    sources = [''.join(c['source']) for c in cells]
    exported = [bool(directives(s) & EXPORT_DIRECTIVES) for s in sources]
    lines, n_defs, public, followed, missing = [], [], 0, 0, []
    for i, (source, is_export) in enumerate(zip(sources, exported)):
        if not is_export: continue
        names = top_level_definitions(source)
        lines.append(len(code_lines(source)))
        n_defs.append(len(names))
        after = sources[i + 1] if i + 1 < len(sources) and not exported[i + 1] else ''
        for name in names:
            if name.startswith('_'): continue
            public += 1
            if re.search(rf'\b{re.escape(name)}\b', after): followed += 1
            else: missing.append(name)
    return dict(cells=len(lines), lines=lines, n_defs=n_defs, public=public, followed=followed, missing=missing)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--nbs', default=Path(__file__).resolve().parent.parent/'nbs', type=Path, help='notebook folder')
    parser.add_argument('--missing', action='store_true', help='list public definitions without an example or test after them')
    parser.add_argument('names', nargs='*', help='only these notebooks (file names in --nbs); default: all')
    args = parser.parse_args()
    paths = sorted(p for p in args.nbs.glob('*.ipynb') if not p.name.startswith(('_', '.')) and (not args.names or p.name in {Path(n).name for n in args.names}))
    all_lines, all_defs, all_public, all_followed = [], [], 0, 0
    print(f"{'notebook':28s} {'cells':>5s} {'median':>6s} {'multi-def':>9s} {'followed':>12s}")
    for path in paths:
        stats = notebook_stats(path)
        if not stats['cells']: continue
        all_lines += stats['lines']; all_defs += stats['n_defs']
        all_public += stats['public']; all_followed += stats['followed']
        multi = sum(n > 1 for n in stats['n_defs']) / stats['cells']
        share = stats['followed'] / stats['public'] if stats['public'] else 1.0
        print(f"{path.name:28s} {stats['cells']:5d} {statistics.median(stats['lines']):6.1f} {multi:9.0%} "
              f"{share:6.0%} ({stats['followed']}/{stats['public']})")
        if args.missing and stats['missing']: print(f"{'':28s} not followed: {', '.join(stats['missing'])}")
    if not all_defs: raise SystemExit('no exported cells in the notebooks named')
    multi = sum(n > 1 for n in all_defs) / len(all_defs)
    print(f"{'all':28s} {len(all_lines):5d} {statistics.median(all_lines):6.1f} {multi:9.0%} "
          f"{all_followed / all_public:6.0%} ({all_followed}/{all_public})")


if __name__ == '__main__': main()
