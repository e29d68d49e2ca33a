"""The `make bench` table: every row of benchmarks/results/*.json as one markdown table, ours
beside the peer, the ratio ours ÷ peer, the fraction of the machine's limit where known, and
the ceiling: the ratio a run at that limit would reach."""

from __future__ import annotations

import json
import platform

import torch

from benchmarks.common import RESULTS

ORDER = ("training", "encoding", "backends", "retrieval")  # the benchmarks, in the table's order


def decimals(value: float | None) -> str:
    return "" if value is None else f"{value:.2f}"


def table() -> str:
    device = f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads"
    if torch.cuda.is_available():  # training and encoding ran there (the limits are its own)
        device = f"{torch.cuda.get_device_name()} (training, encoding); {device}"
    lines = [
        f"{device}, torch {torch.__version__}",
        "",
        "| figure | unit | xpretrieval | peer | peer value | ratio | of limit (ours / peer) "
        "| ceiling |",
        "| --- | --- | ---: | --- | ---: | ---: | ---: | ---: |",
    ]
    for name in ORDER:
        path = RESULTS / f"{name}.json"
        if not path.is_file():
            lines.append(f"| {name}: not run (python -m benchmarks.{name}) | | | | | | | |")
            continue
        for r in json.loads(path.read_text())["rows"]:
            limit = ""
            if "limit_fraction" in r:
                ours, peer = r["limit_fraction"], r.get("peer_limit_fraction")
                limit = f"{decimals(ours)} / {decimals(peer)}"
            lines.append(
                f"| {r['figure']} | {r['unit']} | {r['xpretrieval']:.2f} | {r['peer']} | "
                f"{r['peer_value']:.2f} | {r['ratio']:.2f} | {limit} | "
                f"{decimals(r.get('ceiling'))} |"
            )
    return "\n".join(lines)


if __name__ == "__main__":
    print(table())
