"""HubModule: a loaded module applied like a function, as in TF Hub's key concepts.

m = beam_hub.load("https://example.com/fruit/1")
y = m(x)                                              # the "default" signature, "default" output
out = m({"apples": x1, "oranges": x2}, signature="fruit_to_pet", as_dict=True)
cats = out["cats"]
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import tensorflow as tf

from beam_hub.errors import InputError, MissingCustomOpError, ModuleLoadError, SignatureNotFoundError
from beam_hub.resolvers import resolve
from beam_hub.safety import enforce
from beam_hub.safety.ops import custom_op_package
from beam_hub.savedmodel import is_tf1_hub_module
from beam_hub.settings import AuditMode
from beam_hub.signature_defs import CALL, default_signature
from beam_hub.signatures import CallSpec, SignatureSpec, bind_inputs, select_outputs, spec_of_signature

log = logging.getLogger(__name__)
DEFAULT_ALIASES = (None, "default")

_OP_NOT_REGISTERED = re.compile(r"Op type not registered '([^']+)'")


def _custom_op_error(exc: Exception, path: str) -> MissingCustomOpError | None:
    match = _OP_NOT_REGISTERED.search(str(exc))
    if not match:
        return None
    op = match.group(1)
    package = custom_op_package(op)
    todo = (
        f"`pip install {package.replace('_', '-')}` and `import {package}` before loading it"
        if package
        else "install and import the package that registers this op before loading it"
    )
    message = f"The module at {path} uses the op {op!r}, which is not part of core TensorFlow: {todo}."
    return MissingCustomOpError(message, op, package)


def load(
    handle: str | os.PathLike,
    *,
    tags: str | Sequence[str] | None = None,
    cache_dir: str | os.PathLike | None = None,
    local_cache_dir: str | os.PathLike | None = None,
    audit: AuditMode | None = None,
    allow_ops: Sequence[str] = (),
) -> HubModule:
    """Resolve ``handle`` through the cache, audit it, and load it as a :class:`HubModule`.

    ``tags`` picks the graph variant; the default is the module's only one for TF2 SavedModels
    and the empty tag set for the TF1 Hub format (``tfhub_module.pb``), as tensorflow_hub does.
    ``audit`` is "warn", "refuse" or "off" (default: ``BEAM_HUB_AUDIT``, else "warn"): what to do
    when the module holds ops that read or write files, call Python, reach the network or are
    unknown here; ``allow_ops`` accepts named ones. "refuse" raises
    :class:`~beam_hub.errors.UnsafeModuleError` before TensorFlow loads anything.
    """
    path = resolve(handle, cache_dir=cache_dir, local_cache_dir=local_cache_dir)
    enforce(path, os.fspath(handle), audit=audit, allow_ops=allow_ops)
    tf1 = is_tf1_hub_module(path)
    if tags is None and tf1:
        tags = []
    if isinstance(tags, str):
        tags = [tags]
    try:
        obj = tf.saved_model.load(path, tags=None if tags is None else list(tags))
    except Exception as e:
        custom = _custom_op_error(e, path)
        if custom:
            raise custom from e
        damaged = _cached_copy_problems(path)
        if damaged:
            raise ModuleLoadError(
                f"TensorFlow could not load the module {os.fspath(handle)!r}: its cached copy at {path} is "
                f"damaged ({'; '.join(damaged[:3])}). Run `beam-hub cache verify` (it removes damaged "
                f"entries, and the next load fetches the module again) or delete {path}."
            ) from e
        raise ModuleLoadError(
            f"TensorFlow could not load the module {os.fspath(handle)!r} from {path} "
            f"(tags={tags!r}): {type(e).__name__}: {str(e).strip().splitlines()[0] if str(e).strip() else ''}"
        ) from e
    return HubModule(obj, path=path, handle=os.fspath(handle), tags=tags, tf1=tf1)


def _cached_copy_problems(path: str) -> list[str]:
    """What is wrong with a cache entry's files (hashing them all), or [] when ``path`` is not one."""
    from beam_hub.cache import Manifest

    manifest = Manifest.read(path)
    return manifest.deep_problems(path) if manifest is not None else []


