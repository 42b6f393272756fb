"""Errors that mean "the input is wrong", not "the code is wrong": entry points print them as one
line and exit non-zero instead of showing a traceback."""


class UserError(Exception):
  pass


class ConfigError(UserError, ValueError):
  """A config value that cannot work (checked before any compute starts)."""


class CheckpointError(UserError):
  """A model directory or checkpoint that is missing, incomplete or unreadable."""


class NonFiniteLossError(UserError):
  """Training produced a NaN or Inf; the last good checkpoint is left as it was."""
