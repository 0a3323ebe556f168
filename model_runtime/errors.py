"""Errors raised while talking to (or serving) the model.

Like ``tilepilot.tools.errors``: each message is one line the CLI can print as-is.
"""


class ModelRuntimeError(Exception):
    exit_code = 4


class ServerUnreachableError(ModelRuntimeError):
    pass


class ServerCrashedError(ServerUnreachableError):
    """A server tilepilot manages died (its exit status or signal and log line are in the message)."""


class ModelNotServedError(ModelRuntimeError):
    pass


class ContextOverflowError(ModelRuntimeError):
    """The server rejected the request as too long (HTTP 400)."""


class ServerError(ModelRuntimeError):
    """5xx, overload or dropped connection after all retries."""


class InvalidOutputError(ModelRuntimeError):
    """The model's output never validated against the schema."""


class ServeError(ModelRuntimeError):
    """Starting or stopping the managed vLLM server failed."""


class CheckpointBuildError(ModelRuntimeError):
    pass


class NoBackendError(ModelRuntimeError):
    """The requested profile cannot be served here (e.g. the real 12B without a GPU)."""


class ImagesNotSupportedError(ModelRuntimeError):
    """The server (or the model it serves) takes no images."""


class FinetuneError(ModelRuntimeError):
    """A fine-tuning set or option is unusable (missing files, a malformed line, a non-empty --out)."""


class PlanError(ModelRuntimeError):
    """A memory plan that cannot fit, or a model whose attention geometry cannot be read."""
