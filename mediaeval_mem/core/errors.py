"""User-facing errors: the CLI prints their message as one line and exits non-zero."""


class MemError(Exception):
    """An error the user can fix; its message names the thing and what to do."""


class DataError(MemError):
    """A dataset folder or file is missing or malformed."""


class DecodeError(MemError):
    """A video could not be decoded by any backend."""


class WeightsError(MemError):
    """Model weights could not be found or loaded."""


class UnknownNameError(MemError, KeyError):
    """A registry was asked for a name it does not hold."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return self.args[0]


class ConfigError(MemError):
    """A config file or override is malformed (unknown key, bad value)."""


class DiskFullError(MemError):
    """A write failed for lack of space; the message names the path and the space needed."""


class DamagedError(MemError):
    """A stored file (feature cache, tracking store) does not match what was written; names it and the fix."""


class TrackingError(MemError):
    """The tracking store refused a call (the message is MLflow's own first line)."""
