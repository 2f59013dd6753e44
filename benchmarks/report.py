"""`python -m benchmarks report`: the tables of docs/benchmarks.md, from the newest results.

Each suite's table sits between `<!-- benchmarks:SUITE:begin ... -->` and
`<!-- benchmarks:SUITE:end -->` in docs/benchmarks.md; everything outside the markers is prose
written by hand. For each suite the newest result file of each label is rendered by the suite's
own `render(records)`, followed by where and when each was measured. No number is copied by
hand.

    python -m benchmarks report           # rewrite the tables
    python -m benchmarks report --check   # exit 1 when the page is not what the results give
"""

from __future__ import annotations

import argparse
import importlib
import re
from pathlib import Path

from benchmarks.harness import REPO, RESULTS, newest_by_label

PAGE = REPO / "docs" / "benchmarks.md"
BLOCK = re.compile(
    r"(<!-- benchmarks:(?P<suite>[a-z0-9-]+):begin[^>]*-->\n)(?P<body>.*?)"
    r"(<!-- benchmarks:(?P=suite):end -->)",
    re.S,
)


def render_page(text: str, results: Path = RESULTS) -> str:
    """`text` with every suite's block rendered anew."""
    from benchmarks.__main__ import SUITES

    def block(match: re.Match) -> str:
        suite = match["suite"]
        module = importlib.import_module(f"benchmarks.{SUITES[suite][0]}")
        records = newest_by_label(suite, results)
        if records:
            body = module.render(records).strip() + "\n\n" + provenance(records)
        else:
            body = f"No results yet: run `python -m benchmarks {suite}`."
        return f"{match.group(1)}{body.strip()}\n{match.group(4)}"

    return BLOCK.sub(block, text)


def provenance(records: list[dict]) -> str:
    """Where, when and with what each table's rows were measured."""
    lines = []
    for record in records:
        env = record["environment"]
        label = f"{record['label']}: " if record.get("label") else ""
        if record.get("converted_from") and env.get("commit") == "unknown":
            lines.append(
                f"- {label}{env.get('date', '?')[:10]}, from a results file that did not record "
                f"the commit, versions or CPU (`{record['file']}`)"
            )
            continue
        where = f"{env.get('cpu', 'unknown CPU')}, {env.get('cores', '?')} cores"
        versions = f"TensorFlow {env.get('tensorflow', '?')}, Keras {env.get('keras', '?')}"
        lines.append(
            f"- {label}{env.get('date', '?')[:10]}, commit {env.get('commit', 'unknown')}, "
            f"{where}, {versions} (`{record['file']}`)"
        )
    return "Measured:\n\n" + "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks report", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--check", action="store_true", help="exit 1 when the page is stale")
    parser.add_argument("--results", type=Path, default=RESULTS, metavar="DIR")
    parser.add_argument("--page", type=Path, default=PAGE, metavar="FILE")
    args = parser.parse_args(argv)
    text = args.page.read_text(encoding="utf-8")
    new = render_page(text, args.results)
    if args.check:
        if new != text:
            print(f"{args.page} is stale: run python -m benchmarks report")
            return 1
        return 0
    if new != text:
        args.page.write_text(new, encoding="utf-8")
    print(("updated " if new != text else "current ") + str(args.page))
    return 0
