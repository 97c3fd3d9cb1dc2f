"""Fine-tuning: train a module's variables together with a head, export a reusable module.

The Reusable SavedModel API makes this possible: ``__call__(x, training=True)``,
``trainable_variables`` and ``regularization_losses``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import tensorflow as tf

from beam_hub.errors import FineTuneError
from beam_hub.examples import dense, feature_spec
from beam_hub.module import CALL, HubModule, load
from beam_hub.signatures import CallSpec, TensorInfo


@dataclass
class FineTuneConfig:
    handle: str
    input_key: str
    label_key: str
    head: Any = "classification"  # "classification", "regression", or a tf.Module / Keras layer
    num_classes: int | None = None
    epochs: int = 10
    batch_size: int = 32
    learning_rate: float = 1e-4  # well below training from scratch: pre-trained weights move gently
    validation_fraction: float = 0.1
    patience: int = 2  # epochs without a better validation loss before stopping
    train_base: bool = True  # False: the module stays frozen, only the head learns
    seed: int = 0
    cache_dir: str | None = None

    @property
    def task(self) -> str:
        if self.head in ("classification", "regression"):
            return self.head
        return "classification" if self.num_classes else "regression"


@dataclass
class TrainResult:
    module: tf.Module
    metrics: dict[str, float] = field(default_factory=dict)
    train_examples: int = 0
    validation_examples: int = 0
    epochs_run: int = 0


class _Dense(tf.Module):
    def __init__(self, inputs: int, outputs: int, seed: int) -> None:
        super().__init__(name="head")
        init = tf.keras.initializers.GlorotUniform(seed=seed)
        self.kernel = tf.Variable(init((inputs, outputs)), name="kernel")
        self.bias = tf.Variable(tf.zeros([outputs]), name="bias")

    def __call__(self, x: tf.Tensor) -> tf.Tensor:
        return tf.matmul(x, self.kernel) + self.bias


class FineTunedModule(tf.Module):
    """The base module with the head on top: itself a reusable, fine-tunable hub module."""

    def __init__(
        self, base: Any, call_spec: CallSpec, head: Any, input_spec: tf.TensorSpec, classification: bool
    ) -> None:
        super().__init__(name="fine_tuned")
        self.base = base
        self._base_call = call_spec  # how to call base.__call__ (with training= only if it takes it)
        self.head = head
        self.classification = classification
        self.regularization_losses = list(getattr(base, "regularization_losses", []) or [])
        spec = tf.TensorSpec(input_spec.shape, input_spec.dtype, name="inputs")

        @tf.function(input_signature=[spec, tf.TensorSpec([], tf.bool, name="training")])
        def call(x, training=False):
            return self._forward(x, training)

        @tf.function(input_signature=[spec])
        def serve(x):
            return {"default": self._forward(x, False)}

        self.__call__ = call
        self.serve = serve

    def _forward(self, x: tf.Tensor, training) -> tf.Tensor:
        def base(mode: bool) -> tf.Tensor:
            return self._base_call.invoke(self.base, {"inputs": x}, mode)

        if not isinstance(training, tf.Tensor):
            features = base(training)
        elif self._base_call.takes_training:
            features = tf.cond(training, lambda: base(True), lambda: base(False))
        else:
            features = base(False)
        out = self.head(features)
        return tf.nn.softmax(out) if self.classification else tf.squeeze(out, -1)


def _adam(variables: Sequence[tf.Variable], lr: float):
    """A minimal Adam over plain tf.Variables (Keras 3's optimizers reject restored variables' names)."""
    m = [tf.Variable(tf.zeros_like(v), trainable=False) for v in variables]
    s = [tf.Variable(tf.zeros_like(v), trainable=False) for v in variables]
    t = tf.Variable(0.0, trainable=False)

    def apply(grads: Sequence[tf.Tensor]) -> None:
        t.assign_add(1.0)
        b1, b2, eps = 0.9, 0.999, 1e-7
        for v, g, mv, sv in zip(variables, grads, m, s):
            if g is None:
                continue
            mv.assign(b1 * mv + (1 - b1) * g)
            sv.assign(b2 * sv + (1 - b2) * tf.square(g))
            mhat = mv / (1 - tf.pow(b1, t))
            shat = sv / (1 - tf.pow(b2, t))
            v.assign_sub(lr * mhat / (tf.sqrt(shat) + eps))

    return apply


def _check_trainable(module: HubModule) -> tuple[CallSpec, tf.TensorSpec]:
    if module.is_tf1_format:
        raise FineTuneError(
            f"{module.handle} is in the TF1 Hub format: it has signatures only and cannot be fine-tuned."
        )
    call = module.call_spec
    if call is None:
        raise FineTuneError(
            f"{module.handle} has no __call__ (signatures only): it cannot be fine-tuned. "
            "Fine-tuning needs the Reusable SavedModel API: __call__(x, training=...)."
        )
    if not module.trainable_variables:
        raise FineTuneError(f"{module.handle} has no trainable variables: there is nothing to fine-tune.")
    if call.takes_dict or len(call.signature.inputs) != 1:
        raise FineTuneError(
            f"{module.handle}: __call__ takes {call.signature.describe_inputs()}; fine-tuning "
            "needs a module whose __call__ takes one tensor."
        )
    (info,) = call.signature.inputs.values()
    return call, tf.TensorSpec(info.shape, info.dtype)


def parse_spec(input_spec: tf.TensorSpec, config: FineTuneConfig) -> dict[str, Any]:
    feature = feature_spec(TensorInfo(config.input_key, input_spec.dtype, input_spec.shape))
    label = tf.io.FixedLenFeature([], tf.int64 if config.task == "classification" else tf.float32)
    return {config.input_key: feature, config.label_key: label}


def train(files: Sequence[str], config: FineTuneConfig) -> TrainResult:
    """Fine-tune on TFRecord shards of tf.Examples (streamed with tf.data, never all in memory)."""
    classification = config.task == "classification"
    if classification and not config.num_classes:
        raise FineTuneError("head='classification' needs num_classes=N.")
    tf.random.set_seed(config.seed)
    module = load(config.handle, cache_dir=config.cache_dir)
    call_spec, input_spec = _check_trainable(module)
    base = module.saved_model

    def features_of(x: tf.Tensor, training: bool) -> tf.Tensor:
        return module(x, signature=CALL, training=training, numpy=False)

    spec = parse_spec(input_spec, config)
    every = max(2, round(1 / config.validation_fraction)) if config.validation_fraction > 0 else 0

    def parsed(validation: bool) -> tf.data.Dataset:
        """Every ``every``-th record is validation data, the rest training data (deterministic)."""
        ds = tf.data.TFRecordDataset(list(files)).enumerate()
        if every:
            ds = ds.filter(lambda i, _: tf.equal(i % every, 0) == validation)
        elif validation:
            ds = ds.take(0)

        def pair(_, record):
            example = tf.io.parse_single_example(record, spec)
            return dense(example[config.input_key], input_spec.dtype), example[config.label_key]

        return ds.map(pair)

    train_ds, val_ds = parsed(False), parsed(True)
    try:
        n_train = int(train_ds.reduce(0, lambda n, _: n + 1))
        n_val = int(val_ds.reduce(0, lambda n, _: n + 1))
    except tf.errors.InvalidArgumentError as e:
        raise FineTuneError(
            f"The training records do not fit the module's input {input_spec} under {config.input_key!r} "
            f"with an integer/float label under {config.label_key!r}: {e.message.splitlines()[0]}"
        ) from None
    if n_train == 0:
        raise FineTuneError("No training examples: the input PCollection was empty.")
    example = next(iter(train_ds.batch(2)))[0]
    features = features_of(example, False)
    width = int(features.shape[-1])
    head = (
        _Dense(width, (config.num_classes or 1) if classification else 1, config.seed)
        if config.head in ("classification", "regression")
        else config.head
    )
    head(features)  # builds Keras layers
    base_vars = list(module.trainable_variables) if config.train_base else []
    variables = base_vars + list(head.trainable_variables)
    step_fn = _adam(variables, config.learning_rate)
    reg = list(getattr(base, "regularization_losses", []) or []) if config.train_base else []

    def loss_fn(y_true, out):
        if classification:
            return tf.reduce_mean(
                tf.keras.losses.sparse_categorical_crossentropy(y_true, out, from_logits=True)
            )
        return tf.reduce_mean(tf.square(tf.squeeze(out, -1) - y_true))

    @tf.function
    def step(x, y):
        with tf.GradientTape() as tape:
            out = head(features_of(x, True))
            loss = loss_fn(y, out) + tf.add_n([r() for r in reg] or [0.0])
        step_fn(tape.gradient(loss, variables))
        return loss

    @tf.function
    def evaluate_batch(x, y):
        out = head(features_of(x, False))
        right = tf.reduce_sum(tf.cast(tf.equal(tf.argmax(out, -1), y), tf.float32)) if classification else 0.0
        return loss_fn(y, out) * tf.cast(tf.shape(x)[0], tf.float32), right

    def evaluate(ds) -> dict[str, float]:
        total, right, n = 0.0, 0.0, 0
        for x, y in ds.batch(256):
            loss, r = evaluate_batch(x, y)
            total, right, n = total + float(loss), right + float(r), n + int(x.shape[0])
        out = {"loss": total / max(n, 1)}
        if classification:
            out["accuracy"] = right / max(n, 1)
        return out

    best, best_values, waited, epochs_run = float("inf"), None, 0, 0
    monitor = val_ds if n_val else train_ds
    for epoch in range(config.epochs):
        for x, y in train_ds.shuffle(4096, seed=config.seed + epoch).batch(config.batch_size):
            step(x, y)
        epochs_run = epoch + 1
        metrics = evaluate(monitor)
        if metrics["loss"] < best - 1e-6:
            best, waited = metrics["loss"], 0
            best_values = [v.numpy() for v in variables]
        else:
            waited += 1
            if waited >= config.patience:
                break
    if best_values is not None:
        for v, value in zip(variables, best_values):
            v.assign(value)
    final = {f"validation_{k}" if n_val else f"train_{k}": v for k, v in evaluate(monitor).items()}
    exported = FineTunedModule(base, call_spec, head, input_spec, classification)
    return TrainResult(exported, final, n_train, n_val, epochs_run)


def export(result: TrainResult, config: FineTuneConfig, dest: str) -> str:
    """Save the fine-tuned module (signature "default", __call__, README.md) into the new directory ``dest``."""
    module = result.module
    tf.saved_model.save(module, dest, signatures={"default": module.serve})
    params = {k: v for k, v in asdict(config).items() if k not in ("head", "cache_dir")}
    params["head"] = config.head if isinstance(config.head, str) else type(config.head).__name__
    readme = [
        f"# Fine-tuned from {config.handle}",
        "",
        f"A {config.task} head on top of `{config.handle}`, trained together with it"
        + ("" if config.train_base else " (base frozen)")
        + ".",
        "",
        "- Signature `default`: input `inputs`, output `default` ("
        + ("class probabilities" if config.task == "classification" else "the predicted value")
        + ").",
        (
            "- `__call__(inputs, training=False)`, `variables`, `trainable_variables`, `regularization_losses`"
            " (the Reusable SavedModel API): it can be fine-tuned again."
        ),
        "",
        (
            f"Training data: {result.train_examples} examples, validation: {result.validation_examples}; "
            f"{result.epochs_run} epochs."
        ),
        "",
        "Validation metrics:",
        "",
        *[f"- {k}: {v:.4f}" for k, v in sorted(result.metrics.items())],
        "",
        "Parameters:",
        "",
        "```json",
        json.dumps(params, indent=1, sort_keys=True),
        "```",
    ]
    with open(os.path.join(dest, "README.md"), "w", encoding="utf-8") as f:
        f.write("\n".join(readme) + "\n")
    return dest
