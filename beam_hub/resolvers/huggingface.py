"""Hugging Face Hub model repos that hold a SavedModel:

    hf://ORG/REPO                      the default branch (main)
    hf://ORG/REPO@REVISION             a branch, a tag, a commit, refs/pr/N
    hf://ORG/REPO@REVISION/SUBDIR      a SavedModel in a subdirectory of the repo

The revision is turned into its commit first (one call to the Hub API) and the cache entry is
keyed by the commit, ``hf://org/repo@<commit>[/SUBDIR]``: a branch that moved fetches its new
commit once; a cached commit handle never touches the network. The SavedModel's files
(``saved_model.pb``, ``variables/``, ``assets/``, ...) are listed at the commit through
huggingface_hub's ``HfFileSystem``, every listed name checked and held to the archive caps, and
fetched in parallel; each file is checked against the listing (its size, and the sha256 of an
LFS file or the git blob id of any other) before the entry is published. Other files in the
repo (PyTorch weights beside the SavedModel, ...) stay on the Hub.

What this resolver adds to the cache root:

    <cache root>/hf-refs/<sha1("hf://org/repo@REVISION[/SUBDIR]")>   {"handle": ..., "commit": ...}:
                                       the commit REVISION named when last resolved online

Offline (BEAM_HUB_OFFLINE=1 or HF_HUB_OFFLINE=1), or when the Hub cannot be reached, a branch or
tag handle uses that commit (else the newest cached commit of the repo) and logs which. HF_TOKEN
(else huggingface_hub's saved login) is sent to HF_ENDPOINT only: the redirect to the storage
host drops it. Every Hub request gets BEAM_HUB_CONNECT_TIMEOUT / BEAM_HUB_READ_TIMEOUT where
huggingface_hub sets none (its tree listing).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
import threading
import uuid
from collections.abc import Iterator
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

from beam_hub import settings
from beam_hub.cache import LocalCache
from beam_hub.cache.base import Filled, ModuleCache
from beam_hub.errors import (
    DownloadError,
    IntegrityError,
    ModuleNotFoundAtHandleError,
    NotASavedModelError,
    OfflineCacheMissError,
    UnsafePathError,
    UnsupportedHandleError,
)
from beam_hub.files import FileRecord, relative_name
from beam_hub.handles import Handle, parse_handle
from beam_hub.progress import download_callback
from beam_hub.resolvers.base import Resolver
from beam_hub.resolvers.remote_dir import checked_listing
from beam_hub.savedmodel import SAVED_MODEL_FILES

if TYPE_CHECKING:
    from huggingface_hub import HfFileSystem

log = logging.getLogger(__name__)

_COMMIT = re.compile(r"^[0-9a-f]{40}$")
_FORM = "hf://ORG/REPO[@REVISION][/SUBDIR] (e.g. hf://acme/fruit-classifier@v2/saved_model)"
#: What a SavedModel is made of; anything else in the repo stays on the Hub.
_MODULE_FILES = frozenset({*SAVED_MODEL_FILES, "fingerprint.pb", "keras_metadata.pb", "tfhub_module.pb"})
_MODULE_DIRS = frozenset({"variables", "assets", "assets.extra"})
_CHUNK = 1 << 20
_WORKERS = 8
#: Files that say a repo holds another kind of model: (test, what it is, what loads it).
_OTHER_FORMATS = (
    (lambda n: n.endswith(".keras"), "a Keras 3 model file", "keras.saving.load_model('hf://{repo}')"),
    (
        lambda n: n == "tf_model.h5",
        "TensorFlow weights for Transformers",
        "transformers' TFAutoModel.from_pretrained('{repo}')",
    ),
    (lambda n: n.endswith((".h5", ".hdf5")), "a Keras HDF5 file", "keras.saving.load_model(<the file>)"),
    (
        lambda n: n.endswith(".safetensors"),
        "safetensors weights",
        "transformers or sentence-transformers (PyTorch), e.g. AutoModel.from_pretrained('{repo}')",
    ),
    (
        lambda n: n.endswith((".bin", ".pt", ".pth")),
        "PyTorch weights",
        "transformers or sentence-transformers (PyTorch), e.g. AutoModel.from_pretrained('{repo}')",
    ),
    (lambda n: n.endswith(".onnx"), "an ONNX model", "onnxruntime.InferenceSession(<the file>)"),
    (lambda n: n.endswith(".tflite"), "a TensorFlow Lite model", "tf.lite.Interpreter(<the file>)"),
    (lambda n: n.endswith(".gguf"), "GGUF weights", "llama.cpp"),
)


@dataclass(frozen=True)
class HfModel:
    """A model repo on the Hub, a revision (None: the default branch) and a subdirectory ("": the root)."""

    repo_id: str
    revision: str | None
    subdir: str

    @property
    def is_commit(self) -> bool:
        return self.revision is not None and _COMMIT.match(self.revision) is not None

    @property
    def suffix(self) -> str:
        """ "/SUBDIR", or "" for the repo root."""
        return f"/{self.subdir}" if self.subdir else ""

    def key(self, commit: str) -> str:
        """The cache key of this model at ``commit`` (repo ids are case-insensitive on the Hub)."""
        return f"hf://{self.repo_id.lower()}@{commit}{self.suffix}"

    def ref(self) -> str:
        return f"hf://{self.repo_id.lower()}@{self.revision or 'main'}{self.suffix}"

    def fs_path(self, commit: str) -> str:
        """The HfFileSystem path of the module directory at ``commit``."""
        return f"{self.repo_id}@{commit}{self.suffix}"


def parse_hf(handle: Handle) -> HfModel:
    """The model, revision and subdirectory an ``hf://`` handle names (UnsupportedHandleError if malformed)."""
    from huggingface_hub import parse_hf_uri
    from huggingface_hub.errors import HfUriError, HFValidationError

    try:
        uri = parse_hf_uri("hf://" + handle.location.split("://", 1)[1])  # the scheme in any case
    except (HfUriError, HFValidationError) as e:
        raise UnsupportedHandleError(
            f"{handle.raw!r} is not a Hugging Face handle ({e}). Use {_FORM}."
        ) from None
    if uri.type != "model":
        raise UnsupportedHandleError(
            f"{handle.raw!r} names a {uri.type} repo; modules come from model repos. Use {_FORM}."
        )
    if uri.id.count("/") != 1:
        raise UnsupportedHandleError(f"{handle.raw!r}: the repo must be ORG/REPO. Use {_FORM}.")
    try:
        subdir = relative_name(uri.path_in_repo) if uri.path_in_repo else ""
    except ValueError as e:
        raise UnsafePathError(f"{handle.raw!r}: the subdirectory {uri.path_in_repo!r} has {e}.") from None
    return HfModel(uri.id, uri.revision, subdir)


