"""The training toolbox beyond the common recipes: SimCSE pairs, the ArcFace margin, layer-wise
learning-rate decay and prompts; each checked by hand and run end to end on the tiny fixture."""

from __future__ import annotations

import itertools
import json
import math

import pytest
import torch

import xpretrieval
from tests import inprocess
from tests.conftest import TINY_BEIR, tiny_overrides
from xpretrieval.core.errors import ConfigError
from xpretrieval.core.hooks import TrainState
from xpretrieval.data.collection import Collection
from xpretrieval.losses import BatchScores, InfoNCE
from xpretrieval.losses.arcface import ArcFace
from xpretrieval.models import Dense
from xpretrieval.samplers.simcse import SimCSESampler
from xpretrieval.training import AdamW, BatchwiseTrainer, Learner
from xpretrieval.training.batchers import MicroBatcher
from xpretrieval.training.optim import layer_depths


@pytest.fixture(scope="module")
def train_split() -> Collection:
    return Collection.from_beir(TINY_BEIR, "train")


# --- SimCSE ---------------------------------------------------------------------------------


def test_simcse_pairs_each_text_with_itself_once_per_epoch(train_split):
    sampler = SimCSESampler(queries=True)
    size = sampler.epoch_size(train_split)
    assert size == len(train_split.documents) + len(train_split.queries)
    epoch = list(itertools.islice(sampler.records(train_split, seed=1), size))
    assert all(r.query == r.positive and not r.negatives for r in epoch)
    ids = [r.query.id for r in epoch]
    assert len(set(ids)) == size  # every text once, query ids kept apart from document ids
    assert sum(i.startswith("query:") for i in ids) == len(train_split.queries)
    with pytest.raises(Exception, match="SimCSE needs at least 2 texts of 10000"):
        SimCSESampler(min_length=10_000).epoch_size(train_split)


def test_simcse_copies_differ_by_dropout_and_are_replayed_exactly(tiny_model_dir, train_split):
    model = Dense(name_or_path=str(tiny_model_dir), query_max_length=32, doc_max_length=32)
    learner = Learner(
        model=model.build(),
        collection=train_split,
        sampler=SimCSESampler(),
        batcher=MicroBatcher(batch_size=4, micro=2),
        trainer=BatchwiseTrainer(max_steps=1),
        losses={"rank": InfoNCE()},
        optimizer=AdamW(),
        seed=0,
    )
    passes: dict[str, list[torch.Tensor]] = {"forward_queries": [], "forward_documents": []}
    for name, seen in passes.items():
        forward = getattr(learner.model, name)

        def recording(texts, forward=forward, seen=seen):
            reps = forward(texts)
            seen.append(reps.detach().clone())
            return reps

        setattr(learner.model, name, recording)
    learner.model.train()
    batch = list(itertools.islice(SimCSESampler().records(train_split, seed=0), 4))
    learner.compute_gradients(batch)
    queries, documents = passes["forward_queries"], passes["forward_documents"]
    assert len(queries) == 4  # two micro-batches, then their replay with gradients
    assert torch.equal(queries[0], queries[2]) and torch.equal(documents[1], documents[3])
    assert not torch.allclose(queries[0], documents[0])  # same texts, other dropout masks


def test_simcse_experiment_trains_end_to_end(tiny_model_dir, tmp_path):
    overrides = [o for o in tiny_overrides(tiny_model_dir) if "query_max_length" not in o]
    inprocess.train(
        ["+experiment=simcse", *overrides, "sampler.min_length=2", "trainer.max_steps=2"],
        tmp_path,
    )
    config = (tmp_path / "config.yaml").read_text()
    assert "query_max_length: 32" in config  # both copies as long as each other
    assert json.loads((tmp_path / "metrics.json").read_text())["aggregate"]["nDCG@10"] >= 0


# --- ArcFace --------------------------------------------------------------------------------


def scored(cosines: list[list[float]]) -> BatchScores:
    scores = torch.tensor(cosines, dtype=torch.float64)
    rows = torch.arange(len(scores))
    return BatchScores(scores, targets=rows, owners=torch.arange(scores.shape[1]) % len(rows))