class HubModule:
    """A loaded module: call it with a batch, pick a signature, get numpy outputs."""

    def __init__(self, obj: Any, *, path: str, handle: str, tags: Any = None, tf1: bool = False) -> None:
        self.saved_model = obj  #: the object tf.saved_model.load returned
        self.path = path
        self.handle = handle
        self.tags = tags
        self.is_tf1_format = tf1
        self._functions: dict[str, Any] = dict(getattr(obj, "signatures", {}) or {})
        self._specs: dict[str, SignatureSpec] = {
            k: spec_of_signature(k, f) for k, f in self._functions.items()
        }
        call = getattr(obj, "__call__", None) if not tf1 else None  # noqa: B004 - we need the function
        #: how the Reusable SavedModel ``__call__`` is called (None: the module has none)
        self.call_spec: CallSpec | None = CallSpec.of(call) if call is not None else None
        if self.call_spec is not None:
            self._specs[CALL] = self.call_spec.signature
            self._functions[CALL] = call
        self._warned_training = False

    def __repr__(self) -> str:
        return f"HubModule({self.handle!r}, signatures={sorted(self._specs)})"

    # -- signatures ----------------------------------------------------------

    @property
    def signatures(self) -> dict[str, SignatureSpec]:
        """Every way to apply the module, by name (``"__call__"`` for the object's call)."""
        return dict(self._specs)

    @property
    def default_signature(self) -> str:
        """ "default" if present, else "serving_default", else "__call__"."""
        name = default_signature(self._specs)
        if name is not None:
            return name
        raise SignatureNotFoundError(
            f"Module {self.handle!r} has no default signature and no __call__; available: "
            f"{sorted(self._specs) or 'none'}. Pass signature=<name>."
        )

    def signature(self, name: str | None = None) -> SignatureSpec:
        """The spec of ``name`` (None or "default" for the module's default)."""
        resolved = self.default_signature if name in DEFAULT_ALIASES and name not in self._specs else name
        try:
            return self._specs[resolved]
        except KeyError:
            raise SignatureNotFoundError(
                f"Module {self.handle!r} has no signature {name!r}. Available signatures: "
                + "; ".join(str(s) for s in self._specs.values())
            ) from None

    # -- applying ------------------------------------------------------------

    def __call__(
        self,
        inputs: Any,
        signature: str | None = None,
        as_dict: bool = False,
        output_key: str | None = None,
        *,
        training: Any = None,
        numpy: bool = True,
        arguments: Mapping[str, Any] | None = None,
    ) -> Any:
        """Apply the module to a batch.

        ``inputs``: one value for a one-input signature, or a dict keyed by input name. Values may
        be numpy arrays, lists, Python strings or tensors; they are converted to the spec's dtype.
        Returns the "default" (or only) output, ``output_key``'s output, or every output as a
        dict with ``as_dict=True``; numpy arrays unless ``numpy=False`` (tensors, for training).
        ``training`` is passed to ``__call__`` (the Reusable SavedModel API) where it accepts it;
        signatures take none. ``arguments`` are extra keyword arguments for ``__call__``.
        """
        spec = self.signature(signature)
        fn = self._functions[spec.name]
        bound = bind_inputs(inputs, spec)
        if spec.name == CALL and self.call_spec is not None:
            if training is not None and training is not False and not self.call_spec.takes_training:
                self._warn_no_training()
            outputs = self.call_spec.invoke(fn, bound, training, **(arguments or {}))
        else:
            if arguments:
                raise InputError(f"Signature {spec.name!r} takes no extra arguments; only __call__ does.")
            if training is not None:
                raise InputError(
                    f"Signature {spec.name!r} takes no training argument; use signature='__call__' "
                    "(the Reusable SavedModel API) to apply the module in training mode."
                )
            outputs = fn(**bound)
        selected = select_outputs(outputs, spec, as_dict=as_dict, output_key=output_key)
        if not numpy:
            return selected
        if isinstance(selected, Mapping):
            return {k: _to_numpy(v) for k, v in selected.items()}
        return _to_numpy(selected)

    def _warn_no_training(self) -> None:
        if not self._warned_training:
            self._warned_training = True
            log.warning(
                "%s: its __call__ takes no training argument, so it cannot switch between training "
                "and inference behaviour (dropout, batch norm); it always runs as exported.",
                self.handle,
            )

    # -- the Reusable SavedModel API -----------------------------------------

    @property
    def variables(self) -> list[tf.Variable]:
        """The module's variables (the object's ``variables`` attribute, else all it tracks)."""
        own = getattr(self.saved_model, "variables", None)
        if own is not None:
            return list(own)
        return _tracked_variables(self.saved_model)

    @property
    def trainable_variables(self) -> list[tf.Variable]:
        own = getattr(self.saved_model, "trainable_variables", None)
        if own is not None:
            return list(own)
        return [v for v in self.variables if v.trainable]

    @property
    def regularization_losses(self) -> list[Any]:
        """Callables returning scalar losses, to add to the loss when fine-tuning."""
        return list(getattr(self.saved_model, "regularization_losses", []) or [])


def _to_numpy(value: Any) -> Any:
    return value.numpy() if hasattr(value, "numpy") else np.asarray(value)


def _tracked_variables(obj: Any) -> list[tf.Variable]:
    seen: dict[int, tf.Variable] = {}
    for node in tf.train.TrackableView(obj).descendants():
        if isinstance(node, tf.Variable) and id(node) not in seen:
            seen[id(node)] = node
    return list(seen.values())
