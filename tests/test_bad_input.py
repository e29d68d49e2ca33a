"""Every bad input of the robustness checklist, one row each: the error (or warning) names the
config key or the file and line, and says what was expected. Then fuzzing: malformed BEIR
files and TREC runs are refused with a located DataError, never a traceback from deep inside."""

from __future__ import annotations

import json
import logging
import shutil
import string
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from hydra.errors import ConfigCompositionException, MissingConfigException
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from omegaconf.errors import ValidationError

from tests.conftest import TINY_BEIR, compose_config
from xpretrieval import configure
from xpretrieval.commands.experiment import load_experiment
from xpretrieval.commands.resume import check_resume_changes, last_checkpoint
from xpretrieval.commands.train import run_train
from xpretrieval.core.device import resolve_device
from xpretrieval.core.errors import ConfigError, DataError, ResourceError
from xpretrieval.core.io import write_json
from xpretrieval.data import Split
from xpretrieval.data.collection import Collection
from xpretrieval.data.run import read_trec_run
from xpretrieval.evaluation.measures import check_computable
from xpretrieval.models import Dense, Splade
from xpretrieval.samplers import PairwiseSampler


def config(*overrides: str) -> Callable[[Path], object]:
    return lambda tmp: configure(overrides)


def beir(edit: Callable[[Path], None], split: str = "train") -> Callable[[Path], object]:
    """Load a copy of the fixture after `edit` changed it."""

    def load(tmp: Path) -> object:
        folder = Path(shutil.copytree(TINY_BEIR, tmp / "beir"))
        edit(folder)
        return Collection.from_beir(folder, split)

    return load


def replace_line(name: str, number: int, text: str) -> Callable[[Path], None]:
    def edit(folder: Path) -> None:
        lines = (folder / name).read_text().splitlines()
        lines[number - 1] = text
        (folder / name).write_text("\n".join(lines) + "\n")

    return edit


def write(name: str, content: bytes) -> Callable[[Path], None]:
    return lambda folder: (folder / name).write_bytes(content)


def run_file(content: bytes) -> Callable[[Path], object]:
    def read(tmp: Path) -> object:
        (tmp / "run.trec").write_bytes(content)
        return read_trec_run(tmp / "run.trec")

    return read


def resumed_with_another_lr(tmp: Path) -> None:
    """Resume a run (its config.yaml, as `train` leaves it) with another learning rate."""
    from dataclasses import replace

    from xpretrieval.commands.run_dir import record_config

    experiment = configure(["trainer.max_steps=10"])
    record_config(tmp, experiment, None)
    changed = replace(experiment, optimizer=replace(experiment.optimizer, lr=1e-3))
    check_resume_changes(changed, tmp)


