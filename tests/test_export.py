"""`export`: SPLADE documents as an Anserini JsonVectorCollection and queries as weighted-term
TSV, dense vectors as .npy; re-scoring the exported files reproduces the model's ranking up to
the quantisation, whose error is bounded and checked."""

from __future__ import annotations

import json
from collections import Counter

import numpy as np
import pytest
import torch

from tests.conftest import ROOT, TINY_BEIR, tiny_overrides
from tests.test_cli import cli
from xpretrieval.commands.compatibility import check_exportable
from xpretrieval.core.device import Precision
from xpretrieval.core.errors import ConfigError
from xpretrieval.data.collection import Collection
from xpretrieval.models import ColBERT, Dense, SparseEmbed, Splade
from xpretrieval.models.encoding import Batching
from xpretrieval.retrieval.export import ExportConfig, export_collection

CPU = torch.device("cpu")
SCALE = 100.0


def export(model, tmp_path):
    test = Collection.from_beir(TINY_BEIR, "test")
    folder = tmp_path / "export"
    settings = ExportConfig(scale=SCALE)
    export_collection(model, test, folder, settings, Batching(4), CPU, Precision.fp32)
    return test, folder


def test_sparse_export_re_scores_to_the_model_s_ranking(masked_lm_dir, tmp_path):
    model = Splade(name_or_path=str(masked_lm_dir), doc_max_length=32).build()
    test, folder = export(model, tmp_path)
    vocabulary = model.tokenizer.get_vocab()
    documents = [json.loads(line) for line in (folder / "corpus" / "docs.jsonl").open()]
    assert {d["id"] for d in documents} == set(test.documents)
    assert all(
        d["contents"] == "" and all(isinstance(w, int) for w in d["vector"].values())
        for d in documents
    )
    queries = dict(line.rstrip("\n").split("\t") for line in (folder / "queries.tsv").open())
    assert list(queries) == list(test.queries)
    doc_ids = [d["id"] for d in documents]
    exported_docs = torch.zeros(len(documents), len(vocabulary))
    for row, document in enumerate(documents):
        for token, impact in document["vector"].items():
            exported_docs[row, vocabulary[token]] = impact
    with torch.no_grad():
        doc_reps = model.forward_documents([test.documents[i] for i in doc_ids])
        query_reps = model.forward_queries(list(test.queries.values()))
    for query_rep, words in zip(query_reps, queries.values(), strict=True):
        counts = torch.zeros(len(vocabulary))
        for token, count in Counter(words.split()).items():
            counts[vocabulary[token]] = count
        exported = exported_docs @ counts / SCALE**2
        exact = doc_reps @ query_rep
        # |q'd' - qd| <= (0.5 / scale) * sum over the terms either side uses of (q + d')
        used = (query_rep > 0) | (doc_reps > 0) | (exported_docs > 0)
        bound = 0.5 / SCALE * ((query_rep + exported_docs / SCALE) * used).sum(dim=1)
        assert ((exported - exact).abs() <= bound + 1e-6).all()
        order = exact.argsort(descending=True)  # rankings agree but for near-ties
        for a, b in zip(order[:-1], order[1:], strict=True):
            if exported[a] < exported[b]:
                assert exact[a] - exact[b] <= bound[a] + bound[b] + 1e-6


def test_dense_export_writes_vectors_with_their_ids(tiny_model_dir, tmp_path):
    model = Dense(name_or_path=str(tiny_model_dir), normalize=True).build()
    test, folder = export(model, tmp_path)
    ids = (folder / "documents.ids").read_text().split()
    vectors = np.load(folder / "documents.npy")
    with torch.no_grad():
        expected = model.forward_documents([test.documents[i] for i in ids])
    assert vectors.dtype == np.float32 and np.allclose(vectors, expected.numpy(), atol=1e-6)
    assert np.load(folder / "queries.npy").shape[0] == len(
        (folder / "queries.ids").read_text().split()
    )
    assert json.loads((folder / "export.json").read_text())["kind"] == "dense"


def test_a_model_without_single_vectors_or_term_weights_is_refused_before_loading(tmp_path):
    # no such checkpoint: the check reads the config's model kind, never the weights
    with pytest.raises(ConfigError, match="export takes SPLADE"):
        check_exportable(ColBERT(name_or_path="someone/colbert"))
    with pytest.raises(ConfigError, match="export takes SPLADE"):
        check_exportable(SparseEmbed(name_or_path="someone/sparse-embed"))


def test_export_through_the_cli(masked_lm_dir, tmp_path):
    overrides = [
        o for o in tiny_overrides(masked_lm_dir) if not o.startswith(("trainer", "batcher"))
    ]
    result = cli("export", "model=splade", *overrides, f"hydra.run.dir={tmp_path}", cwd=ROOT)
    assert result.returncode == 0, result.stderr[-3000:]
    assert (tmp_path / "export" / "corpus" / "docs.jsonl").is_file()
    assert "Exported tiny_beir/test (sparse)" in result.stdout
