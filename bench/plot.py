"""``python -m bench.plot [RESULTS.jsonl ...]``: draw the side-by-side comparisons of the peer
suite (``bench/results/peers_small.jsonl`` by default) as PNG bar charts in ``docs/bench/``:
operations per second of each system, per method and concurrency, from the latest run."""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
DEFAULT_RESULTS = REPO / "bench" / "results" / "peers_small.jsonl"
OUTPUT = REPO / "docs" / "bench"


def latest_run(path: Path) -> list[dict[str, Any]]:
    """The records of the last run in ``path``: the last record of each (system, method,
    concurrency)."""
    latest: dict[tuple[str, str, int], dict[str, Any]] = {}
    for line in path.read_text().splitlines():
        record = json.loads(line)
        if "per_second" in record:
            latest[(record["system"], record["method"], record["concurrency"])] = record
    return list(latest.values())


def plot(records: list[dict[str, Any]], output: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    output.mkdir(parents=True, exist_ok=True)
    by_panel: dict[tuple[str, int], dict[str, float]] = defaultdict(dict)
    for record in records:
        by_panel[(record["method"], record["concurrency"])][record["system"]] = record["per_second"]
    written = []
    for (method, concurrency), rates in sorted(by_panel.items()):
        systems = sorted(rates, key=rates.__getitem__)
        figure, axes = plt.subplots(figsize=(7, 0.5 + 0.45 * len(systems)))
        bars = axes.barh(
            systems,
            [rates[s] for s in systems],
            color=["#417690" if s.startswith("spread") else "#999" for s in systems],
        )
        axes.bar_label(bars, fmt="%.0f", padding=3)
        axes.set_xscale("log")
        axes.set_xlabel("operations per second (log scale)")
        axes.set_title(f"small {method}s, 100 B values, concurrency {concurrency} (same run, same machine)")
        figure.tight_layout()
        path = output / f"peers_small_{method}_c{concurrency}.png"
        figure.savefig(path, dpi=100)
        plt.close(figure)
        written.append(path)
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("results", nargs="*", default=[str(DEFAULT_RESULTS)])
    parser.add_argument("--output", default=str(OUTPUT))
    args = parser.parse_args()
    records = [record for path in args.results for record in latest_run(Path(path))]
    for path in plot(records, Path(args.output)):
        print(path)


if __name__ == "__main__":
    main()
