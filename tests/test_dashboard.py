"""The dashboard over HTTP: a real uvicorn server in a thread, on the real test database.

Seeded by the ``dashboard_jobs`` fixture (tests/conftest.py). Requests go through
``http.client``, which sends exactly the headers given (the Host header included).
The page in a real browser: tests/browser/test_dashboard_browser.py.
"""

from __future__ import annotations

import http.client
import inspect
import itertools
import json
import logging
import math
import os
import re
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import urlsplit

import psycopg
import pytest
from prometheus_client.parser import text_string_to_metric_families

import pgqueue_ref
from pgqueue_ref.dashboard import read_figures, read_figures_async, serve_in_background
from pgqueue_ref.dashboard.reads import STALLED_AFTER, read_overview_async
from pgqueue_ref.dashboard.server import Settings
from pgqueue_ref.dashboard.serving import DashboardServer
from pgqueue_ref.exceptions import PgQueueError, UnsafeDashboard
from pgqueue_ref.manager import JobManager

TOKEN = "a-token-long-enough-0123456789"
Db = Callable[..., list[tuple[Any, ...]]]


class Answer:
    def __init__(self, response: http.client.HTTPResponse) -> None:
        self.status = response.status
        self.headers = {k.lower(): v for k, v in response.getheaders()}
        self.text = response.read().decode()

    def json(self) -> Any:
        return json.loads(self.text)


def request(url: str, path: str = "", method: str = "GET", **headers: str) -> Answer:
    where = urlsplit(url)
    conn = http.client.HTTPConnection(where.hostname or "", where.port, timeout=10)
    try:
        conn.request(method, where.path + path, headers={k.replace("_", "-"): v
                                                          for k, v in headers.items()})  # fmt: skip
        return Answer(conn.getresponse())
    finally:
        conn.close()


def act(url: str, action: str, job_id: int, **headers: str) -> Answer:
    return request(url, f"api/jobs/{job_id}/{action}", "POST", **{"X-Pgqueue-Ref": "action",
                                                                  **headers})  # fmt: skip


@pytest.fixture
def dashboard(dsn: str, dashboard_jobs: dict[str, int]) -> Iterator[DashboardServer]:
    with serve_in_background(dsn) as server:
        yield server


def row_of(page: str, attribute: str, value: str) -> str:
    """The HTML of the table row ``<tr data-ATTRIBUTE="VALUE">``."""
    match = re.search(
        rf'<tr data-{attribute}="{re.escape(value)}"[^>]*>(.*?)</tr>', page, re.DOTALL
    )
    assert match, f"no row with data-{attribute}={value!r}"
    return match.group(1)


def cell(row: str, status: str) -> int:
    match = re.search(rf'data-status="{status}">(\d+)<', row)
    assert match, f"no {status} count in {row!r}"
    return int(match.group(1))


# -- the page ---------------------------------------------------------------------------


def test_the_page_shows_queues_tasks_counts_and_the_failed_job(
    dashboard: DashboardServer, dashboard_jobs: dict[str, int]
) -> None:
    answer = request(dashboard.url)
    assert answer.status == 200
    emails, reports = (
        row_of(answer.text, "queue", "emails"),
        row_of(answer.text, "queue", "reports"),
    )
    assert [cell(emails, s) for s in ("todo", "doing", "succeeded", "failed")] == [2, 0, 3, 0]
    assert [cell(reports, s) for s in ("todo", "doing", "succeeded", "failed")] == [0, 1, 0, 1]
    assert cell(row_of(answer.text, "task", "mail.send"), "succeeded") == 3
    failed = re.search(r'<table id="failed-jobs">(.*?)</table>', answer.text, re.DOTALL)
    assert failed is not None
    assert f'data-job="{dashboard_jobs["failed"]}"' in failed.group(1)
    assert (
        "ValueError: &lt;script&gt;window.__pwned = 1&lt;/script&gt; &amp; &lt;b&gt;"
        in failed.group(1)
    )
    assert "host:4242" in answer.text  # the worker, and its heartbeat age
    assert re.search(r"<td>host:4242</td>.*?<td class=\"n\">\d+\.\d s</td>", answer.text, re.DOTALL)