def truncated_checkpoint(tmp: Path) -> Path:
    """A run whose last checkpoint's weights were cut short (a full disk, a copy interrupted)."""
    from safetensors.torch import save_file

    checkpoint = tmp / "checkpoints" / "step-0000002"
    checkpoint.mkdir(parents=True)
    torch.save({"step": 2}, checkpoint / "training_state.pt")
    save_file({"w": torch.ones(64, 64)}, checkpoint / "model.safetensors")
    weights = (checkpoint / "model.safetensors").read_bytes()
    (checkpoint / "model.safetensors").write_bytes(weights[: len(weights) // 2])
    return tmp


def one_document(tmp: Path) -> object:
    """The fixture cut to its first document, judged for one query."""

    def edit(folder: Path) -> None:
        first = (folder / "corpus.jsonl").read_text().splitlines()[0]
        (folder / "corpus.jsonl").write_text(first + "\n")
        (folder / "qrels" / "train.tsv").write_text("q-bee\tbee-0\t1\n")

    return beir(edit)(tmp)


def not_a_model(tmp: Path) -> object:
    (tmp / "empty").mkdir()
    return Dense(name_or_path=str(tmp / "empty")).build()


def vocabulary_mismatch(tmp: Path, tiny_model_dir: Path) -> object:
    from transformers import BertConfig, BertModel

    folder = Path(shutil.copytree(tiny_model_dir, tmp / "small-vocab"))
    BertModel(
        BertConfig(
            vocab_size=10,
            hidden_size=32,
            num_hidden_layers=1,
            num_attention_heads=2,
            intermediate_size=8,
        )
    ).save_pretrained(folder)
    return Dense(name_or_path=str(folder)).build()


BAD_INPUTS = [
    # configuration: detected before any model loads
    ("unknown group option", config("model=nope"), MissingConfigException, "model/nope"),
    ("unknown key", config("trainer.max_stepz=3"), ConfigCompositionException, "max_stepz"),
    (
        "wrong type",
        config("trainer.max_steps=many"),
        (ConfigCompositionException, ValidationError),
        "max_steps",
    ),
    (
        "out-of-range value",
        config("losses.rank.scale=-1"),
        ConfigError,
        "losses.rank.scale must be > 0",
    ),
    (
        "regulariser with a dense model",
        config("+loss@losses.flops=flops"),
        ConfigError,
        r"losses.flops: Flops reads vocabulary term weights \(TermWeighted\), which a Dense",
    ),
    (
        "score part a model lacks",
        config("losses.rank.part=sparse"),
        ConfigError,
        "losses.rank.part=sparse: a Dense model's score has no such part",
    ),
    (
        "symmetric loss without in-batch negatives",
        config("losses.rank.symmetric=true", "losses.rank.in_batch_negatives=false"),
        ConfigError,
        "symmetric=true needs in_batch_negatives=true",
    ),
    (
        "pairwise loss without negatives",
        config("sampler=random_span", "loss@losses.rank=hinge"),
        ConfigError,
        "losses.rank: Hinge ranks each positive against the record's own negatives",
    ),
    (
        "docpairs with hard negatives",
        config(
            "sampler.docpairs=msmarco-passage/train/triples-small", "sampler.hard_negatives.top_k=5"
        ),
        ConfigError,
        "sampler.docpairs=msmarco-passage/train/triples-small brings its own negatives",
    ),
    (
        "two first stages at once",
        config(
            "sampler.hard_negatives.run_file=run.trec",
            "sampler.hard_negatives.scoreddocs=x/y",
            "sampler.hard_negatives.top_k=5",
        ),
        ConfigError,
        "sampler.hard_negatives.set at most one of run_file and scoreddocs",
    ),
    (
        "distillation without teacher scores",
        config("sampler=distillation", "loss@losses.rank=margin_mse"),
        ConfigError,
        "sampler.teacher_run: give exactly one of a teacher run file",
    ),
    (
        "distillation with a teacher run and a teacher model",
        config(
            "sampler=distillation",
            "sampler.teacher_run=run.trec",
            "+model@teacher.model=cross_encoder",
            "loss@losses.rank=margin_mse",
        ),
        ConfigError,
        "got teacher_run='run.trec' and a teacher model",
    ),
    (
        "teacher model without a distillation sampler",
        config("+model@teacher.model=cross_encoder"),
        ConfigError,
        "teacher.model: PairwiseSampler records carry no teacher scores; use sampler=distillation",
    ),
    (
        "Matryoshka with a sparse model",
        config("model=splade", "loss@losses.rank=matryoshka"),
        ConfigError,
        r"losses.rank: Matryoshka reads single \[n, dim\] vectors .* which a Splade model",
    ),
    (
        "teacher loss without teacher scores",
        config("loss@losses.rank=margin_mse"),
        ConfigError,
        "losses.rank: MarginMSE learns from a teacher's scores, which PairwiseSampler records",
    ),
    (
        "pointwise records with the batchwise trainer",
        config("sampler=pointwise", "loss@losses.rank=bce"),
        ConfigError,
        "sampler: PointwiseSampler yields PointwiseRecords, which BatchwiseTrainer does not read",
    ),
    (
        "pointwise loss without labels",
        config("loss@losses.rank=mse"),
        ConfigError,
        "losses.rank: MeanSquaredError learns from relevance labels, which PairwiseSampler",
    ),
    (
        "cross-encoder without a first stage",
        config("model=cross_encoder"),
        ConfigError,
        "evaluation.rerank: a CrossEncoder model only re-ranks candidates",
    ),
    (
        "validation without queries",
        config("validation.every=10"),
        ConfigError,
        "needs queries to validate on",
    ),
    (
        "unknown metric",
        config("evaluation.metrics=[nDCG@ten]"),
        ConfigError,
        "'nDCG@ten' is not an ir-measures measure",
    ),
    (
        "a cutoff of 0 (trec_eval aborts the process)",
        config("evaluation.metrics=[nDCG@0]"),
        ConfigError,
        "evaluation.metrics: 'nDCG@0' has the cutoff 0; a cutoff is a whole number >= 1",
    ),
    (
        "a validation metric with a cutoff of 0",
        config("validation.metric=P@0"),
        ConfigError,
        "validation.metric: 'P@0' has the cutoff 0",
    ),
    (
        "a measure no installed provider computes",
        lambda tmp: check_computable(
            {"evaluation.metrics": ["alpha_nDCG@10"]}, Collection.from_beir(TINY_BEIR, "test").qrels
        ),
        ConfigError,
        "evaluation.metrics: ir-measures parses 'alpha_nDCG@10' but cannot compute it here",
    ),
    (
        "a model path that does not exist",
        config("model.name_or_path=/no/such/model"),
        ConfigError,
        "model.name_or_path='/no/such/model': no such folder; expected a local model folder",
    ),
    (
        "a file as the model",
        config(f"model.name_or_path={TINY_BEIR / 'corpus.jsonl'}"),
        ConfigError,
        r"model.name_or_path='.*corpus\.jsonl' is a file; expected a model folder",
    ),
    (
        "a device this machine lacks",
        lambda tmp: resolve_device("cuda:99"),
        ConfigError,
        "device='cuda:99' but",
    ),
    (
        "a device name that is none",
        lambda tmp: resolve_device("gpu"),
        ConfigError,
        "device='gpu' is not a device name",
    ),
    (
        "a resume that changes the optimiser",
        resumed_with_another_lr,
        ConfigError,
        "optimizer.lr: a resumed run cannot change it",
    ),
    (
        "a truncated checkpoint on resume",
        lambda tmp: last_checkpoint(truncated_checkpoint(tmp)),
        ConfigError,
        r"resume: checkpoint file .*model\.safetensors cannot be read .* damaged or truncated",
    ),
    (
        "training BM25",
        lambda tmp: run_train(load_experiment(compose_config("model=bm25")), tmp),
        ConfigError,
        "nothing to train",
    ),
    # data
    (
        "unknown ir-datasets id",
        lambda tmp: Split(ir_datasets="beir/nope").load(),
        DataError,
        "unknown ir-datasets id 'beir/nope'",
    ),
    (
        "missing BEIR file",
        beir(lambda f: (f / "corpus.jsonl").unlink()),
        DataError,
        r"lacks .*corpus\.jsonl",
    ),
    (
        "malformed JSON line",
        beir(replace_line("corpus.jsonl", 3, "{oops")),
        DataError,
        r"corpus\.jsonl:3: invalid JSON",
    ),
    (
        "duplicate document id",
        beir(replace_line("corpus.jsonl", 2, '{"_id": "bee-0", "text": "x"}')),
        DataError,
        r"corpus\.jsonl:2: duplicate id 'bee-0'",
    ),
    (
        "empty query text",
        beir(replace_line("queries.jsonl", 1, '{"_id": "q-bee", "text": " "}')),
        DataError,
        r"queries\.jsonl:1: query 'q-bee' has an empty text",
    ),
    (
        "non-UTF-8 bytes",
        beir(write("queries.jsonl", b'{"_id": "q", "text": "caf\xe9"}\n')),
        DataError,
        r"queries\.jsonl:1: not valid UTF-8",
    ),
    (
        "qrels naming no known id",
        beir(write("qrels/train.tsv", b"q-x\td-y\t1\n")),
        DataError,
        "no relevance judgement names a known query and document",
    ),
    (
        "a split without qrels",
        beir(write("qrels/train.tsv", b"query-id\tcorpus-id\tscore\n")),
        DataError,
        r"train\.tsv: no relevance judgements",
    ),
    (
        "qrels score not an integer",
        beir(write("qrels/train.tsv", b"q-bee\tbee-0\thigh\n")),
        DataError,
        r"train\.tsv:1: relevance score must be an integer",
    ),
    (
        "a (query, document) judged twice",
        beir(write("qrels/train.tsv", b"q-bee\tbee-0\t1\nq-bee\tbee-1\t1\nq-bee\tbee-0\t0\n")),
        DataError,
        r"train\.tsv:3: query 'q-bee' and document 'bee-0' are judged again \(first at line 1",
    ),
    (
        "document id with a space",
        beir(replace_line("corpus.jsonl", 2, '{"_id": "bee 1", "text": "x"}')),
        DataError,
        r"corpus\.jsonl:2: id 'bee 1' is empty or contains whitespace",
    ),
    (
        "query id with a tab",
        beir(replace_line("queries.jsonl", 1, '{"_id": "q\\tbee", "text": "bees"}')),
        DataError,
        r"queries\.jsonl:1: id 'q\\tbee' is empty or contains whitespace",
    ),
    (
        "empty document id in qrels",
        beir(write("qrels/train.tsv", b"q-bee\t\t1\n")),
        DataError,
        r"train\.tsv:1: id '' is empty or contains whitespace",
    ),
    (
        "test judgements all non-relevant",
        lambda tmp: beir(write("qrels/test.tsv", b"q-bee\tbee-0\t0\n"), "test")(
            tmp
        ).check_measurable(),
        DataError,
        "every judgement is non-relevant",
    ),
    (
        "training judgements without a positive",
        lambda tmp: PairwiseSampler().epoch_size(
            beir(write("qrels/train.tsv", b"q-bee\tbee-0\t0\n"))(tmp)
        ),
        DataError,
        "no judgement has relevance >= sampler.min_relevance=1",
    ),
    (
        "a one-document training corpus",
        lambda tmp: PairwiseSampler().candidates(one_document(tmp)),
        DataError,
        "query 'q-bee' has every one of the 1 documents judged, so no negative can be drawn",
    ),
    (
        "run line with 5 fields",
        run_file(b"q1 Q0 d1 1 0.5\n"),
        DataError,
        r"run\.trec:1: expected 6 fields",
    ),
    (
        "run score not finite",
        run_file(b"q1 Q0 d1 1 nan x\n"),
        DataError,
        r"run\.trec:1: score 'nan' is not finite",
    ),
    (
        "run file not UTF-8",
        run_file(b"q1 Q0 d\xff 1 0.5 x\n"),
        DataError,
        r"run\.trec:1: not valid UTF-8",
    ),
    # models
    ("a folder that is not a model", not_a_model, ConfigError, "is a folder without config.json"),
]


@pytest.mark.parametrize(
    ("action", "error", "message"),
    [pytest.param(action, error, message, id=name) for name, action, error, message in BAD_INPUTS],
)
def test_bad_input_gets_a_located_error(tmp_path, action, error, message):
    with pytest.raises(error, match=message):
        action(tmp_path)


def test_tokenizer_and_model_that_do_not_belong_together(tmp_path, tiny_model_dir):
    with pytest.raises(
        ConfigError, match="the tokenizer has .* tokens but the model's embedding table has 10 rows"
    ):
        vocabulary_mismatch(tmp_path, tiny_model_dir)


def test_qrels_on_unknown_ids_and_empty_documents_are_warned_with_counts(tmp_path, caplog):
    def edit(folder: Path) -> None:
        with (folder / "qrels" / "train.tsv").open("a") as handle:
            handle.write("q-ghost\tbee-0\t1\nq-bee\td-ghost\t1\n")
        replace_line("corpus.jsonl", 2, '{"_id": "bee-1", "title": "", "text": ""}')(folder)

    with caplog.at_level(logging.WARNING):
        beir(edit)(tmp_path)
    assert (
        "ignored 1 judgements naming unknown queries and 1 naming unknown documents" in caplog.text
    )
    assert "1 documents have no text (e.g. bee-1)" in caplog.text


def test_splade_without_mlm_head_explains_what_was_done(tiny_model_dir, caplog):
    with caplog.at_level(logging.WARNING):
        Splade(name_or_path=str(tiny_model_dir)).build()
    assert (
        "has no masked-LM head: 6 head tensors are newly initialised (identity transform"
        in caplog.text
    )


def test_out_of_memory_suggests_the_micro_batcher(tiny_model_dir, monkeypatch):
    from tests.test_training import make_learner

    learner = make_learner(tiny_model_dir, Collection.from_beir(TINY_BEIR, "train"), max_steps=2)

    def exhausted(*args, **kwargs):
        raise torch.OutOfMemoryError("CUDA out of memory")

    monkeypatch.setattr(learner.trainer, "loss_terms", exhausted)
    with pytest.raises(
        ResourceError,
        match="step 1: out of memory on cpu with batch_size=4; use batcher=adaptive",
    ):
        learner.fit()


def test_a_full_disk_never_leaves_a_half_written_file(tmp_path, monkeypatch):
    write_json(tmp_path / "metrics.json", {"ok": 1})

    def full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("os.fsync", full)
    with pytest.raises(ResourceError, match=r"metrics.json: not written, the disk is full"):
        write_json(tmp_path / "metrics.json", {"ok": 2, "big": "x" * 10_000})
    assert json.loads((tmp_path / "metrics.json").read_text()) == {"ok": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.json"]  # no temporary left


def test_a_full_disk_while_checkpointing_is_one_line_and_keeps_the_last_checkpoint(tmp_path):
    """torch's writer says so without an errno: 'PytorchStreamWriter failed ... file write
    failed'; the checkpoint before stays whole."""
    from xpretrieval.core.hooks import TrainState
    from xpretrieval.training.checkpoint import Checkpointer

    def save(folder: Path) -> None:
        (folder / "weights.bin").write_bytes(b"w" * 100)
        if saves.append(folder) or len(saves) > 1:
            raise RuntimeError(
                "[enforce fail] PytorchStreamWriter failed writing file: file write failed"
            )

    saves: list[Path] = []
    checkpoints = Checkpointer(tmp_path, every=1, keep=2, save=save)
    checkpoints.on_step_end(TrainState(step=1, max_steps=3, epoch=0.0))
    with pytest.raises(ResourceError, match=r"step-0000002: not written, the disk is full"):
        checkpoints.on_step_end(TrainState(step=2, max_steps=3, epoch=0.0))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["step-0000001"]
    assert (tmp_path / "step-0000001" / "weights.bin").read_bytes() == b"w" * 100


# fuzzing: any bytes in any file of a BEIR folder, or in a run file
LINE = st.one_of(
    st.binary(max_size=60),
    st.text(alphabet=string.printable, max_size=60).map(str.encode),
    st.builds(
        lambda d: json.dumps(d).encode(),
        st.dictionaries(
            st.sampled_from(["_id", "text", "title", "x"]),
            st.one_of(
                st.none(),
                st.integers(),
                st.text(max_size=8),
                st.floats(allow_nan=True),
                st.lists(st.integers(), max_size=2),
            ),
            max_size=4,
        ),
    ),
    st.builds(
        lambda a, b, c: f"{a}\t{b}\t{c}".encode(),
        st.text(max_size=6),
        st.text(max_size=6),
        st.text(max_size=4),
    ),
)
FILE = st.lists(LINE, max_size=6).map(lambda lines: b"\n".join(lines))


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(name=st.sampled_from(["corpus.jsonl", "queries.jsonl", "qrels/train.tsv"]), content=FILE)
def test_fuzzed_beir_files_load_or_fail_with_a_located_error(tmp_path_factory, name, content):
    folder = Path(shutil.copytree(TINY_BEIR, tmp_path_factory.mktemp("fuzz") / "beir"))
    (folder / name).write_bytes(content)
    try:
        Collection.from_beir(folder, "train")
    except DataError as error:
        assert str(folder) in str(error)


RUN_LINE = st.one_of(
    st.binary(max_size=40),
    st.lists(
        st.one_of(
            st.text(alphabet=string.ascii_letters + "0123456789.-+e", min_size=1, max_size=6),
            st.sampled_from(["nan", "inf", "Q0", "1e999"]),
        ),
        max_size=7,
    ).map(lambda f: " ".join(f).encode()),
)


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(lines=st.lists(RUN_LINE, max_size=6))
def test_fuzzed_run_files_read_or_fail_with_a_located_error(tmp_path_factory, lines):
    path = tmp_path_factory.mktemp("run") / "run.trec"
    path.write_bytes(b"\n".join(lines))
    try:
        run = read_trec_run(path)
    except DataError as error:
        assert f"{path}:" in str(error)
    else:
        assert all(
            score == score and abs(score) != float("inf") for r in run.values() for _, score in r
        )


def test_python_search_refuses_an_index_that_cannot_serve_the_model(tiny_model_dir):
    from xpretrieval import search
    from xpretrieval.retrieval.index import Inverted

    model = Dense(name_or_path=str(tiny_model_dir)).build()
    with pytest.raises(ConfigError, match=r"index: Inverted indexes .* which a DenseEncoder"):
        search(model, Collection.from_beir(TINY_BEIR, "test"), index=Inverted())
