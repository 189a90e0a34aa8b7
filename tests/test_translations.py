"""Translations (page.zh.md, page.ja.md, notebook.zh.ipynb ...) record the SHA-256 of the English
file they follow; a changed English page makes its translation stale: the suite names it here,
and the site shows a notice on it (docs/hooks.py)."""

import importlib.util
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def hooks():
    spec = importlib.util.spec_from_file_location("docs_hooks", ROOT / "docs" / "hooks.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_translation_follows_the_current_english_page():
    module = hooks()
    found = module.translations()
    for lang in ("zh", "ja"):
        for page in ("index", "guides/layers", "notebooks/1_computational_graphs", "notebooks/2_layer_rules",
                     "notebooks/3_training", "notebooks/4_your_own_layer", "notebooks/5_backprop_through_time",
                     "notebooks/6_exercises"):
            ext = "ipynb" if page.startswith("notebooks") else "md"
            assert f"{page}.{lang}.{ext}" in found
    stale = module.stale_translations()
    assert stale == [], ("stale translations: update each to its English page, then record the "
                         f"English file's `sha256sum` as its source_sha256: {stale}")


def test_a_changed_english_page_marks_its_translation_stale(tmp_path, monkeypatch):
    module = hooks()
    docs = tmp_path / "docs"
    (docs / "guides").mkdir(parents=True)
    (docs / "guides" / "layers.md").write_text("# The layers\n")
    recorded = module.file_sha256(docs / "guides" / "layers.md")
    (docs / "guides" / "layers.ja.md").write_text(f"---\nsource_sha256: {recorded}\n---\n# レイヤ\n")
    monkeypatch.setattr(module, "ROOT", tmp_path)
    assert module.stale_translations() == []
    assert module._stale_notice("guides/layers.ja.md", recorded) == ""
    (docs / "guides" / "layers.md").write_text("# The layers\n\nA new paragraph.\n")
    assert module.stale_translations() == ["guides/layers.ja.md"]
    notice = module._stale_notice("guides/layers.ja.md", recorded)
    assert 'class="admonition warning stale-translation"' in notice and "翻訳が古い可能性があります" in notice
    assert '<a href="../../guides/layers.html">英語の原文</a>' in notice  # from ja/guides/ to the English page


def test_a_translated_notebook_runs_the_english_notebooks_code():
    """Only the prose is translated: the code cells are the English notebook's, so the run of
    the English notebook (tests/test_notebooks.py) stands for them."""
    import nbformat

    module = hooks()
    notebooks = [t for t in module.translations() if t.endswith(".ipynb")]
    assert len(notebooks) >= 12
    for translation in notebooks:
        code = lambda path: [c.source for c in nbformat.read(str(ROOT / "docs" / path), as_version=4).cells
                             if c.cell_type == "code"]
        assert code(translation) == code(module.source_of(translation)), translation


def _outline(text):
    """A page's shape, whatever its language: each heading's level, how many table rows each
    section holds and how many fenced blocks."""
    text = re.sub(r"\A---\n.*?\n---\n", "", text, flags=re.S)
    shape, rows, fences = [], 0, 0
    for line in text.splitlines():
        if line.startswith("```"):
            fences += 1
        elif line.startswith("#") and fences % 2 == 0:
            shape.append((rows, fences // 2))
            shape.append(line.split(" ", 1)[0])
            rows = 0
        elif line.startswith("|") and fences % 2 == 0:
            rows += 1
    return shape + [(rows, fences // 2)]


def test_a_translated_page_follows_the_whole_english_page():
    """A summary is not a translation: every section, table row and code block of the English
    page is in each translation, in the same order."""
    module = hooks()
    pages = [t for t in module.translations() if t.endswith(".md")]
    assert "guides/layers.zh.md" in pages and "guides/layers.ja.md" in pages
    for translation in pages:
        english = (ROOT / "docs" / module.source_of(translation)).read_text()
        assert _outline((ROOT / "docs" / translation).read_text()) == _outline(english), translation
    # A page that stops short of its English page does not pass.
    page = (ROOT / "docs" / "guides" / "layers.zh.md").read_text()
    english = (ROOT / "docs" / "guides" / "layers.md").read_text()
    assert _outline(page[:page.index("\n## 续作的层")]) != _outline(english)


def test_a_notebook_not_translated_leads_each_language_to_its_english_page(tmp_path, monkeypatch):
    """Every notebook of the site is translated; one added later, in English only (or in one
    language), is still reached from each language's switcher."""
    from types import SimpleNamespace

    module = hooks()
    (tmp_path / "docs" / "notebooks").mkdir(parents=True)
    for name in ("7_new.ipynb", "7_new.zh.ipynb"):
        (tmp_path / "docs" / "notebooks" / name).write_text("{}")
    monkeypatch.setattr(module, "ROOT", tmp_path)
    alternates = [{"lang": "en", "link": "/"}, {"lang": "zh", "link": "/zh/"}, {"lang": "ja", "link": "/ja/"}]
    config = SimpleNamespace(extra=SimpleNamespace(alternate=alternates))
    page = SimpleNamespace(file=SimpleNamespace(src_uri="notebooks/7_new.zh.ipynb"))
    module.on_page_context({}, page, config, nav=None)
    assert [a["link"] for a in alternates] == ["notebooks/7_new.html", "zh/notebooks/7_new.html",
                                               "notebooks/7_new.html"]
