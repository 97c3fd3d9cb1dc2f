"""The hub in a real browser: Debian's chromium, headless, driven by selenium through Debian's
chromedriver, against a real `beam-hub serve` on 127.0.0.1. `.ci/run` installs both when missing
and sets BEAM_HUB_REQUIRE_BROWSER=1, so there a missing browser fails instead of skipping."""

from __future__ import annotations

import json
import os
import shutil
from urllib.parse import urlparse

import pytest

from helpers import get

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
if not (CHROMIUM and CHROMEDRIVER):
    if os.environ.get("BEAM_HUB_REQUIRE_BROWSER"):
        raise RuntimeError("chromium and chromedriver are required: apt-get install chromium chromium-driver")
    pytest.skip(
        "no chromium/chromedriver (apt-get install chromium chromium-driver)", allow_module_level=True
    )

from selenium import webdriver  # noqa: E402
from selenium.common.exceptions import NoAlertPresentException  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support import expected_conditions  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402


def make_driver(width: int = 1200, height: int = 900, javascript: bool = True):
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--no-first-run",
    ):
        options.add_argument(arg)
    options.add_argument(f"--window-size={width},{height}")
    if not javascript:
        options.add_experimental_option("prefs", {"profile.managed_default_content_settings.javascript": 2})
    options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    return webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))


@pytest.fixture(scope="module")
def browser():
    driver = make_driver()
    yield driver
    driver.quit()


def requested_hosts(driver) -> set[str]:
    """Every host the page asked for anything since the last call (Chrome's network log)."""
    hosts = set()
    for entry in driver.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message["method"] == "Network.requestWillBeSent":
            url = message["params"]["request"]["url"]
            if not url.startswith("data:"):
                hosts.add(urlparse(url).hostname)
    return hosts


def navigate(driver, act) -> None:
    """Do ``act`` (a click or a form submit) and wait until the browser has left the page: reading
    the next page before the old one is gone finds stale elements."""
    old = driver.find_element(By.TAG_NAME, "html")
    act()
    WebDriverWait(driver, 30).until(expected_conditions.staleness_of(old))


def listed(driver) -> list[str]:
    return [a.text for a in driver.find_elements(By.CSS_SELECTOR, "ul.models li > a > b")]


def test_the_index_lists_models_and_a_search_narrows_it(hub, browser):
    browser.get(hub.url + "/")
    assert listed(browser) == ["acme/fruit", "acme/linear", "mallory/hostile"]
    box = browser.find_element(By.NAME, "q")
    box.send_keys("fruit")
    navigate(browser, box.submit)
    assert listed(browser) == ["acme/fruit"]
    assert "1 model matching" in browser.find_element(By.ID, "count").text
    browser.get(hub.url + "/")
    navigate(browser, browser.find_element(By.CSS_SELECTOR, "ul.models a.tag[href='/?tag=tiny']").click)
    assert listed(browser) == ["acme/linear"]


def test_a_module_page_renders_the_readme(hub, browser):
    browser.get(hub.url + "/acme/fruit/2")
    card = browser.find_element(By.CSS_SELECTOR, "article.card")
    assert card.find_element(By.TAG_NAME, "h1").text == "Fruit to pets, v2"
    cells = [td.text for td in card.find_elements(By.TAG_NAME, "td")]
    assert cells == ["apples", "float32"]
    meta = browser.find_element(By.ID, "metadata").text
    assert "license apache-2.0" in meta and "fruit" in meta
    assert browser.find_element(By.ID, "handle").text == hub.url + "/acme/fruit/2"
    assert requested_hosts(browser) <= {"127.0.0.1"}


def test_a_malicious_readme_runs_nothing(hub, browser):
    browser.get_log("browser")
    requested_hosts(browser)  # drop what earlier pages asked for
    browser.get(hub.url + "/mallory/hostile/1")
    assert browser.title.startswith("mallory/hostile/1")  # the scripts would have set it to "pwned"
    with pytest.raises(NoAlertPresentException):
        browser.switch_to.alert.text  # noqa: B018
    assert browser.execute_script("return document.scripts.length") == 0
    assert (
        browser.find_elements(By.TAG_NAME, "iframe") == [] and browser.find_elements(By.TAG_NAME, "img") == []
    )
    errors = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
    assert errors == []
    assert requested_hosts(browser) <= {"127.0.0.1"}  # no request to 203.0.113.1 or anywhere else
    link = browser.find_element(By.PARTIAL_LINK_TEXT, "image: remote")
    assert link.get_attribute("href") == "http://203.0.113.1/pixel.png"  # shown as a link, not fetched


