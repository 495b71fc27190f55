"""The dashboard as a person uses it: the page in a real (headless) Chromium.

On a database seeded by the ``dashboard_jobs`` fixture (tests/conftest.py): the
page shows the queues, tasks, counts and the failed job's error within a second
of being asked for, as text (the error is a ``<script>``, which must not run);
it follows a change in the database without a reload; a click on a queue lists
its jobs; a cancel dismissed at its confirmation does nothing; a retry confirmed
puts the failed job back to wait. And the same through jupyter-server-proxy, as
on Binder. Screenshots go to ``artifacts/``.
"""

from __future__ import annotations

import secrets
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from pgqueue_ref.dashboard import serve_in_background

ARTIFACTS = Path(__file__).resolve().parents[2] / "artifacts"
Db = Callable[..., list[tuple[Any, ...]]]


def test_the_dashboard_in_a_real_browser(
    dsn: str, dashboard_jobs: dict[str, int], chromium: Callable[..., Any], db: Db
) -> None:
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.ui import WebDriverWait

    failed, waiting = dashboard_jobs["failed"], dashboard_jobs["waiting"]
    driver = chromium(1400, 1250)

    def until(condition: Callable[[Any], Any], seconds: float = 5.0) -> Any:
        # The page swaps its live part every second: an element found may be gone a moment later.
        wait = WebDriverWait(driver, seconds, poll_frequency=0.05,
                             ignored_exceptions=[StaleElementReferenceException])  # fmt: skip
        return wait.until(condition)

    def texts(css: str) -> list[str]:
        return [element.text for element in driver.find_elements(By.CSS_SELECTOR, css)]

    def click(css: str) -> None:
        until(lambda d: d.find_element(By.CSS_SELECTOR, css).click() or True)

    with serve_in_background(dsn) as dashboard:
        driver.get(f"{dashboard.url}static/favicon.svg")  # the browser's first page costs it most
        driver.get(dashboard.url)
        error = until(lambda d: d.find_element(By.CSS_SELECTOR,
                                               f'#failed-jobs tr[data-job="{failed}"] td.error').text, 1.0)  # fmt: skip
        assert error == "ValueError: <script>window.__pwned = 1</script> & <b>bold</b>"
        # By the browser's own clock: from the navigation to the page's DOM, data in it.
        loaded = driver.execute_script(
            "return performance.getEntriesByType('navigation')[0].domContentLoadedEventEnd"
        )
        (ARTIFACTS / "dashboard-load-ms.txt").write_text(f"{loaded:.0f}\n")
        assert loaded < 1000, f"the page took {loaded:.0f} ms"
        assert driver.execute_script("return window.__pwned === undefined")  # shown, never run
        assert texts("#queues tbody tr") == ["emails 2 0 3 0 0 0 5", "reports 0 1 0 1 0 0 2"]
        assert texts("#tasks tbody tr") == ["mail.send 2 0 3 0 0 0 5", "report<i> 0 1 0 1 0 0 2"]
        assert "host:4242" in texts("#workers tbody tr")[0]
        until(lambda d: d.find_element(By.ID, "refresh-status").text == "live, every 1 s")
        driver.save_screenshot(str(ARTIFACTS / "dashboard.png"))

        # Live: a job deferred now shows up without a reload.
        db("INSERT INTO pgqueue_jobs (queue, task_name) VALUES ('imports', 'csv.load')")
        until(lambda d: "imports 1 0 0 0 0 0 1" in texts("#queues tbody tr"), 3.0)

        # A click on a queue lists its jobs, and changes the address.
        click('#queues a[href="?queue=reports"]')
        until(lambda d: d.current_url.endswith("/?queue=reports"))
        until(lambda d: [e.get_attribute("data-job") for e in d.find_elements(
            By.CSS_SELECTOR, "#selected-jobs tbody tr")] == [str(dashboard_jobs["running"]), str(failed)])  # fmt: skip

        # Dismissed at the confirmation: nothing happens.
        click(
            f'#scheduled tr[data-job="{dashboard_jobs["scheduled"]}"] button[data-action="cancel"]'
        )
        alert = until(expected_conditions.alert_is_present(), 2.0)
        assert alert.text == f"Cancel job {dashboard_jobs['scheduled']} (mail.send)?"
        alert.dismiss()
        assert db("SELECT status FROM pgqueue_jobs WHERE id = %s", waiting) == [("todo",)]

        # Retry, confirmed: the job waits again, and the page says so.
        click(f'#failed-jobs tr[data-job="{failed}"] button[data-action="retry"]')
        alert = until(expected_conditions.alert_is_present(), 2.0)
        assert alert.text == f"Retry job {failed} (report<i>)?"
        alert.accept()
        until(lambda d: d.find_element(By.ID, "message").text == f"job {failed} is waiting again")
        until(lambda d: d.find_element(By.CSS_SELECTOR, f'#selected-jobs tr[data-job="{failed}"]')
              .get_attribute("data-status") == "todo")  # fmt: skip
        assert texts("#failed-jobs tbody tr") == ["no failed job"]
        assert db("SELECT status FROM pgqueue_jobs WHERE id = %s", failed) == [("todo",)]
        driver.save_screenshot(str(ARTIFACTS / "dashboard-retried.png"))
    assert driver.execute_script("return window.__pwned === undefined")