def commit_of(handle: Handle, model: HfModel) -> str:
    """The commit the model's revision names on the Hub now (one API call, with timeouts)."""
    from huggingface_hub import HfApi

    api = HfApi(endpoint=settings.hf_endpoint(), token=settings.hf_token() or False)
    _with_timeouts()
    with _hub_errors(handle, model):
        info = api.model_info(model.repo_id, revision=model.revision, timeout=settings.read_timeout())
    sha = getattr(info, "sha", None)
    if not isinstance(sha, str) or not _COMMIT.match(sha):
        raise DownloadError(
            f"{handle.raw!r}: {settings.hf_endpoint()} answered revision "
            f"{model.revision or 'main'!r} without a commit id ({sha!r})."
        )
    log.info("%s is commit %s", handle.raw, sha)
    return sha


def pin(raw: str) -> str:
    """``hf://ORG/REPO@<commit>[/SUBDIR]`` for a branch or tag handle (one Hub API call), so that every
    worker of a job fetches the same commit even if the branch moves; the handle unchanged when
    it already names a commit, offline, or when the Hub cannot be reached (workers then resolve it
    from their caches)."""
    handle = parse_handle(raw)
    model = parse_hf(handle)
    if model.is_commit or handle.sha256 is not None or settings.hf_offline():
        return raw
    try:
        commit = commit_of(handle, model)
    except _Unreachable as e:
        log.warning(
            "%s: the Hub cannot be reached (%s); workers will resolve the revision themselves.", raw, e
        )
        return raw
    return f"hf://{model.repo_id}@{commit}{model.suffix}"


