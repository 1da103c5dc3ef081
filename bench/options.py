"""What the suites share on the command line and in their results: ``python -m bench`` puts the
options of every suite into one parser, so an option two suites share is added once, and each
suite appends its records to ``<results-dir>/<suite>.jsonl``."""

from __future__ import annotations

import argparse
import contextlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent


def add_shared_option(container: Any, *names: str, **options: Any) -> None:
    """``container.add_argument(*names, **options)`` unless another suite of the same parser
    already added the option (with the same meaning and default)."""
    with contextlib.suppress(argparse.ArgumentError):
        container.add_argument(*names, **options)


def add_named_option(container: Any, names: list[str], **options: Any) -> None:
    """An option under its suite-specific name (``names[0]``), and also under the short names
    when no other suite of the same parser took them."""
    try:
        container.add_argument(*names, **options)
    except argparse.ArgumentError:
        container.add_argument(names[0], **options)


def add_common_options(container: Any) -> None:
    add_shared_option(
        container, "--log-dir", help="keep the servers' logs and databases here (default: deleted)"
    )
    add_shared_option(
        container,
        "--results-dir",
        default=str(REPO / "bench" / "results"),
        help="<suite>.jsonl files are appended here",
    )


def emitter(results_dir: Path, name: str) -> Callable[[dict[str, Any]], None]:
    """Print a record as one JSON line and append it to ``<results_dir>/<name>.jsonl``."""
    results_dir.mkdir(parents=True, exist_ok=True)
    output = results_dir / f"{name}.jsonl"

    def emit(record: dict[str, Any]) -> None:
        line = json.dumps(record)
        print(line, flush=True)
        with output.open("a") as results:
            results.write(line + "\n")

    return emit


def suite_main(
    description: str | None,
    suite: str,
    add_arguments: Callable[[argparse.ArgumentParser], None],
    run: Callable[[argparse.Namespace], list[dict[str, Any]]],
    plot: Callable[[list[dict[str, Any]], Path], list[Path]],
) -> None:
    """The command line of one suite run alone: its options, ``--plot DIR``, run, draw."""
    parser = argparse.ArgumentParser(
        description=description, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_arguments(parser)
    parser.add_argument("--plot", metavar="DIR", help="also draw the figures of this run into DIR")
    args = parser.parse_args()
    records = run(args)
    print(f"results appended to {Path(args.results_dir) / (suite + '.jsonl')}", flush=True)
    if args.plot:
        for path in plot(records, Path(args.plot)):
            print(path)
