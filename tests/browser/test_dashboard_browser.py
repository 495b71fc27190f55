"""The dashboard as a person uses it: the page in a real (headless) Chromium.

On a database seeded by the ``dashboard_jobs`` fixture (tests/conftest.py): the
page shows the queues, tasks, counts and the failed job's error within a second
of being asked for, as text (the error is a ``<script>``, which must not run);
it follows a change in the database without a reload; a click on a queue lists
its jobs; a cancel dismissed at its confirmation does nothing; a retry confirmed
puts the failed job back to wait. Screenshots go to ``artifacts/``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

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
        asked = time.monotonic()
        driver.get(dashboard.url)
        error = until(lambda d: d.find_element(By.CSS_SELECTOR,
                                               f'#failed-jobs tr[data-job="{failed}"] td.error').text, 1.0)  # fmt: skip
        seen_after = time.monotonic() - asked
        assert error == "ValueError: <script>window.__pwned = 1</script> & <b>bold</b>"
        assert seen_after < 1.0
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
