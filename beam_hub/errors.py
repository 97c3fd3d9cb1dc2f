"""Typed errors. Every message says what went wrong and what to do about it."""

from __future__ import annotations


class BeamHubError(Exception):
    """Base class of every error beam-hub raises on purpose."""


class ConfigError(BeamHubError, ValueError):
    """An environment variable or setting has a value beam-hub cannot use; the message names it."""


# --- handles and resolving -------------------------------------------------


class UnsupportedHandleError(BeamHubError, ValueError):
    """No registered resolver accepts the handle."""


class ModuleNotFoundAtHandleError(BeamHubError, FileNotFoundError):
    """The handle points at nothing (a missing path, an HTTP 404, an empty bucket prefix)."""


class NotASavedModelError(BeamHubError, ValueError):
    """The handle's content is not a SavedModel directory (no saved_model.pb)."""


class DownloadError(BeamHubError, IOError):
    """A download failed after its retries, or the server answered with a client error."""


class HttpStatusError(Exception):
    """The server answered with an error status (``status``); ``reason`` is its reason phrase.
    Raised inside the download path, where retries and resumes are decided; a user sees a
    :class:`DownloadError` or :class:`ModuleNotFoundAtHandleError` naming it."""

    def __init__(self, url: str, status: int, reason: str, *, redirected: bool = False) -> None:
        super().__init__(f"HTTP {status} {reason}".strip() + (f" from {url}" if redirected else ""))
        self.url = url
        self.status = status
        self.reason = reason
        self.redirected = redirected  # answered by a host a redirect led to (e.g. a signed storage URL)


class IntegrityError(DownloadError):
    """Downloaded bytes are not what was promised (truncated, wrong size, not an archive)."""


class TruncatedDownloadError(IntegrityError):
    """The body ended before its announced length; retried."""


class UnsafeArchiveError(BeamHubError, ValueError):
    """An archive member would escape its directory, is a link or device, or is absurdly large."""


class UnsafePathError(BeamHubError, ValueError):
    """A name from outside (a listing, a manifest, a location) would point outside where it belongs,
    or what it lists exceeds the caps; nothing of it is used."""


class OfflineCacheMissError(BeamHubError, LookupError):
    """Offline mode (BEAM_HUB_OFFLINE=1) and the handle is not in the cache."""


class CacheError(BeamHubError, OSError):
    """The cache directory cannot be used (permissions, not a directory, ...)."""


# --- loading and applying --------------------------------------------------


class ModuleLoadError(BeamHubError, RuntimeError):
    """TensorFlow could not load the SavedModel."""


class MissingCustomOpError(ModuleLoadError):
    """The module uses ops from a package that is not imported (e.g. tensorflow_text)."""

    def __init__(self, message: str, op: str, package: str | None) -> None:
        super().__init__(message)
        self.op = op
        self.package = package


class UnsafeModuleError(ModuleLoadError):
    """The audit found ops the policy refuses (``BEAM_HUB_AUDIT=refuse`` or ``audit="refuse"``);
    ``report`` lists them. Nothing of the module ran."""

    def __init__(self, message: str, report: object) -> None:
        super().__init__(message)
        self.report = report


class SignatureNotFoundError(BeamHubError, KeyError):
    """The requested signature does not exist; the message lists the available ones."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class InputError(BeamHubError, ValueError):
    """Inputs do not match the signature (missing, unexpected, wrong dtype or shape)."""


class OutputKeyError(BeamHubError, KeyError):
    """The requested output key does not exist; the message lists the available keys."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


# --- publishing and fine-tuning --------------------------------------------


class PublishError(BeamHubError, RuntimeError):
    """A version could not be published (it exists already, or the upload failed); nothing changed."""


class AliasError(BeamHubError, ValueError):
    """A named alias could not be set, read or removed (a reserved or malformed name, a version
    that is not there, an alias that does not exist); nothing changed."""


class AliasConflictError(AliasError):
    """Someone else moved the same alias at the same moment; theirs stands. Look, then set again."""


class FineTuneError(BeamHubError, ValueError):
    """The module cannot be fine-tuned (signatures only, TF1 format, no trainable variables) or the data is unusable."""
