"""The two user-facing error types: their message is one line that names the cause."""


class PipelineError(RuntimeError):
    """A user-facing error at run time: bad data or a corrupt artifact. The message names the cause."""


class ConfigError(ValueError):
    """A config value that cannot work; the message is one line naming the key path."""
