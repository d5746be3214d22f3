"""The paper's claims on real data: BiStil against the baselines it says it beats.

On the built-in chatterbot task (train on English, test zero-shot on each target language), with one
student depth and one training budget, the target-language test accuracy of:

    teacher       the task teacher (12 layers, full vocabulary), built once and shared by everything
    bistil        BiStil, exactly as `python -m bistil_ray.run` builds it: bilingual vocabulary,
                  phase 1 (bilingual distillation), phase 2 (LT-SFT task distillation)
    no_phase1     the same student straight from the teacher's layers and trimmed vocabulary: phase 2 only
    scratch       the same shape, randomly initialised, with the same trimmed vocabulary; phase 1 is
                  masked-language modelling alone on the same bilingual text; then the same phase 2
    multilingual  the same depth with the teacher's whole vocabulary; phase 1 distils on text of every
                  language of the task (English batches alternating with batches of all the other
                  languages pooled), built once for all targets; then the same phase 2

Every student that has a phase 1 gets the same phase-1 budget (steps x batch), and every student the
same phase 2 (its share of unlabelled target-language text included). The recipe is
configs/demo_run.yaml; the step counts default to the demo sweep's (sweeps/demo.yaml).

How an ordering is judged, fixed before any measurement: with d the difference of two accuracies,
`>=` holds when d >= 0, `>` when d > 0, `>>` ("greatly") when d exceeds twice its standard error
sqrt(p1(1-p1)/n + p2(1-p2)/n) on the n test examples (the two scores treated as independent, which
overstates the error of two models scored on the same examples); on the mean over languages, the
standard error is sqrt(sum of squared errors) / number of languages.

    .venv/bin/python -m bench.claims [--langs zh it ja] [--task-teacher-steps 300] [--phase1-steps 200]
        [--phase2-steps 400] [--layers 6] [--seed 0] [--work-dir runs/claims] [--out bench/results]

Models are built under --work-dir; a rerun with the same settings reuses them and an interrupted
step resumes from its last checkpoint. Writes claims.parquet (one row per model and language),
claims.json (settings, machine, rows, judged claims) and claims.md under --out.
"""

from __future__ import annotations

import argparse
import math
import time
from dataclasses import dataclass, replace
from pathlib import Path
from statistics import mean

import pyarrow as pa
import pyarrow.parquet as pq
from transformers import AutoConfig, AutoTokenizer

from bench.common import RESULTS_DIR, machine, markdown_table, write_report
from bench.fixtures import demo_sweep
from bistil_ray import pipeline
from bistil_ray.atomic import atomic_write_bytes
from bistil_ray.config import RunConfig, load_config
from bistil_ray.console import quiet_libraries
from bistil_ray.data import chatterbot
from bistil_ray.data.corpora import load_corpus
from bistil_ray.errors import exit_on_user_error
from bistil_ray.method.vocabulary import untrimmed_vocabulary
from bistil_ray.run import log, run, run_step

NAME = "claims"
DEMO_RUN = Path(__file__).resolve().parents[1] / "configs" / "demo_run.yaml"
# The demo sweep's two targets and Japanese: each has 400+ test utterances over 17+ of the 21 topics.
DEFAULT_LANGS = ["zh", "it", "ja"]

MODELS = {
    "teacher": "task teacher",
    "bistil": "BiStil",
    "no_phase1": "BiStil without phase 1",
    "scratch": "bilingual, from scratch",
    "multilingual": "multilingually distilled",
}
# (left, relation, right, what the paper says)
CLAIMS = [
    ("teacher", ">=", "bistil", "students lose little against the teacher"),
    ("bistil", ">", "multilingual", "beat multilingually distilled models"),
    ("bistil", ">>", "scratch", "greatly beat bilingual models trained from scratch"),
    ("bistil", ">", "no_phase1", "phase 1 (bilingual distillation) helps"),
]
HOLDS = {
    ">=": lambda difference, error: difference >= 0,
    ">": lambda difference, error: difference > 0,
    ">>": lambda difference, error: difference > 2 * error,
}


def recipe(args: argparse.Namespace, lang: str) -> RunConfig:
    """configs/demo_run.yaml for one target, with this bench's budget, depth, seed and folder."""
    dense = args.phase2_steps // 2
    overrides = {
        "target_lang": lang,
        "task_teacher.steps": args.task_teacher_steps,
        "task_teacher.seed": args.seed,
        "student.layers": args.layers,
        "phase1.steps": args.phase1_steps,
        "phase1.seed": args.seed,
        "phase2.full_steps": dense,
        "phase2.sparse_steps": args.phase2_steps - dense,
        "phase2.seed": args.seed,
    }
    config = load_config(RunConfig, DEMO_RUN, [f"{key}={value}" for key, value in overrides.items()])
    # A path is not YAML: set it directly rather than as an override.
    return config.model_copy(update={"output_dir": Path(args.work_dir)})


