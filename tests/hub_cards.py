"""A hub root as a team would publish it: three versions of two models with model cards, and one
module whose README tries to run script. Used by the page, API and browser tests."""

from __future__ import annotations

import os
import shutil

import beam_hub

FRUIT_CARD = """---
license: apache-2.0
task: image-classification
language: [en]
fine-tunable: true
tags: [fruit, pets]
base_model: acme/seeds
---
# Fruit to pets, v{n}

Turns fruit into pets, version {n}.

| input | dtype |
|---|---|
| apples | float32 |
"""

LINEAR_CARD = """---
task: text-embedding
tags: [linear, tiny]
license: mit
---
# Linear {n}

Multiplies by three numbers.
"""

HOSTILE_CARD = """---
tags: [evil]
title: !!python/object/apply:os.system ["echo pwned"]
---
# Hostile <script>document.title='pwned'</script>

<img src=x onerror="document.title='pwned'">
<iframe src="http://203.0.113.1/"></iframe>
[click me](javascript:document.title='pwned') ![remote](http://203.0.113.1/pixel.png)
<a href="javascript:alert(1)">raw link</a>
"""


def publish_versions(module_dir: str, card: str, dest: str, n: int, work) -> list[str]:
    handles = []
    for i in range(1, n + 1):
        src = work / f"{os.path.basename(dest)}-{i}"
        shutil.copytree(module_dir, src)
        (src / "README.md").write_text(card.replace("{n}", str(i)), encoding="utf-8")
        handles.append(beam_hub.publish(str(src), dest))
    return handles


def make_hub_root(work, modules_dir) -> str:
    """Publish acme/fruit 1-3, acme/linear 1-3 and mallory/hostile 1 under ``work``/root."""
    root = work / "root"
    publish_versions(modules_dir["fruit"], FRUIT_CARD, str(root / "acme" / "fruit"), 3, work)
    publish_versions(modules_dir["one_input"], LINEAR_CARD, str(root / "acme" / "linear"), 3, work)
    publish_versions(modules_dir["one_input"], HOSTILE_CARD, str(root / "mallory" / "hostile"), 1, work)
    return str(root)
