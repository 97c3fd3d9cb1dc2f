"""Named aliases (DEST@NAME): set, moved, rolled back and removed beside the versions, resolved
everywhere a handle is taken, never both won by two writers at once."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

import beam_hub
from beam_hub import alias_store
from beam_hub.errors import AliasConflictError, AliasError, ModuleNotFoundAtHandleError
from helpers import REPO

X = np.array([[1.0, 2.0, 3.0]], np.float32)


@pytest.fixture
def dest(modules_dir, tmp_path) -> str:
    """Two published versions: 1 computes 14 for X, 2 doubles it (28)."""
    dest = str(tmp_path / "models" / "linear")
    beam_hub.publish(modules_dir["one_input"], dest)
    beam_hub.publish(modules_dir["one_input_x2"], dest)
    return dest


def test_an_alias_moves_rolls_back_and_is_removed(dest, cache_dir):
    assert beam_hub.list_aliases(dest) == {}
    first = beam_hub.set_alias(dest, "champion", 1)
    assert (first.version, first.handle, first.changes) == ("1", f"{dest}/1.tar.gz", 1)
    assert beam_hub.resolve_version(f"{dest}@champion") == f"{dest}/1.tar.gz"
    np.testing.assert_allclose(beam_hub.load(f"{dest}@champion")(X), [[14.0]])

    beam_hub.set_alias(dest, "champion", "2")
    np.testing.assert_allclose(beam_hub.load(f"{dest}@champion")(X), [[28.0]])
    back = beam_hub.set_alias(dest, "champion", 1)  # a rollback is a move like any other
    assert (back.version, back.changes) == ("1", 3)
    assert beam_hub.resolve(f"{dest}@champion") == beam_hub.resolve(f"{dest}/1.tar.gz")

    beam_hub.set_alias(dest, "candidate", 2)
    assert {n: a.version for n, a in beam_hub.list_aliases(dest).items()} == {
        "candidate": "2",
        "champion": "1",
    }
    beam_hub.remove_alias(dest, "candidate")
    assert list(beam_hub.list_aliases(dest)) == ["champion"]
    with pytest.raises(ModuleNotFoundAtHandleError, match=r"no alias 'candidate' \(its aliases: champion\)"):
        beam_hub.resolve_version(f"{dest}@candidate")
    # the history stays: every change is a record of its own
    records = sorted(os.listdir(os.path.join(dest, "_aliases", "champion")))
    assert records == ["00000001.json", "00000002.json", "00000003.json"]
    assert [json.load(open(os.path.join(dest, "_aliases", "champion", r)))["version"] for r in records] == [
        "1",
        "2",
        "1",
    ]
    # the versions are untouched and `latest` still means the newest
    assert beam_hub.resolve_version(f"{dest}@latest") == f"{dest}/2.tar.gz"
    assert beam_hub.publish(beam_hub.resolve(f"{dest}/1.tar.gz"), dest) == f"{dest}/3.tar.gz"


@pytest.mark.parametrize(
    ("name", "version", "match"),
    [
        ("latest", 1, "'latest' is not an alias you can set"),
        ("9lives", 1, "must start with a letter"),
        ("a/b", 1, "must start with a letter"),
        ("x" * 65, 1, "at most 64"),
        ("champion", 7, r"has no version '7' \(versions: 1, 2\)"),
        ("champion", "../1", "must be letters, digits"),
    ],
)
def test_bad_names_and_missing_versions_are_refused_and_nothing_is_written(dest, name, version, match):
    with pytest.raises(AliasError, match=match):
        beam_hub.set_alias(dest, name, version)
    assert not os.path.exists(os.path.join(dest, "_aliases"))


@pytest.mark.parametrize("name", ["champion", "Prod_v2-eu", "x" * 64, "stable-2026"])
def test_the_names_people_use_are_taken(dest, name):
    """The legitimate twins of the refused names: MLflow- and Vertex-style aliases."""
    assert beam_hub.set_alias(dest, name, 2).name == name
    assert beam_hub.resolve_version(f"{dest}@{name}") == f"{dest}/2.tar.gz"


def test_an_alias_of_a_tf_serving_version_directory(modules_dir, tmp_path):
    """The legitimate twin of a missing version: TF Serving's <n>/ directories are versions too."""
    import shutil

    base = tmp_path / "serving"
    shutil.copytree(modules_dir["one_input_x2"], base / "1733300000")
    shutil.copytree(modules_dir["one_input"], base / "1733300900")
    os.unlink(base / "1733300900" / "variables" / "variables.index")  # still being written
    beam_hub.set_alias(str(base), "stable", 1733300000)
    assert beam_hub.resolve_version(f"{base}@stable") == f"{base}/1733300000"
    with pytest.raises(AliasError, match="not a whole version"):
        beam_hub.set_alias(str(base), "stable", 1733300900)


def test_two_writers_cannot_both_win(dest):
    """Both computed the same next record: the second create fails, loudly, and the first stands."""
    beam_hub.set_alias(dest, "champion", 1)
    alias_store._write(dest, "champion", 2, "2")  # the other writer got there first
    with pytest.raises(AliasConflictError, match="moved by someone else"):
        alias_store._write(dest, "champion", 2, "1")
    assert beam_hub.get_alias(dest, "champion").version == "2"


