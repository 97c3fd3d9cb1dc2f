"""Refresh the docs' screenshots of `beam-hub serve`: a hub of published models (the browser
tests' cards), headless chromium at 1200 px, the index and a module page.

    python scripts/screenshots.py [--out docs]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))


def take(driver, url: str, out: str) -> list[str]:
    """Screenshots of the index and a module page of the hub at ``url`` into ``out``."""
    os.makedirs(out, exist_ok=True)
    shots = []
    for name, path in (("hub-index.png", "/"), ("hub-module.png", "/acme/fruit/3")):
        driver.get(url + path)
        height = driver.execute_script("return document.documentElement.scrollHeight")
        driver.set_window_size(1200, min(max(height, 600), 1600))
        target = os.path.join(out, name)
        driver.save_screenshot(target)
        shots.append(target)
    return shots


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=os.path.join(os.path.dirname(HERE), "docs"))
    args = ap.parse_args()
    sys.path.insert(0, os.path.join(os.path.dirname(HERE), "tests"))
    from pathlib import Path

    import modules
    from helpers import Served
    from hub_cards import make_hub_root
    from test_browser import make_driver

    with tempfile.TemporaryDirectory() as work:
        work = Path(work)
        built = {name: getattr(modules, f"make_{name}")(str(work / name)) for name in ("fruit", "one_input")}
        served = Served(make_hub_root(work, built), pack_dir=str(work / "packs"))
        driver = make_driver()
        try:
            for f in take(driver, served.url, args.out):
                print(f)
        finally:
            driver.quit()
            served.stop()


if __name__ == "__main__":
    main()
