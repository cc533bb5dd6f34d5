"""The page never says what the outputs do not show: a lint over every notebook's markdown cells.

A figure from a run (a number next to a unit such as `s`, `MB`, `tok/s`, `steps`, `nats`, `×`, or a
percentage) must be inserted with myst-nb's `{glue:text}` from the cell that computes it. Figures that do not
depend on a run are allowed by the rules in `ALLOWED` (each with its reason), and a "Runs on" box may hold
measured figures when it says when and where they were measured (CONTRIBUTING.md, "Figures in the prose").
"""

import json
import re
from pathlib import Path
from typing import NamedTuple

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
CHAPTERS = [p for p in NOTEBOOKS if p.stem[:2].isdigit()]

NUMBER = r"\d[\d,]*(?:\.\d+)?"
UNIT = (r"(?:ms|µs|s|min|h|kB|KB|KiB|MB|MiB|GB|GiB|TB|tok/s|tokens/s|steps|nats|%"
        r"|×(?!\s*\d)|x(?!\s*\d))")
# a number (or a range "12-18", "0.37 to 0.39") and its unit; "3 × 4" is arithmetic, not a ratio
FIGURE = re.compile(rf"(?<![\w.\-/^]){NUMBER}(?:\s*(?:-|–|to)\s*{NUMBER})?\s?{UNIT}(?![\w/(])")
RUNS_ON = re.compile(r"^(`{3,})\{admonition\}\s*Runs on\n(.*?)^\1\s*$", re.M | re.S)
# the one rule for a Runs-on box: its figures are a record of one measurement, dated and placed
MEASURED_ON = re.compile(r"Measured on \d{4}-\d{2}-\d{2}, [^.]*(?:core|GPU)", re.I)
PROFILE_LINE = "{glue:text}`rendered_profile`"


class Allowed(NamedTuple):
    """Figures matching `figure` (whole) in a sentence matching `context` are not from a run."""

    figure: str
    context: str
    reason: str


ALLOWED = (
    Allowed(r"15 ?%", r"", "BERT's masking rate: a published constant of the recipe (chapter 7)"),
    Allowed(r"(?:80|10) ?%", r"random|unchanged|kept|80/10/10",
            "BERT's 80/10/10 corruption of the chosen tokens: a published constant"),
    Allowed(r"30 ?%", r"ModernBERT", "ModernBERT's masking rate: a published constant"),
    Allowed(r"100 ?%", r"", "all of something (every token masked, an ideal efficiency): a definition"),
    Allowed(r"8 GB|8 GiB", r"card|GPU|RTX", "the hardware the `gpu` profile is sized for: a definition"),
    Allowed(r".*", r"\{cite\}`", "a figure in a sentence that cites a paper is the paper's published figure"),
    Allowed(r".*", r"\bgoals?\b", "a goal is set before measuring: a target, not a result"),
    Allowed(r".*", r"\bdefault\b", "a library's or the code's default setting, not a result"),
    Allowed(r".*", r"\btimeouts?\b|\bcapped at\b|\bclosed after\b|\bkeep-alive\b",
            "a limit the server or the launcher is configured with: a setting, not a result"),
)


class Offence(NamedTuple):
    notebook: str
    cell: str
    figure: str
    sentence: str


def _without_blocks(markdown: str) -> str:
    """The markdown without fenced code blocks and display math; directives (admonitions) keep their text."""
    kept, directives, code = [], [], None
    for line in markdown.split("\n"):
        fence = re.match(r"\s*(`{3,}|~{3,})(.*)$", line)
        if code:  # inside a code block: drop lines up to its closing fence
            if fence and fence.group(1)[0] == code[0] and len(fence.group(1)) >= len(code) \
                    and not fence.group(2).strip():
                code = None
            continue
        if fence and fence.group(2).strip().startswith("{"):
            directives.append(fence.group(1))
        elif fence and not fence.group(2).strip() and directives and fence.group(1) == directives[-1]:
            directives.pop()
        elif fence:
            code = fence.group(1)
        kept.append("" if fence else line)  # a fence line itself is markup, not prose
    return re.sub(r"\$\$.*?\$\$", " ", "\n".join(kept), flags=re.S)


def _strip(text: str) -> str:
    """The prose a reader reads as text: no code spans, roles (glue, cite, term, ...) or inline math."""
    text = re.sub(r"\{[\w:-]+\}`[^`]*`", " ROLE ", text)
    text = re.sub(r"``.*?``|`[^`\n]*`", " CODE ", text)
    text = re.sub(r"(?<![\\\w])\$[^$\n]+\$", " MATH ", text)
    text = re.sub(r"\]\([^)]*\)", "]", text)  # a link's address
    return re.sub(r"<[^>\n]+>", " ", text)   # HTML tags


def _sentences(markdown: str) -> list[tuple[str, str]]:
    """(sentence as written, sentence stripped) pairs: paragraphs, table rows and list items, split at '. '."""
    pieces = []
    for block in re.split(r"\n\s*\n|\n(?=\s*(?:\||[-*+] |\d+\. |:))", _without_blocks(markdown)):
        flat = " ".join(block.split())
        pieces += re.split(r"(?<=[.;!?])\s+(?=[A-Z(*])", flat)
    return [(piece, _strip(piece)) for piece in pieces if piece]