def test_racing_processes_each_win_or_hear_so(dest):
    """Eight processes set the same alias at once: every record is written once, whole, and
    each process either set it or was told it lost (nothing is overwritten)."""
    code = (
        "import sys, beam_hub\nfrom beam_hub.errors import AliasConflictError\n"
        "try:\n    beam_hub.set_alias(sys.argv[1], 'champion', sys.argv[2]); print('set')\n"
        "except AliasConflictError:\n    print('conflict')\n"
    )
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", code, dest, str(1 + i % 2)], cwd=REPO, stdout=subprocess.PIPE, text=True
        )
        for i in range(8)
    ]
    outcomes = [p.communicate(timeout=60)[0].strip() for p in procs]
    assert set(outcomes) <= {"set", "conflict"} and "set" in outcomes
    records = sorted(os.listdir(os.path.join(dest, "_aliases", "champion")))
    assert len(records) == outcomes.count("set")  # one record per win, none overwritten
    for r in records:
        assert json.load(open(os.path.join(dest, "_aliases", "champion", r)))["alias"] == "champion"


def test_a_damaged_newest_record_falls_back_to_the_one_before(dest, caplog):
    beam_hub.set_alias(dest, "champion", 1)
    with open(os.path.join(dest, "_aliases", "champion", "00000002.json"), "w") as f:
        f.write('{"alias": "champion", "version": "../../etc"}')  # hostile: not a version name
    with open(os.path.join(dest, "_aliases", "champion", "00000003.json"), "w") as f:
        f.write("")  # a local writer's crash
    assert beam_hub.get_alias(dest, "champion").version == "1"
    with open(os.path.join(dest, "_aliases", "champion", "00000004.json"), "w") as f:
        json.dump({"alias": "champion", "version": "2", "set_at": "\x1b]0;owned\x07"}, f)  # a terminal escape
    assert (beam_hub.get_alias(dest, "champion").version, beam_hub.get_alias(dest, "champion").set_at) == (
        "2",
        "",
    )
    assert "not an alias record" in caplog.text
    assert beam_hub.set_alias(dest, "champion", 1).changes == 5  # after every record, damaged or not
    assert beam_hub.get_alias(dest, "champion").set_at.endswith("+00:00")  # its own time kept


def test_a_path_whose_name_holds_an_at_sign_is_itself(modules_dir, tmp_path):
    """The legitimate twin of DEST@NAME: a directory really called m@v2 resolves as it always did."""
    import shutil

    odd = tmp_path / "m@v2"
    shutil.copytree(modules_dir["one_input"], odd)
    assert beam_hub.resolve_version(str(odd)) == str(odd)
    np.testing.assert_allclose(beam_hub.load(str(odd))(X), [[14.0]])
    with pytest.raises(ModuleNotFoundAtHandleError, match="has no alias 'v3'"):
        beam_hub.resolve_version(str(tmp_path / "m@v3"))


def test_an_alias_whose_version_was_deleted_says_so(dest):
    beam_hub.set_alias(dest, "champion", 2)
    os.unlink(os.path.join(dest, "2.tar.gz"))
    with pytest.raises(ModuleNotFoundAtHandleError, match="points at version 2, which is not there now"):
        beam_hub.resolve_version(f"{dest}@champion")


def test_aliases_on_gcs(modules_dir, bucket):
    dest = f"{bucket}/models/linear"
    beam_hub.publish(modules_dir["one_input"], dest)
    beam_hub.publish(modules_dir["one_input_x2"], dest)
    beam_hub.set_alias(dest, "champion", 2)
    assert beam_hub.resolve_version(f"{dest}@champion") == f"{dest}/2.tar.gz"
    np.testing.assert_allclose(beam_hub.load(f"{dest}@champion")(X), [[28.0]])
    # the emulator enforces GCS's create-if-absent precondition (ifGenerationMatch=0)
    with pytest.raises(AliasConflictError):
        alias_store._write(dest, "champion", 1, "1")
    assert beam_hub.get_alias(dest, "champion").version == "2"
    beam_hub.set_alias(dest, "champion", 1)
    assert list(beam_hub.list_aliases(dest)) == ["champion"]
    assert beam_hub.resolve_version(f"{dest}@champion") == f"{dest}/1.tar.gz"


def test_aliases_cannot_be_set_through_a_server():
    with pytest.raises(AliasError, match="where the versions are stored"):
        beam_hub.set_alias("https://hub.example.com/acme/m", "champion", 1)


def test_the_cli_sets_lists_and_removes(dest):
    def cli(*args):
        return subprocess.run(
            [sys.executable, "-m", "beam_hub", "alias", *args],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=120,
        )

    done = cli("set", dest, "champion", "2")
    assert done.returncode == 0 and done.stdout.strip() == f"{dest}@champion -> {dest}/2.tar.gz"
    listed = cli("list", dest, "--json")
    assert [(a["alias"], a["version"], a["changes"]) for a in json.loads(listed.stdout)] == [
        ("champion", "2", 1)
    ]
    assert cli("list", dest).stdout.startswith("champion\t2\t")
    bad = cli("set", dest, "latest", "1")
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "Traceback" not in bad.stderr
    assert cli("rm", dest, "champion").returncode == 0
    gone = cli("rm", dest, "champion")
    assert gone.returncode == 2 and "has no alias 'champion'" in gone.stderr
    assert "no aliases under" in cli("list", dest).stdout
