"""The kit as a person uses it: JupyterLab and the docs site in a real (headless) Chromium.

One JupyterLab server on 127.0.0.1 and one Chromium serve every test of this
module. Each notebook of ``notebooks/`` (the same glob as the nbval run) is
opened, its stored outputs cleared, and all its cells run through JupyterLab's
own "Run All" command; the test checks that every code cell ran and that none
shows an error except cells tagged ``raises-exception`` (which must show one),
and saves a screenshot to ``artifacts/jupyterlab-<notebook>.png``. Then the
notebook's kernel is shut down and its tab discarded without saving: the run
never writes to the repository (autosave is off too).

The docs test builds the Sphinx site and opens the support table
(``docs/connectors.md``) at a laptop's width, 1280 px: its eleven connector
columns and the PgBouncer column must fit the page, with nothing cut off or
scrolled away (``artifacts/docs-connectors-1280.png``). Notebook 02 shows the
same table; its test checks that it fits the notebook too.

Needs Debian's ``chromium`` and ``chromium-driver`` and selenium (the ``dev``
extra); without them the tests are skipped or, in CI, fail (tests/browser/conftest.py).

``PGQUEUE_REF_BROWSER_NOTEBOOKS`` narrows the notebooks to a glob (CI's second
leg runs ``01-*`` only, to keep CI's time: every notebook runs on the first
leg, and under nbval on both); unset, every notebook runs.
"""

from __future__ import annotations

import fnmatch
import json
import os
import secrets
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]-*.ipynb"))
SELECTED_ENV = "PGQUEUE_REF_BROWSER_NOTEBOOKS"
ARTIFACTS = ROOT / "artifacts"
LAPTOP_WIDTH = 1280


def _write_settings(folder: Path, plugin: str, settings: dict[str, Any]) -> None:
    path = folder / f"{plugin}.jupyterlab-settings"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(settings))


