"""Module archives packed the ways people pack them, with the real tools: GNU tar, bsdtar
(libarchive), Python's tarfile and git. Nothing here uses beam-hub's own ``pack``.

Each ``Form`` packs a module directory into an archive; ``better`` says why tensorflow_hub fails
on a form that beam-hub loads (the tests check both), and ``base`` which module it packs:
``short`` (plain names), ``long`` (an asset whose path is past 100 bytes, so gnu format writes
``././@LongLink`` headers and pax a path record), ``sparse`` (an extra asset with holes, so
``tar -S`` writes a sparse member) or ``linked`` (an extra asset that is a hard link to the
vocabulary, as a deduplicating store such as DVC leaves them, so tar writes a link member).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tarfile
from collections.abc import Callable
from dataclasses import dataclass

LONG_VOCAB_NAME = "vocabulary-" + "words-of-the-module-" * 6 + "v1.txt"  # 137 bytes
GUIDE = ["--owner=0", "--group=0"]  # TF Hub's hosting guide: tar -cz -f m.tar.gz --owner=0 --group=0 -C DIR .


def have(tool: str) -> bool:
    return shutil.which(tool) is not None


def require(tool: str) -> None:
    """Skip the test when ``tool`` is missing; fail it under BEAM_HUB_REQUIRE_TOOLS=1 (as `.ci/run` sets)."""
    import pytest

    if have(tool):
        return
    package = {"bsdtar": "libarchive-tools"}.get(tool, tool)
    if os.environ.get("BEAM_HUB_REQUIRE_TOOLS"):
        raise RuntimeError(f"{tool} is required here: apt-get install {package}")
    pytest.skip(f"{tool} is not installed (apt-get install {package})")


def run(*cmd: str, cwd: str | None = None) -> None:
    require(cmd[0])
    subprocess.run(cmd, check=True, cwd=cwd, capture_output=True, timeout=120)


def gnu(*opts: str, what: tuple[str, ...] = (".",)) -> Callable[[str, str], None]:
    """``tar -c <opts> -f OUT -C DIR <what>`` with GNU tar."""

    def pack(src: str, out: str) -> None:
        run("tar", "-c", *opts, "-f", out, "-C", src, *what)

    return pack


def bsd(*opts: str, what: tuple[str, ...] = (".",)) -> Callable[[str, str], None]:
    """``bsdtar -c <opts> -f OUT -C DIR <what>`` (libarchive, the tar of macOS and FreeBSD)."""

    def pack(src: str, out: str) -> None:
        run("bsdtar", "-c", *opts, "-f", out, "-C", src, *what)

    return pack


def one_folder(tool: str, *opts: str) -> Callable[[str, str], None]:
    """``tar -czf OUT my_model/``: the module inside one top-level folder."""

    def pack(src: str, out: str) -> None:
        parent = out + ".d"
        shutil.copytree(src, os.path.join(parent, "my_model"))
        run(tool, "-c", *opts, "-f", out, "-C", parent, "my_model")
        shutil.rmtree(parent)

    return pack


def absolute(src: str, out: str) -> None:
    """``tar -czf OUT /abs/path/to/model``: GNU tar drops the leading '/' and keeps the whole path."""
    run("tar", "-czf", out, os.path.abspath(src))


def files_before_directories(src: str, out: str) -> None:
    """Every file named before the directory that holds it (``tar --no-recursion`` of a file list)."""
    files, dirs = [], []
    for root, subdirs, names in os.walk(src):
        rel = os.path.relpath(root, src)
        dirs += [os.path.normpath(os.path.join(rel, d)) for d in subdirs]
        files += [os.path.normpath(os.path.join(rel, n)) for n in names]
    run("tar", "-czf", out, "--no-recursion", "-C", src, *sorted(files), *sorted(dirs))


def appended(src: str, out: str) -> None:
    """``tar -cf``, then ``tar -rf`` appends saved_model.pb again: the same member twice."""
    run("tar", "-cf", out, "-C", src, ".")
    run("tar", "-rf", out, "-C", src, "./saved_model.pb")


def concatenated(compressor: str, parts: int = 3) -> Callable[[str, str], None]:
    """The tar compressed in ``parts`` streams written one after another, as pbzip2 and parallel
    xz/gzip tools write them and as gzip's and bzip2's manuals show (``gzip -c part >> m.tar.gz``)."""

    def pack(src: str, out: str) -> None:
        whole = out + ".tar"
        run("tar", "-cf", whole, *GUIDE, "-C", src, ".")
        with open(whole, "rb") as f:
            data = f.read()
        os.unlink(whole)
        step = -(-len(data) // parts)
        with open(out, "wb") as f:
            for i in range(0, len(data), step):
                part = subprocess.run(
                    [compressor, "-c"], input=data[i : i + step], capture_output=True, check=True
                )
                f.write(part.stdout)

    return pack


def py_tarfile(
    mode: str = "w:gz", arcname: str = ".", fmt: int = tarfile.PAX_FORMAT
) -> Callable[[str, str], None]:
    """``tarfile.open(OUT, mode).add(DIR, arcname=...)``, as scripts and notebooks pack."""

    def pack(src: str, out: str) -> None:
        with tarfile.open(out, mode, format=fmt) as tar:
            tar.add(src, arcname=arcname)

    return pack


def py_files_only(src: str, out: str) -> None:
    """Python's tarfile adding each file by its relative path: no directory members at all."""
    with tarfile.open(out, "w:gz") as tar:
        for root, _dirs, names in os.walk(src):
            for name in sorted(names):
                full = os.path.join(root, name)
                tar.add(full, arcname=os.path.relpath(full, src))


