"""Following a moving name outside Beam: poll, check, adopt, release (beam_hub.follow.Follower)."""

from __future__ import annotations

import gc
import os
import weakref

import numpy as np
import pytest

import beam_hub
from beam_hub.batch import ApplySpec
from beam_hub.beam.shared_model import ModuleKey
from beam_hub.beam.versions import follower_of
from beam_hub.follow import Follower, output_structure

X = np.array([[1.0, 2.0, 3.0]], np.float32)
SPEC = ApplySpec()


def make_dynamic_width(path: str, width: int) -> str:
    """x: float32[?,3] -> {"default": float32[?,?]}: ``width`` copies of x's first column. The
    signature does not say the width; only a call shows it."""
    import tensorflow as tf

    class Tiled(tf.Module):
        def __init__(self) -> None:
            super().__init__()
            self.width = tf.Variable(width)  # a variable: the saved signature cannot know the width

        @tf.function(input_signature=[tf.TensorSpec([None, 3], tf.float32, name="x")])
        def serve(self, x):
            return {"default": tf.tile(x[:, :1], tf.stack([1, self.width]))}

    m = Tiled()
    tf.saved_model.save(m, path, signatures={"default": m.serve})
    return path


def make_writing_linear(path: str, target: str) -> str:
    """one_input's signature, but the serving function also writes a file (the audit refuses it)."""
    import tensorflow as tf

    class Writing(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None, 3], tf.float32, name="x")])
        def serve(self, x):
            tf.io.write_file(target, tf.strings.as_string(tf.reduce_sum(x)))
            return {"default": tf.reduce_sum(x, axis=1, keepdims=True)}

    m = Writing()
    tf.saved_model.save(m, path, signatures={"default": m.serve})
    return path