class HuggingFaceResolver(Resolver):
    def is_supported(self, handle: Handle) -> bool:
        return handle.protocol == "hf"

    def __call__(self, handle: Handle, cache: ModuleCache) -> str:
        model = parse_hf(handle)
        if handle.sha256 is not None:
            raise UnsupportedHandleError(
                f"{handle.raw!r}: an hf:// handle is pinned by its commit, not an archive sha256 "
                f"(hf://{model.repo_id}@<40-hex commit>{model.suffix})."
            )
        commit: str
        if model.is_commit and model.revision is not None:
            commit = model.revision
        elif settings.hf_offline():
            commit = self._cached_commit(handle, model, cache, "offline")
        else:
            try:
                commit = commit_of(handle, model)
            except _Unreachable as e:
                commit = self._cached_commit(handle, model, cache, f"the Hub cannot be reached ({e})")
            else:
                _remember(cache.root, model, commit)
        key = model.key(commit)
        return cache.fetch(key, lambda staging: self._fill(handle, model, commit, staging))

    # -- offline: the commit a revision last named -----------------------------

    @staticmethod
    def _cached_commit(handle: Handle, model: HfModel, cache: ModuleCache, why: str) -> str:
        remembered = _remembered(cache.root, model)
        commit: str | None
        if remembered is not None and cache.get(model.key(remembered)) is not None:
            commit, which = (
                remembered,
                f"the commit {model.revision or 'main'} named when last resolved online",
            )
        else:
            commit, which = _newest_cached(cache.root, model), f"the newest cached commit of {model.repo_id}"
        if commit is None:
            raise OfflineCacheMissError(
                f"{handle.raw!r}: {why}, and no commit of {model.repo_id}{model.suffix} is in the cache "
                f"at {cache.root}. Resolve it once with network access, or unset BEAM_HUB_OFFLINE / "
                "HF_HUB_OFFLINE."
            )
        log.warning("%s: %s; using %s, %s.", handle.raw, why, commit, which)
        return commit

    # -- fetching the files ---------------------------------------------------

    def _fill(self, handle: Handle, model: HfModel, commit: str, staging: str) -> Filled:
        if settings.hf_offline():
            raise OfflineCacheMissError(
                f"HF_HUB_OFFLINE is set and {model.key(commit)} is not in the cache. Resolve it once "
                "with network access or unset HF_HUB_OFFLINE."
            )
        from huggingface_hub import HfFileSystem

        endpoint = settings.hf_endpoint()
        fs = HfFileSystem(endpoint=endpoint, token=settings.hf_token() or False, skip_instance_cache=True)
        _with_timeouts()
        root = model.fs_path(commit)
        with _hub_errors(handle, model):
            listing = cast("dict[str, dict[str, Any]]", fs.find(root, detail=True))
        where = f"{model.repo_id}@{commit[:12]}{model.suffix}"
        if not listing:
            raise ModuleNotFoundAtHandleError(
                f"{handle.raw!r}: there is no directory {model.subdir or '(root)'!r} in {model.repo_id} at "
                f"commit {commit} on {endpoint}."
            )
        if root in listing:
            raise NotASavedModelError(
                f"{handle.raw!r} names a file; name the directory that holds the SavedModel ({_FORM})."
            )
        wanted = _module_files(handle, model, listing, root)
        target = os.path.join(staging, "module")
        remote, local, total = checked_listing(wanted, root, target, handle)
        skipped = len(listing) - len(wanted)
        log.info(
            "Fetching %d files (%d bytes) of the SavedModel at %s from %s%s",
            len(remote),
            total,
            where,
            endpoint,
            f"; {skipped} other files of the repo stay on the Hub" if skipped else "",
        )
        records = _download_all(fs, [(r, p, wanted[r]) for r, p in zip(remote, local)], handle)
        files = {os.path.relpath(p, target).replace(os.sep, "/"): rec for p, rec in records.items()}
        source = f"{endpoint}/{model.repo_id}/tree/{commit}{model.suffix}"
        return Filled(root=target, source=source, files=files)


