"""KerasLayer: a hub module as a Keras 3 layer (TensorFlow backend), as tensorflow_hub.KerasLayer is for Keras 2.

    import keras, beam_hub
    model = keras.Sequential([keras.Input((2,)), beam_hub.KerasLayer(handle, trainable=True), keras.layers.Dense(1)])

Same arguments and meanings as tensorflow_hub.KerasLayer, so switching is changing the import.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from typing import Any

import keras

from beam_hub.module import CALL, load
from beam_hub.settings import AuditMode


@keras.saving.register_keras_serializable(package="beam_hub")
class KerasLayer(keras.layers.Layer):
    """Wraps any module beam-hub can load.

    ``trainable=True`` exposes the module's trainable variables as the layer's trainable weights
    (``model.fit`` fine-tunes them), passes ``training=`` to the module's ``__call__`` and adds its
    ``regularization_losses`` to the model's losses. ``signature`` picks a named signature
    (inference only), with ``output_key`` or ``signature_outputs_as_dict=True`` for its outputs.
    ``arguments`` are extra keyword arguments for ``__call__``. ``audit`` and ``allow_ops``: the
    audit policy applied before the module loads (see :func:`beam_hub.load`).
    """

    def __init__(
        self,
        handle: str | os.PathLike,
        trainable: bool = False,
        *,
        signature: str | None = None,
        output_key: str | None = None,
        signature_outputs_as_dict: bool = False,
        tags: str | Sequence[str] | None = None,
        arguments: Mapping[str, Any] | None = None,
        cache_dir: str | os.PathLike | None = None,
        audit: AuditMode | None = None,
        allow_ops: Sequence[str] = (),
        **kwargs: Any,
    ) -> None:
        super().__init__(trainable=trainable, **kwargs)
        self.handle = os.fspath(handle)
        self._signature_arg = signature
        self.signature = signature
        self.output_key = output_key
        self.signature_outputs_as_dict = signature_outputs_as_dict
        self.tags = tags
        self.arguments = dict(arguments or {})
        self.cache_dir = None if cache_dir is None else os.fspath(cache_dir)
        self.audit = audit
        self.allow_ops = list(allow_ops)
        if signature_outputs_as_dict and output_key:
            raise ValueError("Pass either output_key or signature_outputs_as_dict=True, not both.")
        if signature is not None and (trainable or self.arguments):
            raise ValueError(
                f"signature={signature!r} cannot be combined with trainable=True or arguments: a signature "
                "is a fixed inference graph. Leave signature unset to use the module's __call__ (the Reusable "
                "SavedModel API), which takes training= and is fine-tunable."
            )
        self._module = load(self.handle, tags=tags, cache_dir=cache_dir, audit=audit, allow_ops=allow_ops)
        if signature is None:
            if CALL not in self._module.signatures:
                if trainable:
                    raise ValueError(
                        f"{self.handle} has no __call__ (signatures only): it cannot be trained."
                    )
                self.signature = self._module.default_signature
        else:
            self._module.signature(signature)  # an unknown name fails here, with the list of names
        trainable_ids = {id(v) for v in self._module.trainable_variables}
        for i, variable in enumerate(self._module.variables):
            self._track_variable(
                keras.Variable(
                    initializer=variable,  # the Keras variable wraps the module's own tf.Variable
                    trainable=trainable and id(variable) in trainable_ids,
                    dtype=variable.dtype,
                    shape=variable.shape,
                    # optimizer slot names come from this name: no ":" or "/" allowed
                    name=re.sub(r"[^A-Za-z0-9_]", "_", variable.name.split(":")[0]) or f"variable_{i}",
                )
            )
        self._regularization_losses = list(self._module.regularization_losses)
        self.built = True

    def call(self, inputs: Any, training: Any = None) -> Any:
        if self.signature is not None:
            return self._module(
                inputs,
                signature=self.signature,
                as_dict=self.signature_outputs_as_dict,
                output_key=self.output_key,
                numpy=False,
            )
        training = bool(training) and self.trainable
        outputs = self._module(
            inputs,
            signature=CALL,
            as_dict=self.signature_outputs_as_dict,
            output_key=self.output_key,
            training=training,
            numpy=False,
            arguments=self.arguments,
        )
        if training:
            for loss in self._regularization_losses:
                self.add_loss(loss())
        return outputs

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "handle": self.handle,
            "signature": self._signature_arg,
            "output_key": self.output_key,
            "signature_outputs_as_dict": self.signature_outputs_as_dict,
            "tags": self.tags,
            "arguments": self.arguments,
            "cache_dir": self.cache_dir,
            "audit": self.audit,
            "allow_ops": self.allow_ops,
        }
