"""Text from Debian's packages: the sentence filter, the readers of each source, and the cached corpus
built through stand-ins for `apt-cache` and `apt-get` that serve a package made here with dpkg-deb."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from bistil_ray.config import CorpusSpec, TaskSpec
from bistil_ray.data import debian_text
from bistil_ray.data.corpora import fingerprint_corpus, load_corpus
from bistil_ray.data.debian_text import Source, clean_sentences, debian_corpus, help_pages, sentences
from bistil_ray.errors import UserInputError

HELP_PAGE = """<html><body><h1>Titel</h1>
<p>Die <span class="menuitem">Suchleiste</span> sucht Text in Dokumenten.</p>
<p>Drücken Sie <span hidden="true">Befehl+F auf dem Mac</span><span>Strg+F</span>, um zu suchen. Das geht schnell.</p>
<li>Zu kurz.</li><li>Geben Sie {Name} in das Feld ein.</li><p>Diese Zeile hat keinen Punkt am Ende</p>
<p>Die <span class="menuitem">Suchleiste</span> sucht Text in Dokumenten.</p></body></html>"""


def test_a_clean_sentence_ends_in_a_full_stop_has_4_to_80_words_and_no_markup():
    assert list(sentences("Das ist ein Satz. Noch ein ganzer Satz hier. Kurz.", "de")) == ["Das ist ein Satz.", "Noch ein ganzer Satz hier."]
    assert list(sentences("Setzen Sie $HOME in der Datei ein.", "de")) == []
    assert list(sentences("Siehe https://example.org für mehr Text.", "de")) == []
    assert list(sentences("这是一个很长的中文句子。短句。", "zh")) == ["这是一个很长的中文句子。"]
    assert list(sentences("沾衣欲湿杏花雨，\n吹面不寒杨柳风。", "zh")) == ["沾衣欲湿杏花雨，吹面不寒杨柳风。"]  # a line break inside a poem


def test_help_pages_give_paragraph_text_without_hidden_variants_once_each(tmp_path: Path):
    page = tmp_path / "usr/share/libreoffice/help/de/text/find.html"
    page.parent.mkdir(parents=True)
    page.write_text(HELP_PAGE, encoding="utf-8")
    assert list(clean_sentences(help_pages("de")(tmp_path), "de", set())) == [
        "Die Suchleiste sucht Text in Dokumenten.",
        "Drücken Sie Strg+F, um zu suchen.",
    ]


@pytest.fixture
def fake_apt(tmp_path: Path, monkeypatch) -> dict:
    """`apt-cache policy` and `apt-get download` stand-ins on PATH serving one package, `help-xx`, built
    with dpkg-deb; the cache moved into tmp_path; the language `xx` reading that package."""
    if shutil.which("dpkg-deb") is None:
        pytest.skip("dpkg-deb is not on this machine")
    root = tmp_path / "package"
    page = root / "usr/share/libreoffice/help/xx/page.html"
    page.parent.mkdir(parents=True)
    page.write_text(HELP_PAGE, encoding="utf-8")
    (root / "DEBIAN").mkdir()
    (root / "DEBIAN/control").write_text("Package: help-xx\nVersion: 1.0-1\nArchitecture: all\nMaintainer: t <t@t>\nDescription: t\n")
    archive = tmp_path / "help-xx_1.0-1_all.deb"
    subprocess.run(["dpkg-deb", "--build", "--root-owner-group", str(root), str(archive)], check=True, capture_output=True)
    bin_dir, downloads = tmp_path / "bin", tmp_path / "downloads.log"
    bin_dir.mkdir()
    (bin_dir / "apt-cache").write_text(
        '#!/bin/sh\nif [ "$2" = help-xx ]; then printf "help-xx:\\n  Installed: (none)\\n  Candidate: 1.0-1\\n"; '
        'else printf "%s:\\n  Installed: (none)\\n  Candidate: (none)\\n" "$2"; fi\n'
    )
    (bin_dir / "apt-get").write_text(f'#!/bin/sh\necho "$2" >> {downloads}\ncp {archive} .\n')
    for tool in ("apt-cache", "apt-get"):
        (bin_dir / tool).chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:/usr/bin:/bin")
    monkeypatch.setenv("BISTIL_RAY_CACHE", str(tmp_path / "cache"))
    monkeypatch.setitem(debian_text.SOURCES, "xx", [Source("help-xx", "MPL-2.0", help_pages("xx"))])
    return {"downloads": downloads}


def test_the_corpus_is_built_once_keyed_by_the_package_versions_and_names_its_sources(fake_apt: dict):
    path = debian_corpus("xx", log=lambda line: None)
    assert path.read_text(encoding="utf-8").splitlines() == ["Die Suchleiste sucht Text in Dokumenten.", "Drücken Sie Strg+F, um zu suchen."]
    sidecar = json.loads(path.with_suffix(".json").read_text())
    assert sidecar["sources"] == [{"package": "help-xx", "version": "1.0-1", "licence": "MPL-2.0", "sentences": 2}]
    assert debian_corpus("xx") == path and fake_apt["downloads"].read_text().splitlines() == ["help-xx=1.0-1"]  # cached
    spec = {"xx": CorpusSpec(debian={})}
    assert load_corpus(TaskSpec(builtin="chatterbot"), spec, "xx", max_sentences=1) == ["Die Suchleiste sucht Text in Dokumenten."]
    assert fingerprint_corpus(TaskSpec(builtin="chatterbot"), spec, "xx") == fingerprint_corpus(TaskSpec(builtin="chatterbot"), spec, "xx")


def test_a_package_apt_does_not_know_or_a_language_without_sources_is_one_line_exit_2(fake_apt: dict, monkeypatch, capsys):
    monkeypatch.setitem(debian_text.SOURCES, "yy", [Source("help-yy", "MPL-2.0", help_pages("yy"))])
    with pytest.raises(UserInputError, match=r"help-yy: not in this machine's package lists \(run 'apt-get update' first\)"):
        debian_corpus("yy")
    for language, message in (("yy", "help-yy: not in this machine's package lists"), ("qq", "no sources for language 'qq'")):
        with pytest.raises(SystemExit) as exited:
            debian_text.main(["xx", language])
        error = capsys.readouterr().err.strip()
        assert exited.value.code == 2 and message in error and "\n" not in error
    assert not list((debian_text.text_folder()).glob("yy-*"))  # nothing half-written
