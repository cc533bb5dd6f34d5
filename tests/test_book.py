"""The rendered book in a real browser (headless Chromium via Playwright), as a reader without internet sees it.

Runs after `make book-ci` over `_build/ci/_build/html` (or $DSMINI_BOOK_HTML): no page loads a script or style
from a CDN, every page loads with no console error, math is typeset, every figure has loaded, widget areas are
rendered, moving a slider of chapter 4's and chapter 5's widgets, and of chapter 8's widgets on the trained
model, changes what is shown, and code cells fit their column at a 1280 x 800 window
(book/_static/wide-code.css). Screenshots of each page go to `_build/screenshots/`.
"""

import functools
import http.server
import os
import re
import threading
from pathlib import Path
from urllib.parse import urlparse

import pytest

ROOT = Path(__file__).resolve().parents[1]
BOOK = Path(os.environ.get("DSMINI_BOOK_HTML", ROOT / "_build" / "ci" / "_build" / "html"))
SCREENSHOTS = ROOT / "_build" / "screenshots"
CHROMIUM = os.environ.get("DSMINI_CHROMIUM", "/usr/bin/chromium")
IN_CI = os.environ.get("CI") == "true"
CDN_HOSTS = ("cdn.jsdelivr.net", "cdnjs.cloudflare.com", "unpkg.com", "ajax.googleapis.com", "code.jquery.com",
             "fonts.googleapis.com", "polyfill.io", "mathjax.org")


def _require(condition: bool, why: str) -> None:
    """Skip on a developer's machine, fail in CI: CI must always check the book."""
    if not condition:
        if IN_CI:
            pytest.fail(why)
        pytest.skip(why)


def _pages() -> list[str]:
    if not BOOK.is_dir():
        return []
    pages = sorted(p.relative_to(BOOK).as_posix() for p in BOOK.glob("notebooks/*.html"))
    pages += sorted(p.relative_to(BOOK).as_posix() for p in BOOK.glob("book/*.html"))
    return pages


PAGES = _pages()
pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def server():
    _require((BOOK / "index.html").exists(), f"the book is not built at {BOOK} (run `make book-ci`)")
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(BOOK))
    handler.log_message = lambda *a, **k: None
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


@pytest.fixture(scope="module")
def browser():
    _require(Path(CHROMIUM).exists(), f"Chromium not found at {CHROMIUM} (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
            "--disable-component-update", "--disable-sync"])
        yield b
        b.close()


def open_page(browser, server, page_path, window=(1280, 900)):
    """Open a page with the network cut off beyond 127.0.0.1; return (page, console errors, outside requests)."""
    context = browser.new_context(viewport={"width": window[0], "height": window[1]})
    page = context.new_page()
    errors, outside = [], []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))

    def route(r):
        if urlparse(r.request.url).hostname in ("127.0.0.1", "localhost"):
            return r.continue_()
        outside.append(f"{r.request.resource_type} {r.request.url}")
        return r.abort()

    page.route("**/*", route)
    page.goto(f"{server}/{page_path}", wait_until="load")
    page.wait_for_load_state("networkidle")
    return page, errors, outside


def test_book_has_every_chapter_page():
    _require(BOOK.is_dir(), f"the book is not built at {BOOK}")
    toc = (ROOT / "_toc.yml").read_text()
    listed = re.findall(r"^\s+- file: (notebooks/\S+)", toc, flags=re.M)
    assert listed, "no chapter in _toc.yml"
    for stem in listed:
        assert (BOOK / f"{stem}.html").exists(), f"{stem} is in the toc but was not rendered"


def test_no_page_references_a_cdn_for_scripts_or_styles():
    _require(BOOK.is_dir(), f"the book is not built at {BOOK}")
    bad = []
    for html in BOOK.rglob("*.html"):
        text = html.read_text(errors="replace")
        for tag in re.findall(r"<script[^>]*\bsrc=\"[^\"]+\"|<link[^>]*\bhref=\"[^\"]+\"", text):
            url = re.search(r"(?:src|href)=\"([^\"]+)\"", tag).group(1)
            host = urlparse(url).hostname or ""
            if any(host.endswith(cdn) for cdn in CDN_HOSTS):
                bad.append(f"{html.relative_to(BOOK)}: {url}")
    assert not bad, "pages load assets from a CDN:\n" + "\n".join(bad)
    assert (BOOK / "_static/vendor/mathjax/tex-chtml.js").is_file(), "local MathJax missing"
    embed = BOOK / "_static/vendor/@jupyter-widgets/html-manager/dist/embed-amd.js"
    assert embed.is_file(), "local widgets manager missing"


