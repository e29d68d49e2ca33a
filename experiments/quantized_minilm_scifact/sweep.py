"""nDCG@10 against bytes per document of a dense model of 384 dimensions (all-MiniLM-L6-v2
zero-shot by default) on SciFact test, for every index.quantization x index.dims x
index.rescore below, from ONE encoding of the collection: what `python -m xpretrieval
evaluate precision=fp32 index=quantized ...` measures for each (the runs encode the same
documents again each time), in the time of one run.

    python experiments/quantized_minilm_scifact/sweep.py
    python experiments/quantized_minilm_scifact/sweep.py model.name_or_path=<a checkpoint>

Overrides on the command line configure the model as `evaluate` would (a trained checkpoint);
a checkpoint trained for one precision (`model.quantization`) needs `model.quantization=none`
to be searched at every precision.
"""

from __future__ import annotations

import argparse
import time

import torch

import xpretrieval
from xpretrieval.evaluation.measures import compute_metrics
from xpretrieval.retrieval.quantized import Quantized

SETTINGS = [  # (quantization, dims, rescore)
    *((q, d, "none") for q in ("none", "int8", "binary") for d in (384, 256, 128, 64)),
    ("int8", 384, "full"),
    ("binary", 384, "quantized"),
    ("binary", 384, "full"),
    ("binary", 128, "full"),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("overrides", nargs="*", help="Hydra overrides, as for evaluate")
    arguments = parser.parse_args()
    experiment = xpretrieval.configure(["precision=fp32", *arguments.overrides], command="evaluate")
    settings, precision = experiment.evaluation, experiment.precision
    collection = experiment.dataset.test.load()
    model = experiment.model.build()
    start = time.perf_counter()
    batching = dict(batch_size=settings.batch_size, precision=precision)
    documents = model.encode_documents(list(collection.document_texts()), **batching)
    queries = model.encode_queries(list(collection.queries.values()), **batching)
    encoded = time.perf_counter() - start
    doc_ids, query_ids = list(collection.documents), list(collection.queries)
    print("| quantization | dims | rescore | bytes/doc | nDCG@10 | R@100 | recall@1000 vs fp32 |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    exact_rows = None  # float32 at every dimension: exact search, what the others are held to
    for quantization, dims, rescore in [("none", None, "none"), *SETTINGS]:
        index = Quantized(quantization=quantization, dims=dims, rescore=rescore)
        index = index.fitted(experiment.model)
        rows_in = [(torch.arange(len(documents)), documents)]
        searcher = index.build(rows_in, len(documents), model.score)
        scores, rows = searcher.search(queries, settings.top_k)
        if exact_rows is None:
            exact_rows = rows
            continue
        overlap = (
            sum(
                len(set(a) & set(b))
                for a, b in zip(rows.tolist(), exact_rows.tolist(), strict=True)
            )
            / exact_rows.numel()
        )
        run = {
            query_id: [
                (doc_ids[r], s) for r, s in zip(rows[i].tolist(), scores[i].tolist(), strict=True)
            ]
            for i, query_id in enumerate(query_ids)
        }
        measured = compute_metrics(run, collection.qrels, ["nDCG@10", "R@100"]).aggregate
        size = searcher.statistics()["bytes_per_document"]
        print(
            f"| {quantization} | {dims} | {rescore} | {size:g} | {measured['nDCG@10']:.4f} | "
            f"{measured['R@100']:.4f} | {overlap:.3f} |"
        )
    print(f"\nEncoding {len(documents)} documents and {len(queries)} queries: {encoded:.0f} s")


if __name__ == "__main__":
    main()
