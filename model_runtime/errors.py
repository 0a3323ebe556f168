"""Errors raised while talking to (or serving) the model.

Like ``tilepilot.tools.errors``: each message is one line the CLI can print as-is.
"""


class ModelRuntimeError(Exception):
    exit_code = 4


class ServerUnreachableError(ModelRuntimeError):
    pass


class ServerCrashedError(ServerUnreachableError):
    """A server tilepilot manages died (its exit status or signal and log line are in the message)."""


class ApiKeyRefusedError(ServerUnreachableError):
    """The server answered HTTP 401/403: it requires an API key, and none or another was sent."""


class ModelNotServedError(ModelRuntimeError):
    pass


class ContextOverflowError(ModelRuntimeError):
    """The server rejected the request as too long (HTTP 400). ``detail``: the server's own words."""

    def __init__(self, message: str, *, detail: str = "") -> None:
        super().__init__(message)
        self.detail = detail


class ServerError(ModelRuntimeError):
    """5xx, overload or dropped connection after all retries. ``detail``: the server's own words, if any."""

    def __init__(self, message: str, *, detail: str = "") -> None:
        super().__init__(message)
        self.detail = detail


class RequestRejectedError(ServerError):
    """The server refused this request as malformed or unsupported (HTTP 400/422, or llama-cpp-python's 500
    for an unknown response_format): sending it again cannot help, another form of it may."""


class UnparsedOutputError(ServerError):
    """The server could not parse the model's own output into a message (llama-server's chat parser answers
    HTTP 500): the same request cannot go otherwise, another temperature may."""


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
