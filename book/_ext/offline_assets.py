"""Sphinx extension (hand-written plumbing): serve MathJax, require.js and the Jupyter widgets manager locally.

By default the rendered book loads them from CDNs, so a reader offline sees raw TeX and blank widgets. At build
time we fetch them once from the npm registry (`npm pack`, pinned versions), unpack the few files the book uses
into `book/_static/vendor/` (gitignored, never committed) and point Sphinx and myst-nb at those copies. Where
npm is missing or the registry is unreachable, the build keeps the CDN defaults and says so.
"""

from __future__ import annotations

import shutil
import subprocess
import tarfile
import tempfile
from pathlib import Path

from sphinx.application import Sphinx
from sphinx.util import logging

logger = logging.getLogger(__name__)

PACKAGES = {
    "mathjax": "mathjax@3.2.2",
    "requirejs": "requirejs@2.3.8",
    "html-manager": "@jupyter-widgets/html-manager@1.0.15",
}
VENDOR = Path(__file__).resolve().parents[1] / "_static" / "vendor"
MATHJAX = "vendor/mathjax/tex-chtml.js"
REQUIRE = "vendor/requirejs/require.js"
# The widgets bundle keeps its npm layout; _static/offline-widgets.js tells it where its fonts are. The CDN
# attribute is only used for third-party widget modules (we have none); pages with widgets sit in notebooks/.
EMBED = "vendor/@jupyter-widgets/html-manager/dist/embed-amd.js"
WIDGETS_CDN = "../_static/vendor/"


def _wanted(package: str, member: str) -> str | None:
    """Where a file of an npm tarball goes under vendor/, or None to skip it."""
    name = member.removeprefix("package/")
    if package == "mathjax":
        if name == "es5/tex-chtml.js" or name.startswith("es5/output/chtml/fonts/woff-v2/"):
            return "mathjax/" + name.removeprefix("es5/")
    elif package == "requirejs":
        if name in ("require.js", "LICENSE"):
            return "requirejs/" + name
    elif package == "html-manager":
        if name.startswith("dist/") and not name.endswith(".map"):
            return "@jupyter-widgets/html-manager/" + name
    return None


def _fetch(vendor: Path) -> None:
    """npm pack the pinned packages and unpack what the book uses into `vendor` (atomically)."""
    npm = shutil.which("npm")
    if npm is None:
        raise RuntimeError("npm is not installed")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        subprocess.run([npm, "pack", "--silent", *PACKAGES.values(), "--pack-destination", str(tmp)],
                       check=True, capture_output=True, timeout=300)
        staging = tmp / "vendor"
        for package in PACKAGES:
            prefix = "jupyter-widgets-html-manager" if package == "html-manager" else package
            (tarball,) = tmp.glob(f"{prefix}-*.tgz")
            with tarfile.open(tarball) as tar:
                for member in tar.getmembers():
                    target = _wanted(package, member.name)
                    if member.isfile() and target:
                        out = staging / target
                        out.parent.mkdir(parents=True, exist_ok=True)
                        out.write_bytes(tar.extractfile(member).read())
        vendor.parent.mkdir(parents=True, exist_ok=True)
        if vendor.exists():
            shutil.rmtree(vendor)
        shutil.move(str(staging), str(vendor))


def _have_assets(vendor: Path) -> bool:
    return all((vendor.parent / p).is_file() for p in (MATHJAX, REQUIRE, EMBED))


def use_local_assets(app: Sphinx, config) -> None:
    if not _have_assets(VENDOR):
        try:
            _fetch(VENDOR)
            logger.info("offline_assets: fetched MathJax, require.js and the widgets manager from npm")
        except (RuntimeError, OSError, subprocess.SubprocessError, ValueError) as err:
            logger.info(f"offline_assets: could not fetch from npm ({err}); the book will use the CDNs")
            return
    config.mathjax_path = MATHJAX
    embed_attributes = {"data-jupyter-widgets-cdn": WIDGETS_CDN, "crossorigin": "anonymous"}
    config.nb_ipywidgets_js = {REQUIRE: {}, EMBED: embed_attributes}


def drop_duplicate_scripts(app: Sphinx, pagename, templatename, context, doctree) -> None:
    """sphinx-thebe registers its inline config twice ("THEBE_JS_URL already declared" in the console)."""
    seen, unique = set(), []
    for js in context.get("script_files", []):
        key = (getattr(js, "filename", js) or "", tuple(sorted(getattr(js, "attributes", {}).items())))
        if key not in seen:
            seen.add(key)
            unique.append(js)
    context["script_files"] = unique


def setup(app: Sphinx) -> dict:
    app.connect("config-inited", use_local_assets, priority=100)
    app.add_js_file("offline-widgets.js", priority=100)
    app.connect("html-page-context", drop_duplicate_scripts)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
