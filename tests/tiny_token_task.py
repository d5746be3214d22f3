"""A tiny token task for tests: names are the entities (the same words in English and German),
with BIO or UPOS tags, in CoNLL / CoNLL-U / jsonl files; and the check that each word's tag sits on
its first sub-word that carries text.

Import them by name: `from tiny_token_task import check_first_subword_alignment, tagged, token_task_files`.
"""

from __future__ import annotations

import json
from pathlib import Path

from bistil_ray.method.batching import IGNORE_INDEX, tokenize_tagged


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def check_first_subword_alignment(tokenizer, words: list[str], tags: list[int]) -> None:
    """Each word's tag sits on its first piece that is not a bare word-start marker ("▁"), and nowhere else."""
    (example,) = tokenize_tagged(tokenizer, [words], [tags], max_length=64)
    encoded = tokenizer([words], is_split_into_words=True)
    pieces, word_ids = encoded.tokens(0), encoded.word_ids(0)
    expected = {}
    for word in range(len(words)):
        positions = [position for position, owner in enumerate(word_ids) if owner == word]
        expected[word] = next((position for position in positions if pieces[position] not in ("\u2581", "\u0120")), positions[0])
    for position, label in enumerate(example["labels"]):
        owner = next((word for word, at in expected.items() if at == position), None)
        assert label == (IGNORE_INDEX if owner is None else tags[owner]), (position, pieces[position])
    assert sum(label != IGNORE_INDEX for label in example["labels"]) == len(words)


ENTITIES = {"anna": "B-PER", "peter": "B-PER", "paris": "B-LOC", "berlin": "B-LOC"}
FILLER = {"en": ["lives", "in", "visits", "and"], "de": ["wohnt", "in", "besucht", "und"]}
UPOS = dict(zip(FILLER["en"] + FILLER["de"], ["VERB", "ADP", "VERB", "CCONJ"] * 2))


def tagged(lang: str, count: int, scheme: str) -> list[tuple[list[str], list[str]]]:
    """Sentences of names (the entities, the same in both languages) and filler words, with BIO
    (`ner`) or UPOS (`pos`) tags."""
    names, filler = list(ENTITIES), FILLER[lang]
    sentences = []
    for index in range(count):
        words = [names[index % 4], filler[index % 4], filler[(index + 1) % 4], names[(index + 1) % 4]]
        tags = [ENTITIES.get(word, "O") if scheme == "ner" else UPOS.get(word, "PROPN") for word in words]
        sentences.append((words, tags))
    return sentences


def token_task_files(folder: Path, scheme: str) -> dict:
    """English train and validation (CoNLL for NER, CoNLL-U for POS), German jsonl test and target
    validation in the layout of the train file, and phase-1 text for both languages."""
    folder.mkdir()
    suffix = ".conll" if scheme == "ner" else ".conllu"

    def write_split(name: str, sentences) -> str:
        if suffix == ".conll":
            blocks = ["\n".join(f"{w}\t{t}" for w, t in zip(*sentence)) for sentence in sentences]
        else:
            blocks = ["\n".join(f"{i}\t{w}\t_\t{t}\t_\t_\t0\tdep\t_\t_" for i, (w, t) in enumerate(zip(*sentence), 1)) for sentence in sentences]
        return str(write(folder / f"{name}{suffix}", "\n\n".join(blocks) + "\n"))

    test = folder / "test-de.jsonl"
    test.write_text("".join(json.dumps({"tokens": w, "tags": t}) + "\n" for w, t in tagged("de", 12, scheme)))
    corpora = {}
    for lang in ("en", "de"):
        text = folder / f"{lang}.txt"
        text.write_text("\n".join(" ".join(words) for words, _ in tagged(lang, 80, scheme)))
        corpora[lang] = {"file": str(text)}
    return {
        "task": {"files": {
            "kind": "token", "train": write_split("train", tagged("en", 40, scheme)),
            "validation": write_split("validation", tagged("en", 8, scheme)),
            "test": {"de": str(test)}, "target_validation": {"de": write_split("validation-de", tagged("de", 8, scheme))},
        }},
        "corpora": corpora,
    }  # fmt: skip


# Every tiny sentence has one shape, name verb word name: "anna lives in paris".
TREE = ([2, 0, 4, 2], ["nsubj", "root", "case", "obl"])


def parsed_task_files(folder: Path) -> dict:
    """A tiny parse task: English train and validation in CoNLL-U, German test in jsonl (tokens, head,
    deprel) and target validation in CoNLL-U, phase-1 text for both languages."""
    folder.mkdir()
    heads, relations = TREE

    def write_split(name: str, lang: str, count: int) -> str:
        blocks = ["\n".join(f"{i}\t{w}\t_\tX\t_\t_\t{h}\t{r}\t_\t_" for i, (w, h, r) in enumerate(zip(words, heads, relations), 1))
                  for words, _ in tagged(lang, count, "pos")]  # fmt: skip
        return str(write(folder / f"{name}.conllu", "\n\n".join(blocks) + "\n"))

    test = folder / "test-de.jsonl"
    test.write_text("".join(json.dumps({"tokens": w, "head": heads, "deprel": relations}) + "\n" for w, _ in tagged("de", 12, "pos")))
    corpora = {}
    for lang in ("en", "de"):
        text = folder / f"{lang}.txt"
        text.write_text("\n".join(" ".join(words) for words, _ in tagged(lang, 80, "pos")))
        corpora[lang] = {"file": str(text)}
    return {
        "task": {"files": {
            "kind": "parse", "train": write_split("train", "en", 40), "validation": write_split("validation", "en", 8),
            "test": {"de": str(test)}, "target_validation": {"de": write_split("validation-de", "de", 8)},
        }},
        "corpora": corpora,
    }  # fmt: skip
