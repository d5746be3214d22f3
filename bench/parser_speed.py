"""Where a parser's time goes: a task teacher against a student, the encoder alone and with the
biaffine head, on plain text and on pre-split words.

The claims table times a parser as it times every model (`evaluation.measure_efficiency`): plain
text, with every sub-word read as a word. A parser is used on pre-split words read at each word's
first sub-word, as `BiaffineParser.parse` reads them, and its head costs the same in teacher and
student whatever their depth. On the first `--sentences` sentences of a treebank, through each
model's own tokenizer, in batches of 32, this times:
  - encoder: the encoder alone on the words (what the number of layers changes);
  - words: the parser on the words (`tokenize_parsed`, as the parser is used);
  - plain text: the parser on the words joined by spaces (as the claims table times it).
Every mode of every model runs in turn within each round (`alternating` order over repeats), and
the medians over rounds are reported, as sentences per second.

    .venv/bin/python -m bench.parser_speed --teacher DIR --student DIR --treebank FILE.conllu
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import torch
import transformers
from transformers import AutoTokenizer

from bench.common import alternating, arguments, at_least, machine, markdown_table, median, timed, write_report
from bistil_ray.data.token_files import parsed_sentences
from bistil_ray.method.batching import collate, tokenize_parsed
from bistil_ray.method.evaluation import THROUGHPUT_BATCH_SIZE
from bistil_ray.method.parser import BiaffineParser

MODES = ("encoder", "words", "plain text")
MAX_LENGTH = 128


def batches_of(tokenizer, sentences: list[list[str]]) -> dict[str, list[dict[str, torch.Tensor]]]:
    """Each mode's batches: the words with their first sub-words marked, and the words as plain text."""
    words, text = [], []
    for start in range(0, len(sentences), THROUGHPUT_BATCH_SIZE):
        chunk = sentences[start : start + THROUGHPUT_BATCH_SIZE]
        words.append(collate(tokenize_parsed(tokenizer, chunk, None, None, MAX_LENGTH), tokenizer.pad_token_id))
        plain = tokenizer([" ".join(sentence) for sentence in chunk], padding=True, truncation=True, max_length=MAX_LENGTH, return_tensors="pt")
        text.append({"input_ids": plain["input_ids"], "attention_mask": plain["attention_mask"]})
    encoder_inputs = [{"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]} for batch in words]
    return {"encoder": encoder_inputs, "words": words, "plain text": text}


def pass_over(parser: BiaffineParser, mode: str, batches: list[dict[str, torch.Tensor]]) -> Callable[[], float]:
    model = parser.encoder if mode == "encoder" else parser

    def seconds() -> float:
        with torch.inference_mode():
            return timed(lambda: [model(**batch) for batch in batches])[1]

    return seconds


def sub_words_per_word(batches: list[dict[str, torch.Tensor]], sentences: list[list[str]]) -> float:
    special = 2 * sum(batch["input_ids"].shape[0] for batch in batches)
    return (sum(int(batch["attention_mask"].sum()) for batch in batches) - special) / sum(len(sentence) for sentence in sentences)


def main() -> None:
    parser = arguments(__doc__.splitlines()[0])
    parser.add_argument("--teacher", type=Path, required=True, help="a saved parser: the task teacher")
    parser.add_argument("--student", type=Path, required=True, help="a saved parser: a student of it")
    parser.add_argument("--treebank", type=Path, required=True, help="a CoNLL-U file whose sentences are parsed")
    parser.add_argument("--sentences", type=at_least(THROUGHPUT_BATCH_SIZE), default=256, help="sentences of the sample")
    parser.add_argument("--warmup", type=at_least(0), default=2, help="untimed rounds first")
    args = parser.parse_args()
    transformers.logging.set_verbosity_error()

    sentences = [words for words, _, _ in parsed_sentences(args.treebank, "words", "heads", "relations")[: args.sentences]]
    paths = {"teacher": args.teacher, "student": args.student}
    models = {name: BiaffineParser.from_pretrained(path).eval() for name, path in paths.items()}
    inputs = {name: batches_of(AutoTokenizer.from_pretrained(path), sentences) for name, path in paths.items()}
    variants = {f"{name} {mode}": pass_over(models[name], mode, inputs[name][mode]) for name in models for mode in MODES}
    alternating(variants, args.warmup)
    seconds = alternating(variants, args.repeats)
    rate = {variant: len(sentences) / median(times) for variant, times in seconds.items()}
    record: dict[str, Any] = {
        "settings": {**{name: str(path) for name, path in paths.items()}, "treebank": args.treebank.name,
                     "sentences": len(sentences), "repeats": args.repeats, "batch_size": THROUGHPUT_BATCH_SIZE},  # fmt: skip
        "machine": machine(),
        "models": {
            name: {
                "layers": model.config.num_hidden_layers,
                "sub_words_per_word": sub_words_per_word(inputs[name]["words"], sentences),
                **{f"{mode} per s": rate[f"{name} {mode}"] for mode in MODES},
            }
            for name, model in models.items()
        },
        "speedup": {mode: rate[f"student {mode}"] / rate[f"teacher {mode}"] for mode in MODES},
        "head_share": {name: 1 - rate[f"{name} words"] / rate[f"{name} encoder"] for name in models},
    }
    write_report(args.out, "parser_speed", record, markdown(record))
    print(markdown(record))


def markdown(record: dict[str, Any]) -> str:
    settings, models = record["settings"], record["models"]
    rows = [[name, model["layers"], model["sub_words_per_word"], *(model[f"{mode} per s"] for mode in MODES), record["head_share"][name]]
            for name, model in models.items()]  # fmt: skip
    rows.append(["student / teacher", "", "", *(record["speedup"][mode] for mode in MODES), ""])
    return (
        "# Where a parser's time goes\n\n"
        f"The first {settings['sentences']} sentences of {settings['treebank']}, batches of {settings['batch_size']}, "
        f"sentences per second (medians of {settings['repeats']} rounds, every variant in turn). **encoder**: the encoder "
        "alone; **words**: the parser on pre-split words, as it is used; **plain text**: the parser on the words joined "
        "by spaces, every sub-word read as a word, as the claims table times it. **head share**: the share of the "
        "parser's time on words spent outside the encoder.\n\n"
        f"Teacher `{settings['teacher']}`, student `{settings['student']}`; measured {record['machine']['measured_at']} "
        f"on {record['machine']['cpu_count']} CPUs ({record['machine']['cpu']}).\n\n"
        + markdown_table(["model", "layers", "sub-words per word", *MODES, "head share"], rows)
    )


if __name__ == "__main__":
    main()
