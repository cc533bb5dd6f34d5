"""The supporting pages, checked in their sources: links for every reference, no authoring notes shown to
readers, the repository's address from one setting, every glossary term linked from a chapter."""

import json
import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
BOOK = ROOT / "book"


def _chapters_markdown() -> str:
    text = []
    for path in sorted((ROOT / "notebooks").glob("*.ipynb")):
        cells = json.loads(path.read_text())["cells"]
        text += ["".join(c["source"]) for c in cells if c["cell_type"] == "markdown"]
    return "\n".join(text)


def test_every_reference_has_a_doi_or_url():
    entries = re.split(r"(?m)^(?=@)", (BOOK / "references.bib").read_text())
    entries = [e for e in entries if e.strip()]
    assert entries
    bare = [re.match(r"@\w+\{([^,]+),", e).group(1) for e in entries
            if not re.search(r"^\s*(doi|url)\s*=\s*\{\S+\}", e, flags=re.M)]
    assert not bare, f"references without a DOI or URL: {bare}"


def test_supporting_pages_show_no_authoring_notes():
    for name in ("glossary.md", "references.md", "intro.md", "setup.md"):
        text = (BOOK / name).read_text()
        shown = re.findall(r"``\s*\{(?:term|cite)\}`[^`]*`\s*``", text)  # a role quoted as code: a note
        assert not shown, f"{name} shows authoring notes: {shown}"
    assert "as they are written" not in (BOOK / "intro.md").read_text()


def test_repository_address_comes_from_one_setting():
    config = yaml.safe_load((ROOT / "_config.yml").read_text())
    assert config["repository"]["url"].startswith("https://github.com/")
    assert "repository_link" in config["sphinx"]["local_extensions"]
    setup = (BOOK / "setup.md").read_text()
    assert "<this repository>" not in setup
    assert setup.count("git clone {{ repository_url }}") == 2
    assert config["repository"]["url"] not in setup  # typed once, in _config.yml


def test_every_glossary_term_is_linked_from_a_chapter():
    glossary = (BOOK / "glossary.md").read_text()
    block = glossary.split("```{glossary}")[1].split("```")[0]
    terms = re.findall(r"^(\S[^\n]*)$", block, flags=re.M)
    assert len(terms) > 10
    text = _chapters_markdown()
    linked = set(re.findall(r"\{term\}`(?:[^`<]*<)?([^`>]+)>?`", text))
    missing = sorted(set(terms) - linked)
    assert not missing, f"glossary terms no chapter links with {{term}}: {missing}"
