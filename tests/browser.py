"""Headless Chromium driven through the DevTools protocol over ``--remote-debugging-pipe`` (file descriptors 3 and 4,
NUL-separated JSON messages), so no extra package is needed: load a report and read back what a reader would see."""

from __future__ import annotations

import json
import os
import select
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

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


#: measures, in the loaded page, whether the page and each table fit the viewport's width: a table may be wider
#: than the page only inside a horizontally scrolling container that itself fits.
_LAYOUT = """JSON.stringify({
  viewport: window.innerWidth,
  page: document.documentElement.scrollWidth,
  tables: Array.from(document.querySelectorAll("table")).map(t => {
    const box = t.getBoundingClientRect();
    let scroller = t.parentElement;
    const scrolling = e => ["auto", "scroll"].includes(getComputedStyle(e).overflowX);
    while (scroller && !scrolling(scroller)) scroller = scroller.parentElement;
    const outer = scroller ? scroller.getBoundingClientRect() : null;
    return {section: (t.closest("section") || {id: ""}).id, left: box.left, right: box.right,
            scrolls: scroller !== null, visible_right: outer ? outer.right : box.right};
  })
})"""


def inspect_page(path: Path, width: int = 1280) -> dict:
    """Load ``path`` in headless Chromium at a viewport ``width`` pixels wide; return console errors, exceptions,
    requests, every image's state and the layout of the page and its tables (``layout``)."""
    cdp = DevTools()
    try:
        target = cdp.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = cdp.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        for domain in ("Runtime", "Log", "Page", "Network"):
            cdp.send(f"{domain}.enable", session=session)
        cdp.send("Emulation.setDeviceMetricsOverride", {"width": width, "height": 900, "deviceScaleFactor": 1,
                                                        "mobile": False}, session=session)
        cdp.send("Page.navigate", {"url": path.resolve().as_uri()}, session=session)
        cdp.wait_for("Page.loadEventFired")
        images = cdp.send("Runtime.evaluate", {
            "expression": "JSON.stringify(Array.from(document.images).map(i => "
                          "({src: i.src.slice(0, 30), complete: i.complete, width: i.naturalWidth})))",
            "returnByValue": True}, session=session)["result"]["value"]
        title = cdp.send("Runtime.evaluate", {"expression": "document.title", "returnByValue": True},
                         session=session)["result"]["value"]
        layout = cdp.send("Runtime.evaluate", {"expression": _LAYOUT, "returnByValue": True},
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
    return {"errors": errors, "images": json.loads(images), "requests": requests, "title": title,
            "layout": json.loads(layout)}


def overflowing_tables(layout: dict) -> list[dict]:
    """The tables of an :func:`inspect_page` layout that reach past the viewport's right edge where a reader
    cannot scroll to them (a table in a scrolling container that fits the page is fine)."""
    limit = layout["viewport"] + 0.5
    return [t for t in layout["tables"] if t["visible_right"] > limit or (t["right"] > limit and not t["scrolls"])]


