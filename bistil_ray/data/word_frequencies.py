"""Word-frequency lists of large corpora (the `wordfreq` package), for vocabulary trimming.

wordfreq ships, inside its wheel, word frequencies measured on Wikipedia, subtitles, news, books and
web text for about 40 languages, so they are available offline. A language is looked up by its exact
code: a tag with a script or region (`zh-hant`, `hi-latn`) would get a list in another script, so it
gets none.
"""

from __future__ import annotations

from functools import lru_cache
from importlib.metadata import version

import wordfreq

WORDLIST = "best"  # the large list where wordfreq has one, else the small one


@lru_cache(maxsize=None)
def word_frequencies(lang: str) -> dict[str, float] | None:
    """Word -> relative frequency for `lang`, or None when wordfreq has no list for it."""
    if lang.lower() not in wordfreq.available_languages(WORDLIST):
        return None
    return wordfreq.get_frequency_dict(lang.lower(), WORDLIST)


def fingerprint() -> str:
    """What identifies the lists' content: the package version that ships them."""
    return f"wordfreq=={version('wordfreq')}/{WORDLIST}"
