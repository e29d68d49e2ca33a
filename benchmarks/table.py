"""The `make bench` table: every row of benchmarks/results/*.json as one markdown table, ours
beside the peer, the ratio ours ÷ peer, and the fraction of the machine's limit where known."""

from __future__ import annotations

import json
import platform

import torch

from benchmarks.common import RESULTS

ORDER = ("training", "encoding", "retrieval")  # the benchmarks, in the table's order


def fraction(value: float | None) -> str:
    return "" if value is None else f"{value:.2f}"


def table() -> str:
    lines = [
        f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, "
        f"torch {torch.__version__}",
        "",
        "| figure | unit | xpretrieval | peer | peer value | ratio | of limit (ours / peer) |",
        "| --- | --- | ---: | --- | ---: | ---: | ---: |",
    ]
    for name in ORDER:
        path = RESULTS / f"{name}.json"
        if not path.is_file():
            lines.append(f"| {name}: not run (python -m benchmarks.{name}) | | | | | | |")
            continue
        for r in json.loads(path.read_text())["rows"]:
            limit = ""
            if "limit_fraction" in r:
                limit = (
                    f"{fraction(r['limit_fraction'])} / {fraction(r.get('peer_limit_fraction'))}"
                )
            lines.append(
                f"| {r['figure']} | {r['unit']} | {r['xpretrieval']:.2f} | {r['peer']} | "
                f"{r['peer_value']:.2f} | {r['ratio']:.2f} | {limit} |"
            )
    return "\n".join(lines)


if __name__ == "__main__":
    print(table())
