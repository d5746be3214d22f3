"""Real unlabelled text of a language from Debian's packages, for phase 1 where a task ships too little.

    python -m bistil_ray.data.debian_text de fi id ja zh-tw en

For each language, downloads the packages it names (`apt-get download`, no install, no root needed
beyond apt's own), unpacks them (`dpkg -x`), and keeps the clean sentences of their translated text
in the cache, one per line, under a key of the packages' exact versions: a rerun with the same
versions downloads nothing, and a new version builds a new file beside the old one. Sources:

    libreoffice-help-LL      LibreOffice's help pages, `<p>`/`<li>` text (MPL-2.0)
    wesnoth-1.16-<campaign>  Wesnoth campaign dialogue and story, the translated strings of their .mo
                             catalogues; English is the catalogues' source strings (GPL-2+)
    fortunes-de, fortunes-zh quotes and poems (GPL-2 and others: each package's copyright file)

A clean sentence has 4-80 words (CJK: 8-160 characters), ends in a full stop, carries no markup or
placeholder, is not the untranslated English source string, and is kept once. The sidecar JSON
beside each file names every package, its version, its licence and how many sentences it gave:
name them wherever a corpus built from them is used. In a config the text is a `corpora:` entry:

    corpora:
      de: {debian: {}}              # the language's own sources
      zh: {debian: {language: zh-tw}}   # traditional Chinese for a traditional-script treebank
"""

from __future__ import annotations

import argparse
import gettext
import hashlib
import json
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path
from typing import Callable, Iterable, Iterator

from bistil_ray.assets.teachers import cache_root
from bistil_ray.atomic import atomic_write_text
from bistil_ray.errors import UserInputError, exit_on_user_error

WESNOTH_CAMPAIGNS = ("did", "dm", "dw", "ei", "httt", "l", "low", "nr", "sof", "sota", "sotbe", "thot", "trow", "tsg", "ttb", "utbs")
FORMAT_VERSION = 2  # part of every key: bump it when the extraction changes what a package gives


@dataclass(frozen=True)
class Source:
    """One package and how to read a language's sentences out of its unpacked tree."""

    package: str
    licence: str
    extract: Callable[[Path], Iterator[str]]


# --- readers of unpacked packages ------------------------------------------------------------------


