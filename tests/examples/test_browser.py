"""The HTML page of both example services in a real headless Chromium.

Debian's ``chromium`` and ``chromium-driver`` are installed with apt-get if missing (as
root, like the suite's redis-server); under ``CI=true`` failing to get them fails the
test, elsewhere it is skipped. Selenium is pointed at ``/usr/bin/chromedriver`` and
``/usr/bin/chromium``, so selenium-manager never downloads anything. Each service runs as
a subprocess (``python -m examples.web.<framework>_app``) on a free 127.0.0.1 port and is
stopped by its PID. When a test fails, a screenshot of every open tab and the page's HTML
are saved in the test's tmp dir and their paths printed.

Chrome's performance log (``goog:loggingPrefs``) records every request the browser sends:
it shows that the page, live through its event stream, makes no periodic request.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from selenium import webdriver
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support import expected_conditions as EC
from selenium.webdriver.support.wait import WebDriverWait

from examples.web.api import EVENT_FEEDS
from tests.conftest import IN_CI
from tests.examples.conftest import failed
from tests.servers.apt import apt_install, can_install
from tests.servers.common import ManagedProcess, ServerStartError, free_port, wait_for_port

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
REPO = Path(__file__).resolve().parents[2]
WAIT = 20.0  # seconds an explicit wait may take before the test fails
LIVE = 2.0  # seconds a pin may take to show on a follower's open page
IDLE = 4.0  # seconds an idle page is watched for requests


def ensure_chromium() -> None:
    """Install Debian's chromium and chromium-driver unless both are there."""
    if CHROMIUM.exists() and CHROMEDRIVER.exists():
        return
    if not can_install():
        raise ServerStartError(
            f"{CHROMIUM} / {CHROMEDRIVER} missing and cannot install them (needs root and "
            "apt-get); install Debian's 'chromium' and 'chromium-driver' packages"
        )
    apt_install(["chromium", "chromium-driver"])
    if not (CHROMIUM.exists() and CHROMEDRIVER.exists()):
        raise ServerStartError("apt-get installed chromium but the binaries are still missing")


@pytest.fixture(scope="session")
def chromium() -> None:
    started = time.monotonic()
    try:
        ensure_chromium()
    except Exception as exc:
        reason = f"headless Chromium unavailable: {type(exc).__name__}: {exc}"
        if IN_CI:
            pytest.fail(f"{reason} (CI=true)", pytrace=False)
        pytest.skip(reason)
    print(f"chromium ready in {time.monotonic() - started:.1f}s")


@pytest.fixture
def service_url(framework: str, tmp_path: Path) -> Iterator[str]:
    """The example service of ``framework`` as a subprocess, in memory, on a free port."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIOSTREAM_")}
    process = ManagedProcess(
        [sys.executable, "-m", f"examples.web.{framework}_app", "--port", str(port)],
        tmp_path / f"{framework}.log",
        cwd=REPO,
        env=env,
        name=f"{framework} example",
    )
    try:
        wait_for_port("127.0.0.1", port, timeout=30, process=process)
        yield f"http://127.0.0.1:{port}"
    finally:
        process.stop()


@pytest.fixture
def browser(chromium: None, request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[WebDriver]:
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for argument in (
        "--headless=new",
        "--no-sandbox",  # we run as root
        "--disable-dev-shm-usage",
        "--window-size=1280,1000",
        "--disable-gpu",
    ):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"performance": "ALL"})  # see requests_sent
    service = webdriver.ChromeService(executable_path=str(CHROMEDRIVER))
    driver = webdriver.Chrome(service=service, options=options)
    try:
        yield driver
    finally:
        try:
            if failed(request.node):
                for path in save_evidence(driver, tmp_path):
                    print(f"saved {path}")
        finally:
            driver.quit()


def save_evidence(driver: WebDriver, directory: Path) -> list[Path]:
    """A screenshot and the HTML of every open tab."""
    saved: list[Path] = []
    for index, handle in enumerate(driver.window_handles):
        driver.switch_to.window(handle)
        shot = directory / f"failure-tab{index}.png"
        if driver.save_screenshot(str(shot)):
            saved.append(shot)
        html = directory / f"failure-tab{index}.html"
        html.write_text(driver.page_source, encoding="utf-8")
        saved.append(html)
    return saved


def text_is(element_id: str, expected: str) -> Callable[[WebDriver], bool]:
    """Wait condition: the element's whole text is ``expected``."""

    def check(driver: WebDriver) -> bool:
        return bool(driver.find_element(By.ID, element_id).text.strip() == expected)

    return check


def contains(element_id: str, text: str) -> Callable[[WebDriver], bool]:
    return EC.text_to_be_present_in_element((By.ID, element_id), text)


def requests_sent(driver: WebDriver) -> list[tuple[str, str, str]]:
    """``(type, method, path)`` of each request the browser sent since the last call
    (type: ``Fetch``, ``EventSource``, ``Document``...), from Chrome's performance log."""
    sent = []
    for entry in driver.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message["method"] == "Network.requestWillBeSent":
            params = message["params"]
            path = urlsplit(params["request"]["url"]).path
            sent.append((params.get("type", ""), params["request"]["method"], path))
    return sent