def _module_files(
    handle: Handle, model: HfModel, listing: dict[str, dict[str, Any]], root: str
) -> dict[str, dict[str, Any]]:
    """The listed files that make up the SavedModel at ``root``; a clear error when there is none."""
    prefix = root + "/"
    relative = {}
    for full in listing:
        try:
            if not full.startswith(prefix):
                raise ValueError("it is not inside it")
            relative[full] = relative_name(full[len(prefix) :])
        except ValueError as e:
            raise UnsafePathError(
                f"Module handle {handle.raw!r}: the Hub's listing of {root} names {full!r} ({e}); refusing "
                "to copy it."
            ) from None
    names = set(relative.values())
    if not names & set(SAVED_MODEL_FILES):
        raise NotASavedModelError(_what_it_holds(handle, model, sorted(names)))
    return {
        full: listing[full]
        for full, rel in relative.items()
        if rel in _MODULE_FILES or rel.split("/", 1)[0] in _MODULE_DIRS
    }


def _what_it_holds(handle: Handle, model: HfModel, names: list[str]) -> str:
    """Say what a repo without a SavedModel holds and what would load it."""
    at = f"at {model.subdir!r} " if model.subdir else ""
    deeper = sorted(
        {n.rsplit("/", 1)[0] for n in names if "/" in n and n.rsplit("/", 1)[1] in SAVED_MODEL_FILES}
    )
    lines = [f"{handle.raw!r} holds no TensorFlow SavedModel {at}(no saved_model.pb at its top)."]
    if deeper:
        base = f"hf://{model.repo_id}" + (f"@{model.revision}" if model.revision else "")
        suffix = f"{model.subdir}/" if model.subdir else ""
        lines.append("It has one deeper: use " + ", ".join(f"{base}/{suffix}{d}" for d in deeper[:3]) + ".")
    found: list[tuple[str, list[str], str]] = []
    for test, what, loader in _OTHER_FORMATS:
        hits = [n for n in names if test(n.rsplit("/", 1)[-1].lower())]
        if hits and what not in {f[0] for f in found}:
            found.append((what, hits, loader.format(repo=model.repo_id)))
    for what, hits, loader in found:
        lines.append(f"It holds {what} ({', '.join(hits[:3])}): load it with {loader}.")
    if not found and not deeper:
        lines.append(f"It holds: {', '.join(names[:10]) or 'nothing'}.")
    lines.append(
        "beam-hub runs TensorFlow SavedModels: export one (Keras 3: model.export(DIR)) and push it to "
        "the repo, or name the subdirectory that holds one."
    )
    return " ".join(lines)


