"""The kit as a person uses it: JupyterLab in a real (headless) Chromium.

Starts JupyterLab on 127.0.0.1, opens the quickstart notebook, runs all cells
through JupyterLab's own "Run All" command, checks that every code cell ran
and that none shows an error (except cells tagged ``raises-exception``), and
saves a screenshot to ``artifacts/``.

Needs Debian's ``chromium`` and ``chromium-driver`` and selenium (the ``dev``
extra); without them the test is skipped or, in CI, fails (tests/browser/conftest.py).
"""

from __future__ import annotations

import json
import os
import secrets
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOK = "notebooks/01-quickstart.ipynb"
ARTIFACTS = ROOT / "artifacts"


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory, browser_available: None) -> Iterator[str]:
    settings = tmp_path_factory.mktemp("lab-settings")
    notification = (
        settings / "@jupyterlab" / "apputils-extension" / "notification.jupyterlab-settings"
    )
    notification.parent.mkdir(parents=True)
    notification.write_text(json.dumps({"fetchNews": "false", "checkForUpdates": False}))
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
        yield f"{base}/lab/tree/{NOTEBOOK}?token={token}"
    finally:
        server.terminate()
        server.wait(20)
        log.close()


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


# Reads the open notebook's model: for each code cell, its execution count,
# whether it expects an error, and the errors it shows.
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
return {status: kernel ? kernel.status : 'none', cells: cells};
"""


def test_quickstart_runs_in_jupyterlab(lab: str, chromium: Any) -> None:
    driver = chromium()
    driver.get(lab)
    _wait_for(lambda: driver.execute_script(f"return (function(){{{CELLS_JS}}})()"), 90,
              "the notebook and its kernel")  # fmt: skip
    _wait_for(lambda: driver.execute_script(f"return (function(){{{CELLS_JS}}})()")["status"] == "idle",
              90, "the kernel to be idle")  # fmt: skip
    # Clear the stored outputs first, so that what we read afterwards is this run's.
    driver.execute_script(
        "return window.jupyterapp.commands.execute('notebook:clear-all-cell-outputs')"
        ".then(() => window.jupyterapp.commands.execute('notebook:run-all-cells'))"
    )

    seen: list[Any] = []

    def finished() -> Any:
        state = driver.execute_script(f"return (function(){{{CELLS_JS}}})()")
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
        driver.save_screenshot(str(ARTIFACTS / "jupyterlab-quickstart.png"))
        raise AssertionError(f"{error}; last seen: {seen}") from None
    driver.save_screenshot(str(ARTIFACTS / "jupyterlab-quickstart.png"))

    assert state["cells"], "the notebook has no code cells"
    unexpected = [
        cell["errors"] for cell in state["cells"] if cell["errors"] and not cell["expectsError"]
    ]
    assert unexpected == []
    assert all(cell["errors"] for cell in state["cells"] if cell["expectsError"])
