"""Padding-free encoding (models/packing.py): a padded batch's real tokens run as one packed
row give the padded pass's representations and gradients, in training (through the dropout
attention) and in evaluation (through SDPA), and only models it is known to be right for pack."""

from __future__ import annotations

import pytest
import torch

from xpretrieval.models import Dense, Splade, attention, dropout, packing

TEXTS = [  # lengths 3 to 10 words: most of the batch is padding for the short ones
    "honey bees",
    "honey bees pollinate flowering plants and crops in spring",
    "flowering plants",
]


def without_drops(shape, rate, out=None):  # noqa: ANN001, ANN201
    """Dropout that drops nothing but still scales: the same computation in both passes."""
    kept = torch.zeros(shape, dtype=torch.bool)
    return kept if out is None else out.copy_(kept)


def save_tiny(folder, tokenizer_dir, kind: str):  # noqa: ANN001, ANN201
    """A randomly initialised 2-layer encoder of `kind` with the tiny BERT's tokenizer."""
    import transformers
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    sizes = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2}
    configs = {
        "distilbert": ("DistilBert", {"dim": 32, "n_layers": 2, "n_heads": 2, "hidden_dim": 64}),
        # fairseq position ids: the padding id + 1 first, so more positions than BERT's
        "roberta": ("Roberta", {**sizes, "intermediate_size": 64, "max_position_embeddings": 130}),
        "xlm-roberta": ("XLMRoberta", {**sizes, "intermediate_size": 64}),
    }
    prefix, fields = configs[kind]
    config = getattr(transformers, f"{prefix}Config")(
        vocab_size=tokenizer.vocab_size, pad_token_id=tokenizer.pad_token_id, **fields
    )
    torch.manual_seed(4)
    getattr(transformers, f"{prefix}Model")(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def representations_and_gradients(model, train: bool, packed: bool, monkeypatch):  # noqa: ANN001, ANN201
    monkeypatch.setattr(packing, "PACKABLE_TYPES", packing.PACKABLE_TYPES if packed else set())
    model.train(train)
    model.zero_grad(set_to_none=True)
    with torch.set_grad_enabled(train):
        reps = model.forward_documents(TEXTS)
    if not train:
        return [reps]
    (reps * torch.linspace(-1, 1, reps.numel()).view(reps.shape)).sum().backward()
    return [reps.detach()] + [p.grad.clone() for p in model.parameters() if p.grad is not None]


@pytest.mark.parametrize("train", [True, False], ids=["training", "evaluation"])
@pytest.mark.parametrize("kind", ["bert", "distilbert", "roberta", "xlm-roberta", "splade"])
def test_packed_pass_equals_the_padded_one(
    tiny_model_dir, masked_lm_dir, tmp_path, monkeypatch, train, kind
):
    for module in (attention, dropout):  # dropout rates > 0, but the same draws either way
        monkeypatch.setattr(module, "bernoulli_mask", without_drops)
    if kind == "splade":
        model = Splade(name_or_path=str(masked_lm_dir)).build()
    elif kind == "bert":
        model = Dense(name_or_path=str(tiny_model_dir)).build()
    else:
        model = Dense(name_or_path=str(save_tiny(tmp_path, tiny_model_dir, kind))).build()
    assert model.query_encoder.config.model_type in packing.PACKABLE_TYPES
    hf_config = model.query_encoder.config
    names = ("attention_probs_dropout_prob", "attention_dropout")  # BERT's, DistilBERT's
    assert all(getattr(hf_config, name, 1) > 0 for name in names)
    packed = representations_and_gradients(model, train, True, monkeypatch)
    padded = representations_and_gradients(model, train, False, monkeypatch)
    assert len(packed) == len(padded) > (2 if train else 0)
    for got, expected in zip(packed, padded, strict=True):
        torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


def test_only_padded_batches_of_known_model_types_are_packed(
    tiny_model_dir, tiny_decoder_dir, monkeypatch
):
    runs = []
    run_packed = packing.run_packed

    def counted(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        runs.append(1)
        return run_packed(*args, **kwargs)

    monkeypatch.setattr(packing, "run_packed", counted)
    model = Dense(name_or_path=str(tiny_model_dir)).build().eval()
    with torch.no_grad():
        model.forward_documents(TEXTS)
        assert runs == [1]
        model.forward_documents(["honey bees", "flowering plants"])  # no padding: nothing to skip
        assert runs == [1]
        decoder = Dense(name_or_path=str(tiny_decoder_dir), pooling="last", append_eos=True)
        decoder.build().eval().forward_documents(TEXTS)
        assert runs == [1]
