"""Round trip with sentence-transformers: what xpretrieval saves loads in `SentenceTransformer`,
`SparseEncoder` and `CrossEncoder` and computes the same numbers; what they save loads here."""

from __future__ import annotations

import pytest
import torch
from sentence_transformers import CrossEncoder as STCrossEncoder
from sentence_transformers import SentenceTransformer, SparseEncoder
from sentence_transformers.base.modules import Normalize, Transformer
from sentence_transformers.sentence_transformer.modules import Pooling as STPooling
from sentence_transformers.sparse_encoder.modules import SpladePooling

from xpretrieval import load
from xpretrieval.core.errors import ConfigError
from xpretrieval.models import (
    CrossEncoder,
    Dense,
    DenseEncoder,
    Pooling,
    SparsePooling,
    Splade,
    SpladeEncoder,
)

TEXTS = ["honey bees pollinate flowering plants", "volcanoes erupt molten lava, ash and gas"]


@pytest.mark.parametrize(("pooling", "normalize"), [("mean", True), ("cls", False)])
def test_a_saved_dense_model_loads_in_sentence_transformers(
    tiny_model_dir, tmp_path, pooling, normalize
):
    config = Dense(
        name_or_path=str(tiny_model_dir),
        pooling=Pooling[pooling],
        normalize=normalize,
        doc_max_length=24,
    )
    ours = config.build()
    ours.save(tmp_path)
    theirs = SentenceTransformer(str(tmp_path), device="cpu")
    assert theirs.max_seq_length == 24
    expected = ours.forward_documents(TEXTS)
    got = theirs.encode(TEXTS, convert_to_tensor=True)
    assert torch.allclose(got, expected, atol=1e-5)
    assert theirs.similarity_fn_name == ("cosine" if normalize else "dot")


def test_a_saved_splade_model_loads_in_sparse_encoder(masked_lm_dir, tmp_path):
    ours = Splade(
        name_or_path=str(masked_lm_dir), pooling=SparsePooling.sum, doc_max_length=24
    ).build()
    ours.save(tmp_path)
    theirs = SparseEncoder(str(tmp_path), device="cpu")
    got = theirs.encode(TEXTS, convert_to_tensor=True).to_dense()
    assert torch.allclose(got, ours.forward_documents(TEXTS), atol=1e-5)


def test_a_splade_model_without_special_tokens_writes_no_sparse_encoder_files(
    masked_lm_dir, tmp_path
):
    Splade(name_or_path=str(masked_lm_dir), exclude_special_tokens=True).build().save(tmp_path)
    assert not (tmp_path / "modules.json").exists()


def test_a_saved_cross_encoder_loads_in_sentence_transformers(masked_lm_dir, tmp_path):
    ours = CrossEncoder(name_or_path=str(masked_lm_dir)).build()
    ours.save(tmp_path)
    theirs = STCrossEncoder(str(tmp_path), device="cpu")
    pairs = [("honey bees", text) for text in TEXTS]
    got = theirs.predict(pairs, activation_fn=torch.nn.Identity(), convert_to_tensor=True)
    with torch.no_grad():
        expected = ours.score_texts(["honey bees"], TEXTS)[0]
    assert torch.allclose(got.float(), expected, atol=1e-5)


def test_a_folder_saved_by_sentence_transformers_loads_with_its_pooling(tiny_model_dir, tmp_path):
    theirs = SentenceTransformer(
        modules=[
            Transformer(str(tiny_model_dir), max_seq_length=20),
            STPooling(32, pooling_mode="cls"),
            Normalize(),
        ],
        device="cpu",
    )
    theirs.save(str(tmp_path))
    ours = load(tmp_path)
    assert (ours.config.pooling, ours.config.normalize, ours.config.doc_max_length) == (
        Pooling.cls,
        True,
        20,
    )
    expected = theirs.encode(TEXTS, convert_to_tensor=True)
    assert torch.allclose(ours.forward_documents(TEXTS), expected, atol=1e-5)
    with pytest.raises(
        ConfigError, match="saved with pooling=cls but the config asks for pooling=mean"
    ):
        Dense(name_or_path=str(tmp_path), pooling=Pooling.mean, normalize=True).build()
    splade = Splade(name_or_path=str(tmp_path)).build()  # a dense model as SPLADE's base
    assert splade.forward_documents(TEXTS).shape[1] == len(splade.tokenizer)