def _shown_in_code(figure: str, sentence: str) -> bool:
    """The figure's number also stands in a code span of the sentence: the code's own constant, quoted."""
    number = re.escape(re.match(NUMBER, figure).group(0))
    spans = re.findall(r"(?<!`)`([^`]+)`(?!`)", sentence)
    return any(re.search(rf"(?<![\d.]){number}(?![\d])", span) for span in spans)


def _allowed(figure: str, sentence: str) -> bool:
    return _shown_in_code(figure, sentence) or any(
        re.fullmatch(rule.figure, figure) and re.search(rule.context, sentence) for rule in ALLOWED)


def _measured_boxes(markdown: str) -> tuple[str, list[str]]:
    """The markdown without its dated Runs-on boxes, and the undated boxes it had."""
    undated = [m.group(0) for m in RUNS_ON.finditer(markdown) if not MEASURED_ON.search(m.group(2))]
    return RUNS_ON.sub(lambda m: "" if MEASURED_ON.search(m.group(2)) else m.group(0), markdown), undated


def unglued_figures(path: Path) -> list[Offence]:
    """Every figure in `path`'s markdown cells that is neither glued, nor allowed, nor in a dated box."""
    offences = []
    for cell in json.loads(path.read_text())["cells"]:
        if cell["cell_type"] != "markdown":
            continue
        markdown, _ = _measured_boxes("".join(cell["source"]))
        for written, stripped in _sentences(markdown):
            for match in FIGURE.finditer(stripped):
                if not _allowed(match.group(0), written):
                    offences.append(Offence(path.stem, cell.get("id", "?"), match.group(0), written[:160]))
    return offences


def _glued_keys(path: Path) -> list[str]:
    """Regexes of the keys the code cells may glue: the string literals of every cell that calls `glue` or a
    helper defined in a cell that does (an f-string key becomes a pattern)."""
    cells = ["".join(c["source"]) for c in json.loads(path.read_text())["cells"] if c["cell_type"] == "code"]
    helpers = {"glue"} | {name for src in cells if "glue(" in src for name in re.findall(r"^def (\w+)\(", src, re.M)}
    calls = re.compile(rf"\b(?:{'|'.join(sorted(helpers))})\(")
    literal = r"(?<!\w)(f?)[\"']([\w{}.-]+)[\"']"
    keys = [key for src in cells if calls.search(src) for key in re.findall(literal, src)]
    return [re.sub(r"\\\{[^}]*\\\}", ".+", re.escape(key)) if f else re.escape(key) for f, key in keys]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_run_figures_in_the_prose_are_glued(path):
    offences = unglued_figures(path)
    assert not offences, "figures from a run written by hand (glue them, or see ALLOWED):\n" + "\n".join(
        f"  cell {o.cell}: {o.figure!r} in: {o.sentence}" for o in offences)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_runs_on_boxes_are_dated(path):
    markdown = "\n".join("".join(c["source"]) for c in json.loads(path.read_text())["cells"]
                         if c["cell_type"] == "markdown")
    _, undated = _measured_boxes(markdown)
    assert not undated, "a Runs-on box must say 'Measured on YYYY-MM-DD, <machine>':\n" + undated[0]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_every_glue_key_in_the_prose_is_glued(path):
    markdown = "\n".join("".join(c["source"]) for c in json.loads(path.read_text())["cells"]
                         if c["cell_type"] == "markdown")
    used = set(re.findall(r"\{glue(?::\w+)?\}`([^`:]+)", markdown))
    glued = _glued_keys(path)
    missing = sorted(key for key in used if not any(re.fullmatch(g, key) for g in glued))
    assert not missing, f"glue keys the prose uses but no cell glues: {missing}"


@pytest.mark.parametrize("path", CHAPTERS, ids=[p.stem for p in CHAPTERS])
def test_each_chapter_says_which_profile_rendered_it(path):
    markdown = "\n".join("".join(c["source"]) for c in json.loads(path.read_text())["cells"]
                         if c["cell_type"] == "markdown")
    box = RUNS_ON.search(markdown)
    assert box and PROFILE_LINE in box.group(0), f"the Runs-on box should say {PROFILE_LINE}"


@pytest.mark.parametrize("text, figures", [
    ("It took 12.5 s and 3 GB.", ["12.5 s", "3 GB"]),
    ("Accuracy rose to 17.2 %, at 3,278 tokens/s (1.01×).", ["17.2 %", "3,278 tokens/s", "1.01×"]),
    ("Between 12-18 s after 600 steps, 0.06 nats apart.", ["12-18 s", "600 steps", "0.06 nats"]),
    ("A matrix of 3 × 4, in `12 s`, or $5\\%$, or {glue:text}`t` s, chapter 7, 2 cores.", []),
    ("```{note}\nIt took 3 s.\n```\n\n```python\nx = 4 # 5 s\n```\nThen 6 s.", ["3 s", "6 s"]),
])
def test_the_lint_finds_figures_and_only_figures(text, figures):
    assert [m.group(0) for _, s in _sentences(text) for m in FIGURE.finditer(s)] == figures


def test_the_allow_list_keeps_its_reasons_and_catches_results():
    assert all(rule.reason for rule in ALLOWED)
    assert _allowed("15 %", "masks 15 % of the tokens") and not _allowed("15.6 %", "reached 15.6 %")
    assert not _allowed("83-86 %", "83-86 % of the input is masked at the first step")
    assert _allowed("50 ms", "the goal was under 50 ms")
    assert _allowed("7.5 GiB", "at most 7.5 GiB: `1.15 × estimate ≤ 7.5 GiB`") and not _allowed("5 GiB", "`7.5`")