def test_every_value_is_escaped(dashboard: DashboardServer) -> None:
    """Task names, arguments and errors with markup arrive as text, in the page and in
    the fragment the script swaps in: no tag of theirs, no attribute broken out of."""
    for path in ("", "state", "state?task=report%3Ci%3E"):
        text = request(dashboard.url, path).text
        assert "<script>window" not in text
        assert "<b>bold" not in text and "report<i>" not in text
        assert "report&lt;i&gt;" in text
        # the argument in a title="..." attribute: its quote cannot end the attribute
        assert 'title="{&#34;title&#34;: &#34;\\&#34;&gt;&lt;script&gt;window.__pwned = 2' in text


def test_responses_carry_a_strict_content_security_policy(dashboard: DashboardServer) -> None:
    headers = request(dashboard.url).headers
    assert "script-src 'self'" in headers["content-security-policy"]
    assert "unsafe-inline" not in headers["content-security-policy"]
    assert headers["x-content-type-options"] == "nosniff"
    page = request(dashboard.url).text
    assert re.findall(r"<script[^>]*>", page) == ['<script src="static/dashboard.js" defer>']
    script = request(dashboard.url, "static/dashboard.js")
    assert script.status == 200 and "innerHTML" in script.text


def test_a_click_on_a_queue_or_task_lists_its_jobs(
    dashboard: DashboardServer, dashboard_jobs: dict[str, int]
) -> None:
    def listed(path: str) -> list[int]:
        text = request(dashboard.url, path).text
        table = re.search(r'<table id="selected-jobs">(.*?)</table>', text, re.DOTALL)
        assert table is not None
        return [int(i) for i in re.findall(r'<tr data-job="(\d+)"', table.group(1))]

    assert listed("state?queue=reports") == [dashboard_jobs["running"], dashboard_jobs["failed"]]
    assert listed("state?task=mail.send") == [dashboard_jobs["scheduled"], dashboard_jobs["waiting"],
                                              3, 2, 1]  # fmt: skip
    assert listed("state?queue=reports&task=mail.send") == []
    assert len(listed("state")) == 7
    assert 'href="?queue=reports"' in request(dashboard.url).text


def test_scheduled_and_periodic_jobs_are_shown(dsn: str, dashboard: DashboardServer,
                                               dashboard_jobs: dict[str, int], db: Db) -> None:  # fmt: skip
    db("INSERT INTO pgqueue_periodic_defers (task_name, periodic_id, defer_timestamp, job_id) "
       "VALUES ('cleanup', '', 1800000000, %s)", dashboard_jobs["waiting"])  # fmt: skip
    text = request(dashboard.url, "state").text
    scheduled = text.split('<section id="scheduled">')[1].split("</section>")[0]
    assert f'<tr data-job="{dashboard_jobs["scheduled"]}">' in scheduled
    assert re.search(r'<td class="n">(59|60) min</td>', scheduled)
    periodic = text.split('<section id="periodic">')[1].split("</section>")[0]
    assert f"<td>{dashboard_jobs['waiting']}: todo</td>" in periodic


# -- the actions ---------------------------------------------------------------------------


def test_retry_cancel_and_abort(
    dashboard: DashboardServer, dashboard_jobs: dict[str, int], db: Db
) -> None:
    ids = dashboard_jobs
    answer = act(dashboard.url, "retry", ids["failed"])
    assert (answer.status, answer.json()) == (200, {"done": True,
                                                    "message": f"job {ids['failed']} is waiting again"})  # fmt: skip
    again = act(dashboard.url, "retry", ids["failed"])
    assert again.status == 409
    assert (
        again.json()["message"]
        == f"job {ids['failed']} cannot be retried: it is 'todo', not failed"
    )
    assert act(dashboard.url, "cancel", ids["waiting"]).json()["done"] is True
    refused = act(dashboard.url, "abort", ids["scheduled"])  # waiting: not asked to abort
    assert refused.json()["message"] == (
        f"job {ids['scheduled']} cannot be asked to abort: it is 'todo', not running"
    )
    assert act(dashboard.url, "abort", ids["running"]).json()["message"] == (
        f"job {ids['running']} is asked to abort"
    )
    assert act(dashboard.url, "retry", 999999).json()["message"] == (
        "job 999999 cannot be retried: there is no such job"
    )
    rows = db("SELECT id, status, abort_requested FROM pgqueue_jobs WHERE id = ANY(%s) ORDER BY id",
              [ids["failed"], ids["waiting"], ids["scheduled"], ids["running"]])  # fmt: skip
    assert rows == [(ids["failed"], "todo", False), (ids["waiting"], "cancelled", False),
                    (ids["scheduled"], "todo", False), (ids["running"], "doing", True)]  # fmt: skip
    assert act(dashboard.url, "delete", ids["failed"]).status == 404


