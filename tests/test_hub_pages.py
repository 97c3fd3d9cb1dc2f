"""`beam-hub serve` as a hub: published versions of two models with model cards, the index with
search, filters and paging, model and version pages, the JSON API, and READMEs that try to run
script. Over real HTTP against a real server process (the browser tests are in test_browser.py)."""

from __future__ import annotations

import json
import re

import pytest

from helpers import Served, get


def page(url: str) -> str:
    status, headers, body = get(url)
    assert status == 200, body[:300]
    assert "script-src" not in headers["Content-Security-Policy"]  # default-src 'none': no script at all
    assert headers["Content-Security-Policy"].startswith("default-src 'none'")
    return body.decode()


def api(url: str) -> dict:
    status, headers, body = get(url)
    assert status == 200 and headers["Content-Type"].startswith("application/json"), body[:300]
    return json.loads(body)


def test_the_index_lists_models_with_counts(hub):
    text = page(hub.url + "/")
    assert "3 models" in text
    for model in ("acme/fruit", "acme/linear", "mallory/hostile"):
        assert f"href='/{model}'" in text
    assert "Fruit to pets, v3" in text and "3 versions, latest 3" in text  # the latest card
    assert "image-classification (1)" in text and "text-embedding (1)" in text  # task facets


@pytest.mark.parametrize(
    "query, expected",
    [
        ("q=fruit", ["acme/fruit"]),
        ("q=LINEAR", ["acme/linear"]),  # names and titles, any case
        ("q=acme", ["acme/fruit", "acme/linear"]),
        ("q=pets", ["acme/fruit"]),  # a front matter tag
        ("q=nothing+like+this", []),
        ("tag=tiny", ["acme/linear"]),
        ("task=image-classification", ["acme/fruit"]),
        ("q=acme&tag=fruit", ["acme/fruit"]),
    ],
)
def test_search_and_filters_narrow_the_list_on_page_and_api(hub, query, expected):
    text = page(f"{hub.url}/?{query}")
    listed = re.findall(r"<li><a href='/([^']+)'><b>", text)
    assert listed == expected
    data = api(f"{hub.url}/api/modules?{query}")
    assert [m["model"] for m in data["models"]] == expected and data["total"] == len(expected)


def test_paging(hub, tmp_path, one_input_tgz):
    root = tmp_path / "many"
    for i in range(45):
        (root / "team" / f"model{i:02d}").mkdir(parents=True)
        (root / "team" / f"model{i:02d}" / "1.tar.gz").write_bytes(one_input_tgz)
    served = Served(str(root), pack_dir=str(tmp_path / "packs"))
    try:
        first = api(served.url + "/api/modules")
        third = api(served.url + "/api/modules?page=3")
        assert (first["total"], first["pages"], len(first["models"])) == (45, 3, 20)
        assert [m["model"] for m in third["models"]] == [f"team/model{i:02d}" for i in range(40, 45)]
        text = page(served.url + "/?page=2")
        assert "page 2 of 3" in text and "rel='prev' href='/?page=1'" in text and "href='/?page=3'" in text
        assert api(served.url + "/api/modules?page=99")["page"] == 3
        assert api(served.url + "/api/modules?page=x")["page"] == 1
    finally:
        served.stop()


def test_the_model_page_lists_every_version_newest_first(hub):
    text = page(hub.url + "/acme/fruit")
    rows = re.findall(r"<tr><td><a href='/acme/fruit/(\d+)'>", text)
    assert rows == ["3", "2", "1"]
    assert "<a href='/acme/fruit/3'>3</a> <b>latest</b>" in text
    data = api(hub.url + "/api/modules/acme/fruit")
    assert [v["version"] for v in data["versions"]] == ["3", "2", "1"]
    assert [v["latest"] for v in data["versions"]] == [True, False, False]
    for v in data["versions"]:  # the sha256 each page shows is the archive's
        assert v["sha256"] in text
        status, headers, body = get(v["download"])
        assert status == 200 and headers["ETag"] == f'"{v["sha256"]}"'
    assert data["front_matter"]["tags"] == ["fruit", "pets"]