def test_the_versions_page_lists_every_version_as_the_api_does(hub, browser):
    browser.get(hub.url + "/acme/linear")
    rows = browser.find_elements(By.CSS_SELECTOR, "#versions tr")[1:]
    shown = [row.find_elements(By.TAG_NAME, "td")[0].text for row in rows]
    assert shown == ["3 latest", "2", "1"]
    api = json.loads(get(hub.url + "/api/modules/acme/linear")[2])
    assert [v["version"] for v in api["versions"]] == ["3", "2", "1"]
    shas = [row.find_elements(By.TAG_NAME, "td")[3].text for row in rows]
    assert shas == [v["sha256"] for v in api["versions"]]
    navigate(browser, rows[1].find_element(By.TAG_NAME, "a").click)
    assert browser.current_url == hub.url + "/acme/linear/2"
    assert browser.find_element(By.CSS_SELECTOR, "article.card h1").text == "Linear 2"


def test_phone_width_and_no_javascript(hub):
    driver = make_driver(width=375, height=800, javascript=False)
    try:
        for path in ("/", "/acme/fruit", "/acme/fruit/3"):
            driver.get(hub.url + path)
            overflow = driver.execute_cdp_cmd(
                "Runtime.evaluate",
                {
                    "expression": "document.documentElement.scrollWidth - window.innerWidth",
                    "returnByValue": True,
                },
            )["result"]["value"]
            assert overflow <= 0, f"{path} scrolls sideways by {overflow}px at 375px"
        driver.get(hub.url + "/")
        box = driver.find_element(By.NAME, "q")
        box.send_keys("linear")
        navigate(driver, box.submit)  # a plain form: the server filters
        assert listed(driver) == ["acme/linear"]
    finally:
        driver.quit()


def test_screenshots(hub, browser, tmp_path):
    """The hosting page's pictures come from here (scripts/screenshots.py writes them into docs/)."""
    import sys

    sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(__file__)), "scripts"))
    from screenshots import take

    files = take(browser, hub.url, str(tmp_path))
    assert [os.path.basename(f) for f in files] == ["hub-index.png", "hub-module.png"]
    for f in files:
        with open(f, "rb") as fh:
            assert fh.read(8) == b"\x89PNG\r\n\x1a\n" and os.path.getsize(f) > 5000


def test_a_new_user_finds_a_model_by_tag_and_loads_its_handle(hub, browser):
    """The whole walk: index -> tag -> model -> latest version -> handle -> beam_hub and tensorflow_hub."""
    import numpy as np
    import tensorflow_hub

    import beam_hub

    browser.get(hub.url + "/")
    navigate(browser, browser.find_element(By.CSS_SELECTOR, "ul.models a.tag[href='/?tag=pets']").click)
    navigate(browser, browser.find_element(By.LINK_TEXT, "acme/fruit").click)
    assert browser.current_url == hub.url + "/acme/fruit"
    navigate(
        browser, browser.find_element(By.CSS_SELECTOR, "#versions tr:nth-child(2) a").click
    )  # the newest
    handle = browser.find_element(By.ID, "handle").text
    assert handle == hub.url + "/acme/fruit/3"
    assert f"beam_hub.load('{handle}')" in browser.find_element(By.TAG_NAME, "body").text
    x = np.array([[1, 2, 3]], np.float32)
    ours = beam_hub.load(handle)(dict(apples=x, oranges=x), signature="fruit_to_pet", as_dict=True)
    theirs = tensorflow_hub.load(handle).signatures["fruit_to_pet"](apples=x, oranges=x)
    np.testing.assert_allclose(ours["cats"], theirs["cats"].numpy())
    np.testing.assert_allclose(ours["cats"], x @ np.eye(3, 2))
