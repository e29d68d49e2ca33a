"""xpretrieval: neural information-retrieval experiments from typed configuration."""

__version__ = "0.1.0"
