"""Exceptions that name the input and the problem; the CLI prints them as one line."""


class DapError(Exception):
    """Base class: a user-facing error (bad input, bad config, unreachable store)."""


class ConfigError(DapError, ValueError):
    """An invalid knob value or an unknown profile."""


class InputError(DapError, ValueError):
    """A file, image, video or array that cannot be used; the message names it."""


class StorageError(DapError):
    """The data store cannot be reached or an object cannot be read/written."""