def test_an_action_needs_the_page_header_and_origin(
    dashboard: DashboardServer, dashboard_jobs: dict[str, int], db: Db
) -> None:
    """What a form or a script on another site could send is refused."""
    job = dashboard_jobs["failed"]
    bare = request(dashboard.url, f"api/jobs/{job}/retry", "POST")
    assert (bare.status, bare.json()["message"]) == (
        403,
        "an action needs the header 'X-Pgqueue-Ref: action' (the page's script sends it)",
    )
    foreign = act(dashboard.url, "retry", job, Origin="http://evil.example")
    assert (foreign.status, foreign.json()["message"]) == (
        403,
        "an action from another site's page is refused",
    )
    assert request(dashboard.url, f"api/jobs/{job}/retry").status == 405  # GET
    assert db("SELECT status FROM pgqueue_jobs WHERE id = %s", job) == [("failed",)]
    own = act(dashboard.url, "retry", job, Origin=dashboard.url.rstrip("/"))
    assert own.status == 200


def test_read_only_shows_no_action_and_refuses_them(
    dsn: str, dashboard_jobs: dict[str, int], db: Db
) -> None:
    with serve_in_background(dsn, read_only=True) as server:
        page = request(server.url).text
        answer = act(server.url, "retry", dashboard_jobs["failed"])
    assert "read-only" in page and "ValueError" in page
    assert "data-action" not in page and "<button" not in page
    assert (answer.status, answer.json()["message"]) == (403, "this dashboard is read-only")
    assert db("SELECT status FROM pgqueue_jobs WHERE id = %s", dashboard_jobs["failed"]) == [
        ("failed",)
    ]


# -- who may look -------------------------------------------------------------------------------


def test_a_token_guards_every_path(dsn: str, dashboard_jobs: dict[str, int]) -> None:
    with serve_in_background(dsn, token=TOKEN) as server:
        for path in ("", "state", "metrics", "static/dashboard.js"):
            assert request(server.url, path).status == 401, path
        assert request(server.url, "", Authorization="Bearer wrong-token-0123456789").status == 401
        first = request(server.url, f"?queue=emails&token={TOKEN}")
        assert first.status == 303
        assert first.headers["location"] == ".?queue=emails"  # the token leaves the address
        cookie = first.headers["set-cookie"]
        assert "HttpOnly" in cookie and "SameSite=strict" in cookie
        assert request(server.url, "state", Cookie=cookie.split(";")[0]).status == 200
        assert request(server.url, "metrics", Authorization=f"Bearer {TOKEN}").status == 200
        assert (
            act(server.url, "retry", dashboard_jobs["failed"], Cookie=cookie.split(";")[0]).status
            == 200
        )


def test_a_non_local_address_needs_a_long_token() -> None:
    with pytest.raises(UnsafeDashboard, match="'0.0.0.0', which other machines can reach"):
        Settings(host="0.0.0.0")
    with pytest.raises(UnsafeDashboard, match="is 5 characters long; use at least 16"):
        Settings(host="0.0.0.0", token="short")
    assert Settings(host="0.0.0.0", token=TOKEN).token == TOKEN
    assert Settings(host="::1").host == "::1"
    with pytest.raises(UnsafeDashboard):
        Settings(host="dashboard.example.com")  # a name could resolve to anything


def test_another_host_name_is_refused_on_localhost(dashboard: DashboardServer) -> None:
    """A page whose own name resolves to 127.0.0.1 (DNS rebinding) is not served."""
    assert request(dashboard.url, Host="evil.example").status == 400
    assert request(dashboard.url, Host="localhost").status == 200


def test_no_password_or_token_in_any_page_or_log(
    dsn: str, dashboard_jobs: dict[str, int], caplog: pytest.LogCaptureFixture
) -> None:
    params = psycopg.conninfo.conninfo_to_dict(dsn)
    secret = "pw-never-shown-7f3a"  # the test server trusts local users: any password works
    with_password = psycopg.conninfo.make_conninfo(dsn, password=secret)
    caplog.set_level(logging.DEBUG)
    with serve_in_background(with_password, token=TOKEN) as server:
        pages = [request(server.url, f"{p}?token={TOKEN}").text for p in ("", "state")]
        pages += [
            request(server.url, p, Authorization=f"Bearer {TOKEN}").text
            for p in ("", "state", "metrics")
        ]
    text = "\n".join(pages)
    assert f"{params['user']}@127.0.0.1:{params['port']}/{params['dbname']}" in text
    assert secret not in text and secret not in caplog.text
    assert TOKEN not in text and TOKEN not in caplog.text
    assert "GET / 303" in caplog.text and "GET /state 200" in caplog.text  # the log is there


