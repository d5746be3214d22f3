"""How much faster and smaller than the teacher are trimmed-vocabulary students of 6, 4 and 3 layers?

The models, all with a task head of the demo task's classes:
  - the teacher as a user deploys it: the published 12-layer model with its whole vocabulary (what
    the sweep's task teacher is, and what its `speedup` column compares against);
  - the same teacher with the demo pair's trimmed vocabulary, which separates what the vocabulary
    saves from what the depth saves;
  - students of each depth built from the trimmed teacher (`build_student`, the sweep's layer map).
Each is timed by the sweep's own measurement (`evaluation.measure_efficiency`: warm-up, then
round-robin rounds of 16 batch-1 forwards and the first 256 texts in batches of 32, medians) on
the demo pair's target-language test sentences, each through the model's own tokenizer. That measurement is
repeated with the models in alternating order, and the medians of its results are reported.
Training does not change how fast a model runs, so the students are not trained.

    student_speedup_<n>l = a student's batch-32 throughput / the full-vocabulary teacher's
    student_params_ratio_<n>l = a student's parameters / the full-vocabulary teacher's

    .venv/bin/python -m bench.student_speed [--rounds 20] [--repeats 3]
"""

from __future__ import annotations

from typing import Any

import transformers
from transformers import AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

from bench.common import at_least, arguments, machine, markdown_table, median, merge_summary, write_report
from bench.fixtures import BenchData, demo_sweep, full_teacher, load_bench_data, student_of, trimmed_teacher
from bistil_ray.method.evaluation import THROUGHPUT_BATCH_SIZE, Efficiency, measure_efficiency, throughput_batches
from bistil_ray.method.training import training_device

STUDENT_DEPTHS = (6, 4, 3)
TEACHER, TRIMMED_TEACHER = "teacher", "trimmed teacher"
Models = dict[str, tuple[PreTrainedModel, PreTrainedTokenizerBase]]


def student_name(layers: int) -> str:
    return f"student {layers}l"


def bench_models(data: BenchData) -> Models:
    labels = len(data.inputs.task.label_names)
    # None: the attention implementation from_pretrained picks, as loading a saved student does.
    teacher = full_teacher(data, None, num_labels=labels)
    trimmed = trimmed_teacher(data, None, num_labels=labels)
    trimmed_tokenizer = data.vocabulary.tokenizer
    models: Models = {
        TEACHER: (teacher, AutoTokenizer.from_pretrained(data.inputs.teacher_path)),
        TRIMMED_TEACHER: (trimmed, trimmed_tokenizer),
    }
    for layers in STUDENT_DEPTHS:
        models[student_name(layers)] = (student_of(trimmed, layers)[0], trimmed_tokenizer)
    return models


def measured(models: Models, texts: list[str], rounds: int, repeats: int) -> list[dict[str, Efficiency]]:
    """`repeats` measurements of every model, the order of the models reversed every other time."""
    names = list(models)
    results = []
    for repeat in range(repeats):
        order = names if repeat % 2 == 0 else names[::-1]
        results.append(
            measure_efficiency(
                {name: models[name] for name in order},
                texts,
                repeats=rounds,
                seconds_budget=float("inf"),  # the rounds asked for, however long they take
                device=training_device(),
            )
        )
    return results


def tokens_per_text(tokenizer: PreTrainedTokenizerBase, texts: list[str]) -> float:
    """Mean tokens per text of the throughput sample: tokenizers that split differently do different work."""
    sample = [text for batch in throughput_batches(texts) for text in batch]
    return sum(len(ids) for ids in tokenizer(sample, truncation=True)["input_ids"]) / len(sample)


def compare(models: Models, texts: list[str], results: list[dict[str, Efficiency]]) -> dict[str, dict[str, Any]]:
    throughput = {name: median([result[name].throughput_batch32 for result in results]) for name in models}
    latency = {name: median([result[name].latency_ms_batch1 for result in results]) for name in models}
    parameters = {name: results[0][name].parameters for name in models}
    return {
        name: {
            "layers": model.config.num_hidden_layers,
            "vocab_size": model.config.vocab_size,
            "parameters": parameters[name],
            "tokens_per_text": tokens_per_text(tokenizer, texts),
            "throughput_batch32": throughput[name],
            "throughput_batch32_runs": [result[name].throughput_batch32 for result in results],
            "latency_ms_batch1": latency[name],
            "speedup": throughput[name] / throughput[TEACHER],
            "speedup_vs_trimmed_teacher": throughput[name] / throughput[TRIMMED_TEACHER],
            "latency_speedup": latency[TEACHER] / latency[name],
            "params_ratio": parameters[name] / parameters[TEACHER],
            "params_ratio_vs_trimmed_teacher": parameters[name] / parameters[TRIMMED_TEACHER],
        }
        for name, (model, tokenizer) in models.items()
    }


def markdown(record: dict[str, Any]) -> str:
    columns = [
        ("layers", "layers"), ("vocab_size", "vocabulary"), ("parameters", "parameters"),
        ("tokens_per_text", "tokens/text"), ("throughput_batch32", "seq/s at 32"), ("latency_ms_batch1", "ms at 1"),
        ("speedup", "speedup"), ("params_ratio", "params ratio"),
        ("speedup_vs_trimmed_teacher", "speedup vs trimmed"), ("params_ratio_vs_trimmed_teacher", "params vs trimmed"),
    ]
    rows = [[name] + [model[key] for key, _ in columns] for name, model in record["models"].items()]
    settings = record["settings"]
    return (
        "# Trimmed-vocabulary students against the teacher\n\n"
        f"{settings['teacher']} on {settings['texts']} {settings['pair']} target-language test sentences; "
        f"medians of {settings['repeats']} alternating measurements of {settings['rounds']} rounds each. "
        "**speedup** and **params ratio** compare with the teacher as deployed (whole vocabulary); "
        "the last two columns with the same teacher on the trimmed vocabulary.\n\n"
        + markdown_table(["model"] + [title for _, title in columns], rows)
    )


def main() -> None:
    parser = arguments(__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=at_least(1), default=20, help="rounds of each measurement (measure_efficiency's repeats)")
    args = parser.parse_args()
    transformers.logging.set_verbosity_error()

    sweep = demo_sweep()
    data = load_bench_data(sweep.target_langs[0])
    texts = data.target_test_texts()
    models = bench_models(data)
    results = measured(models, texts, args.rounds, args.repeats)
    record = {
        "settings": {
            "repeats": args.repeats,
            "rounds": args.rounds,
            "teacher": sweep.teacher,
            "pair": f"{sweep.source_lang}-{sweep.target_langs[0]}",
            "texts": len(texts),
            "batch_size": THROUGHPUT_BATCH_SIZE,
        },
        "machine": machine(),
        "models": compare(models, texts, results),
    }
    write_report(args.out, "student_speed", record, markdown(record))
    figures = {}
    for layers in STUDENT_DEPTHS:
        student = record["models"][student_name(layers)]
        figures[f"student_speedup_{layers}l"] = student["speedup"]
        figures[f"student_params_ratio_{layers}l"] = student["params_ratio"]
    merge_summary(args.out, figures, "bench.student_speed")
    print(markdown(record))


if __name__ == "__main__":
    main()
