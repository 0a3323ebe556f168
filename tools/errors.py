"""Errors raised by the I/O adapters.

Every error here is a user-facing condition (bad file, no display, ...): the CLI prints
``str(err)`` as one line and exits with ``exit_code``. Messages must therefore be a single
line that names the input and what to do about it.
"""


class ToolError(Exception):
    exit_code = 3


class MissingExtraError(ToolError):
    """An optional dependency is not installed; the message names the extra that brings it."""

    exit_code = 2


class PdfError(ToolError):
    """A PDF cannot be used. ``page`` is the 1-based page the error is about, or None for the whole document.

    The page is a field so that callers never read it back out of the message (which also holds
    the file's name, digits included).
    """

    def __init__(self, message: str, *, page: int | None = None):
        super().__init__(message)
        self.page = page


class NotAPdfError(PdfError):
    pass


class CorruptPdfError(PdfError):
    pass


class EncryptedPdfError(PdfError):
    pass


class EmptyPdfError(PdfError):
    pass


class PageRangeError(PdfError):
    pass


class PageTimeoutError(PdfError):
    """One page's work exceeded its deadline; the worker was killed. ``page`` says which page."""


class ScreenError(ToolError):
    pass


class DisplayUnavailableError(ScreenError):
    pass


class UIActionError(ToolError):
    pass


class OffScreenError(UIActionError):
    pass


class AudioError(ToolError):
    pass


# --- screen / ui additions ---
class CaptureError(ScreenError):
    pass


class MonitorNotFoundError(ScreenError):
    pass


class FailSafeTriggered(UIActionError):
    """The pointer sat in a screen corner: pyautogui's fail-safe aborted the action on purpose."""


class ActionExecutionError(UIActionError):
    """A UI action could not be carried out (bad key name, xdotool failure, ...)."""


class UnreadableAudioError(AudioError):
    """Missing, corrupt or unsupported audio file."""


class EmptyAudioError(AudioError):
    """The file decodes to zero samples."""


# --- pdf additions ---
class PdfNotFoundError(PdfError):
    """The PDF path does not exist or cannot be read."""


class PdfPasswordError(EncryptedPdfError):
    """A password was given for an encrypted PDF, but it is wrong."""
