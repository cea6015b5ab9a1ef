"""Errors that end a run with one clear line instead of a traceback.

Everything a user can fix (a config field, a missing dataset, a workdir that does not match)
raises a subclass of :class:`CurvelabError`. The command-line entry points catch exactly this
family, print ``error: <message>`` and exit non-zero; anything else is a bug and keeps its traceback.
"""


class CurvelabError(Exception):
  """Base class for user-facing errors (bad input, not bugs)."""


class ConfigError(CurvelabError):
  """A config field has a value that cannot work; the message names the field."""


class DataError(CurvelabError):
  """A dataset, split or file is missing, empty or malformed."""


class ResumeError(CurvelabError):
  """A workdir cannot be resumed with the current config."""


class TrainingError(CurvelabError):
  """Training had to stop (e.g. a non-finite loss); saved checkpoints stay intact."""


class WorkdirLockedError(CurvelabError):
  """Another live process is using the workdir."""