def test_a_sparse_encoder_folder_loads_as_splade(masked_lm_dir, tmp_path):
    theirs = SparseEncoder(
        modules=[
            Transformer(str(masked_lm_dir), transformer_task="fill-mask", max_seq_length=20),
            SpladePooling("max"),
        ],
        device="cpu",
    )
    theirs.save(str(tmp_path))
    ours = load(tmp_path)
    assert ours.config.pooling is SparsePooling.max and not ours.config.exclude_special_tokens
    expected = theirs.encode(TEXTS, convert_to_tensor=True).to_dense()
    assert torch.allclose(ours.forward_documents(TEXTS), expected, atol=1e-5)


def test_load_picks_the_kind_of_every_layout(tiny_model_dir, masked_lm_dir, tmp_path):
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    import xpretrieval
    from xpretrieval.models import CrossEncoderModel, SparseEmbed, SparseEmbedEncoder

    assert type(xpretrieval.load(tiny_model_dir)) is DenseEncoder  # plain encoder: mean pooling
    assert type(xpretrieval.load(masked_lm_dir)) is SpladeEncoder  # masked LM: naver/splade's
    classifier = tmp_path / "classifier"
    config = BertConfig.from_pretrained(tiny_model_dir, num_labels=1)
    BertForSequenceClassification(config).save_pretrained(classifier)
    AutoTokenizer.from_pretrained(tiny_model_dir).save_pretrained(classifier)
    assert type(xpretrieval.load(classifier)) is CrossEncoderModel
    saved = tmp_path / "sparse-embed"
    SparseEmbed(name_or_path=str(masked_lm_dir), embedding_dim=8).build().save(saved)
    loaded = xpretrieval.load(saved)  # xpretrieval's own file names the kind and settings
    assert type(loaded) is SparseEmbedEncoder and loaded.config.embedding_dim == 8
    dense = tmp_path / "dense"
    Dense(name_or_path=str(tiny_model_dir), pooling=Pooling.max).build().save(dense)
    (dense / "xpretrieval_model.yaml").unlink()  # only the sentence-transformers files remain
    assert xpretrieval.load(dense).config.pooling is Pooling.max


@pytest.mark.shared_data
def test_all_minilm_from_the_hub_cache_encodes_as_sentence_transformers():
    import xpretrieval

    name = "sentence-transformers/all-MiniLM-L6-v2"
    ours = xpretrieval.load(name)
    assert (ours.config.pooling, ours.config.normalize, ours.config.doc_max_length) == (
        Pooling.mean,
        True,
        256,
    )
    theirs = SentenceTransformer(name, device="cpu").encode(TEXTS, convert_to_tensor=True)
    assert torch.allclose(ours.forward_documents(TEXTS), theirs, atol=1e-5)


def test_separate_query_and_document_encoders_round_trip_as_a_router(tiny_model_dir, tmp_path):
    import xpretrieval

    config = Dense(
        name_or_path=str(tiny_model_dir), shared=False, query_max_length=8, doc_max_length=24
    )
    ours = config.build()
    with torch.no_grad():  # make the two encoders differ, as training would
        for parameter in ours.document_encoder.parameters():
            parameter.add_(0.01 * torch.randn_like(parameter))
    ours.save(tmp_path)
    theirs = SentenceTransformer(str(tmp_path), device="cpu")
    with torch.no_grad():
        queries, documents = ours.forward_queries(TEXTS), ours.forward_documents(TEXTS)
    assert torch.allclose(theirs.encode_query(TEXTS, convert_to_tensor=True), queries, atol=1e-5)
    assert torch.allclose(
        theirs.encode_document(TEXTS, convert_to_tensor=True), documents, atol=1e-5
    )
    assert not torch.allclose(queries, documents, atol=1e-3)  # the sides are told apart
    (tmp_path / "xpretrieval_model.yaml").unlink()  # only the sentence-transformers files
    loaded = xpretrieval.load(tmp_path)
    assert not loaded.config.shared and loaded.max_query_length == 8
    assert torch.allclose(loaded.forward_documents(TEXTS), documents, atol=1e-5)
    with pytest.raises(ConfigError, match="saved with shared=false but the config asks for"):
        Dense(name_or_path=str(tmp_path)).build()


@pytest.mark.shared_data
def test_splade_starts_from_the_dense_all_minilm_checkpoint():
    splade = Splade(name_or_path="sentence-transformers/all-MiniLM-L6-v2", doc_max_length=32)
    assert splade.build().forward_documents(TEXTS).shape == (2, 30522)
