"""Retrieval effectiveness with ir-measures: aggregate and per-query values of chosen measures."""

from __future__ import annotations

from dataclasses import dataclass, field

import ir_measures

from xpretrieval.core.checks import check_range
from xpretrieval.core.errors import ConfigError
from xpretrieval.data.records import Qrels
from xpretrieval.data.run import Run
from xpretrieval.models.encoding import Batching
from xpretrieval.retrieval.rerank import FirstStage

DEFAULT_METRICS = ["nDCG@10", "RR@10", "R@100", "AP"]


@dataclass
class EvaluationConfig:
    """What to retrieve and measure on the test split."""

    metrics: list[str] = field(default_factory=lambda: list(DEFAULT_METRICS))  # ir-measures names
    top_k: int = 1000  # documents retrieved per query
    batch_size: int = 64  # texts encoded at once (bi-encoders), pairs scored at once (re-rankers)
    # bi-encoders: at most this many padded tokens a batch (texts × the longest one's tokens),
    # so short texts (queries) go in larger batches and long ones in smaller; null: no limit
    max_batch_tokens: int | None = None
    # re-rank a first stage's candidates instead of searching the collection when
    # rerank.top_k > 0: those of rerank.run_file (a TREC run), or BM25's when it is null
    rerank: FirstStage = field(default_factory=FirstStage)
    # the last column of run.trec, naming the system in pooled runs; experiment presets set
    # their own name
    run_tag: str = "xpretrieval"
    # encode the documents in shards of this many, each saved to <run dir>/encoded/ when
    # done: an interrupted evaluation resumes from its finished shards (null: in memory)
    shard_size: int | None = None
    # devices of this machine that encode the shards, one process each (e.g. [cuda:0,
    # cuda:1]); null: the run's device
    devices: list[str] | None = None

    def __post_init__(self) -> None:
        if not self.metrics:
            raise ValueError("metrics must name at least one ir-measures measure, e.g. nDCG@10")
        for name in self.metrics:
            parse_measure(name)
        if not self.run_tag or any(character.isspace() for character in self.run_tag):
            raise ValueError(f"run_tag must be one word (a TREC column), got {self.run_tag!r}")
        check_range("top_k", self.top_k, at_least=1)
        self.batching  # noqa: B018 - Batching refuses a batch_size or max_batch_tokens below 1
        check_range("shard_size", self.shard_size, at_least=1, optional=True)
        if self.devices is not None and (not self.devices or self.shard_size is None):
            raise ValueError(
                "devices: encoding on several devices writes shards; set shard_size too (e.g. "
                "evaluation.shard_size=10000) and name at least one device"
            )

    @property
    def batching(self) -> Batching:
        """How bi-encoders group texts to encode them."""
        return Batching(self.batch_size, self.max_batch_tokens)


def parse_measure(name: str, field: str = "metrics") -> ir_measures.Measure:
    """An ir-measures measure from its name, or a ValueError naming the config `field` and
    what is accepted."""
    try:
        measure = ir_measures.parse_measure(name)
    except (NameError, ValueError, SyntaxError, TypeError) as error:
        raise ValueError(
            f"{field}: {name!r} is not an ir-measures measure ({error}); "
            f"examples: {', '.join(DEFAULT_METRICS)}"
        ) from None
    cutoff = measure.params.get("cutoff")  # trec_eval aborts the process on a cutoff of 0
    if cutoff is not None and (not isinstance(cutoff, int) or cutoff < 1):
        raise ValueError(
            f"{field}: {name!r} has the cutoff {cutoff}; a cutoff is a whole number >= 1, "
            "e.g. nDCG@10"
        )
    return measure


def check_computable(measures: dict[str, list[str]], qrels: Qrels) -> None:
    """Compute each measure (by config field) on a tiny run over a few queries of `qrels`, so
    that one ir-measures parses but cannot compute (no installed provider, ids a provider
    rejects) fails now, naming the field, and not after training."""
    sample = sorted(qrels.items())[:2]
    judged = [ir_measures.Qrel(q, d, grade) for q, docs in sample for d, grade in docs.items()]
    run = [
        ir_measures.ScoredDoc(q, d, float(-rank))
        for q, docs in sample
        for rank, d in enumerate(sorted(docs))
    ]
    for key, names in measures.items():
        for name in names:
            measure = parse_measure(name, key)
            try:
                ir_measures.calc_aggregate([measure], judged, run)
            except Exception as error:  # providers raise anything, from AssertionError to OSError
                raise ConfigError(
                    f"{key}: ir-measures parses {name!r} but cannot compute it here "
                    f"({type(error).__name__}: {str(error).strip()[:300]}); choose another "
                    "measure or install the provider it names"
                ) from None


@dataclass(frozen=True)
class Metrics:
    """Aggregate values by measure name, and per-query values: query id -> measure -> value."""

    aggregate: dict[str, float]
    per_query: dict[str, dict[str, float]]


def compute_metrics(run: Run, qrels: Qrels, metrics: list[str]) -> Metrics:
    """Measure `run` against `qrels` with ir-measures; queries absent from the qrels are
    ignored."""
    measures = [parse_measure(name) for name in metrics]
    scored = [
        ir_measures.ScoredDoc(query_id, doc_id, score)
        for query_id, ranking in run.items()
        for doc_id, score in ranking
    ]
    judged = [
        ir_measures.Qrel(query_id, doc_id, grade)
        for query_id, docs in qrels.items()
        for doc_id, grade in docs.items()
    ]
    aggregate = ir_measures.calc_aggregate(measures, judged, scored)
    per_query: dict[str, dict[str, float]] = {}
    for metric in ir_measures.iter_calc(measures, judged, scored):
        per_query.setdefault(metric.query_id, {})[str(metric.measure)] = metric.value
    return Metrics({str(m): float(aggregate[m]) for m in measures}, per_query)


def paired_t_test(
    baseline: dict[str, dict[str, float]], other: dict[str, dict[str, float]], measure: str
) -> float:
    """Two-sided p-value of a paired t-test on `measure` over the baseline's queries (per-query
    values as in `Metrics.per_query`; a query the other run lacks counts as 0). NaN when
    the two runs agree on every query."""
    from scipy.stats import ttest_rel

    queries = sorted(baseline)
    a = [baseline[q].get(measure, 0.0) for q in queries]
    b = [other.get(q, {}).get(measure, 0.0) for q in queries]
    if a == b:
        return float("nan")
    return float(ttest_rel(a, b).pvalue)