class _ParagraphText(HTMLParser):
    """The text of every `<p>` and `<li>` of an HTML page, without `hidden` elements (LibreOffice help
    hides the other platforms' variants of a sentence)."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.paragraphs: list[str] = []
        self._open: list[str] | None = None
        self._hidden_depth = 0
        self._depth = 0

    def handle_starttag(self, tag: str, attrs) -> None:
        self._depth += 1
        if self._hidden_depth == 0 and any(name == "hidden" for name, _ in attrs):
            self._hidden_depth = self._depth
        if tag in ("p", "li") and self._open is None:
            self._open, self._paragraph_depth = [], self._depth

    def handle_endtag(self, tag: str) -> None:
        if self._open is not None and tag in ("p", "li") and self._depth == self._paragraph_depth:
            self.paragraphs.append(" ".join("".join(self._open).split()))
            self._open = None
        if self._hidden_depth == self._depth:
            self._hidden_depth = 0
        self._depth -= 1

    def handle_data(self, data: str) -> None:
        if self._open is not None and self._hidden_depth == 0:
            self._open.append(data)


def help_pages(code: str) -> Callable[[Path], Iterator[str]]:
    def extract(tree: Path) -> Iterator[str]:
        for page in sorted((tree / "usr/share/libreoffice/help" / code).rglob("*.html")):
            parser = _ParagraphText()
            parser.feed(page.read_text(encoding="utf-8", errors="replace"))
            yield from parser.paragraphs

    return extract


def catalogue_strings(locale: str | None) -> Callable[[Path], Iterator[str]]:
    """A Wesnoth campaign's translated strings in `locale`, or (None) its English source strings.
    A translation equal to its source string is untranslated English, and left out."""

    def extract(tree: Path) -> Iterator[str]:
        # English: the source strings (msgids) of the en_GB catalogues, one per campaign.
        for catalogue in sorted(tree.rglob(f"{locale or 'en_GB'}/LC_MESSAGES/*.mo")):
            with catalogue.open("rb") as handle:
                entries = gettext.GNUTranslations(handle)._catalog  # the public API answers one string at a time
            for source, translated in entries.items():
                if not isinstance(source, str) or not source:  # plural forms are (msgid, n) tuples; "" is the header
                    continue
                if locale is None:
                    yield source
                elif translated != source:
                    yield translated

    return extract


def fortunes(folder: str) -> Callable[[Path], Iterator[str]]:
    """The quotes of a fortune package: text files of entries separated by lines holding `%`, each entry
    with its line breaks (a sentence may run over several lines)."""

    def extract(tree: Path) -> Iterator[str]:
        for file in sorted((tree / "usr/share/games" / folder).glob("*")):
            if file.suffix in (".dat", ".u8") or file.is_dir() or file.is_symlink():
                continue
            text = _TERMINAL_COLOURS.sub("", file.read_text(encoding="utf-8", errors="replace"))
            yield from re.split(r"^%\s*$", text, flags=re.MULTILINE)

    return extract


def _libreoffice(code: str) -> Source:
    """The help of one language: the package is named in lower case, its folder as LibreOffice names it (zh-TW)."""
    return Source(f"libreoffice-help-{code.lower()}", "MPL-2.0", help_pages(code))


def _wesnoth(locale: str | None) -> list[Source]:
    return [Source(f"wesnoth-1.16-{campaign}", "GPL-2+", catalogue_strings(locale)) for campaign in WESNOTH_CAMPAIGNS]


SOURCES: dict[str, list[Source]] = {
    "en": [_libreoffice("en-GB"), *_wesnoth(None)],
    "de": [_libreoffice("de"), *_wesnoth("de"), Source("fortunes-de", "GPL-2", fortunes("fortunes/de"))],
    "fi": [_libreoffice("fi"), *_wesnoth("fi")],
    "id": [_libreoffice("id"), *_wesnoth("id")],
    "ja": [_libreoffice("ja"), *_wesnoth("ja")],
    "zh": [_libreoffice("zh-CN"), *_wesnoth("zh_CN"), Source("fortunes-zh", "GPL-2", fortunes("fortunes"))],
    "zh-tw": [_libreoffice("zh-TW"), *_wesnoth("zh_TW")],
}
CJK = ("ja", "zh", "zh-tw")


# --- clean sentences -------------------------------------------------------------------------------

_TERMINAL_COLOURS = re.compile(r"\x1b\[[0-9;]*m")
_MARKUP = re.compile(r"[<>{}\[\]|\\#@$%^_~`=*]|&\w+;|https?:|www\.|\.\w{2,4}\b/|\s[-–]\s*$")
_SENTENCE_END = {"latin": re.compile(r"(?<=[.!?])\s+(?=[\"'„“(]?[A-ZÄÖÜÅ0-9])"), "cjk": re.compile(r"(?<=[。！？])")}


def sentences(paragraph: str, language: str) -> Iterator[str]:
    """The clean sentences of a paragraph (see the module's docstring); a line break inside it joins
    words with a space, CJK characters with nothing."""
    cjk = language in CJK
    paragraph = re.sub(r"\s*\n\s*", "", paragraph.strip()) if cjk else " ".join(paragraph.split())
    for sentence in _SENTENCE_END["cjk" if cjk else "latin"].split(paragraph):
        sentence = sentence.strip().strip("\"'“”„")
        if not sentence.endswith("。" if cjk else ".") or sentence.endswith(".."):
            continue
        if _MARKUP.search(sentence):
            continue
        size = len(sentence) if cjk else len(sentence.split())
        if (8 <= size <= 160) if cjk else (4 <= size <= 80):
            yield sentence


def clean_sentences(paragraphs: Iterable[str], language: str, seen: set[str]) -> Iterator[str]:
    for paragraph in paragraphs:
        for sentence in sentences(paragraph, language):
            if sentence not in seen:
                seen.add(sentence)
                yield sentence


# --- packages ---------------------------------------------------------------------------------------


def _run(command: list[str], what: str, cwd: Path | None = None) -> str:
    try:
        done = subprocess.run(command, capture_output=True, text=True, check=False, cwd=cwd)
    except FileNotFoundError:
        raise UserInputError(f"{what}: '{command[0]}' is not on this machine (Debian's apt and dpkg are needed)") from None
    if done.returncode != 0:
        message = (done.stderr.strip().splitlines() or ["no message"])[-1]
        raise UserInputError(f"{what}: {message}")
    return done.stdout


def candidate_version(package: str) -> str:
    """The version `apt-get download` would fetch."""
    shown = _run(["apt-cache", "policy", package], f"apt-cache policy {package}")
    found = re.search(r"^\s*Candidate:\s*(\S+)", shown, flags=re.MULTILINE)
    if not found or found.group(1) == "(none)":
        raise UserInputError(f"{package}: not in this machine's package lists (run 'apt-get update' first)")
    return found.group(1)


# --- the cached corpus ------------------------------------------------------------------------------


def text_folder() -> Path:
    return cache_root() / "text"


def corpus_key(language: str, versions: dict[str, str]) -> str:
    payload = json.dumps({"format": FORMAT_VERSION, "language": language, "packages": versions}, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def known_language(language: str) -> list[Source]:
    if language not in SOURCES:
        raise UserInputError(f"debian text: no sources for language '{language}' (known: {', '.join(SOURCES)})")
    return SOURCES[language]


class UnpackedPackages:
    """Packages downloaded (`apt-get download`, into the working directory) and unpacked (`dpkg -x`)
    once into a scratch folder, for every language that reads them; removed on exit."""

    def __enter__(self) -> "UnpackedPackages":
        self.scratch = Path(tempfile.mkdtemp(prefix="bistil-debian-"))
        self.trees: dict[tuple[str, str], Path] = {}
        return self

    def __exit__(self, *exception) -> None:
        shutil.rmtree(self.scratch, ignore_errors=True)

    def tree(self, package: str, version: str) -> Path:
        if (package, version) not in self.trees:
            _run(["apt-get", "download", f"{package}={version}"], f"apt-get download {package}", cwd=self.scratch)
            (archive,) = self.scratch.glob(f"{package}_*.deb")
            tree = self.scratch / package
            _run(["dpkg", "-x", str(archive), str(tree)], f"dpkg -x {archive.name}")
            archive.unlink()
            self.trees[package, version] = tree
        return self.trees[package, version]


def debian_corpus(language: str, packages: UnpackedPackages | None = None, log: Callable[[str], None] = print) -> Path:
    """The cached text file of `language`'s sources at the versions apt offers now, built if missing
    (from `packages`, else from packages fetched for this call alone)."""
    sources = known_language(language)
    versions = {source.package: candidate_version(source.package) for source in sources}
    final = text_folder() / f"{language}-{corpus_key(language, versions)}.txt"
    if final.exists():
        return final
    if packages is None:
        with UnpackedPackages() as packages:
            return debian_corpus(language, packages, log)
    seen: set[str] = set()
    kept: list[str] = []
    provenance = []
    for source in sources:
        version = versions[source.package]
        found = list(clean_sentences(source.extract(packages.tree(source.package, version)), language, seen))
        kept.extend(found)
        provenance.append({"package": source.package, "version": version, "licence": source.licence, "sentences": len(found)})
        log(f"{language}: {source.package} {version}: {len(found):,} sentences")
    if not kept:
        raise UserInputError(f"debian text: no clean sentences of '{language}' in {', '.join(versions)}")
    final.parent.mkdir(parents=True, exist_ok=True)
    sidecar = {"language": language, "sentences": len(kept), "sources": provenance, "format": FORMAT_VERSION}
    atomic_write_text(final.with_suffix(".json"), json.dumps(sidecar, indent=1, ensure_ascii=False))
    atomic_write_text(final, "\n".join(kept) + "\n")  # last: the text file's presence means done
    return final

def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bistil_ray.data.debian_text", description=__doc__.splitlines()[0])
    parser.add_argument("languages", nargs="+", help=f"languages to build ({', '.join(SOURCES)})")
    arguments = parser.parse_args(argv)
    with exit_on_user_error("debian_text"):
        for language in arguments.languages:
            known_language(language)
        with UnpackedPackages() as packages:
            paths = {language: debian_corpus(language, packages) for language in arguments.languages}
        for language, path in paths.items():
            sidecar = json.loads(path.with_suffix(".json").read_text())
            print(f"{language}: {sidecar['sentences']:,} sentences in {path}")


if __name__ == "__main__":
    main()
