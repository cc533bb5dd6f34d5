"""The book's conceptual figures: the committed SVGs are exactly what book/figures/make_figures.py draws."""

import importlib.util
import json
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "book" / "figures" / "make_figures.py"
SVG_DIR = ROOT / "book" / "figures" / "svg"


def _module():
    spec = importlib.util.spec_from_file_location("make_figures", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_committed_svgs_equal_what_the_code_draws():
    bad = _module().stale()
    assert not bad, f"run `make figures` and commit: {bad}"


def test_check_cli_agrees_and_detects_a_change(tmp_path):
    proc = subprocess.run([sys.executable, str(SCRIPT), "--check"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    module = _module()
    for name, text in module.render_all().items():
        (tmp_path / name).write_text(text, encoding="utf-8")
    assert module.stale(tmp_path) == []
    first = sorted(tmp_path.glob("*.svg"))[0]
    first.write_text(first.read_text().replace("</svg>", "<g/></svg>"))
    (tmp_path / "orphan.svg").write_text("<svg/>")
    assert module.stale(tmp_path) == [first.name, "orphan.svg"]


def test_every_svg_is_well_formed_and_titled():
    for path in sorted(SVG_DIR.glob("*.svg")):
        root = ET.fromstring(path.read_text(encoding="utf-8"))
        assert root.tag.endswith("svg") and float(root.get("width")) > 0, path.name
        assert root.find("{http://www.w3.org/2000/svg}title").text, f"{path.name} has no <title>"


def _markdown(nb_path: Path) -> str:
    nb = json.loads(nb_path.read_text())
    return "\n".join("".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "markdown")


def test_every_chapter_opens_with_its_roadmap_and_every_figure_is_used_and_referenced():
    used = set()
    for nb_path in sorted((ROOT / "notebooks").glob("*.ipynb")):
        text = _markdown(nb_path)
        # a figure-md directive: numbered in the book, and its markdown image shows in plain JupyterLab too
        figures = re.findall(r":::\{figure-md\} (\S+)\n!\[[^\]]+\]\(\.\./book/figures/svg/(\S+)\.svg\)", text)
        figures = [(svg, name) for name, svg in figures]
        for svg, name in figures:
            assert (SVG_DIR / f"{svg}.svg").is_file(), f"{nb_path.name} shows a missing {svg}.svg"
            assert f"{{numref}}`{name}`" in text, f"{nb_path.name}: {name} is never referenced from the text"
            used.add(svg)
        if nb_path.stem[:2].isdigit():
            assert (f"roadmap_{nb_path.stem[:2]}", f"fig-roadmap-{nb_path.stem[:2]}") in figures, nb_path.name
    drawn = {p.stem for p in SVG_DIR.glob("*.svg")}
    assert drawn <= used, f"figures no chapter shows: {sorted(drawn - used)}"
