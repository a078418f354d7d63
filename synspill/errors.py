"""One error family. The CLI turns each into one red line and a non-zero exit.

Every message says *what* is wrong, *which value* and *how to fix it*, e.g.
``boxes.json: annotation 17 has category_id 12, which is not a category; use 1-8``.
"""

from __future__ import annotations


class SynspillError(Exception):
    """Base class of every error synspill raises on purpose (exit code 1)."""

    exit_code = 1


class UsageError(SynspillError):
    """A command-line value or option combination is invalid (exit code 2)."""

    exit_code = 2


class DatasetError(SynspillError):
    """A dataset file or record is malformed, inconsistent or missing."""


class ModelNotFound(SynspillError):
    """Model weights could not be found locally (synspill never downloads at run time)."""


class DeviceError(SynspillError):
    """The requested device, dtype or quantisation cannot work on this machine."""


class OutputExists(SynspillError):
    """An output exists and would be overwritten; pass ``--force`` or choose another path."""


class DeliveryError(SynspillError):
    """Alerts could not be delivered to a webhook or MQTT broker (they are kept for the next start)."""


class StorageError(SynspillError):
    """A file or folder cannot be written: permissions, a read-only or full disk, a quota."""


class ResourceError(SynspillError):
    """The machine runs out of something a job needs (memory)."""


class Terminated(KeyboardInterrupt):
    """SIGTERM arrived (``timeout``, systemd, a scheduler); raised in the main thread like Ctrl-C.

    A ``KeyboardInterrupt`` so that every clean-up path of Ctrl-C runs for it too; the CLI
    exits with 143 (128 + SIGTERM) instead of Ctrl-C's 130.
    """

    exit_code = 143
