"""The web page of `serve`, in a real headless Chromium (Debian's chromium and chromium-driver,
driven by Selenium): it shows a named person from the demo, and enrols a new one from a file."""
import json
import shutil
import signal
import time
import urllib.request

import pytest

from conftest import start_serve

from gaitcam.config import DEMO_DIR

CHROMIUM, DRIVER = shutil.which("chromium"), shutil.which("chromedriver")
pytestmark = pytest.mark.skipif(CHROMIUM is None or DRIVER is None,
                                reason="needs chromium and chromium-driver (apt-get; .ci/run installs them)")


@pytest.fixture
def served(tmp_path):
    base, child = start_serve(tmp_path)
    yield base
    child.send_signal(signal.SIGTERM)
    child.communicate(timeout=60)


@pytest.fixture
def browser(tmp_path):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-quic", f"--user-data-dir={tmp_path / 'chromium'}", "--window-size=1200,900"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(DRIVER), options=options)
    driver.set_page_load_timeout(30)
    yield driver
    driver.quit()


def _wait(predicate, seconds: float = 30.0):
    """Polls `predicate` (bounded); an element the page re-rendered while it was read counts as
    not yet."""
    from selenium.common.exceptions import StaleElementReferenceException

    end = time.monotonic() + seconds
    while time.monotonic() < end:
        try:
            if (value := predicate()):
                return value
        except StaleElementReferenceException:
            pass
        time.sleep(0.25)
    return None


def test_the_page_names_people_in_view_and_enrols_a_new_one(served, browser, tmp_path):
    from selenium.webdriver.common.by import By

    browser.get(served)
    named = _wait(lambda: [e.text for e in browser.find_elements(By.CSS_SELECTOR, "#tracks td.named")])
    assert named and set(named) <= {"Ada", "Ben", "Chloe", "Dev"}, named  # a demo person, named live
    assert {r.get_attribute("data-name") for r in browser.find_elements(By.CSS_SELECTOR, "#people tr")} == \
        {"Ada", "Ben", "Chloe", "Dev"}
    browser.find_element(By.ID, "enrol-name").send_keys("Eve")
    browser.find_element(By.ID, "enrol-file").send_keys(str(DEMO_DIR / "Chloe.gaitrec"))
    browser.find_element(By.ID, "enrol-button").click()
    said = _wait(lambda: (m := browser.find_element(By.ID, "message").text).startswith(("enrolled", "not")) and m)
    assert said and said.startswith("enrolled Eve"), said
    assert _wait(lambda: "Eve" in {r.get_attribute("data-name") for r in browser.find_elements(By.CSS_SELECTOR,
                                                                                               "#people tr")})
    people = json.loads(urllib.request.urlopen(f"{served}/api/v1/gallery", timeout=10).read())
    assert "Eve" in {p["name"] for p in people}
    shot = tmp_path / "page.png"
    browser.save_screenshot(str(shot))
    assert shot.stat().st_size > 10_000