def test_the_version_page_renders_the_card(hub):
    text = page(hub.url + "/acme/fruit/2")
    assert "<h1>Fruit to pets, v2</h1>" in text
    assert "<th>input</th>" in text and "<td>apples</td>" in text  # the README's table
    assert (
        "<tr><th>license</th><td>apache-2.0</td></tr>" in text and "<th>fine-tunable</th><td>yes</td>" in text
    )
    assert "fruit_to_pet" in text and "Clean: no op" in text
    for snippet in ("beam_hub.load(", "beam_hub.ApplyHubModule(", "hub.load("):
        assert snippet in text
    data = api(hub.url + "/api/modules/acme/fruit/2")
    assert data["title"] == "Fruit to pets, v2" and data["version"] == "2" and data["model"] == "acme/fruit"
    assert data["signatures"]["fruit_to_pet"]["outputs"]
    assert data["front_matter"]["base_model"] == ["acme/seeds"]


def test_a_hostile_readme_is_text_not_markup(hub):
    text = page(hub.url + "/mallory/hostile/1")
    body = text.split("<body>", 1)[1]
    assert "<script" not in body and "<iframe" not in body and "<img src=x" not in body
    assert "&lt;script&gt;" in body and "&lt;iframe" in body
    assert 'href="javascript' not in body and "href='javascript" not in body  # shown, never a link
    assert "<img" not in body  # a remote image is a link to it: nothing is fetched from elsewhere
    assert '<a href="http://203.0.113.1/pixel.png" class="image">[image: remote]</a>' in body
    assert "front matter ignored" in body  # the python/object tag is refused by safe_load, not run


def test_unknown_paths_are_404_on_pages_and_api(hub):
    assert get(hub.url + "/acme/nothing")[0] == 404
    assert get(hub.url + "/api/modules/acme/nothing")[0] == 404
    assert get(hub.url + "/api/modules/acme/fruit/9")[0] == 404


def test_a_card_is_read_from_an_archive_only_where_a_readme_belongs(tmp_path):
    """Only README.md at the archive's root counts, and an archive is not read to its end for it."""
    import io
    import tarfile

    from beam_hub.serve.card import MAX_MEMBERS_SCANNED, readme_of

    def archive(names: list[str]) -> str:
        path = tmp_path / f"a{len(names)}.tar.gz"
        with tarfile.open(path, "w:gz") as tar:
            for name in names:
                data = f"# {name}\n".encode()
                info = tarfile.TarInfo(name)
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
        return str(path)

    assert readme_of(None, archive(["README.md", "saved_model.pb"])) == "# README.md\n"
    assert readme_of(None, archive(["./README.md"])) == "# ./README.md\n"
    assert readme_of(None, archive(["../README.md", "docs/README.md", ".README.md"])) is None
    late = [f"variables/f{i}" for i in range(MAX_MEMBERS_SCANNED)] + ["README.md"]
    assert readme_of(None, archive(late)) is None


def test_a_changed_card_is_read_again_and_replaces_the_old_one(tmp_path, one_input):
    import os
    import shutil

    from beam_hub.serve.catalog import Catalog
    from beam_hub.serve.store import ModuleStore

    module_dir = tmp_path / "root" / "acme" / "m" / "1"
    shutil.copytree(one_input, module_dir)
    (module_dir / "README.md").write_text("# First\n", encoding="utf-8")
    store = ModuleStore(str(tmp_path / "root"), str(tmp_path / "packs"))
    catalog = Catalog(store)
    (module,) = store.modules()
    assert catalog.version(module).card.title == "First"
    (module_dir / "README.md").write_text("# Second\n", encoding="utf-8")
    later = os.stat(module_dir / "README.md").st_mtime + 10
    os.utime(module_dir / "README.md", (later, later))
    assert catalog.version(module).card.title == "Second"
    assert len(catalog._versions) == 1  # one entry per module, not one per state it ever had