def git_archive(src: str, out: str) -> None:
    """``git archive --format=tar.gz HEAD`` of a repository holding the module at its root (the
    archive starts with a pax global header carrying the commit id)."""
    repo = out + ".git.d"
    shutil.copytree(src, repo)
    env = ["-c", "user.name=t", "-c", "user.email=t@example.com", "-c", "init.defaultBranch=main"]
    run("git", *env, "init", "-q", cwd=repo)
    run("git", *env, "add", "-A", cwd=repo)
    run("git", *env, "commit", "-q", "-m", "model", cwd=repo)
    run("git", "archive", "--format=tar.gz", "-o", out, "HEAD", cwd=repo)
    shutil.rmtree(repo)


@dataclass(frozen=True)
class Better:
    """Why tensorflow_hub 0.16 cannot load a form beam-hub loads, and the error it raises."""

    why: str
    error: str  # a regular expression its error message matches


@dataclass(frozen=True)
class Form:
    pack: Callable[[str, str], None]
    suffix: str = ".tar.gz"
    base: str = "short"
    better: Better | None = None
    tool: str = "tar"  # the program it needs, beside Python


ONE_FOLDER = Better(
    "tensorflow_hub extracts it, then finds no saved_model.pb at the entry's root",
    "contains neither 'saved_model.pb'",
)
NO_PARENT = Better(
    "tensorflow_hub does not create a directory before the files in it", "No such file or directory"
)
ONE_STREAM = Better(
    "tensorflow_hub's tarfile stream stops after the first compressed stream (its ReadError, reworded)",
    "does not appear to be a valid module",
)
HARD_LINK = Better(
    "tensorflow_hub refuses the hard link tar writes for a file it meets a second time",
    "Unexpected object type in tar archive: b'1'",
)