@pytest.fixture
def jupyter_server(tmp_path: Path) -> Iterator[str]:
    """A Jupyter server with jupyter-server-proxy, as on Binder: its base URL, token in it."""
    pytest.importorskip("jupyter_server_proxy", reason="pip install -e '.[dev]' brings it")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    token = secrets.token_hex(16)
    log = (ARTIFACTS / "jupyter-server-proxy.log").open("w")
    server = subprocess.Popen(
        [sys.executable, "-m", "jupyter_server", "--no-browser", "--allow-root", "--ip=127.0.0.1",
         f"--port={port}", f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={tmp_path}",
         "--ServerApp.allow_remote_access=True"],  # a Host of another name: the hub's
        stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(
                    f"http://127.0.0.1:{port}/api/status?token={token}", timeout=2
                )
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        yield f"http://hub.example:{port}?token={token}"
    finally:
        server.terminate()
        server.wait(20)
        log.close()


def test_the_dashboard_through_jupyter_server_proxy(
    dsn: str, dashboard_jobs: dict[str, int], chromium: Callable[..., Any], db: Db,
    jupyter_server: str, monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    """Binder's route: the page at <hub>/proxy/<port>/, behind the hub's login, under
    another host name (Chromium resolves hub.example to 127.0.0.1), retry included."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.ui import WebDriverWait

    failed = dashboard_jobs["failed"]
    base, _, token = jupyter_server.partition("?")
    with serve_in_background(dsn) as on_a_laptop:  # without a hub: only local names
        assert on_a_laptop.jupyter_url() is None
        direct = urllib.request.Request(on_a_laptop.url, headers={"Host": "hub.example"})
        with pytest.raises(urllib.error.HTTPError, match="400"):
            urllib.request.urlopen(direct)
    monkeypatch.setenv("JUPYTERHUB_SERVICE_PREFIX", "/")  # what JupyterHub sets in a user's server
    driver = chromium(1200, 900, "--host-resolver-rules=MAP hub.example 127.0.0.1")
    with serve_in_background(dsn) as dashboard:
        path = dashboard.jupyter_url()
        assert path == f"/proxy/{dashboard.url.rsplit(':', 1)[1]}"
        driver.get(f"{base}{path}?{token}")
        wait = WebDriverWait(driver, 5, poll_frequency=0.05)
        row = f'#failed-jobs tr[data-job="{failed}"]'
        assert wait.until(lambda d: d.find_element(By.CSS_SELECTOR, f"{row} td.error").text).startswith(
            "ValueError: <script>")  # fmt: skip
        wait.until(lambda d: d.find_element(By.ID, "refresh-status").text == "live, every 1 s")
        driver.find_element(By.CSS_SELECTOR, f'{row} button[data-action="retry"]').click()
        wait.until(expected_conditions.alert_is_present()).accept()
        wait.until(
            lambda d: d.find_element(By.ID, "message").text == f"job {failed} is waiting again"
        )
        driver.save_screenshot(str(ARTIFACTS / "dashboard-through-jupyter.png"))
    assert db("SELECT status FROM pgqueue_jobs WHERE id = %s", failed) == [("todo",)]