@pytest.mark.parametrize("page_path", PAGES)
def test_page_renders_offline(browser, server, page_path):
    page, errors, outside = open_page(browser, server, page_path)
    try:
        if page.locator("main .math").count() > 0:
            page.wait_for_selector("mjx-container", state="attached", timeout=15_000)
            page.wait_for_timeout(500)
            raw = page.evaluate(
                "() => Array.from(document.querySelectorAll('main span.math, main div.math'))"
                ".filter(e => !e.querySelector('mjx-container')).map(e => e.textContent.slice(0, 60))")
            assert not raw, f"math left as raw TeX: {raw}"
        has_widgets = page.locator('script[type="application/vnd.jupyter.widget-view+json"]').count() > 0
        if has_widgets:
            page.wait_for_selector(".jupyter-widgets", state="attached", timeout=15_000)
            assert "Error displaying widget" not in page.inner_text("main")
        broken = page.evaluate(
            "() => Array.from(document.querySelectorAll('main img'))"
            ".filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.src)")
        assert not broken, f"images that did not load: {broken}"
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SCREENSHOTS / (page_path.replace("/", "__").removesuffix(".html") + ".png")),
                        full_page=True)
        assert not errors, f"console errors: {errors}"
        blocked = [r for r in outside if r.split()[0] in ("script", "stylesheet", "font")]
        assert not blocked, f"tried to load from outside: {blocked}"
    finally:
        page.context.close()


def _visible_frames(page) -> list[str]:
    """The sources of the widget images currently shown."""
    return page.evaluate(
        "() => Array.from(document.querySelectorAll('.jupyter-widgets img'))"
        ".filter(i => i.offsetParent !== null).map(i => i.src.slice(-200))")


@pytest.mark.parametrize("stem", ["04_sliding_window_attention", "05_mixture_of_experts"])
def test_moving_a_slider_changes_the_picture(browser, server, stem):
    page_path = f"notebooks/{stem}.html"
    _require((BOOK / page_path).exists(), f"{page_path} not built")
    page, errors, _ = open_page(browser, server, page_path)
    try:
        handle = page.locator(".widget-slider .noUi-handle").first
        handle.wait_for(timeout=15_000)
        handle.scroll_into_view_if_needed()
        before = _visible_frames(page)
        assert before, "no widget picture is shown"
        handle.focus()
        handle.press("ArrowRight")
        page.wait_for_timeout(500)
        after = _visible_frames(page)
        assert after and after != before, "moving the slider did not change the picture"
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SCREENSHOTS / f"{stem}__slider_moved.png"))
        assert not errors, f"console errors: {errors}"
    finally:
        page.context.close()


CHAPTER_PAGES = [p for p in PAGES if re.match(r"notebooks/\d\d_", p)]


def _figures(page) -> list[dict]:
    """Every figure of the page's main column: its id, image source, whether the image loaded, its caption."""
    return page.evaluate(
        "() => Array.from(document.querySelectorAll('main figure')).map(f => {"
        " const img = f.querySelector('img'); const cap = f.querySelector('figcaption');"
        " return {id: f.id, src: img ? img.getAttribute('src') : '',"
        " loaded: !!img && img.complete && img.naturalWidth > 0, caption: cap ? cap.innerText : ''}; })")


@pytest.mark.parametrize("page_path", CHAPTER_PAGES)
def test_chapter_opens_with_its_roadmap_and_its_drawn_figures_load(browser, server, page_path):
    chapter = re.search(r"notebooks/(\d\d)_", page_path).group(1)
    page, errors, _ = open_page(browser, server, page_path)
    try:
        drawn = [f for f in _figures(page) if f["src"].endswith(".svg")]
        assert drawn, "no drawn (SVG) figure on the page"
        first = drawn[0]
        assert first["id"] == f"fig-roadmap-{chapter}" and first["src"].endswith(f"roadmap_{chapter}.svg"), \
            f"the first drawn figure is not this chapter's roadmap: {first}"
        # the roadmap sits right after the title's first paragraph: before the second heading of the page
        before_first_section = page.evaluate(
            f"() => {{ const fig = document.getElementById('fig-roadmap-{chapter}');"
            " const h2 = document.querySelector('main section section h2');"
            " return !h2 || !!(fig.compareDocumentPosition(h2) & Node.DOCUMENT_POSITION_FOLLOWING); }")
        assert before_first_section, "the roadmap is not at the start of the chapter"
        not_loaded = [f["src"] for f in drawn if not f["loaded"]]
        assert not not_loaded, f"drawn figures that did not load: {not_loaded}"
        unnumbered = [f["id"] for f in drawn if not re.match(r"Figure \d+", f["caption"])]
        assert not unnumbered, f"figures without a number in their caption: {unnumbered}"
        refs = page.evaluate(
            "() => Array.from(document.querySelectorAll('main a.reference.internal[href^=\"#fig-\"]'))"
            ".map(a => a.innerText)")
        assert refs and all(re.fullmatch(r"Figure \d+", r) for r in refs), f"figure references: {refs}"
        referenced = set(page.evaluate(
            "() => Array.from(document.querySelectorAll('main a.reference.internal[href^=\"#fig-\"]'))"
            ".map(a => a.getAttribute('href').slice(1))"))
        unreferenced = [f["id"] for f in drawn if f["id"] not in referenced]
        assert not unreferenced, f"drawn figures the text never refers to: {unreferenced}"
        assert not errors, f"console errors: {errors}"
    finally:
        page.context.close()


