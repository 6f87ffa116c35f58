"""report.html in a real headless Chromium: no console error, every image loaded, nothing fetched from the network.

Chromium is driven through the DevTools protocol over ``--remote-debugging-pipe`` (file descriptors 3 and 4,
NUL-separated JSON messages), so no extra package is needed.
"""

from __future__ import annotations

import json
import os
import select
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from probe.analyses.engine import analyze, attribution_grids
from probe.report.figures import save_figure
from probe.report.html import Section, render_page, table_html
from probe.report.write import write_report

CHROMIUM = "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--remote-debugging-pipe"]

needs_chromium = pytest.mark.skipif(not Path(CHROMIUM).is_file(),
                                    reason=f"{CHROMIUM} is missing (CI installs Debian's chromium package)")


class DevTools:
    """A minimal Chrome DevTools protocol client over the pipe pair of ``--remote-debugging-pipe``."""

    def __init__(self, timeout: float = 60.0):
        self.timeout = timeout
        to_child_r, self._w = os.pipe()
        self._r, from_child_w = os.pipe()
        self._profile = tempfile.mkdtemp(prefix="probe-chromium-")

        def wire():  # in the child: fd 3 = commands in, fd 4 = responses out
            r = os.dup(to_child_r)
            w = os.dup(from_child_w)
            os.dup2(r, 3)
            os.dup2(w, 4)

        self.proc = subprocess.Popen([CHROMIUM, *FLAGS, f"--user-data-dir={self._profile}", "about:blank"],
                                     preexec_fn=wire, close_fds=False,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        os.close(to_child_r)
        os.close(from_child_w)
        self._buf = b""
        self._next = 0
        self.events: list[dict] = []

    def send(self, method: str, params: dict | None = None, session: str | None = None) -> dict:
        self._next += 1
        msg = {"id": self._next, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        os.write(self._w, json.dumps(msg).encode() + b"\0")
        while True:
            reply = self._read()
            if reply.get("id") == self._next:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            self.events.append(reply)

    def _read(self) -> dict:
        deadline = time.monotonic() + self.timeout
        while b"\0" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self._r], [], [], left)[0]:
                raise TimeoutError("no answer from chromium")
            chunk = os.read(self._r, 1 << 20)
            if not chunk:
                raise RuntimeError("chromium closed the DevTools pipe")
            self._buf += chunk
        raw, self._buf = self._buf.split(b"\0", 1)
        return json.loads(raw)

    def wait_for(self, method: str) -> dict:
        for i, e in enumerate(self.events):
            if e.get("method") == method:
                return self.events.pop(i)
        while True:
            e = self._read()
            if e.get("method") == method:
                return e
            self.events.append(e)

    def close(self) -> None:
        try:
            self.send("Browser.close")
        except Exception:  # noqa: BLE001 - already gone
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        os.close(self._w)
        os.close(self._r)
        shutil.rmtree(self._profile, ignore_errors=True)


def inspect_page(path: Path) -> dict:
    """Load ``path`` in headless Chromium; return console errors, exceptions, requests and every image's state."""
    cdp = DevTools()
    try:
        target = cdp.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = cdp.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        for domain in ("Runtime", "Log", "Page", "Network"):
            cdp.send(f"{domain}.enable", session=session)
        cdp.send("Page.navigate", {"url": path.resolve().as_uri()}, session=session)
        cdp.wait_for("Page.loadEventFired")
        images = cdp.send("Runtime.evaluate", {
            "expression": "JSON.stringify(Array.from(document.images).map(i => "
                          "({src: i.src.slice(0, 30), complete: i.complete, width: i.naturalWidth})))",
            "returnByValue": True}, session=session)["result"]["value"]
        title = cdp.send("Runtime.evaluate", {"expression": "document.title", "returnByValue": True},
                         session=session)["result"]["value"]
        events = list(cdp.events)
    finally:
        cdp.close()
    errors = []
    for e in events:
        method, params = e.get("method"), e.get("params", {})
        if method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
            errors.append("console: " + " ".join(str(a.get("value", a.get("description"))) for a in params["args"]))
        elif method == "Runtime.exceptionThrown":
            errors.append("exception: " + params["exceptionDetails"].get("text", ""))
        elif method == "Log.entryAdded" and params["entry"].get("level") == "error":
            errors.append("log: " + params["entry"].get("text", ""))
        elif method == "Network.loadingFailed":
            errors.append("failed load: " + params.get("errorText", ""))
    requests = [e["params"]["request"]["url"] for e in events if e.get("method") == "Network.requestWillBeSent"]
    return {"errors": errors, "images": json.loads(images), "requests": requests, "title": title}