@pytest.fixture(scope="module")
def extra_modules(tmp_path_factory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("follow-modules")
    return {
        "width3": make_dynamic_width(str(root / "width3"), 3),
        "width5": make_dynamic_width(str(root / "width5"), 5),
        "writer": make_writing_linear(str(root / "writer"), str(root / "written.txt")),
    }


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def follow(handle: str, clock: Clock | None = None) -> tuple[Follower, list[str]]:
    loads: list[str] = []

    def load(concrete: str):
        loads.append(concrete)
        return ModuleKey(concrete, audit="refuse").load()

    compute = lambda module, batch: module.apply_batch(batch, SPEC)  # noqa: E731
    follower = follower_of(handle, load, SPEC, compute, poll_seconds=60, clock=clock or Clock())
    return follower, loads


def apply(follower: Follower, batch=(X[0],)) -> tuple[str, list]:
    version, module = follower.current()
    outputs = module.apply_batch(list(batch), SPEC)
    follower.computed(version, list(batch), outputs)
    return version, [o.tolist() for o in outputs]


@pytest.fixture
def dest(modules_dir, tmp_path) -> str:
    dest = str(tmp_path / "models" / "linear")
    beam_hub.publish(modules_dir["one_input"], dest)
    return dest


def test_starts_on_the_newest_and_adopts_a_new_version(modules_dir, dest):
    follower, loads = follow(f"{dest}@latest")
    assert apply(follower) == (f"{dest}/1.tar.gz", [[14.0]])
    assert follower.poll() is False and loads == [f"{dest}/1.tar.gz"]  # nothing moved: nothing loaded
    beam_hub.publish(modules_dir["one_input_x2"], dest)
    old = weakref.ref(follower.current()[1])
    assert follower.poll() is True
    assert apply(follower) == (f"{dest}/2.tar.gz", [[28.0]])
    assert [(e.kind, e.version) for e in follower.events()] == [("swap", f"{dest}/2.tar.gz")]
    assert follower.events() == []  # each event is reported once
    gc.collect()
    assert old() is None  # the old module is released once no batch holds it


def test_a_poll_is_started_when_due_and_not_before(modules_dir, dest):
    clock = Clock()
    follower, loads = follow(f"{dest}@latest", clock)
    beam_hub.publish(modules_dir["one_input_x2"], dest)
    clock.now = 59
    assert apply(follower)[0] == f"{dest}/1.tar.gz"
    clock.now = 60
    follower.current()  # due: a background poll starts; batches go on meanwhile
    polling = follower._polling
    assert polling is not None
    polling.join(timeout=60)
    assert apply(follower)[0] == f"{dest}/2.tar.gz"


@pytest.mark.parametrize("broken", ["signature", "corrupt", "audit", "outputs"])
def test_a_bad_version_is_rejected_once_and_a_later_good_one_adopted(
    modules_dir, extra_modules, tmp_path, caplog, broken
):
    dest = str(tmp_path / "models" / "m")
    beam_hub.publish(extra_modules["width3"] if broken == "outputs" else modules_dir["one_input"], dest)
    follower, loads = follow(f"{dest}@latest")
    first = apply(follower)
    if broken == "signature":
        beam_hub.publish(modules_dir["text_embedder"], dest)  # strings in: another signature
    elif broken == "corrupt":
        with open(os.path.join(dest, "2.tar.gz"), "wb") as f:
            f.write(os.urandom(4096))
    elif broken == "audit":
        beam_hub.publish(extra_modules["writer"], dest, allow_risky=True)
    else:
        beam_hub.publish(extra_modules["width5"], dest)  # same signature, other output width
    assert follower.poll() is False
    bad = f"{dest}/2.tar.gz"
    why = follower.rejected[bad]
    expected = {
        "signature": "its signature changed",
        "corrupt": "Error",
        "audit": "UnsafeModuleError",
        "outputs": "on the last batch its outputs differ: ('float32', (3,)) became ('float32', (5,))",
    }[broken]
    assert expected in why, why
    assert f"not adopting {bad}" in caplog.text
    assert [(e.kind, e.version) for e in follower.events()] == [("rejected", bad)]
    assert apply(follower) == first  # the stream goes on with the current version
    n = len(loads)
    assert follower.poll() is False and len(loads) == n  # never tried again
    beam_hub.publish(extra_modules["width3"] if broken == "outputs" else modules_dir["one_input_x2"], dest)
    assert follower.poll() is True
    assert apply(follower)[0] == f"{dest}/3.tar.gz"


def test_an_alias_moved_back_is_followed_back(modules_dir, dest):
    beam_hub.publish(modules_dir["one_input_x2"], dest)
    beam_hub.set_alias(dest, "champion", 2)
    follower, _ = follow(f"{dest}@champion")
    assert apply(follower) == (f"{dest}/2.tar.gz", [[28.0]])
    beam_hub.publish(modules_dir["one_input"], dest)  # version 3: not the champion, not followed
    assert follower.poll() is False
    beam_hub.set_alias(dest, "champion", 1)  # the rollback
    assert follower.poll() is True
    assert apply(follower) == (f"{dest}/1.tar.gz", [[14.0]])


def test_a_failed_poll_keeps_the_current_version(modules_dir, dest, caplog):
    follower, _ = follow(f"{dest}@latest")
    os.rename(dest, dest + "-moved")  # the listing fails: nothing there now
    assert follower.poll() is False
    assert "could not ask where it points now" in caplog.text
    os.rename(dest + "-moved", dest)
    assert apply(follower) == (f"{dest}/1.tar.gz", [[14.0]])


def test_output_structure_ignores_batch_size_and_string_width():
    a = [{"x": np.zeros(4, np.float32), "s": np.array(b"ab")}] * 2
    b = [{"x": np.ones(4, np.float32), "s": np.array(b"abcdef")}] * 5
    assert output_structure(a) == output_structure(b)
    assert output_structure({"y": np.zeros((2, 7))}) == output_structure({"y": np.zeros((9, 7))})
    assert output_structure({"y": np.zeros((2, 7))}) != output_structure({"y": np.zeros((2, 8))})