# -- /metrics -------------------------------------------------------------------------------------


def _scrape(url: str) -> dict[str, Any]:
    answer = request(url, "metrics")
    assert answer.status == 200
    assert answer.headers["content-type"].startswith("text/plain; version=")
    samples: dict[str, Any] = {}
    for family in text_string_to_metric_families(answer.text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


async def test_metrics_parse_and_match_the_figures_from_python(
    dsn: str, dashboard_jobs: dict[str, int]
) -> None:
    # async: the fixture seeded the database; here the dashboard runs in its own thread
    with serve_in_background(dsn) as server:
        samples = _scrape(server.url)
    app = pgqueue_ref.App(connector=pgqueue_ref.PsycopgConnector(conninfo=dsn))
    async with app.open_async():
        figures = await read_figures_async(app.job_manager)

    def jobs(queue: str, status: str) -> float:
        return float(samples[("pgqueue_jobs", (("queue", queue), ("status", status)))])

    assert [jobs("emails", "succeeded"), jobs("emails", "todo"), jobs("reports", "failed"),
            jobs("reports", "doing")] == [3, 2, 1, 1]  # fmt: skip
    assert figures.jobs == {("emails", "succeeded"): 3, ("emails", "todo"): 2,
                            ("reports", "failed"): 1, ("reports", "doing"): 1}  # fmt: skip
    rate = samples[("pgqueue_jobs_finished_per_second", (("outcome", "succeeded"),))]
    assert rate == pytest.approx(3 / 60) == figures.finished_per_second["succeeded"]
    assert samples[("pgqueue_jobs_finished_per_second", (("outcome", "failed"),))] == pytest.approx(
        1 / 60
    )
    assert samples[("pgqueue_workers_live", ())] == 1 == figures.live_workers
    assert samples[("pgqueue_job_duration_seconds_count", ())] == 4 == figures.durations.count
    assert samples[("pgqueue_job_duration_seconds_bucket", (("le", "+Inf"),))] == 4
    buckets = [v for (name, labels), v in samples.items() if name.endswith("_bucket")]
    assert buckets == sorted(buckets)  # cumulative
    assert figures.durations.cumulative()[-1] == (math.inf, 4)
    age = samples[("pgqueue_oldest_waiting_job_age_seconds", ())]
    assert figures.oldest_waiting_age is not None and 0 < age < 60  # the job for 'dee'


@pytest.fixture
def sync_jobs(dsn: str) -> Iterator[JobManager]:
    """A JobManager on a blocking connector, open on ``dsn``."""
    connector = pgqueue_ref.SyncPsycopgConnector(conninfo=dsn)
    connector.open()
    yield JobManager(connector)
    connector.close()


def test_figures_of_an_empty_database(sync_jobs: JobManager) -> None:
    figures = read_figures(sync_jobs)
    assert figures.jobs == {} and figures.live_workers == 0
    assert figures.oldest_waiting_age is None
    assert figures.finished_per_second == {
        "succeeded": 0.0,
        "failed": 0.0,
        "cancelled": 0.0,
        "aborted": 0.0,
    }
    assert figures.durations.count == 0 and figures.durations.total_seconds == 0.0


def test_duration_buckets_follow_prometheus_le(sync_jobs: JobManager, db: Db) -> None:
    """A job of exactly 0.5 s counts in le=0.5; one of 0.5001 s in le=1."""
    for seconds in (0.5, 0.5001, 2000.0):
        db("INSERT INTO pgqueue_jobs (task_name, status, started_at, finished_at) "
           "VALUES ('t', 'succeeded', now() - make_interval(secs => %s), now())", seconds)  # fmt: skip
    figures = read_figures(sync_jobs, bounds=(0.5, 1.0))
    assert figures.durations.counts == (1, 1, 1)
    assert figures.durations.cumulative() == [(0.5, 1), (1.0, 2), (math.inf, 3)]
    assert figures.durations.total_seconds == pytest.approx(2001.0001)


async def test_throughput_counts_each_finished_job_once(app: pgqueue_ref.App, db: Db) -> None:
    db("INSERT INTO pgqueue_jobs (task_name, status, finished_at) SELECT 't', s, now() - "
       "make_interval(secs => i) FROM unnest(ARRAY['succeeded', 'failed', 'aborted', 'succeeded']) "
       "WITH ORDINALITY AS x(s, i)")  # fmt: skip
    db(
        "INSERT INTO pgqueue_jobs (task_name, status, finished_at) VALUES ('t', 'succeeded', now() - interval '1 hour')"
    )
    overview = await read_overview_async(app.job_manager, bucket_seconds=10, buckets=30)
    assert len(overview.throughput) == 30
    starts = [row["start"] for row in overview.throughput]
    assert all((b - a).total_seconds() == 10 for a, b in itertools.pairwise(starts))
    totals = {
        o: sum(row[o] for row in overview.throughput) for o in ("succeeded", "failed", "aborted")
    }
    assert totals == {"succeeded": 2, "failed": 1, "aborted": 1}  # not the one an hour ago


def test_the_stalled_default_is_the_workers() -> None:
    default = inspect.signature(pgqueue_ref.Worker.__init__).parameters["stalled_after"].default
    assert STALLED_AFTER == default


# -- the command line ------------------------------------------------------------------------------


def _cli(*args: str, dsn: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pgqueue_ref", *args], capture_output=True, text=True, check=False,
                          timeout=60, env={**os.environ, "PGQUEUE_REF_DSN": dsn})  # fmt: skip


def test_the_dashboard_command_serves_and_stops_on_sigterm(
    dsn: str, dashboard_jobs: dict[str, int]
) -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "pgqueue_ref", "dashboard", "--dsn", dsn, "--port", "0", "--read-only"],
        stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert process.stderr is not None
        line = process.stderr.readline()
        match = re.match(r"dashboard at (http://127\.0\.0\.1:\d+/) \(local only, read-only\)", line)
        assert match, line
        page = request(match.group(1))
        assert page.status == 200 and "reports" in page.text and "read-only" in page.text
        assert request(match.group(1), "metrics").status == 200
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(20) == 0


