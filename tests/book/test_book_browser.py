"""The built book in a real browser.

Builds the book in quick mode (chapters executed with book/params/quick.yaml, shared with the notebook
smoke tests), serves ``_build/html`` on 127.0.0.1 and opens every page of the table of contents in
headless Chromium, driven over the DevTools protocol (websocket-client, which jupyter_server brings).
Checks: no console errors or uncaught exceptions, no failed same-origin request, every ``<img>`` loads
(naturalWidth > 0), every chapter shows at least one figure, and formulas are typeset by the book's own
copy of MathJax (no raw TeX left). Keeps a screenshot in
``artifacts/book-screenshot.png``.

The book's own checks (:mod:`pullback_utils.book.checks`: the paper cited from the introduction and every
chapter, no stderr/warning/traceback outputs, numbered captions, figures no wider than the content column
and with legible text) run on the built pages without a browser. Every page's checks are enforced;
``PULLBACK_BOOK_STRICT=0`` turns a chapter problem into an xfail with the full report (to look at a
book in progress).

Requests to other hosts are refused by the browser (``--host-resolver-rules``) so that the test means
the same offline and on CI; their failures are not errors of the book.
"""

from __future__ import annotations

import base64
import functools
import http.server
import json
import os
import shutil
import subprocess
import threading
import time
from pathlib import Path
from urllib.parse import urlparse

import pytest
from book_workspace import REPO, quick_layout, quick_run

from pullback_utils.book import build, repository
from pullback_utils.book.checks import check_site
from pullback_utils.book.layout import chapter_of as _chapter_of
from pullback_utils.book.layout import toc_files
from pullback_utils.chapters.plotting import CONTENT_WIDTH_PX

# the first test runs every chapter in quick mode (shared with test_chapter_runs.py) and builds the book
pytestmark = [pytest.mark.slow, pytest.mark.timeout(3600)]

