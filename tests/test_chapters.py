"""Every chapter has the same bones (CONTRIBUTING.md), and the book cites the papers it builds on."""

import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CHAPTERS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
BIB = (ROOT / "book" / "references.bib").read_text()


def _cells(path: Path) -> list[tuple[str, str]]:
    nb = json.loads(path.read_text())
    return [(c["cell_type"], "".join(c["source"]) if isinstance(c["source"], list) else c["source"])
            for c in nb["cells"]]


def _markdown(path: Path) -> str:
    return "\n".join(src for kind, src in _cells(path) if kind == "markdown")


@pytest.mark.parametrize("path", CHAPTERS, ids=[p.stem for p in CHAPTERS])
def test_chapter_has_the_bones(path):
    cells = _cells(path)
    md = _markdown(path)
    code = "\n".join(src for kind, src in cells if kind == "code")
    number = int(path.stem[:2])
    assert cells[0][0] == "markdown" and re.match(rf"# {number}\. \S", cells[0][1]), "first cell: '# N. Title'"
    assert re.search(r"\{admonition\}\s*Runs on", md), "a 'Runs on' admonition"
    assert "get_profile(" in code, "a setup cell reading the profile"
    assert any(src.startswith("#| export") for kind, src in cells if kind == "code"), "exported cells"
    assert re.search(r"^#+ .*What we exported", md, re.M), "a 'What we exported' section"
    assert re.search(r"^#+ .*Summary", md, re.M), "a summary"
    assert re.search(r"^#+ .*Exercises", md, re.M), "exercises"
    assert re.search(r":class: dropdown|\{dropdown\}", md), "solutions in dropdowns"
    for word in ("TODO", "TBD", "placeholder", "lorem ipsum"):
        assert word.lower() not in (md + code).lower(), f"'{word}' left in the chapter"


def test_every_citation_is_in_the_bibliography():
    keys = set(re.findall(r"@\w+\{([^,]+),", BIB))
    cited = set()
    for path in CHAPTERS:
        for group in re.findall(r"\{cite(?::\w+)?\}`([^`]+)`", _markdown(path)):
            cited.update(k.strip() for k in group.split(","))
    missing = cited - keys
    assert not missing, f"cited but not in book/references.bib: {sorted(missing)}"


REQUIRED = {  # the papers issue 10 asks the chapters to cite, by chapter
    "03_attention": ["su2024roformer"],
    "04_sliding_window_attention": ["beltagy2020longformer", "warner2024modernbert"],
    "05_mixture_of_experts": ["fedus2022switch", "dai2024deepseekmoe", "deepseekai2024v3"],
    "07_pretraining": ["devlin2019bert", "joshi2020spanbert"],
    "08_inference": ["nie2025llada", "chang2022maskgit"],
}


@pytest.mark.parametrize("stem", sorted(REQUIRED))
def test_chapter_cites_its_papers(stem):
    path = ROOT / "notebooks" / f"{stem}.ipynb"
    if not path.exists():
        pytest.skip(f"{stem} not written yet")
    md = _markdown(path)
    for key in REQUIRED[stem]:
        assert key in md, f"{stem} should cite {key}"