@pytest.fixture(scope="module")
def lab_server(tmp_path_factory: pytest.TempPathFactory, browser_available: None) -> Iterator[str]:
    """A JupyterLab server: the URL of its ``lab`` page, token included."""
    settings = tmp_path_factory.mktemp("lab-settings")
    # No news or update popup; no autosave, so that runs never write the notebooks.
    _write_settings(
        settings,
        "@jupyterlab/apputils-extension/notification",
        {"fetchNews": "false", "checkForUpdates": False},
    )
    _write_settings(settings, "@jupyterlab/docmanager-extension/plugin", {"autosave": False})
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    token = secrets.token_hex(16)
    ARTIFACTS.mkdir(exist_ok=True)
    log = (ARTIFACTS / "jupyterlab.log").open("w")
    server = subprocess.Popen(
        [sys.executable, "-m", "jupyterlab", "--no-browser", "--allow-root", "--ip=127.0.0.1",
         f"--port={port}", f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={ROOT}",
         "--LabApp.expose_app_in_browser=True", f"--LabApp.user_settings_dir={settings}"],
        stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_for(lambda: _answers(f"{base}/api/status?token={token}"), 60, "JupyterLab to start")
        yield f"{base}/lab?token={token}"
    finally:
        server.terminate()
        server.wait(20)
        log.close()


@pytest.fixture(scope="module")
def browser(browser_available: None, launch_chromium: Callable[..., Any]) -> Iterator[Any]:
    """One headless Chromium for the module's tests."""
    driver = launch_chromium(profile="jupyterlab")
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture(scope="module")
def lab(lab_server: str, browser: Any) -> Any:
    """The browser on JupyterLab's page, loaded once: each test opens its notebook
    in it with JupyterLab's own command, with no page load in between (a reload
    would also reopen, and start kernels for, every notebook of the workspace)."""
    browser.get(lab_server)
    _wait_for(
        lambda: browser.execute_script(
            "return !!(window.jupyterapp && window.jupyterapp.shell"
            " && window.jupyterapp.commands.hasCommand('docmanager:open'))"
        ),
        90,
        "JupyterLab's page",
    )
    return browser


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return bool(response.status == 200)
    except OSError:
        return False


def _wait_for(predicate: Any, seconds: float, what: str) -> Any:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        result = predicate()
        if result:
            return result
        time.sleep(0.25)
    raise TimeoutError(f"waited {seconds} s for {what}")


# Reads the open notebook's model: its path, the kernel's status, and for each code
# cell its execution count, whether it expects an error, and the errors it shows.
CELLS_JS = """
if (!window.jupyterapp || !window.jupyterapp.shell) { return null; }  // still loading
const panel = window.jupyterapp.shell.currentWidget;
if (!panel || !panel.content || !panel.sessionContext || !panel.sessionContext.session) { return null; }
const kernel = panel.sessionContext.session.kernel;
const cells = [];
for (const cell of panel.content.widgets) {
  if (cell.model.type !== 'code') { continue; }
  const outputs = cell.model.outputs.toJSON();
  cells.push({
    count: cell.model.executionCount,
    expectsError: (cell.model.getMetadata('tags') || []).includes('raises-exception'),
    errors: outputs.filter(o => o.output_type === 'error').map(o => o.ename + ': ' + o.evalue),
  });
}
return {path: panel.context.path, status: kernel ? kernel.status : 'none', cells: cells};
"""

# Shuts the current notebook's kernel down and drops its tab unsaved (no dialog).
DISCARD_JS = """
const done = arguments[arguments.length - 1];
const panel = window.jupyterapp.shell.currentWidget;
panel.sessionContext.shutdown().then(() => {
  panel.context.model.dirty = false;
  panel.dispose();
  done(true);
}, (error) => done(String(error)));
"""

# The notebook's support table (notebook 02): scrolled into view, its right edge
# and the notebook's.
SUPPORT_TABLE_JS = """
const done = arguments[arguments.length - 1];
const panel = window.jupyterapp.shell.currentWidget;
const index = panel.content.widgets.findIndex(
  cell => cell.model.sharedModel.getSource().includes('support_table('));
if (index < 0) { done(null); return; }
panel.content.scrollToItem(index, 'auto', 0, 'start').then(() => {
  const table = panel.content.widgets[index].node.querySelector('.jp-OutputArea-output table');
  const area = panel.content.node.getBoundingClientRect();
  done(table ? {table: table.getBoundingClientRect().right, notebook: area.right,
                columns: table.querySelectorAll('thead th').length} : 'no table in its output');
});
"""


def _state(driver: Any) -> Any:
    return driver.execute_script(f"return (function(){{{CELLS_JS}}})()")


def _selected(path: Path) -> bool:
    return fnmatch.fnmatch(path.name, os.environ.get(SELECTED_ENV) or "*")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda path: path.name)