CHROMIUM = next((p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome", "chrome")) if p), None)
ARTIFACT = REPO / "artifacts" / "book-screenshot.png"
#: Enforce the chapters' checks (citations, outputs, figures); set PULLBACK_BOOK_STRICT=1, or flip the default.
STRICT = os.environ.get("PULLBACK_BOOK_STRICT", "1") == "1"


class CDP:
    """A minimal Chrome DevTools Protocol client: one browser websocket, flattened target sessions."""

    def __init__(self, ws_url: str) -> None:
        import websocket  # websocket-client

        self.ws = websocket.create_connection(ws_url, timeout=60, suppress_origin=True)
        self.next_id = 0
        self.events: list[dict] = []

    def call(self, method: str, session: str | None = None, **params):
        self.next_id += 1
        msg = {"id": self.next_id, "method": method, "params": params}
        if session:
            msg["sessionId"] = session
        self.ws.send(json.dumps(msg))
        self.ws.settimeout(60)  # wait_for and drain leave a short timeout behind: a slow reply is not an error
        while True:
            reply = json.loads(self.ws.recv())
            if reply.get("id") == self.next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            self.events.append(reply)

    def wait_for(self, method: str, session: str, timeout: float = 60.0) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            for i, ev in enumerate(self.events):
                if ev.get("method") == method and ev.get("sessionId") == session:
                    return self.events.pop(i)
            if time.monotonic() > deadline:
                raise TimeoutError(method)
            self.ws.settimeout(max(0.1, deadline - time.monotonic()))
            self.events.append(json.loads(self.ws.recv()))

    def drain(self, seconds: float) -> None:
        """Collect events for a while (late console messages, lazy requests)."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            self.ws.settimeout(max(0.05, deadline - time.monotonic()))
            try:
                self.events.append(json.loads(self.ws.recv()))
            except Exception:  # timeout
                break

    def close(self) -> None:
        self.ws.close()


@pytest.fixture(scope="module")
def built_book(tmp_path_factory):
    results = quick_run(tmp_path_factory)
    layout = quick_layout(tmp_path_factory)
    started = time.perf_counter()
    assert build(layout, ["-q"]) == 0  # Sphinx with -W, nitpicky: a single warning fails the build
    print(f"quick book build: {time.perf_counter() - started:.1f} s")
    return layout, results


@pytest.fixture(scope="module")
def server(built_book):
    layout, _ = built_book
    handler = functools.partial(_QuietHandler, directory=str(layout.html))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    if CHROMIUM is None:
        pytest.skip("no chromium binary on this machine (CI installs Debian's `chromium` in .ci/run)")
    profile = tmp_path_factory.mktemp("chromium-profile")
    proc = subprocess.Popen(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-extensions",
            "--no-first-run",
            "--no-default-browser-check",
            "--mute-audio",
            "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
            f"--user-data-dir={profile}",
            "--remote-debugging-port=0",
            "--remote-debugging-address=127.0.0.1",
            "--window-size=1280,900",
            "about:blank",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    port_file = profile / "DevToolsActivePort"
    deadline = time.monotonic() + 60
    while not (port_file.is_file() and len(port_file.read_text().splitlines()) >= 2):
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"chromium did not start (exit {proc.poll()})")
        time.sleep(0.1)
    port, path = port_file.read_text().splitlines()[:2]
    cdp = CDP(f"ws://127.0.0.1:{port}{path}")
    try:
        yield cdp
    finally:
        cdp.close()
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()


IMAGES_JS = r"""
(async () => {
  const imgs = Array.from(document.images);
  await Promise.all(imgs.map(i => { i.loading = 'eager'; return i.decode().catch(() => null); }));
  if (window.MathJax && MathJax.startup && MathJax.startup.promise) {
    await Promise.race([MathJax.startup.promise, new Promise(r => setTimeout(r, 20000))]);
  }
  const main = document.querySelector('main, article, .bd-article') || document.body;
  return {
    images: imgs.map(i => ({src: i.currentSrc || i.src, w: i.naturalWidth, shown: i.clientWidth,
                            complete: i.complete})),
    column: (document.querySelector('.bd-article') || main).clientWidth,
    figures: main.querySelectorAll('img, svg.figure, figure img').length,
    title: document.title,
    math: document.querySelectorAll('.math').length,
    // a table left as text, outside code (a shown code cell may build a table as a string)
    rawTables: (() => {
      const prose = main.cloneNode(true);
      prose.querySelectorAll('pre, code, .cell_input').forEach(e => e.remove());
      return /\|\s*(---|—)+\s*\|/.test(prose.textContent);
    })(),
    typeset: document.querySelectorAll('mjx-container').length,
  };
})()
"""


def _page_report(cdp: CDP, url: str, origin: str, screenshot: Path | None = None) -> dict:
    target = cdp.call("Target.createTarget", url="about:blank")["targetId"]
    session = cdp.call("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
    try:
        for domain in ("Page", "Runtime", "Log", "Network"):
            cdp.call(f"{domain}.enable", session)
        cdp.call(
            "Emulation.setDeviceMetricsOverride", session, width=1280, height=900, deviceScaleFactor=1, mobile=False
        )
        cdp.call("Page.navigate", session, url=url)
        cdp.wait_for("Page.loadEventFired", session)
        cdp.drain(0.5)
        res = cdp.call("Runtime.evaluate", session, expression=IMAGES_JS, awaitPromise=True, returnByValue=True)
        info = res["result"]["value"]
        if screenshot is not None:
            shot = cdp.call("Page.captureScreenshot", session, format="png")
            screenshot.parent.mkdir(parents=True, exist_ok=True)
            screenshot.write_bytes(base64.b64decode(shot["data"]))
        cdp.drain(0.2)
    finally:
        cdp.call("Target.closeTarget", targetId=target)
    errors, external = [], []
    requests: dict[str, str] = {}
    for ev in [e for e in cdp.events if e.get("sessionId") == session]:
        method, p = ev.get("method"), ev.get("params", {})
        if method == "Network.requestWillBeSent":
            requests[p["requestId"]] = p["request"]["url"]
        elif method == "Network.loadingFailed":
            req_url = requests.get(p["requestId"], "")
            (errors if _same_origin(req_url, origin) else external).append(
                f"request failed: {req_url} ({p.get('errorText')})"
            )
        elif method == "Network.responseReceived" and p["response"]["status"] >= 400:
            errors.append(f"HTTP {p['response']['status']}: {p['response']['url']}")
        elif method == "Runtime.exceptionThrown":
            d = p["exceptionDetails"]
            errors.append(f"uncaught exception: {d.get('exception', {}).get('description') or d.get('text')}")
        elif method == "Runtime.consoleAPICalled" and p["type"] in ("error", "assert"):
            errors.append(
                "console.error: " + " ".join(str(a.get("value", a.get("description", ""))) for a in p["args"])
            )
        elif method == "Log.entryAdded" and p["entry"]["level"] == "error":
            entry = p["entry"]
            if entry.get("source") == "network" and not _same_origin(entry.get("url", ""), origin):
                external.append(f"console: {entry.get('text')} ({entry.get('url')})")
            else:
                errors.append(f"console ({entry.get('source')}): {entry.get('text')} {entry.get('url', '')}")
    cdp.events = [e for e in cdp.events if e.get("sessionId") != session]
    return {**info, "errors": errors, "external": external}


def _same_origin(url: str, origin: str) -> bool:
    return not url or url.startswith(origin) or urlparse(url).scheme in ("data", "blob", "about")


def _toc_pages(layout) -> list[str]:
    """Docnames of the built table of contents (book/generated/_toc.yml), in order."""
    import yaml

    toc = yaml.safe_load((layout.generated / "_toc.yml").read_text())
    pages = list(toc_files(toc))
    for node in _walk(toc):  # globbed sections
        if isinstance(node, dict) and "glob" in node:
            pages += sorted(
                p.relative_to(layout.book_dir).with_suffix("").as_posix()
                for p in layout.book_dir.glob(node["glob"] + ".md")
            )
    return list(dict.fromkeys(p.removesuffix(".md").removesuffix(".ipynb") for p in pages))


def _walk(node):
    yield node
    if isinstance(node, dict):
        for v in node.values():
            yield from _walk(v)
    elif isinstance(node, list):
        for v in node:
            yield from _walk(v)


def test_every_page_renders_in_chromium(built_book, server, browser):
    layout, results = built_book
    # a chapter that failed is left out of the book (and reported here); the others are still checked
    problems = {n: [f"chapter failed in quick mode: {r.message}"] for n, r in results.items() if r.status == "failed"}
    pages = _toc_pages(layout)
    chapters = [p for p in pages if _chapter_of(p)]
    assert sorted(map(_chapter_of, chapters)) == sorted(n for n, r in results.items() if r.status != "failed")
    first_chapter = chapters[0] if chapters else pages[0]
    strict_problems = {}
    for page in pages:
        assert (layout.html / f"{page}.html").is_file(), f"{page}.html was not built"
        report = _page_report(
            browser, f"{server}/{page}.html", server, screenshot=ARTIFACT if page == first_chapter else None
        )
        bad_images = [i["src"] for i in report["images"] if not i["w"]]
        issues = report["errors"] + [f"image did not load: {s}" for s in bad_images]
        if _chapter_of(page) and report["figures"] == 0:
            issues.append("chapter shows no figure")
        if report["rawTables"]:
            issues.append("a Markdown table was left as text (|---| in the page)")
        if report["math"] and not report["typeset"]:
            issues.append(f"{report['math']} formulas left as raw TeX (MathJax did not typeset them)")
        if issues:
            problems[page] = issues
        if _chapter_of(page):  # the page as the reader sees it: images scaled below their size
            scaled = [
                f"{i['src'].rsplit('/', 1)[-1]}: {i['w']} px shown at {i['shown']} px in a {report['column']} px column"
                for i in report["images"]
                if i["w"] and i["shown"] < i["w"] and i["w"] > CONTENT_WIDTH_PX
            ]
            if scaled:
                strict_problems[page] = scaled
    assert not problems, json.dumps(problems, indent=2)
    assert ARTIFACT.is_file() and ARTIFACT.stat().st_size > 1000
    if strict_problems:
        report = json.dumps(strict_problems, indent=2)
        if STRICT:
            pytest.fail(report)
        pytest.xfail("chapter figures scaled down (PULLBACK_BOOK_STRICT=1 enforces):\n" + report)


FRAMES_JS = r"""
(async () => {
  const loaded = img => new Promise(r => {
    if (img.complete && img.naturalWidth) return r();
    img.addEventListener('load', r, {once: true}); img.addEventListener('error', r, {once: true});
    setTimeout(r, 10000);
  });
  const out = [];
  for (const fig of document.querySelectorAll('figure.pb-frames')) {
    const img = fig.querySelector('img');
    const controls = fig.querySelector('.pb-frames-controls');
    const input = controls && controls.querySelector('input, select');
    const rec = {id: fig.id, wired: !!input && !controls.hidden && controls.offsetParent !== null,
                 controlsAfterImage: !!controls && img.nextElementSibling === controls,
                 kind: input ? input.type : null, hiddenFrames: [], steps: []};
    if (!input) { out.push(rec); continue; }
    rec.labels = JSON.parse(input.dataset.labels);
    rec.hiddenFrames = Array.from(fig.querySelectorAll('img.pb-frame')).map(i => getComputedStyle(i).display);
    rec.frameSrcs = [img.src].concat(Array.from(fig.querySelectorAll('img.pb-frame')).map(i => i.src));
    for (const k of [rec.labels.length - 1, 0]) {
      input.value = String(k);
      input.dispatchEvent(new Event(input.tagName === 'SELECT' ? 'change' : 'input', {bubbles: true}));
      await loaded(img);
      rec.steps.push({k, src: img.src, ok: img.complete && img.naturalWidth > 0, width: img.naturalWidth,
                      shown: img.clientWidth, output: fig.querySelector('output').textContent, alt: img.alt});
    }
    out.push(rec);
  }
  return out;
})()
"""

FOCUS_JS = r"""
(() => {
  const input = document.querySelector('figure.pb-frames input[type=range]');
  if (!input) return null;
  input.value = '0'; input.dispatchEvent(new Event('input', {bubbles: true})); input.focus();
  return document.activeElement === input;
})()
"""

KEYED_JS = r"""
(async () => {
  const fig = document.querySelector('figure.pb-frames input[type=range]').closest('figure');
  const img = fig.querySelector('img');
  await img.decode().catch(() => null);
  return {value: fig.querySelector('input').value, src: img.src, ok: img.complete && img.naturalWidth > 0,
          output: fig.querySelector('output').textContent,
          second: fig.querySelectorAll('img.pb-frame')[0].src};
})()
"""


def _frames_report(cdp: CDP, url: str, scripts: bool = True) -> dict:
    """The interactive figures of a page: each control moved to its last frame and back (and, on the first
    slider, one ArrowRight key press); with ``scripts=False``, what a reader without JavaScript sees."""
    target = cdp.call("Target.createTarget", url="about:blank")["targetId"]
    session = cdp.call("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
    try:
        cdp.call("Page.enable", session)
        cdp.call(
            "Emulation.setDeviceMetricsOverride", session, width=1280, height=900, deviceScaleFactor=1, mobile=False
        )
        if not scripts:
            cdp.call("Emulation.setScriptExecutionDisabled", session, value=True)
        cdp.call("Page.navigate", session, url=url)
        cdp.wait_for("Page.loadEventFired", session)
        if not scripts:  # evaluated by the protocol, not the page: allowed with the page's scripts off
            expr = (
                "Array.from(document.querySelectorAll('figure.pb-frames')).map(f => ({"
                "first: getComputedStyle(f.querySelector('img')).display, "
                "controls: getComputedStyle(f.querySelector('.pb-frames-controls')).display, "
                "others: Array.from(f.querySelectorAll('img.pb-frame')).map(i => getComputedStyle(i).display)}))"
            )
            return {
                "nojs": cdp.call("Runtime.evaluate", session, expression=expr, returnByValue=True)["result"]["value"]
            }
        figures = cdp.call("Runtime.evaluate", session, expression=FRAMES_JS, awaitPromise=True, returnByValue=True)[
            "result"
        ]["value"]
        keyed = None
        if cdp.call("Runtime.evaluate", session, expression=FOCUS_JS, returnByValue=True)["result"].get("value"):
            for kind in ("keyDown", "keyUp"):
                cdp.call(
                    "Input.dispatchKeyEvent",
                    session,
                    type=kind,
                    key="ArrowRight",
                    code="ArrowRight",
                    windowsVirtualKeyCode=39,
                    nativeVirtualKeyCode=39,
                )
            keyed = cdp.call("Runtime.evaluate", session, expression=KEYED_JS, awaitPromise=True, returnByValue=True)[
                "result"
            ]["value"]
        return {"figures": figures, "keyed": keyed}
    finally:
        cdp.call("Target.closeTarget", targetId=target)
        cdp.events = [e for e in cdp.events if e.get("sessionId") != session]


#: The chapters with an interactive figure (pullback_utils.chapters.frames) and the figures' names.
INTERACTIVE = {
    "coarse_to_fine": ["fig-c2f-over-t"],
    "editing": ["fig-edit-strength"],
    "local_basis_tutorial": ["fig-tutorial-samples"],
}


def test_moving_a_slider_changes_the_shown_frame(built_book, server, browser):
    """The interactive figures in a real browser: the control is wired and shown under the image, moving it
    (script events and a key press) swaps the image for the chosen frame, which loads; without
    JavaScript the first frame shows and the control and the other frames stay hidden."""
    layout, results = built_book
    pages = {n: f"generated/{n}/{n}.html" for n in INTERACTIVE if results.get(n) and results[n].status != "failed"}
    if not pages:
        pytest.skip("no chapter with an interactive figure was executed")
    problems: dict[str, list[str]] = {}
    for name, page in pages.items():
        report = _frames_report(browser, f"{server}/{page}")
        figures = {f["id"]: f for f in report["figures"]}
        issues = [f"no interactive figure {fid}" for fid in INTERACTIVE[name] if fid not in figures]
        for fid, f in figures.items():
            if not f["wired"] or not f["controlsAfterImage"]:
                issues.append(f"{fid}: the control is not shown under the image")
                continue
            n = len(f["labels"])
            if len(f["frameSrcs"]) != n or len(set(f["frameSrcs"])) != n:
                issues.append(f"{fid}: {len(f['frameSrcs'])} distinct frames for {n} labels")
            if any(d != "none" for d in f["hiddenFrames"]):
                issues.append(f"{fid}: frames other than the shown one are visible: {f['hiddenFrames']}")
            last, first = f["steps"]
            if last["src"] != f["frameSrcs"][-1] or first["src"] != f["frameSrcs"][0] or last["src"] == first["src"]:
                issues.append(
                    f"{fid}: moving the control did not change the image's src: {last['src']} / {first['src']}"
                )
            for step in (last, first):
                if not step["ok"]:
                    issues.append(f"{fid}: frame {step['k']} did not load ({step['src']})")
                if step["output"] != f["labels"][step["k"]] or f["labels"][step["k"]] not in step["alt"]:
                    issues.append(f"{fid}: frame {step['k']} shows label {step['output']!r}, alt {step['alt'][:40]!r}")
                if step["width"] > CONTENT_WIDTH_PX or not step["shown"]:  # as the page test: fits the column
                    issues.append(f"{fid}: frame {step['k']} is {step['width']} px, shown at {step['shown']} px")
        keyed = report["keyed"]
        if keyed is not None and (
            keyed["value"] != "1" or keyed["src"] != keyed["second"] or not keyed["ok"] or keyed["output"] == ""
        ):
            issues.append(f"the arrow key did not move the slider to the second frame: {keyed}")
        nojs = _frames_report(browser, f"{server}/{page}", scripts=False)["nojs"]
        for f in nojs:
            if f["first"] == "none" or f["controls"] != "none" or any(d != "none" for d in f["others"]):
                issues.append(f"without JavaScript: {f}")
        if issues:
            problems[name] = issues
    assert not problems, json.dumps(problems, indent=2)


def test_the_notebook_version_of_an_interactive_figure_works_on_its_own(browser, tmp_path, monkeypatch):
    """Outside the book (Jupyter, Colab) the figure is self-contained HTML with an inline handler."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from pullback_utils.chapters.frames import save_frames
    from pullback_utils.chapters.parameters import BOOK_ENV

    monkeypatch.delenv(BOOK_ENV, raising=False)
    fr = save_frames(
        (plt.figure(figsize=(3, 1), facecolor=c) for c in ("red", "green", "blue")),
        tmp_path,
        "nb",
        labels=["a", "b", "c"],
        caption="Three colours.",
    )
    (tmp_path / "page.html").write_text(
        "<!doctype html><html><body>" + fr._repr_mimebundle_()["text/html"] + "</body></html>"
    )
    target = browser.call("Target.createTarget", url="about:blank")["targetId"]
    session = browser.call("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
    try:
        browser.call("Page.enable", session)
        browser.call("Page.navigate", session, url=(tmp_path / "page.html").as_uri())
        browser.wait_for("Page.loadEventFired", session)
        moved = browser.call(
            "Runtime.evaluate",
            session,
            returnByValue=True,
            expression="""(() => {
            const i = document.querySelector('input'), im = document.querySelectorAll('img'), before = im[0].src;
            i.value = '2'; i.dispatchEvent(new Event('input'));
            return {changed: im[0].src !== before, third: im[0].src === im[3].src,
                    output: document.querySelector('output').value, alt: im[0].alt, visible: im[0].offsetWidth > 0};
        })()""",
        )["result"]["value"]
    finally:
        browser.call("Target.closeTarget", targetId=target)
        browser.events = [e for e in browser.events if e.get("sessionId") != session]
    assert moved == {"changed": True, "third": True, "output": "c", "alt": "c: Three colours.", "visible": True}


def test_built_pages_pass_the_book_checks(built_book):
    """Citations of the paper, outputs and figures of the built pages (pullback_utils.book.checks)."""
    layout, _ = built_book
    problems = check_site(layout.html, layout.generated)
    # the quick parameters stop the solvers after a few iterations on purpose: the chapters' notes listing
    # those (the book's own RuntimeWarnings) are expected here; any other warning is not
    problems = {
        page: kept
        for page, issues in problems.items()
        if (kept := [i for i in issues if not i.startswith("warnings note: 'RuntimeWarning: jacobian_svd")])
    }
    always = {page: issues for page, issues in problems.items() if not _chapter_of(page.removesuffix(".html"))}
    assert not always, json.dumps(always, indent=2)
    if problems:
        report = json.dumps(problems, indent=2)
        print(report)
        if STRICT:
            pytest.fail(report)
        pytest.xfail(
            f"{sum(map(len, problems.values()))} chapter problem(s) (PULLBACK_BOOK_STRICT=1 enforces):\n" + report
        )


def test_chapter_launch_buttons_open_the_source_notebook(built_book):
    layout, results = built_book
    executed = [n for n, r in results.items() if r.status != "failed"]
    if not executed:
        pytest.skip("no chapter was executed")
    name = executed[0]
    html = (layout.html / "generated" / name / f"{name}.html").read_text()
    repo = repository(layout.config)  # the one setting (_config.yml): every launch and issue link from it
    assert f"colab.research.google.com/github/{repo.github}/blob/{repo.branch}/notebooks/{name}.ipynb" in html
    assert f"mybinder.org/v2/gh/{repo.github}/{repo.branch}?urlpath=tree/notebooks/{name}.ipynb" in html
    assert f"{repo.url}/issues" in html
    assert f'repo: "{repo.github}"' in html and "binder-examples" not in html  # thebe's Binder settings too
    assert "book/generated/" not in html  # no button points at the executed copy (not in the repository)
