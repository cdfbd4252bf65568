"""The Markdown table of benchmarks/RESULTS.md (Experiments) from the run JSONs: paper figure vs ours.

    python benchmarks/experiments_table.py [OUT]     (default OUT: benchmarks/experiments)
"""
from __future__ import annotations

import sys
from pathlib import Path

from prefixproof.experiments.report import rows

ORDER = ("E1", "E2", "E3", "E3L1", "E4", "E4M", "E5", "E6")


def main(out: Path) -> None:
    print("| exp | cell | task | method | params | paper | ours, CPU size (mean ± sd %) | seeds | identities hold, "
          "worst/tol | attention order tau mean / min |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    claims = []
    for eid in ORDER:
        if not (out / eid / "config.json").exists():
            continue
        _, table, verdicts = rows(out / eid)
        for cell, task, method, params, acc, n, paper, ident, tau in table:
            if n == 0:
                continue
            print(f"| {eid} | {cell} | {task} | {method} | {params} | {paper} | {acc} | {n} | {ident} | {tau} |")
        claims += verdicts
    print()
    for c in claims:
        print(f"- {c}")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path("benchmarks/experiments"))