def _download_all(
    fs: HfFileSystem, jobs: list[tuple[str, str, dict[str, Any]]], handle: Handle
) -> dict[str, FileRecord]:
    """Fetch every (remote, local, listing info) in parallel; the first failure stops the rest."""
    callback = download_callback(handle.raw)
    callback.set_size(sum(int(info.get("size") or 0) for _, _, info in jobs))
    lock = threading.Lock()
    stop = threading.Event()

    def progress(n: int) -> None:
        with lock:
            callback.relative_update(n)

    records: dict[str, FileRecord] = {}
    try:
        with ThreadPoolExecutor(
            max_workers=max(1, min(_WORKERS, len(jobs))), thread_name_prefix="hf-get"
        ) as pool:
            futures = {
                pool.submit(_download, fs, remote, local, info, handle, progress, stop): local
                for remote, local, info in jobs
            }
            done, _ = wait(futures, return_when=FIRST_EXCEPTION)
            failed = [f for f in done if f.exception() is not None]
            if failed:
                stop.set()
                for f in futures:
                    f.cancel()
                error = failed[0].exception()
                assert error is not None
                raise error
            for future, local in futures.items():
                records[local] = future.result()
    finally:
        callback.close()
    return records


def _download(
    fs: HfFileSystem,
    remote: str,
    local: str,
    info: dict[str, Any],
    handle: Handle,
    progress: Any,
    stop: threading.Event,
) -> FileRecord:
    """Stream one file to ``local``, checking it against its listing entry as it arrives."""
    expected = int(info.get("size") or 0)
    lfs = info.get("lfs")
    lfs_sha256 = getattr(lfs, "sha256", None) or (lfs.get("sha256") if isinstance(lfs, dict) else None)
    blob_id = info.get("blob_id")
    sha256 = hashlib.sha256()
    git = hashlib.sha1(b"blob %d\0" % expected) if lfs is None and blob_id else None
    got = 0
    with _hub_errors(handle, None), fs.open(remote, "rb", block_size=0) as src, open(local, "wb") as dst:
        while chunk := src.read(_CHUNK):
            if stop.is_set():
                raise DownloadError(f"Stopped fetching {remote}: another file of {handle.raw!r} failed.")
            got += len(chunk)
            if got > expected:
                raise IntegrityError(
                    f"{handle.raw!r}: {remote} sent more than the {expected} bytes the Hub lists for it."
                )
            sha256.update(chunk)
            if git is not None:
                git.update(chunk)
            dst.write(chunk)
            progress(len(chunk))
    digest = sha256.hexdigest()
    if got != expected:
        raise IntegrityError(f"{handle.raw!r}: {remote} ended after {got} of the {expected} bytes listed.")
    if lfs_sha256 is not None and digest != str(lfs_sha256).lower():
        raise IntegrityError(f"{handle.raw!r}: {remote} has sha256 {digest}; the Hub lists {lfs_sha256}.")
    if git is not None and git.hexdigest() != str(blob_id).lower():
        raise IntegrityError(
            f"{handle.raw!r}: {remote} has git blob id {git.hexdigest()}; the Hub lists {blob_id}."
        )
    return FileRecord(got, digest)


# -- the Hub's errors, in beam-hub's terms --------------------------------------


class _Unreachable(DownloadError):
    """The Hub did not answer (connection refused, timeout): a cached commit may stand in."""


@contextlib.contextmanager
def _hub_errors(handle: Handle, model: HfModel | None) -> Iterator[None]:
    """Turn huggingface_hub's and httpx's errors into beam-hub's, with what to do about them."""
    try:
        yield
    except Exception as e:
        translated = _translate(e, handle, model)
        if translated is e:
            raise
        raise translated from (e if isinstance(translated, _Unreachable) else None)