def test_the_dashboard_command_refuses_an_open_address_without_token(dsn: str) -> None:
    done = _cli("dashboard", "--host", "0.0.0.0", "--port", "0", dsn=dsn)
    assert done.returncode == 2
    assert "which other machines can reach" in done.stderr and "--token" in done.stderr
    zero = _cli("dashboard", "--refresh", "0", dsn=dsn)
    assert (zero.returncode, zero.stderr.splitlines()[-1]) == (
        2, "python -m pgqueue_ref: error: refresh=0.0: expected seconds > 0")  # fmt: skip


def test_job_actions_on_the_command_line(dsn: str, dashboard_jobs: dict[str, int], db: Db) -> None:
    failed, waiting, running = (dashboard_jobs[k] for k in ("failed", "waiting", "running"))
    assert (_cli("jobs", "retry", str(failed), dsn=dsn).stdout, db("SELECT status FROM pgqueue_jobs "
            "WHERE id = %s", failed)) == (f"job {failed} is waiting again\n", [("todo",)])  # fmt: skip
    again = _cli("jobs", "retry", str(failed), dsn=dsn)
    assert (again.returncode, again.stdout) == (
        1,
        f"job {failed} cannot be retried: it is 'todo', not failed\n",
    )
    assert _cli("jobs", "cancel", str(waiting), dsn=dsn).stdout == f"job {waiting} is cancelled\n"
    assert (
        _cli("jobs", "abort", str(running), dsn=dsn).stdout == f"job {running} is asked to abort\n"
    )
    assert db("SELECT abort_requested FROM pgqueue_jobs WHERE id = %s", running) == [(True,)]


def test_starting_without_a_schema_or_on_a_taken_port_says_so(empty_dsn: str, dsn: str) -> None:
    with pytest.raises(
        PgQueueError, match=r"no pgqueue_ref schema \(missing: pgqueue_jobs, .*schema apply"
    ):
        serve_in_background(empty_dsn)
    with serve_in_background(dsn) as first:
        port = urlsplit(first.url).port
        assert port is not None
        with pytest.raises(OSError, match="Address already in use"):
            serve_in_background(dsn, port=port)
        assert request(first.url).status == 200  # the first one serves on