def test_a_pin_arrives_live_on_a_page_that_never_polls(
    browser: WebDriver, service_url: str, framework: str
) -> None:
    with httpx.Client(base_url=service_url) as http:
        assert http.post("/api/users/1/following", json={"target_id": 2}).status_code == 200
        wait = WebDriverWait(browser, WAIT)
        browser.get(f"{service_url}/users/1")
        wait.until(contains("title", "bob's feeds"))
        wait.until(text_is("unseen-count", "0"))
        wait.until(text_is("notifications", "nothing yet"))
        wait.until(lambda d: ("EventSource", "GET", "/api/users/1/events") in requests_sent(d))

        # The page is loaded and listening: idle, it sends nothing at all.
        time.sleep(0.5)  # the last loads' answers
        requests_sent(browser)
        time.sleep(IDLE)
        assert requests_sent(browser) == [], f"the idle page sent requests within {IDLE}s"

        # carol pins (through the API): within LIVE seconds bob's page shows it, unasked.
        response = http.post("/api/users/2/pins", json={"board": "Kitchen", "title": "Figs"})
        assert response.status_code == 201, response.text
        live = WebDriverWait(browser, LIVE, poll_frequency=0.05)
        live.until(contains("feed", "carol pinned “Figs” to Kitchen"))
        live.until(text_is("unseen-count", "1"))
    wait.until(contains("aggregated", "carol pinned 1 pin"))
    wait.until(contains("notifications", "carol pinned “Figs” to Kitchen"))
    assert browser.find_element(By.ID, "unread-count").text == "1"
    # It read the feeds the update named, and nothing else; the stream stayed open.
    reads = set(requests_sent(browser))
    assert reads <= {("Fetch", "GET", f"/api/users/1/{name}") for name in EVENT_FEEDS}, reads


def test_follow_pin_and_see_it_arrive(browser: WebDriver, service_url: str, framework: str) -> None:
    timings: dict[str, float] = {}
    clock = time.monotonic()

    def lap(name: str) -> None:
        nonlocal clock
        now = time.monotonic()
        timings[name] = now - clock
        clock = now

    wait = WebDriverWait(browser, WAIT)
    browser.get(f"{service_url}/users/1")
    wait.until(contains("title", "bob's feeds"))
    wait.until(text_is("unseen-count", "0"))
    lap("open bob's page")

    # bob follows carol
    browser.find_element(By.ID, "follow-target").send_keys("2")
    browser.find_element(By.ID, "follow-button").click()
    wait.until(contains("status", "You follow carol"))
    wait.until(contains("following", "carol (2)"))
    bob = browser.current_window_handle
    lap("follow")

    # carol, in another tab, sees her new follower and pins something
    browser.switch_to.new_window("tab")
    browser.get(f"{service_url}/users/2")
    wait.until(contains("followers", "bob (1)"))
    wait.until(contains("notifications", "bob started following you"))
    title = browser.find_element(By.ID, "pin-title")
    title.send_keys("Sunset over Lisbon")
    browser.find_element(By.ID, "pin-button").click()
    wait.until(contains("status", "Pinned “Sunset over Lisbon”"))
    lap("pin in carol's tab")

    # back on bob's page, the event stream brings the pin and the unseen count
    browser.switch_to.window(bob)
    wait.until(text_is("unseen-count", "1"))
    wait.until(contains("feed", "carol pinned “Sunset over Lisbon” to Kitchen"))
    wait.until(contains("aggregated", "carol pinned 1 pin"))
    wait.until(contains("notifications", "carol pinned “Sunset over Lisbon”"))
    assert browser.find_element(By.ID, "unread-count").text == "1"
    unseen = browser.find_elements(By.CSS_SELECTOR, "#notifications li.unseen")
    assert len(unseen) == 1
    lap("pin arrives on bob's page")

    browser.find_element(By.ID, "mark-seen").click()
    wait.until(text_is("unseen-count", "0"))
    wait.until(lambda d: not d.find_elements(By.CSS_SELECTOR, "#notifications li.unseen"))
    assert browser.find_element(By.ID, "unread-count").text == "1"
    lap("mark seen")

    # carol edits the pin's title, then deletes it; bob's feeds follow
    carol = browser.window_handles[-1]
    browser.switch_to.window(carol)
    wait.until(contains("pins", "Sunset over Lisbon"))
    browser.find_element(By.ID, "edit-title").send_keys("Sunset over Porto")
    browser.find_element(By.CSS_SELECTOR, "#pins li button.edit").click()
    wait.until(contains("status", "Edited “Sunset over Porto”"))
    wait.until(contains("pins", "Sunset over Porto"))
    browser.switch_to.window(bob)
    browser.refresh()
    wait.until(contains("feed", "carol pinned “Sunset over Porto” to Kitchen"))
    wait.until(contains("notifications", "carol pinned “Sunset over Porto”"))
    lap("edit reaches bob's feeds")
    browser.switch_to.window(carol)
    browser.find_element(By.CSS_SELECTOR, "#pins li button.delete").click()
    wait.until(contains("status", "Deleted the pin from every feed"))
    browser.switch_to.window(bob)
    browser.refresh()
    wait.until(text_is("feed", "nothing yet"))
    wait.until(text_is("aggregated", "nothing yet"))
    lap("delete reaches bob's feeds")
    print(f"{framework}: " + ", ".join(f"{k} {v:.2f}s" for k, v in timings.items()))