def test_notebook_runs_all_in_jupyterlab(lab: Any, path: Path) -> None:
    if not _selected(path):
        pytest.skip(f"{SELECTED_ENV}={os.environ[SELECTED_ENV]!r} leaves it out")
    relative = path.relative_to(ROOT).as_posix()
    screenshot = ARTIFACTS / f"jupyterlab-{path.stem}.png"
    browser = lab
    browser.execute_script(
        "window.jupyterapp.commands.execute('docmanager:open', {path: arguments[0]})", relative
    )
    _wait_for(lambda: (_state(browser) or {}).get("path") == relative, 90,
              f"{path.name} and its kernel")  # fmt: skip
    _wait_for(lambda: _state(browser)["status"] == "idle", 90, "the kernel to be idle")
    # Clear the stored outputs first, so that what we read afterwards is this run's.
    browser.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "window.jupyterapp.commands.execute('notebook:clear-all-cell-outputs').then(done)"
    )
    cleared = _state(browser)["cells"]
    assert [cell["count"] for cell in cleared] == [None] * len(cleared), "outputs not cleared"
    browser.execute_script("window.jupyterapp.commands.execute('notebook:run-all-cells')")
    seen: list[Any] = []

    def finished() -> Any:
        state = _state(browser)
        seen[:] = [state]
        ran = all(cell["count"] is not None for cell in state["cells"])
        stopped = any(cell["errors"] and not cell["expectsError"] for cell in state["cells"])
        return state if (ran or stopped) and state["status"] == "idle" else None

    try:
        state = _wait_for(
            finished,
            float(os.environ.get("PGQUEUE_REF_BROWSER_TIMEOUT", "180")),
            "every cell to run",
        )
    except TimeoutError as error:
        browser.save_screenshot(str(screenshot))
        raise AssertionError(f"{error}; last seen: {seen}") from None
    browser.save_screenshot(str(screenshot))
    fits = browser.execute_async_script(SUPPORT_TABLE_JS) if "02-" in path.name else None
    if fits is not None:
        browser.save_screenshot(str(ARTIFACTS / f"jupyterlab-{path.stem}-support-table.png"))
    assert browser.execute_async_script(DISCARD_JS) is True

    assert state["cells"], f"{path.name} has no code cells"
    unexpected = [
        (number, cell["errors"])
        for number, cell in enumerate(state["cells"], 1)
        if cell["errors"] and not cell["expectsError"]
    ]
    assert unexpected == [], f"{path.name}: code cells with an unexpected error"
    # Run by this Run All, in order, on the notebook's own fresh kernel.
    assert [cell["count"] for cell in state["cells"]] == list(range(1, len(state["cells"]) + 1))
    assert all(cell["errors"] for cell in state["cells"] if cell["expectsError"])
    if "02-" in path.name:
        assert isinstance(fits, dict), f"the support table in {path.name}: {fits}"
        assert fits["columns"] == 13  # behaviour, eleven connectors, PgBouncer
        assert fits["table"] <= fits["notebook"], f"the support table is cut off: {fits}"


@pytest.fixture(scope="module")
def docs_site(tmp_path_factory: pytest.TempPathFactory, browser_available: None) -> Path:
    """The Sphinx site, built as CI builds it (not strict here: docs have their own step)."""
    out = tmp_path_factory.mktemp("docs")
    subprocess.run(
        [sys.executable, "-m", "sphinx", "-q", "-c", "docs", ".", str(out)],
        cwd=ROOT, check=True, capture_output=True,
    )  # fmt: skip
    return out


def test_the_support_table_fits_a_laptop_page(docs_site: Path, browser: Any) -> None:
    browser.set_window_size(LAPTOP_WIDTH, 900)
    try:
        browser.get((docs_site / "docs" / "connectors.html").as_uri())
        fit = browser.execute_script("""
            const table = document.querySelector('.support-table table');
            if (!table) { return null; }
            const box = table.parentElement;  // furo's scrolling wrapper, or our div
            return {right: table.getBoundingClientRect().right, viewport: window.innerWidth,
                    scrollWidth: box.scrollWidth, clientWidth: box.clientWidth,
                    columns: table.querySelectorAll('thead th').length,
                    rows: table.querySelectorAll('tbody tr').length,
                    height: document.documentElement.scrollHeight};
        """)  # fmt: skip
        assert fit is not None, "no table in a .support-table on docs/connectors.html"
        browser.set_window_size(LAPTOP_WIDTH, min(int(fit["height"]), 6000))
        browser.save_screenshot(str(ARTIFACTS / f"docs-connectors-{LAPTOP_WIDTH}.png"))
    finally:
        browser.set_window_size(1400, 1000)
    assert fit["columns"] == 13  # behaviour, eleven connectors, PgBouncer
    assert fit["rows"] > 20
    assert fit["right"] <= fit["viewport"], f"the table runs off the page: {fit}"
    assert fit["scrollWidth"] <= fit["clientWidth"], f"part of the table is scrolled away: {fit}"