def _translate(e: BaseException, handle: Handle, model: HfModel | None) -> BaseException:
    import httpx2
    from huggingface_hub.errors import (
        EntryNotFoundError,
        GatedRepoError,
        HfHubHTTPError,
        OfflineModeIsEnabled,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    if isinstance(e, FileNotFoundError) and isinstance(
        e.__cause__, (RepositoryNotFoundError, RevisionNotFoundError)
    ):
        e = e.__cause__  # HfFileSystem wraps them
    repo = model.repo_id if model else handle.location
    if isinstance(e, GatedRepoError):
        return ModuleNotFoundAtHandleError(
            f"{handle.raw!r}: {repo} is gated: accept its terms on the Hub, then set HF_TOKEN to a token "
            "of that account."
        )
    if isinstance(e, RepositoryNotFoundError):
        return ModuleNotFoundAtHandleError(
            f"{handle.raw!r}: no model repo {repo} on {settings.hf_endpoint()} (if it is private, set "
            "HF_TOKEN to a token that can read it)."
        )
    if isinstance(e, RevisionNotFoundError):
        revision = model.revision if model else "?"
        return ModuleNotFoundAtHandleError(
            f"{handle.raw!r}: {repo} has no branch, tag or commit {revision!r}."
        )
    if isinstance(e, (EntryNotFoundError, FileNotFoundError)):
        return ModuleNotFoundAtHandleError(f"{handle.raw!r}: not found on the Hub ({e}).")
    if isinstance(e, (httpx2.TransportError, OfflineModeIsEnabled)):
        return _Unreachable(f"{type(e).__name__}: {e or 'no answer'}")
    if isinstance(e, HfHubHTTPError):
        status = e.response.status_code if e.response is not None else "?"
        return DownloadError(f"{handle.raw!r}: the Hub answered HTTP {status}: {e}")
    return e


def _fill_timeouts(request: Any) -> None:
    """httpx request hook: BEAM_HUB_CONNECT_TIMEOUT / BEAM_HUB_READ_TIMEOUT where none is set."""
    timeout = dict(request.extensions.get("timeout") or {})
    for name, value in (("connect", settings.connect_timeout()), ("read", settings.read_timeout())):
        if timeout.get(name) is None:
            timeout[name] = value
    request.extensions["timeout"] = timeout


def _with_timeouts() -> None:
    """Give huggingface_hub's shared client our timeouts where its calls set none (the tree listing)."""
    from huggingface_hub import get_session

    client = get_session()
    hooks = client.event_hooks
    if _fill_timeouts not in hooks["request"]:
        client.event_hooks = {**hooks, "request": [*hooks["request"], _fill_timeouts]}


# -- which commit a revision named ----------------------------------------------


def _ref_path(root: str, model: HfModel) -> str:
    return os.path.join(root, "hf-refs", hashlib.sha1(model.ref().encode()).hexdigest())


def _remember(root: str, model: HfModel, commit: str) -> None:
    path = _ref_path(root, model)
    tmp = f"{path}.{uuid.uuid4().hex}.tmp"
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump({"handle": model.ref(), "commit": commit}, f)
        os.replace(tmp, path)
    except OSError as e:  # a read-only cache still resolves; offline use just cannot find this ref
        log.debug("Could not record %s -> %s: %s", model.ref(), commit, e)
        with contextlib.suppress(OSError):
            os.unlink(tmp)


def _remembered(root: str, model: HfModel) -> str | None:
    try:
        with open(_ref_path(root, model), encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, ValueError):
        return None
    commit = data.get("commit") if isinstance(data, dict) and data.get("handle") == model.ref() else None
    return commit if isinstance(commit, str) and _COMMIT.match(commit) else None


def _newest_cached(root: str, model: HfModel) -> str | None:
    """The commit of this repo (and subdirectory) fetched into the cache most recently."""
    pattern = re.compile(
        re.escape(f"hf://{model.repo_id.lower()}@") + r"([0-9a-f]{40})" + re.escape(model.suffix) + "$"
    )
    newest: tuple[float, str] | None = None
    for entry in LocalCache(root).entries():
        match = pattern.match(entry.handle or "")
        if match is None or not entry.has_manifest:
            continue
        try:
            when = os.path.getmtime(f"{entry.path}.descriptor.txt")
        except OSError:
            when = entry.last_used
        if newest is None or when > newest[0]:
            newest = (when, match.group(1))
    return newest[1] if newest else None