def test_arcface_adds_the_margin_to_the_positive_angle_only():
    loss = ArcFace(scale=10.0, margin=0.3, mask_false_negatives=False)
    batch = scored([[0.8, 0.1], [0.2, 0.6]])
    # query 0: positive at angle acos(0.8); its logit is 10 cos(acos(0.8) + 0.3), the other 10 * 0.1
    positive = [10 * math.cos(math.acos(0.8) + 0.3), 10 * math.cos(math.acos(0.6) + 0.3)]
    negative = [10 * 0.1, 10 * 0.2]
    expected = (
        sum(
            -p + math.log(math.exp(p) + math.exp(n))
            for p, n in zip(positive, negative, strict=True)
        )
        / 2
    )
    assert loss(batch).item() == pytest.approx(expected, rel=1e-12)
    unmargined = InfoNCE(scale=10.0, mask_false_negatives=False)(batch).item()
    assert ArcFace(scale=10.0, margin=0.0, mask_false_negatives=False)(batch).item() == (
        pytest.approx(unmargined, rel=1e-12)
    )
    assert loss(batch).item() > unmargined  # the margin makes each positive harder


def test_arcface_past_pi_keeps_falling_and_easy_margin_spares_negative_cosines():
    batch = scored([[-0.99, 0.0]])  # theta = acos(-0.99) = 3.00 rad: theta + 0.5 is past pi
    logits = ArcFace(scale=1.0, margin=0.5).logits(batch)
    assert logits[0, 0].item() == pytest.approx(-0.99 - 0.5 * math.sin(0.5), rel=1e-12)
    easy = ArcFace(scale=1.0, margin=0.5, easy_margin=True).logits(batch)
    assert easy[0, 0].item() == pytest.approx(-0.99, rel=1e-12)  # cos(theta) <= 0: no margin


def test_arcface_margin_warms_up_through_its_hook():
    loss = ArcFace(margin=0.4, margin_warmup_steps=4)
    (hook,) = loss.hooks("rank")
    assert hook.key == "MarginWarmup:rank" and loss.current_margin == pytest.approx(0.1)
    hook.on_step_end(TrainState(step=2, max_steps=10, epoch=0.0))
    assert loss.current_margin == pytest.approx(0.3)  # the margin of step 3
    assert ArcFace().hooks("rank") == []


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["model.normalize=false"], "ArcFace reads scores as cosines, which a Dense model's"),
        (["model=splade"], "ArcFace reads single \\[n, dim\\] vectors"),
    ],
)
def test_arcface_is_refused_without_cosine_scores(overrides, message, tiny_model_dir):
    # a plain transformers checkpoint: no saved Normalize for model.normalize=false to contradict
    model = [] if "model=splade" in overrides else [f"model.name_or_path={tiny_model_dir}"]
    with pytest.raises(ConfigError, match=message):
        xpretrieval.configure(["loss@losses.rank=arcface", *overrides, *model])


def test_arcface_trains_end_to_end(tiny_model_dir, tmp_path):
    overrides = [*tiny_overrides(tiny_model_dir), "trainer.max_steps=2"]
    run = ["loss@losses.rank=arcface", "losses.rank.margin_warmup_steps=2", *overrides]
    metrics = xpretrieval.train_from_overrides(run, tmp_path)
    assert 0 <= metrics["nDCG@10"] <= 1


# --- layer-wise learning-rate decay ---------------------------------------------------------


def test_layer_decay_gives_lower_layers_lower_rates(tiny_model_dir):
    model = Dense(name_or_path=str(tiny_model_dir)).build()  # a 2-layer BERT
    optimizer, _ = AdamW(lr=1e-3, layer_decay=0.5, warmup_ratio=0.0).build(model, 10)
    rate_of = {id(p): group["lr"] for group in optimizer.param_groups for p in group["params"]}
    named = dict(model.named_parameters())
    # 2 layers: embeddings 1e-3 * 0.5^3, layer 0 * 0.5^2, layer 1 * 0.5, the pooler at 1e-3
    expected = {
        "query_encoder.embeddings.word_embeddings.weight": 1e-3 / 8,
        "query_encoder.encoder.layer.0.attention.self.query.weight": 1e-3 / 4,
        "query_encoder.encoder.layer.1.output.dense.weight": 1e-3 / 2,
        "query_encoder.pooler.dense.weight": 1e-3,
    }
    for name, rate in expected.items():
        assert rate_of[id(named[name])] == pytest.approx(rate), name
    assert len(rate_of) == len(named)  # every parameter is in exactly one group
    decay = {g["weight_decay"] for g in optimizer.param_groups if g["lr"] == pytest.approx(1e-3)}
    assert decay == {0.0, 0.01}  # weight decay still spares biases and norms
    plain, _ = AdamW(lr=1e-3).build(model, 10)
    assert {group["initial_lr"] for group in plain.param_groups} == {1e-3}  # before warm-up


