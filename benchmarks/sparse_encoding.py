"""SPLADE corpus encoding: documents/s of xpretrieval against sentence-transformers'
`SparseEncoder.encode`, same run, same model (all-MiniLM-L6-v2 with a masked-LM head, the
same head weights for both), texts, batch size, length and precision (fp32), and how far the
two frameworks' term weights are apart. Writes benchmarks/results/sparse_encoding.json.
"""

from __future__ import annotations

import argparse
import itertools
import json
import tempfile
import time
from pathlib import Path

import torch

from xpretrieval.data import Split
from xpretrieval.models import Splade
from xpretrieval.models.encoding import encode_texts

MODEL = "sentence-transformers/all-MiniLM-L6-v2"
RESULTS = Path(__file__).parent / "results"


def encoding(texts: list[str], model: str, batch_size: int, length: int) -> dict[str, float]:
    """Documents/s of each framework (after a warm-up batch) and the largest difference
    between their term weights. Our model is saved first, so that both load the same head."""
    ours = Splade(name_or_path=model, doc_max_length=length).build().eval()
    cpu = torch.device("cpu")
    with tempfile.TemporaryDirectory() as folder:
        ours.save(folder)  # a SparseEncoder folder too (MLMTransformer + SpladePooling)
        from sentence_transformers import SparseEncoder

        theirs = SparseEncoder(folder, device="cpu")
        theirs.max_seq_length = length
        encode_texts(ours.forward_documents, texts[:batch_size], batch_size, cpu)  # warm-up
        start = time.perf_counter()
        mine = encode_texts(ours.forward_documents, texts, batch_size, cpu)
        ours_rate = len(texts) / (time.perf_counter() - start)
        theirs.encode(texts[:batch_size], batch_size=batch_size)
        start = time.perf_counter()
        other = theirs.encode(texts, batch_size=batch_size, convert_to_tensor=True)
        theirs_rate = len(texts) / (time.perf_counter() - start)
    difference = (mine - other.to_dense().float()).abs().max().item()
    return {
        "xpretrieval_docs_per_second": ours_rate,
        "sentence_transformers_docs_per_second": theirs_rate,
        "ratio": ours_rate / theirs_rate,
        "max_abs_difference": difference,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default=MODEL)
    parser.add_argument("--documents", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--length", type=int, default=256)
    args = parser.parse_args()
    collection = Split(ir_datasets="beir/scifact/test").load()
    texts = list(itertools.islice(collection.documents.values(), args.documents))
    figures = encoding(texts, args.model, args.batch_size, args.length)
    RESULTS.mkdir(exist_ok=True)
    result = {"settings": vars(args), "splade_encoding": figures}
    (RESULTS / "sparse_encoding.json").write_text(json.dumps(result, indent=2) + "\n")
    print(
        f"SPLADE encoding docs/s   xpretrieval {figures['xpretrieval_docs_per_second']:8.2f}   "
        f"sentence-transformers {figures['sentence_transformers_docs_per_second']:8.2f}   "
        f"ratio {figures['ratio']:.2f}   max |difference| {figures['max_abs_difference']:.1e}"
    )


if __name__ == "__main__":
    main()
