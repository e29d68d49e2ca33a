"""Corpus encoding, dense and SPLADE: documents/s of xpretrieval against sentence-transformers'
`SentenceTransformer.encode` / `SparseEncoder.encode`, in one run on the same model (for
SPLADE, the same masked-LM head weights: ours is saved first and the peer loads that folder),
texts, batch size, length and precision, as medians of passes taken in turns; how far the two
frameworks' outputs are apart; and the fraction of the machine's matmul rate each reaches (the
roofline).
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import tempfile
import time
from collections.abc import Callable

import torch
from transformers import AutoConfig, AutoTokenizer

from benchmarks.common import (
    DEVICE,
    MODEL,
    matmul_gflops,
    precisions,
    row,
    synchronize,
    transformer_flops,
    write_result,
)
from xpretrieval.core.device import Precision, autocast
from xpretrieval.data import Split
from xpretrieval.models import Dense, Splade
from xpretrieval.models.encoding import Batching, encode_texts

PEERS = {"dense": "SentenceTransformer.encode", "splade": "SparseEncoder.encode"}


def rates(
    encoders: dict[str, Callable[[list[str]], torch.Tensor]], texts: list[str], repeats: int
) -> tuple[dict[str, float], dict[str, torch.Tensor]]:
    """Each encoder's median documents/s over `repeats` passes on `texts`, the encoders taking
    turns (so that a busier moment of a shared machine falls on both), after one warm-up
    pass each; and the vectors of each one's last pass."""
    seconds: dict[str, list[float]] = {name: [] for name in encoders}
    vectors = {name: encode(texts[: len(texts) // 2 or 1]) for name, encode in encoders.items()}
    for _ in range(repeats):
        for name, encode in encoders.items():
            synchronize()
            start = time.perf_counter()
            vectors[name] = encode(texts)
            synchronize()
            seconds[name].append(time.perf_counter() - start)
    return {name: len(texts) / statistics.median(s) for name, s in seconds.items()}, vectors


def encoding(
    kind: str,
    texts: list[str],
    model: str,
    batch_size: int,
    length: int,
    precision: Precision,
    repeats: int = 5,
) -> dict[str, float]:
    """Documents/s of each framework, their ratio and the largest disagreement: for dense
    vectors 1 - the smallest cosine, for SPLADE the largest term-weight difference."""
    with tempfile.TemporaryDirectory() as folder:
        if kind == "dense":
            from sentence_transformers import SentenceTransformer

            ours = (
                Dense(name_or_path=model, normalize=True, doc_max_length=length)
                .build()
                .to(DEVICE)
                .eval()
            )
            theirs = SentenceTransformer(model, device=str(DEVICE))
        else:
            from sentence_transformers import SparseEncoder

            ours = Splade(name_or_path=model, doc_max_length=length).build().to(DEVICE).eval()
            ours.save(folder)  # a SparseEncoder folder too (MLMTransformer + SpladePooling)
            theirs = SparseEncoder(folder, device=str(DEVICE))
        theirs.max_seq_length = length
        encoder = ours.text_encoder(is_query=False)

        def mine(batch: list[str]) -> torch.Tensor:
            return encode_texts(encoder, batch, Batching(batch_size), DEVICE, precision)

        def peer(batch: list[str]) -> torch.Tensor:
            with autocast(DEVICE, precision):
                out = theirs.encode(batch, batch_size=batch_size, convert_to_tensor=True)
            return out.to_dense().float() if kind == "splade" else out.float()

        rate, vectors = rates({"ours": mine, "peer": peer}, texts, repeats)
    return {
        "xpretrieval_docs_per_second": rate["ours"],
        "peer_docs_per_second": rate["peer"],
        "ratio": rate["ours"] / rate["peer"],
        "disagreement": disagreement(kind, vectors["ours"], vectors["peer"]),
    }


def disagreement(kind: str, vectors: torch.Tensor, reference: torch.Tensor) -> float:
    """Dense: 1 - the smallest cosine; SPLADE: the largest term-weight difference."""
    if kind == "dense":
        return 1 - torch.nn.functional.cosine_similarity(vectors, reference).min().item()
    return (vectors - reference).abs().max().item()


def document_flops(kind: str, texts: list[str], model: str, length: int) -> float:
    """Mean forward FLOPs per document, from the documents' token counts."""
    ids = AutoTokenizer.from_pretrained(model)(texts, truncation=True, max_length=length)
    lengths = [len(row) for row in ids["input_ids"]]
    config = AutoConfig.from_pretrained(model)
    return transformer_flops(config, lengths, vocab_head=kind == "splade") / len(texts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default=MODEL)
    parser.add_argument("--documents", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--length", type=int, default=256)
    args = parser.parse_args()
    collection = Split(ir_datasets="beir/scifact/test").load()
    texts = list(itertools.islice(collection.documents.values(), args.documents))
    figures, rows = {}, []
    for precision in precisions():
        gflops = matmul_gflops(precision)
        for kind in ("dense", "splade"):
            settings = (args.model, args.batch_size, args.length, precision, args.repeats)
            figure = encoding(kind, texts, *settings)
            ideal = gflops * 1e9 / document_flops(kind, texts, args.model, args.length)
            figure["limit_fraction"] = figure["xpretrieval_docs_per_second"] / ideal
            figure["peer_limit_fraction"] = figure["peer_docs_per_second"] / ideal
            figures[f"{kind}_encoding" + ("" if precision is Precision.fp32 else "_bf16")] = figure
            rows.append(
                row(
                    f"{kind} encoding, {precision.value}",
                    "docs/s",
                    figure["xpretrieval_docs_per_second"],
                    figure["peer_docs_per_second"],
                    PEERS[kind],
                    limit_fraction=figure["limit_fraction"],
                    peer_limit_fraction=figure["peer_limit_fraction"],
                    disagreement=figure["disagreement"],
                )
            )
    write_result("encoding", {"settings": vars(args), **figures, "rows": rows})


if __name__ == "__main__":
    main()