def test_layer_depths_read_other_encoders_names():
    depths = layer_depths(
        ["model.embed_tokens.weight", "model.layers.0.mlp.weight", "model.layers.11.mlp.weight"]
        + ["model.norm.weight", "lm_head.weight"]
    )
    assert list(depths.values()) == [0, 1, 12, 13, 13]
    with pytest.raises(ValueError, match="layer_decay must be in"):
        AdamW(layer_decay=1.5)


# --- prompts --------------------------------------------------------------------------------


def test_prompts_prefix_every_text_and_travel_with_the_model(tiny_model_dir, tmp_path):
    prompted = Dense(
        name_or_path=str(tiny_model_dir), query_prompt="honey ", document_prompt="lava "
    ).build()
    plain = Dense(name_or_path=str(tiny_model_dir)).build()
    with torch.no_grad():
        assert torch.equal(
            prompted.forward_queries(["bees"]), plain.forward_queries(["honey bees"])
        )
        assert torch.equal(
            prompted.forward_documents(["flows"]), plain.forward_documents(["lava flows"])
        )
    prompted.save(tmp_path / "model")
    settings = json.loads((tmp_path / "model" / "config_sentence_transformers.json").read_text())
    assert settings["prompts"] == {"query": "honey ", "document": "lava "}
    reloaded = xpretrieval.load(tmp_path / "model", device="cpu")
    assert (reloaded.config.query_prompt, reloaded.config.document_prompt) == ("honey ", "lava ")
    with pytest.raises(ConfigError, match="saved with query_prompt=honey , document_prompt=lava"):
        Dense(name_or_path=str(tmp_path / "model")).build()  # would silently drop the prompts
    (tmp_path / "model" / "xpretrieval_model.yaml").unlink()  # only sentence-transformers' files
    from_layout = xpretrieval.load(tmp_path / "model", device="cpu")
    assert from_layout.config.document_prompt == "lava "

    from sentence_transformers import SentenceTransformer

    theirs = SentenceTransformer(str(tmp_path / "model"), device="cpu")
    ours = prompted.encode_queries(["bees"])
    assert torch.allclose(torch.as_tensor(theirs.encode_query(["bees"])), ours, atol=1e-5)


def test_prompts_reach_training_and_evaluation(tiny_model_dir, tmp_path):
    run = [*tiny_overrides(tiny_model_dir), "trainer.max_steps=2"]
    run += ["model.query_prompt='query: '", "model.document_prompt='passage: '"]
    xpretrieval.train_from_overrides(run, tmp_path)
    saved = (tmp_path / "checkpoints" / "step-0000002" / "xpretrieval_model.yaml").read_text()
    assert "query_prompt: 'query: '" in saved and "document_prompt: 'passage: '" in saved


# --- the additions together, end to end (the CLI's code, in this process) ---------------------


def test_inference_free_splade_in_rounds_with_layer_decay_and_prompts_end_to_end(
    masked_lm_dir, tmp_path
):
    inprocess.train(
        [
            "+experiment=inference_free_splade",
            *tiny_overrides(masked_lm_dir),
            "trainer.max_steps=2",
            "precision=fp32",
            "rounds=2",
            "sampler.hard_negatives.top_k=5",
            "optimizer.layer_decay=0.8",
            "model.document_prompt='passage: '",
        ],
        tmp_path,
    )
    rounds = json.loads((tmp_path / "rounds.json").read_text())
    assert [row["round"] for row in rounds] == [1, 2]
    saved = tmp_path / "round-2" / "checkpoints" / "step-0000002"
    assert (saved / "query" / "model.safetensors").is_file()  # SparseStaticEmbedding's
    assert "document_prompt: 'passage: '" in (saved / "xpretrieval_model.yaml").read_text()


def test_an_llm_with_lora_and_the_arcface_margin_end_to_end(tiny_decoder_dir, tmp_path):
    inprocess.train(
        [
            "+experiment=llm_lora",
            "loss@losses.rank=arcface",
            f"model.name_or_path={tiny_decoder_dir}",
            "model.doc_max_length=32",
            "dataset=beir_folder",
            f"dataset.train.beir_folder={TINY_BEIR}",
            "trainer.max_steps=2",
            "evaluation.top_k=10",
            "precision=fp32",
            "device=cpu",
        ],
        tmp_path,
    )
    assert (tmp_path / "checkpoints" / "step-0000002" / "adapter_config.json").is_file()
    config = (tmp_path / "config.yaml").read_text()
    assert "margin: 0.5" in config and "lora_rank: 8" in config
