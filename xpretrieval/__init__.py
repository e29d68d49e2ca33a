"""xpretrieval: neural information-retrieval experiments from typed configuration."""

__version__ = "0.1.0"

# bounds the [queries, documents, query tokens, document tokens] similarities held at once
SCORE_BLOCK_ELEMENTS = 2**24

from xpretrieval.models.loading import load  # noqa: E402  (any saved model, as its kind)

__all__ = ["load"]
