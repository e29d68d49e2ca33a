"""Shared fixtures: a tiny random BERT, the 20-document BEIR fixture, and config composition.

Tests compose the real configs in conf/ and shrink them (tiny model, few steps, CPU), so a
preset that rots fails here. Tests marked `shared_data` need the offline ir-datasets cache
from ../shared (`eval "$(../shared/offline/env.sh)"`, done by `make test`); without it they
are deselected and the header says so. In CI a missing cache is an error, not a deselection.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

import xpretrieval.commands.experiment  # noqa: F401  (registers every component schema)

ROOT = Path(__file__).resolve().parents[1]
CONF_DIR = ROOT / "conf"
TINY_BEIR = Path(__file__).parent / "fixtures" / "tiny_beir"

# under pytest-xdist (`make test` runs one worker per core), each worker keeps to its share of
# the cores: tiny models gain nothing from more threads, and oversubscription slows every worker
# (and so do the `python -m xpretrieval` subprocesses of the CLI tests, through the environment
# they inherit: the same thread count as this process, whose in-process runs they are compared
# with bit for bit)
if "PYTEST_XDIST_WORKER_COUNT" in os.environ:
    _threads = max(1, (os.cpu_count() or 1) // int(os.environ["PYTEST_XDIST_WORKER_COUNT"]))
    torch.set_num_threads(_threads)
    os.environ["OMP_NUM_THREADS"] = os.environ["MKL_NUM_THREADS"] = str(_threads)
SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def shared_data_available() -> bool:
    home = os.environ.get("IR_DATASETS_HOME")
    return bool(home) and (Path(home) / "beir" / "scifact").is_dir()


def pytest_report_header(config: pytest.Config) -> str:
    if shared_data_available():
        return "shared_data: offline ir-datasets cache found, shared_data tests run"
    return (
        "shared_data: IR_DATASETS_HOME has no beir/scifact; tests marked shared_data are "
        'DESELECTED (run `eval "$(../shared/offline/env.sh)"` or `make test` to include them)'
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if shared_data_available():
        return
    needing = [item for item in items if item.get_closest_marker("shared_data")]
    if needing and os.environ.get("CI"):
        raise pytest.UsageError(
            "CI must run the shared_data tests, but IR_DATASETS_HOME has no beir/scifact"
        )
    if needing:
        config.hook.pytest_deselected(items=needing)
        items[:] = [item for item in items if not item.get_closest_marker("shared_data")]


def fixture_words() -> list[str]:
    """Every lower-cased word and punctuation mark of the BEIR fixture."""
    text = "".join(path.read_text() for path in TINY_BEIR.rglob("*.jsonl")).lower()
    return sorted(set(re.findall(r"[a-z0-9]+|[^\sa-z0-9]", text)))


def word_level_tokenizer(specials: list[str], unknown: str) -> tuple[object, dict[str, int]]:
    """A lower-casing WordPiece tokenizer (`tokenizers` backend) whose vocabulary is `specials`
    followed by every word of the BEIR fixture, and that vocabulary."""
    from tokenizers import Tokenizer, normalizers, pre_tokenizers
    from tokenizers.models import WordPiece

    vocab = {token: i for i, token in enumerate(specials + fixture_words())}
    backend = Tokenizer(WordPiece(vocab, unk_token=unknown))
    backend.normalizer = normalizers.BertNormalizer(lowercase=True)
    backend.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    return backend, vocab


def make_tiny_bert(path: Path, seed: int = 0) -> Path:
    """Save a randomly initialised 2-layer BERT (hidden size 32) with a word-level vocabulary
    covering the BEIR fixture (built with `tokenizers`, stable across transformers versions)."""
    from tokenizers import processors
    from transformers import BertConfig, BertModel, PreTrainedTokenizerFast

    path.mkdir(parents=True, exist_ok=True)
    backend, vocab = word_level_tokenizer(SPECIAL_TOKENS, "[UNK]")
    backend.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B [SEP]",
        special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])],
    )
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
    )
    ids = tokenizer("Honey bees pollinate flowering plants.")["input_ids"]
    assert vocab["[UNK]"] not in ids, "the tiny tokenizer must cover the fixture's words"
    config = BertConfig(
        vocab_size=len(vocab),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=128,
    )
    torch.manual_seed(seed)
    BertModel(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def make_tiny_llama(path: Path, seed: int = 0) -> Path:
    """Save a randomly initialised 2-layer LLaMA (hidden size 32, rotary positions) with a
    word-level tokenizer that adds no special tokens and has an EOS but no padding token, as
    decoder-only checkpoints come."""
    from transformers import LlamaConfig, LlamaModel, PreTrainedTokenizerFast

    path.mkdir(parents=True, exist_ok=True)
    backend, vocab = word_level_tokenizer(["<unk>", "<s>", "</s>"], "<unk>")
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend, unk_token="<unk>", bos_token="<s>", eos_token="</s>"
    )
    config = LlamaConfig(
        vocab_size=len(vocab),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=128,
    )
    torch.manual_seed(seed)
    LlamaModel(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def tiny_decoder_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_llama(tmp_path_factory.mktemp("tiny-llama"))


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_bert(tmp_path_factory.mktemp("tiny-bert"))


@pytest.fixture(scope="session")
def masked_lm_dir(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny BERT with a (random) masked-LM head, as published SPLADE checkpoints have one."""
    from transformers import AutoTokenizer, BertConfig, BertForMaskedLM

    folder = tmp_path_factory.mktemp("tiny-mlm")
    torch.manual_seed(3)
    BertForMaskedLM(BertConfig.from_pretrained(tiny_model_dir)).save_pretrained(folder)
    AutoTokenizer.from_pretrained(tiny_model_dir).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def records() -> list:
    """Six pairwise training records of the fixture (one batch for gradient comparisons)."""
    import itertools

    from xpretrieval.data.collection import Collection
    from xpretrieval.samplers import PairwiseSampler

    sampled = PairwiseSampler().records(Collection.from_beir(TINY_BEIR, "train"), seed=3)
    return list(itertools.islice(sampled, 6))


def tiny_overrides(model_dir: Path) -> list[str]:
    """Overrides that shrink the default experiment to the tiny model and BEIR fixture."""
    return [
        f"model.name_or_path={model_dir}",
        "model.query_max_length=16",
        "model.doc_max_length=32",
        "dataset=beir_folder",
        f"dataset.train.beir_folder={TINY_BEIR}",
        "batcher.batch_size=4",
        "trainer.max_steps=6",
        "trainer.log_every=2",
        "evaluation.top_k=10",
        "evaluation.batch_size=8",
        "device=cpu",
    ]


def compose_config(
    *overrides: str, config_name: str = "train", return_hydra_config: bool = False
) -> DictConfig:
    """Compose conf/<config_name>.yaml with command-line style overrides, as the CLI does."""
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose(config_name, list(overrides), return_hydra_config=return_hydra_config)