@pytest.fixture(scope="module")
def report(tiny_colored_sweep, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("report") / "colored"
    result = analyze(tiny_colored_sweep, out=out, model_epochs="none", progress=False)
    path = write_report(result, attribution_grids(result))
    assert result.errors == []
    return path


@pytest.mark.slow
@pytest.mark.browser
@needs_chromium
def test_report_loads_cleanly_in_chromium(report):
    page = inspect_page(report)
    assert page["errors"] == []
    assert page["title"].startswith("probe analyze")
    assert len(page["images"]) >= 4  # overview, claims, dynamics, proposition
    broken = [i for i in page["images"] if not i["complete"] or i["width"] == 0]
    assert broken == []
    assert all(i["src"].startswith("data:image/png;base64") for i in page["images"])
    assert all(u.startswith(("file:", "data:")) for u in page["requests"]), page["requests"]


@needs_chromium
def test_checker_catches_console_errors_and_broken_images(tmp_path):
    fig_path = save_figure(_tiny_figure(), tmp_path / "ok.png")
    page = render_page("broken on purpose", [Section("a", '<img src="missing.png" alt="gone">'
                                                          '<script>console.error("bad thing")</script>',
                                                     [(fig_path, "fine")])])
    path = tmp_path / "broken.html"
    path.write_text(page)
    seen = inspect_page(path)
    assert any("bad thing" in e for e in seen["errors"])
    widths = sorted(i["width"] for i in seen["images"])
    assert widths[0] == 0 and widths[1] > 0


def _tiny_figure():
    from matplotlib.figure import Figure

    fig = Figure(figsize=(2, 2))
    fig.subplots().plot([0, 1], [1, 0])
    return fig


def test_page_is_self_contained_and_links_metrics(report):
    text = report.read_text()
    assert "<script" not in text and "http://" not in text and "https://" not in text
    assert 'href="#metric-unbiased-acc"' in text and 'id="metric-unbiased-acc"' in text
    # every in-page link has its target
    import re

    targets = set(re.findall(r'id="([^"]+)"', text))
    assert set(re.findall(r'href="#([^"]+)"', text)) <= targets
    for heading in ("Verdicts", "Sweep overview", "Failed runs", "Dynamics", "Proposition", "Metric glossary"):
        assert f">{heading}</h2>" in text
    # the headline first: the first section is the verdicts, before any figure of the sweep
    assert text.index("<section") == text.index('<section id="verdicts">')
    assert text.index("Verdicts</h2>") < text.index("Sweep overview</h2>") < text.index("Dynamics</h2>") \
        < text.index("Proposition</h2>")


def test_extra_sections_and_tables():
    frame = pd.DataFrame({"run": ["a<b"], "wga": [0.5], "x": [np.nan]})
    html_table = table_html(frame, text_columns=("run",))
    assert "a&lt;b" in html_table and 'href="#metric-wga"' in html_table and "–" in html_table
    page = render_page("t", [Section("Heatmaps", "<p>grid</p>", [(_tiny_figure(), "a grid")])])
    assert page.count("data:image/png;base64,") == 1 and 'id="heatmaps"' in page