@dataclass
class Pair:
    """One target language: its inputs, and the folder where `bistil_ray.run` built its BiStil student
    (its vocabulary, shared with the other bilingual variants, is there too)."""

    inputs: pipeline.Inputs
    folder: Path
    teacher_dir: Path

    @property
    def config(self) -> RunConfig:
        return self.inputs.run

    @property
    def vocabulary(self) -> Path:
        return self.folder / "vocabulary"

    def step(self, name: str, final: Path, settings: dict, build) -> dict:
        return run_step(name, final, settings, build, self.folder / ".checkpoints")


def student_row(model: str, pair: Pair, scores: dict, phase1_steps: int, phase1_seconds: float, phase2_seconds: float) -> dict:
    """One row of claims.parquet, from `pipeline.evaluate_student`'s scores."""
    config = pair.config
    return {
        "model": model,
        "target_lang": config.target_lang,
        "metric": scores["metric"],
        "target_score": scores["target_score"],
        "source_score": scores["source_score"],
        "test_examples": len(pair.inputs.target_test),
        "layers": scores["student_layers"],
        "vocab_size": scores["vocab_size"],
        "parameters": scores["student_params"],
        "phase1_steps": phase1_steps,
        "phase1_batch": config.phase1.batch_size,
        "phase2_steps": config.phase2.full_steps + config.phase2.sparse_steps,
        "phase2_batch": config.phase2.batch_size,
        "phase1_seconds": phase1_seconds,
        "phase2_seconds": phase2_seconds,
    }


def teacher_row(pair: Pair, bistil: dict) -> dict:
    """The task teacher's scores, from BiStil's evaluation, which scores it side by side; it has no phases."""
    config = AutoConfig.from_pretrained(pair.teacher_dir)
    scores = {
        "metric": bistil["metric"],
        "target_score": bistil["teacher_target_score"],
        "source_score": bistil["teacher_source_score"],
        "student_layers": config.num_hidden_layers,
        "vocab_size": config.vocab_size,
        "student_params": bistil["teacher_params"],
    }
    row = student_row("teacher", pair, scores, phase1_steps=0, phase1_seconds=0.0, phase2_seconds=0.0)
    return row | {key: None for key in row if key.startswith(("phase1_", "phase2_"))}


def phase2_row(model: str, pair: Pair, start: Path, vocabulary: Path, phase1_steps: int, phase1_seconds: float) -> dict:
    """Phase 2 from `start` with the pair's settings, then the same evaluation as BiStil's."""
    final = pair.folder / model / "student"
    phase2 = pair.step(
        f"{model}_phase2",
        final,
        {"config": pair.config.phase2},
        lambda out, hooks: pipeline.run_phase2(
            pair.inputs, start, pair.teacher_dir, vocabulary, pair.config.phase2, out, hooks, log=log
        ),
    )
    scores = pipeline.evaluate_student(pair.inputs, final, pair.teacher_dir, efficiency=False)
    return student_row(model, pair, scores, phase1_steps, phase1_seconds, phase2["seconds"])


# --- the variants ---------------------------------------------------------------------------------


def bistil(args: argparse.Namespace, lang: str) -> tuple[Pair, list[dict]]:
    """(a) the task teacher and (b) BiStil: one `bistil_ray.run` of the pair."""
    config = recipe(args, lang)
    result = run(config)
    pair = Pair(pipeline.resolve_inputs(config), Path(result["student_path"]).parent, config.output_dir / "task_teacher")
    row = student_row(
        "bistil", pair, result, config.phase1.steps, result["phase1_seconds"], result["phase2_seconds"]
    )
    return pair, [teacher_row(pair, result), row]


def without_phase1(pair: Pair) -> dict:
    """(c) BiStil's student as initialised from the teacher, phase 2 only."""
    start = pair.folder / "no_phase1" / "initial_student"
    pair.step(
        "no_phase1_student",
        start,
        {"student": pair.config.student},
        lambda out, hooks: pipeline.build_initial_student(pair.inputs, pair.vocabulary, pair.config.student, out),
    )
    return phase2_row("no_phase1", pair, start, pair.vocabulary, phase1_steps=0, phase1_seconds=0.0)


