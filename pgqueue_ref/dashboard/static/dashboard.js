// The dashboard's script: refresh the live part, follow clicks on a queue or
// task, and send an action after a confirmation. The server renders and
// escapes every value; this script only swaps in the HTML it sent.
"use strict";

(function () {
  const state = document.getElementById("state");
  const status = document.getElementById("refresh-status");
  const message = document.getElementById("message");
  const every = 1000 * Number(document.body.dataset.refresh || "1");
  let last = null;
  let busy = false;

  function show(element, text, kind) {
    element.textContent = text;  // text, never HTML
    element.className = kind;
  }

  async function refresh() {
    if (busy) { return; }
    // Replacing the HTML would drop what the reader is selecting, to copy an error, say.
    const selection = window.getSelection();
    if (selection && !selection.isCollapsed && state.contains(selection.anchorNode)) { return; }
    busy = true;
    try {
      const response = await fetch("state" + window.location.search,
                                   {cache: "no-store", credentials: "same-origin"});
      if (!response.ok) { throw new Error(`${response.status}: ${await response.text()}`); }
      const html = await response.text();
      if (html !== last) {
        state.innerHTML = html;
        last = html;
      }
      show(status, `live, every ${every / 1000} s`, "ok");
    } catch (error) {
      show(status, `not refreshed (${error.message})`, "stale");
    } finally {
      busy = false;
    }
  }

  async function act(button) {
    const {action, job, task, verb} = button.dataset;
    if (!window.confirm(`${verb} job ${job} (${task})?`)) { return; }
    button.disabled = true;
    try {
      const response = await fetch(`api/jobs/${encodeURIComponent(job)}/${encodeURIComponent(action)}`, {
        method: "POST", credentials: "same-origin", headers: {"X-Pgqueue-Ref": "action"},
      });
      const body = await response.json();
      show(message, body.message, body.done ? "done" : "refused");
    } catch (error) {
      show(message, `${action} job ${job}: ${error.message}`, "refused");
    }
    await refresh();
  }

  document.addEventListener("click", (event) => {
    const button = event.target.closest("button[data-action]");
    if (button) {
      event.preventDefault();
      act(button);
      return;
    }
    const link = event.target.closest("a.select");
    if (link) {  // a queue's or task's jobs: change the address, not the page
      event.preventDefault();
      window.history.pushState(null, "", link.getAttribute("href"));
      refresh().then(() => document.getElementById("jobs").scrollIntoView());
    }
  });
  window.addEventListener("popstate", refresh);
  window.setInterval(refresh, every);
})();