# A 13-inch laptop's browser window: the narrowest at which wide-code.css promises 120-column code (ruff's line
# length) without sideways scrolling, while the text column stays at most 49rem (~90 characters) wide.
LAPTOP_WINDOW = (1280, 800)
PROSE_MAX_PX = 49 * 16 + 1


@pytest.mark.parametrize("page_path", CHAPTER_PAGES + [p for p in PAGES if "appendix" in p])
def test_code_cells_fit_their_column(browser, server, page_path):
    page, errors, _ = open_page(browser, server, page_path, window=LAPTOP_WINDOW)
    try:
        page.evaluate("() => document.querySelectorAll('main details').forEach(d => { d.open = true; })")
        cut = page.evaluate(
            "() => Array.from(document.querySelectorAll('main div.cell_input pre'))"
            ".filter(p => p.scrollWidth > p.clientWidth)"
            ".map(p => `${p.scrollWidth - p.clientWidth} px too wide: ` + p.textContent.split('\\n')"
            ".reduce((a, l) => l.length > a.length ? l : a, ''))")
        assert page.locator("main div.cell_input pre").count() > 0, "no code cell on the page"
        assert not cut, "code cells that scroll sideways (their longest line):\n" + "\n".join(cut)
        widest_text = page.evaluate(
            "() => Math.max(0, ...Array.from(document.querySelectorAll('main section > p'))"
            ".map(p => p.getBoundingClientRect().width))")
        assert 0 < widest_text <= PROSE_MAX_PX, f"text column {widest_text:.0f} px wide"
        toggle = page.locator(".bd-header-article button.secondary-toggle")
        toggle.click()
        page.wait_for_timeout(300)
        assert page.evaluate("() => document.getElementById('pst-secondary-sidebar-modal').open"), \
            "the page header's button does not open the table of contents"
        assert not errors, f"console errors: {errors}"
    finally:
        page.context.close()


def _shown_in(box) -> list[str]:
    """What a widget box shows now: the sources of its visible images and its visible text."""
    return box.evaluate(
        "b => Array.from(b.querySelectorAll('img, .routing'))"
        ".filter(e => e.offsetParent !== null).map(e => e.src ? e.src.slice(-200) : e.innerText)")


@pytest.mark.parametrize("widget", ["dsmini-attention-explorer", "dsmini-routing-explorer"])
def test_chapter_8_widgets_on_the_trained_model_respond(browser, server, widget):
    """Every slider of chapter 8's attention and routing widgets that has more than one setting changes
    what its widget shows (a slider with one setting, such as the `ci` model's single sliding layer, is
    skipped: it cannot move)."""
    page_path = "notebooks/08_inference.html"
    _require((BOOK / page_path).exists(), f"{page_path} not built")
    page, errors, _ = open_page(browser, server, page_path)
    try:
        box = page.locator(f".{widget}")
        box.locator(".widget-slider .noUi-handle").first.wait_for(timeout=15_000)
        box.scroll_into_view_if_needed()
        handles = box.locator(".widget-slider .noUi-handle")
        moved = 0
        for i in range(handles.count()):
            handle = handles.nth(i)
            if handle.get_attribute("aria-valuemax") == handle.get_attribute("aria-valuemin"):
                continue
            before = _shown_in(box)
            assert before, "the widget shows nothing"
            handle.focus()
            handle.press("ArrowRight")
            page.wait_for_timeout(500)
            after = _shown_in(box)
            assert after and after != before, f"moving slider {i} did not change the widget"
            moved += 1
        assert moved, "no slider of the widget could move"
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        box.screenshot(path=str(SCREENSHOTS / f"08_inference__{widget}.png"))
        assert not errors, f"console errors: {errors}"
    finally:
        page.context.close()