def from_scratch(pair: Pair) -> dict:
    """(d) A random student of BiStil's shape and vocabulary; phase 1 is MLM alone on the same text."""
    student = pair.config.student.model_copy(update={"initialisation": "random"})
    phase1 = pair.config.phase1.model_copy(update={"alpha_hidden": 0.0, "alpha_attn": 0.0, "alpha_mlm": 1.0})
    start = pair.folder / "scratch" / "phase1_student"
    built = pair.step(
        "scratch_phase1",
        start,
        {"student": student, "config": phase1},
        lambda out, hooks: pipeline.build_phase1_student(
            pair.inputs, pair.vocabulary, student, phase1, out, hooks, log=log
        ),
    )
    return phase2_row("scratch", pair, start, pair.vocabulary, phase1.steps, built["seconds"])


@dataclass
class MultilingualStart:
    """(e)'s phase-1 student and its vocabulary, shared by every target."""

    student: Path
    vocabulary: Path
    phase1_steps: int
    phase1_seconds: float


def multilingual_phase1(pair: Pair, work_dir: Path) -> MultilingualStart:
    """The teacher's whole vocabulary; phase-1 text of every language of the task: English batches
    alternate with batches drawn from all other languages pooled (each in proportion to its text)."""
    config, folder, checkpoints = pair.config, Path(work_dir) / "multilingual", Path(work_dir) / ".checkpoints"

    def save_vocabulary(out: Path, hooks) -> dict:
        tokenizer = AutoTokenizer.from_pretrained(pair.inputs.teacher_path, trust_remote_code=config.trust_remote_code)
        untrimmed_vocabulary(tokenizer).save(out)
        return {"vocab_size": len(tokenizer)}

    vocabulary, student = folder / "vocabulary", folder / "phase1_student"
    run_step("multilingual_vocabulary", vocabulary, {"teacher": config.teacher}, save_vocabulary, checkpoints)
    others = [lang for lang in chatterbot.available_languages() if lang != config.source_lang]
    text = [sentence for lang in others for sentence in load_corpus(config.task, config.corpora, lang)]
    built = run_step(
        "multilingual_phase1",
        student,
        {"student": config.student, "config": config.phase1, "languages": [config.source_lang, *others]},
        lambda out, hooks: pipeline.build_phase1_student(
            replace(pair.inputs, target_text=text), vocabulary, config.student, config.phase1, out, hooks, log=log
        ),
        checkpoints,
    )
    return MultilingualStart(student, vocabulary, config.phase1.steps, built["seconds"])


def multilingual(pair: Pair, start: MultilingualStart) -> dict:
    """(e) The multilingual phase-1 student, then the pair's phase 2."""
    return phase2_row("multilingual", pair, start.student, start.vocabulary, start.phase1_steps, start.phase1_seconds)


# --- the claims and the report ----------------------------------------------------------------------


def judge(rows: list[dict], langs: list[str]) -> list[dict]:
    """Each claimed ordering per language and on the mean over languages (see the module docstring)."""
    score = {(row["model"], row["target_lang"]): row["target_score"] for row in rows}
    examples = {row["target_lang"]: row["test_examples"] for row in rows}
    judged = []
    for left, relation, right, wording in CLAIMS:
        differences, errors = {}, {}
        for lang in langs:
            a, b, n = score[left, lang], score[right, lang], examples[lang]
            differences[lang] = a - b
            errors[lang] = math.sqrt((a * (1 - a) + b * (1 - b)) / n)
        differences["mean"] = mean(differences[lang] for lang in langs)
        errors["mean"] = math.sqrt(sum(errors[lang] ** 2 for lang in langs)) / len(langs)
        judged.append(
            {
                "claim": f"{left} {relation} {right}",
                "paper": wording,
                "difference": differences,
                "standard_error": errors,
                "holds": {key: HOLDS[relation](differences[key], errors[key]) for key in differences},
            }
        )
    return judged


def score_table(rows: list[dict], langs: list[str]) -> str:
    examples = {row["target_lang"]: row["test_examples"] for row in rows}
    header = ["model", "layers", "vocabulary", "parameters", "phase 1 (steps x batch)", "source (en)"]
    header += [f"{lang} (n={examples[lang]})" for lang in langs] + ["mean"]
    table = []
    for model, label in MODELS.items():
        its_rows = [row for row in rows if row["model"] == model]
        target = {row["target_lang"]: row["target_score"] for row in its_rows}
        steps = its_rows[0]["phase1_steps"]
        phase1 = "" if steps is None else f"{steps} x {its_rows[0]['phase1_batch']}" if steps else "none"
        table.append(
            [label, its_rows[0]["layers"], f"{round(mean(row['vocab_size'] for row in its_rows)):,}",
             f"{mean(row['parameters'] for row in its_rows) / 1e6:.1f}M", phase1,
             f"{mean(row['source_score'] for row in its_rows):.3f}"]
            + [f"{target[lang]:.3f}" for lang in langs]
            + [f"{mean(target.values()):.3f}"]
        )  # fmt: skip
    return markdown_table(header, table)


