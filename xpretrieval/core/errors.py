"""Errors caused by the user's input: the CLI prints them as one line instead of a traceback."""


class UserInputError(ValueError):
    """Bad configuration or data; the message says where (key or file:line) and what was
    expected."""


class ConfigError(UserInputError):
    """An invalid configuration value; the message starts with the value's full key."""


class DataError(UserInputError):
    """Missing or malformed input data; the message names the file (and line)."""


class ResourceError(UserInputError):
    """The machine cannot run the configuration as given (out of memory); says what to change."""


class RunDirectoryRefused(ConfigError):
    """The run directory is in use or holds a finished run: this run must leave it untouched."""


class NonFiniteError(UserInputError, FloatingPointError):
    """Training or scoring produced nan or inf (too high a learning rate, say); the message
    names the step or file, and nothing built on those numbers is written."""
