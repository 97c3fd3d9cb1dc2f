import os

import pytest

from beam_hub.errors import UnsupportedHandleError
from beam_hub.handles import parse_handle, with_format_query


def test_local_paths_and_file_urls_are_local(tmp_path):
    assert parse_handle(str(tmp_path)).location == str(tmp_path)
    assert parse_handle(tmp_path).is_local  # os.PathLike
    h = parse_handle(f"file://{tmp_path}/m.tar.gz")
    assert h.is_local and h.is_archive and h.location == f"{tmp_path}/m.tar.gz"
    assert parse_handle("relative/dir").location == os.path.abspath("relative/dir")


def test_remote_urls_keep_protocol_and_archive_detection_ignores_query():
    h = parse_handle("https://example.com/m/1?x=1")
    assert h.is_http and not h.is_archive
    assert parse_handle("https://example.com/m/1.tar.gz?token=a").is_archive
    assert parse_handle("gs://bucket/dir/model.tgz").is_archive
    assert parse_handle("gs://bucket/dir/model").protocol == "gs"
    assert parse_handle("GS://bucket/x").protocol == "gs"


def test_format_query_is_merged_into_an_existing_query():
    assert with_format_query("https://h/m/1") == "https://h/m/1?tf-hub-format=compressed"
    assert (
        with_format_query("https://h/m/1?a=b&tf-hub-format=uncompressed")
        == "https://h/m/1?a=b&tf-hub-format=compressed"
    )


def test_sha256_pin_is_parsed_and_validated():
    digest = "ab" * 32
    h = parse_handle(f"https://h/m/1#sha256={digest.upper()}")
    assert h.sha256 == digest and h.location == "https://h/m/1"
    with pytest.raises(UnsupportedHandleError, match="64 hex"):
        parse_handle("https://h/m/1#sha256=abc")
    with pytest.raises(UnsupportedHandleError, match="unknown pin"):
        parse_handle("https://h/m/1#md5=abc")


def test_empty_handle_is_refused():
    with pytest.raises(UnsupportedHandleError):
        parse_handle("  ")


def test_handles_are_hashable_values():
    a = parse_handle("https://host/m/1#sha256=" + "A" * 64)
    b = parse_handle("https://host/m/1#sha256=" + "a" * 64)
    assert a.sha256 == "a" * 64 and b.sha256 == "a" * 64
    assert len({a, parse_handle(a.raw)}) == 1 and {a: 1}[parse_handle(a.raw)] == 1
    assert a != b  # the raw string (the cache key) differs