FORMS: dict[str, Form] = {
    # GNU tar: the hosting guide's command, then each format with and without --owner=0
    "gnu-guide": Form(gnu("-z", *GUIDE)),
    "gnu": Form(gnu("-z")),
    "gnu-ustar-owner0": Form(gnu("-z", "--format=ustar", *GUIDE)),
    "gnu-ustar": Form(gnu("-z", "--format=ustar")),
    "gnu-posix-owner0": Form(gnu("-z", "--format=posix", *GUIDE)),
    "gnu-posix": Form(gnu("-z", "--format=posix")),
    "gnu-oldgnu": Form(gnu("-z", "--format=oldgnu")),
    "gnu-bzip2": Form(gnu("-j", *GUIDE), ".tar.bz2"),
    "gnu-xz": Form(gnu("-J", *GUIDE), ".tar.xz"),
    "gnu-plain": Form(gnu(*GUIDE), ".tar"),
    "gnu-long-names": Form(gnu("-z", *GUIDE), base="long"),
    "gnu-posix-long-names": Form(gnu("-z", "--format=posix", *GUIDE), base="long"),
    "gnu-sparse": Form(gnu("-z", "-S", *GUIDE), base="sparse"),
    "gnu-posix-sparse": Form(gnu("-z", "-S", "--format=posix", *GUIDE), base="sparse"),
    "gzip-members": Form(concatenated("gzip"), better=ONE_STREAM),
    "bzip2-streams": Form(concatenated("bzip2"), ".tar.bz2", better=ONE_STREAM),
    "xz-streams": Form(concatenated("xz"), ".tar.xz", better=ONE_STREAM),
    "gnu-appended": Form(appended, ".tar"),
    "gnu-directory-twice": Form(gnu(*GUIDE, what=(".", "./variables")), ".tar", better=HARD_LINK),
    "gnu-hard-linked-files": Form(gnu("-z", *GUIDE), base="linked", better=HARD_LINK),
    "bsdtar-hard-linked-files": Form(bsd("-z"), base="linked", better=HARD_LINK, tool="bsdtar"),
    "gnu-one-folder": Form(one_folder("tar", "-z"), better=ONE_FOLDER),
    "gnu-absolute-path": Form(absolute, better=ONE_FOLDER),
    "gnu-files-before-directories": Form(files_before_directories, better=NO_PARENT),
    # bsdtar (libarchive)
    "bsdtar": Form(bsd("-z"), tool="bsdtar"),
    "bsdtar-ustar": Form(bsd("-z", "--format=ustar"), tool="bsdtar"),
    "bsdtar-gnutar": Form(bsd("-z", "--format=gnutar"), tool="bsdtar"),
    "bsdtar-pax": Form(bsd("-z", "--format=pax"), tool="bsdtar"),
    "bsdtar-bzip2": Form(bsd("-j"), ".tbz2", tool="bsdtar"),
    "bsdtar-xz": Form(bsd("-J"), ".txz", tool="bsdtar"),
    "bsdtar-names": Form(
        bsd("-z", what=("saved_model.pb", "fingerprint.pb", "variables", "assets")), tool="bsdtar"
    ),
    "bsdtar-long-names": Form(bsd("-z"), base="long", tool="bsdtar"),
    "bsdtar-one-folder": Form(one_folder("bsdtar", "-z"), better=ONE_FOLDER, tool="bsdtar"),
    # Python's tarfile
    "tarfile-dot": Form(py_tarfile()),
    "tarfile-empty-arcname": Form(py_tarfile(arcname="")),
    "tarfile-gnu": Form(py_tarfile(fmt=tarfile.GNU_FORMAT)),
    "tarfile-ustar": Form(py_tarfile(fmt=tarfile.USTAR_FORMAT)),
    "tarfile-bz2": Form(py_tarfile("w:bz2"), ".tar.bz2"),
    "tarfile-xz": Form(py_tarfile("w:xz"), ".tar.xz"),
    "tarfile-plain": Form(py_tarfile("w"), ".tar"),
    "tarfile-long-names": Form(py_tarfile(), base="long"),
    "tarfile-one-folder": Form(py_tarfile(arcname="my_model"), better=ONE_FOLDER),
    "tarfile-files-only": Form(py_files_only, better=NO_PARENT),
    # git
    "git-archive": Form(git_archive, tool="git"),
}
