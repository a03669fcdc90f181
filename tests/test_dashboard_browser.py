"""The dashboard in a real browser: headless Chromium against a live cluster.

Needs Debian's ``chromium`` and ``chromium-driver`` and the ``selenium``
package (.ci/run installs them when it runs as root); without them the
test is skipped and says why. Chromium runs headless with a fresh profile
and everything that would reach the network off. The page must show the
Workers and the call counts, update them without a reload, and log no
console error. A screenshot is saved in the test's temporary directory
(and copied to ``$PYFAAS_SCREENSHOT_DIR`` when that is set).
"""

import os
import shutil
import signal
import threading
import time

import pytest

from helpers import process_of, wait_until

webdriver = pytest.importorskip(
    "selenium.webdriver",
    reason="selenium is a test dependency (pip install '.[test]')")
CHROMIUM = shutil.which("chromium")
CHROMEDRIVER = shutil.which("chromedriver")
if not (CHROMIUM and CHROMEDRIVER):
    pytest.skip("needs Debian's chromium and chromium-driver (apt-get install"
                " chromium chromium-driver; .ci/run does it as root)",
                allow_module_level=True)

from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.common.exceptions import (  # noqa: E402
    StaleElementReferenceException)
from selenium.webdriver.common.by import By  # noqa: E402

pytestmark = pytest.mark.timeout(120)

MONITORING = {"monitoring": {"enabled": True, "port": 0}}
UPDATE_S = 10.0   # the page polls every second; the Director publishes too


def dash_noop(x=None):
    return x


def dash_fail(x):
    raise ValueError("no good: %r" % (x,))


@pytest.fixture
def browser(tmp_path):
    """Headless Chromium through chromedriver, both stopped at the end."""
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless", "--no-sandbox", "--disable-gpu",
                "--disable-quic", "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update", "--disable-sync",
                "--user-data-dir=%s" % (tmp_path / "profile"),
                "--window-size=1440,1000"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    service = Service(executable_path=CHROMEDRIVER,
                      log_output=str(tmp_path / "chromedriver.log"))
    driver = webdriver.Chrome(service=service, options=options)
    try:
        yield driver
    finally:
        driver.quit()
        proc = service.process
        if proc is not None and proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(10)


def cell_text(driver, css):
    """The text of the first element ``css`` selects, or None (also when
    the page redrew it between finding and reading: ask again)."""
    try:
        found = driver.find_elements(By.CSS_SELECTOR, css)
        return found[0].text if found else None
    except StaleElementReferenceException:
        return None


def worker_ids_shown(driver):
    """The Worker ids of the Workers table's rows (None if redrawn while
    read)."""
    try:
        return sorted(r.get_attribute("data-worker-id") for r in
                      driver.find_elements(By.CSS_SELECTOR,
                                           "#workers tbody tr"))
    except StaleElementReferenceException:
        return None


def test_the_dashboard_shows_the_cluster_live(fresh_cluster, browser,
                                              tmp_path):
    c = fresh_cluster(workers=3, director_extra=MONITORING)
    client = c.client()
    client.register(dash_noop)
    client.register(dash_fail)
    for x in range(20):
        client.call("dash_noop", x)
    with pytest.raises(Exception):
        client.call("dash_fail", 1)
    ids = client.worker_ids()

    browser.get("http://127.0.0.1:%d/" % c.monitoring_port)
    calls = 'tr[data-function="dash_noop"] td.calls'
    wait_until(lambda: cell_text(browser, calls) == "20", UPDATE_S,
               lambda: "20 calls on the page: %r" % browser.find_element(
                   By.TAG_NAME, "body").text[:2000])
    wait_until(lambda: worker_ids_shown(browser) == sorted(ids), UPDATE_S,
               lambda: "Workers on the page: %r" % worker_ids_shown(browser))
    page = wait_until(lambda: cell_text(browser, "body"), UPDATE_S)
    for wid in ids:
        assert wid in page
    assert "no good: 1" in page      # in the recent errors
    browser.execute_script("window.pyfaasNotReloaded = true;")

    # Some load for the chart, a Worker lost, and the page follows.
    stop = threading.Event()

    def load():
        end = time.monotonic() + 5
        while not stop.is_set() and time.monotonic() < end:
            for _ in client.map("dash_noop", range(100)):
                pass
            time.sleep(0.05)
    loader = threading.Thread(target=load)
    loader.start()
    try:
        loader.join(10)
    finally:
        stop.set()
        loader.join(10)
    victim = ids[0]
    process_of(c, victim, client).signal(signal.SIGKILL)
    wait_until(lambda: victim in (cell_text(browser, "#evictions tbody")
                                  or ""), UPDATE_S, "the eviction listed")
    for x in range(7):
        client.call("dash_noop", x)
    sent = sum(f["calls"] for f in client.status()["functions"]
               if f["name"] == "dash_noop")
    wait_until(lambda: cell_text(browser, calls) == "{:,}".format(sent),
               UPDATE_S, lambda: "%d calls on the page, not %r" % (
                   sent, cell_text(browser, calls)))
    assert browser.execute_script("return window.pyfaasNotReloaded") is True
    wait_until(lambda: worker_ids_shown(browser) == sorted(ids[1:]),
               UPDATE_S, lambda: "Workers on the page: %r"
               % worker_ids_shown(browser))
    assert "live" in browser.find_element(By.ID, "live").text

    shot = tmp_path / "dashboard.png"
    assert browser.save_screenshot(str(shot))
    keep = os.environ.get("PYFAAS_SCREENSHOT_DIR")
    if keep:
        os.makedirs(keep, exist_ok=True)
        shutil.copy(str(shot), os.path.join(keep, "dashboard.png"))
    print("dashboard screenshot: %s" % shot)
    problems = [entry for entry in browser.get_log("browser")
                if entry["level"] in ("SEVERE", "ERROR")]
    assert problems == []