def claims_table(claims: list[dict], langs: list[str]) -> str:
    def cell(claim: dict, key: str) -> str:
        verdict = "holds" if claim["holds"][key] else "**does not hold**"
        return f"{claim['difference'][key]:+.3f} ± {2 * claim['standard_error'][key]:.3f}: {verdict}"

    rows = [[claim["claim"], claim["paper"]] + [cell(claim, key) for key in [*langs, "mean"]] for claim in claims]
    return markdown_table(["claim", "the paper"] + langs + ["mean"], rows)


def markdown(record: dict) -> str:
    settings, langs, measured = record["settings"], record["settings"]["langs"], record["machine"]
    return (
        f"# The paper's claims on chatterbot topic classification (en -> {', '.join(langs)})\n\n"
        f"Zero-shot target-language test accuracy (source: English validation accuracy). Teacher "
        f"{settings['teacher']}; task teacher trained {settings['task_teacher_steps']} steps x "
        f"{settings['task_teacher_batch']}; every student has {settings['layers']} layers and the same phase 2 "
        f"({settings['phase2_steps']} steps x {settings['phase2_batch']}, half dense, half sparse); seed "
        f"{settings['seed']}. Vocabulary, parameters and source accuracy: mean over the pairs.\n\n"
        + score_table(record["rows"], langs)
        + "\n## The orderings the paper claims\n\n"
        "Difference of accuracies ± twice its standard error. `>=` holds when the difference is >= 0, `>` "
        "when > 0, `>>` when it exceeds twice its standard error (rules fixed in `bench/claims.py` before "
        "any measurement).\n\n"
        + claims_table(record["claims"], langs)
        + f"\nMeasured {measured['measured_at']} on {measured['cpu_count']} CPUs ({measured['processor']}) in "
        f"{record['seconds'] / 60:.1f} minutes (models reused from an earlier run cost no time here; each "
        "model's build time is in claims.json).\n"
    )


def write_parquet(path: Path, rows: list[dict]) -> None:
    buffer = pa.BufferOutputStream()
    pq.write_table(pa.Table.from_pylist(rows), buffer)
    atomic_write_bytes(path, buffer.getvalue().to_pybytes())


def parse_arguments() -> argparse.Namespace:
    sweep = demo_sweep()
    parser = argparse.ArgumentParser(prog="python -m bench.claims", description=__doc__.splitlines()[0])
    parser.add_argument("--langs", nargs="+", default=DEFAULT_LANGS, help="target languages (chatterbot codes)")
    parser.add_argument("--task-teacher-steps", type=int, default=sweep.task_teacher.steps)
    parser.add_argument("--phase1-steps", type=int, default=sweep.phase1.steps)
    parser.add_argument(
        "--phase2-steps", type=int, default=sweep.phase2.full_steps + sweep.phase2.sparse_steps,
        help="half dense, half sparse",
    )  # fmt: skip
    parser.add_argument("--layers", type=int, default=sweep.student.layers, help="depth of every student")
    parser.add_argument("--seed", type=int, default=0, help="seeds every training run")
    parser.add_argument("--work-dir", type=Path, default=Path("runs") / NAME, help="built models, reused by a rerun")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR, help="folder for claims.parquet, .json and .md")
    return parser.parse_args()


def main() -> None:
    args = parse_arguments()
    started = time.perf_counter()
    with exit_on_user_error("bench.claims"):
        quiet_libraries()
        rows, multilingual_start = [], None
        for lang in args.langs:
            pair, built = bistil(args, lang)
            rows += built
            rows += [without_phase1(pair), from_scratch(pair)]
            if multilingual_start is None:
                multilingual_start = multilingual_phase1(pair, args.work_dir)
            rows.append(multilingual(pair, multilingual_start))
    run_config = pair.config
    record = {
        "settings": {
            "langs": args.langs,
            "teacher": run_config.teacher,
            "task": run_config.task.name,
            "source_lang": run_config.source_lang,
            "layers": args.layers,
            "seed": args.seed,
            "task_teacher_steps": run_config.task_teacher.steps,
            "task_teacher_batch": run_config.task_teacher.batch_size,
            "phase2_steps": run_config.phase2.full_steps + run_config.phase2.sparse_steps,
            "phase2_batch": run_config.phase2.batch_size,
            "run_config": run_config.model_dump(mode="json", exclude={"target_lang"}),
            "work_dir": str(args.work_dir),
        },
        "machine": machine(),
        "seconds": time.perf_counter() - started,
        "rows": rows,
        "claims": judge(rows, args.langs),
    }
    write_parquet(Path(args.out) / f"{NAME}.parquet", rows)
    write_report(args.out, NAME, record, markdown(record))
    print(markdown(record))


if __name__ == "__main__":
    main()
