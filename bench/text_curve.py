"""Phase 1's value against the amount of target-language text it distils on.

    .venv/bin/python -m bench.text_curve CONFIG.yaml --lang de [--sizes 0 10000 30000]
        [--debian-language zh-tw] [--seed 0] [--phase1-steps N] [--phase2-steps N]
        [--work-dir runs/claims] [--out bench/results]

For each size, the target language's phase-1 text is the task's own (size 0: for UD the treebank's
dev text, for a built-in task its unlabelled utterances) or that many sentences of Debian's packages
(`corpora.<lang>.debian`, `python -m bistil_ray.data.debian_text`). At every size, with the same
phase-1 and phase-2 steps, two students are built on the size's bilingual vocabulary: BiStil, and the
same student without phase 1. Phase 1's value is their difference on the target test set, with the
claims bench's paired bootstrap over test examples (sentences of a token task). Everything else is
CONFIG's, and the task teacher is the claims bench's (the same --work-dir reuses it).

Writes text-curve-<task>-<lang>.json and .md under --out, after every size.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from bench.claims import Bench, TaskTeachers, scored
from bench.claims_statistics import Scored, paired_bootstrap
from bench.common import RESULTS_DIR, at_least, machine, markdown_table, write_report
from bistil_ray import pipeline
from bistil_ray.config import CorpusSpec, RunConfig, load_config
from bistil_ray.console import quiet_libraries
from bistil_ray.errors import UserInputError, exit_on_user_error
from bistil_ray.inputs import Inputs
from bistil_ray.method.export import load_exported
from bistil_ray.run import log

STUDENTS = ("bistil", "no_phase1")


def with_text(config: RunConfig, lang: str, size: int, debian_language: str | None) -> RunConfig:
    """`config` whose phase-1 text of `lang` is `size` Debian sentences (0: the task's own)."""
    if size == 0:
        return config
    corpus = CorpusSpec(debian={"language": debian_language}, max_sentences=size)
    return config.model_copy(update={"corpora": {**config.corpora, lang: corpus}})


def curve_point(bench: Bench, inputs: Inputs, teacher_dir: Path, folder: Path) -> dict[str, Scored]:
    """BiStil and no phase 1 on this point's text: each built once into `folder`, then scored."""
    vocabulary = folder / "vocabulary"
    bench.step(
        "vocabulary", vocabulary,
        {"teacher": bench.base.teacher, "config": bench.base.vocabulary, "sentences": len(inputs.target_text)},
        lambda out, hooks: pipeline.build_vocabulary(inputs, bench.base.vocabulary, out),
    )  # fmt: skip
    initial = folder / "no_phase1_initial"
    bench.step(
        "no_phase1_initial", initial, {"student": inputs.run.student, "vocabulary": str(vocabulary)},
        lambda out, hooks: pipeline.build_initial_student(inputs, vocabulary, inputs.run.student, out),
    )  # fmt: skip
    starts = {"bistil": bench.phase1("bistil", inputs, vocabulary, folder / "bistil")[0], "no_phase1": initial}
    points = {}
    for name, start in starts.items():
        student_dir, seconds = bench.phase2(name, inputs, start, vocabulary, teacher_dir, folder / name)
        model, tokenizer = load_exported(student_dir)
        points[name] = scored(name, inputs.run.phase2.seed, model, tokenizer, inputs, {"phase2_seconds": seconds})
    return points


def phase1_value(points: dict[str, Scored], lang: str) -> dict:
    bistil, bare = (points[name].per_example() for name in STUDENTS)
    difference, low, high = paired_bootstrap({lang: [(bistil[0], bare[0])]}, np.random.default_rng(0), 1.0, {lang: bistil[1]})
    return {"difference": difference, "low": low, "high": high}


def markdown(record: dict) -> str:
    settings = record["settings"]
    rows = [
        [row["target_sentences"] or "task's own", row["phase1_sentences"], f"{row['bistil']['target_score']:.3f}",
         f"{row['no_phase1']['target_score']:.3f}",
         f"{row['value']['difference']:+.3f} [{row['value']['low']:+.3f}, {row['value']['high']:+.3f}]",
         f"{row['bistil']['target_validation_score'] or float('nan'):.3f}", f"{row['no_phase1']['target_validation_score'] or float('nan'):.3f}"]
        for row in record["points"]
    ]  # fmt: skip
    return (
        f"# Phase 1's value against the amount of target text: {settings['task']}, {settings['source_lang']} -> "
        f"{settings['lang']}\n\nBiStil and the same student without phase 1, both on the point's bilingual vocabulary, "
        f"phase 1 {settings['phase1_steps']} steps x {settings['phase1_batch']}, phase 2 {settings['phase2_steps']} steps "
        f"x {settings['phase2_batch']} (target_text_ratio {settings['target_text_ratio']}), seed {settings['seed']}. "
        f"Target text beyond the task's own: Debian packages' `{settings['debian_language']}` sentences "
        "(`python -m bistil_ray.data.debian_text`; sources and licences in the cache's sidecar). Value: BiStil minus "
        "no phase 1 on the target test set [95% paired bootstrap interval over test examples].\n\n"
        + markdown_table(
            ["target text (Debian sentences)", "phase-1 target sentences", "BiStil test", "no phase 1 test",
             "phase 1's value", "BiStil validation", "no phase 1 validation"], rows,
        )  # fmt: skip
        + f"\n{record.get('progress', '')}\nMeasured {record['machine']['measured_at']} on {record['machine'].get('cpu', '')}.\n"
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.text_curve", description=__doc__.splitlines()[0])
    parser.add_argument("config", type=Path, help="a run config (configs/*.yaml)")
    parser.add_argument("--lang", required=True, help="the target language")
    parser.add_argument("--sizes", nargs="+", type=at_least(0), default=[0, 10000, 30000], help="Debian sentences (0: the task's own text)")
    parser.add_argument("--debian-language", help="the Debian sources' language (default --lang; zh-tw for traditional Chinese)")
    parser.add_argument("--seed", type=at_least(0), default=0)
    parser.add_argument("--phase1-steps", type=at_least(1), help="default: the config's")
    parser.add_argument("--phase2-steps", type=at_least(2), help="half dense, half sparse; default: the config's")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE", help="override the config")
    parser.add_argument("--work-dir", type=Path, default=Path("runs") / "claims", help="built models, reused by a rerun")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR, help="folder for the table")
    args = parser.parse_args(argv)
    with exit_on_user_error("bench.text_curve"):
        quiet_libraries()
        if any(size < 0 for size in args.sizes) or len(set(args.sizes)) != len(args.sizes):
            raise UserInputError(f"--sizes: distinct whole numbers >= 0 (got {args.sizes})")
        base = load_config(RunConfig, args.config, args.overrides)
        args.phase1_steps = args.phase1_steps or base.phase1.steps
        args.phase2_steps = args.phase2_steps or base.phase2.full_steps + base.phase2.sparse_steps
        args.langs, args.seeds = [args.lang], [args.seed]
        debian_language = args.debian_language or args.lang
        bench = Bench(args, base.model_copy(update={"output_dir": Path(args.work_dir)}))
        teacher_dir = TaskTeachers(bench, [base.task_teacher.method], {}, {}, [], None).path(base.task_teacher.method)
        settings = {
            "task": base.task.name, "source_lang": base.source_lang, "lang": args.lang, "seed": args.seed,
            "debian_language": debian_language, "phase1_steps": args.phase1_steps, "phase1_batch": base.phase1.batch_size,
            "phase2_steps": args.phase2_steps, "phase2_batch": base.phase2.batch_size,
            "target_text_ratio": base.phase2.target_text_ratio, "teacher": base.teacher, "recipe": base.task_teacher.method,
        }  # fmt: skip
        record: dict = {"settings": settings, "points": [], "machine": machine()}
        name = f"text-curve-{base.task.name}-{args.lang}"
        started = time.perf_counter()
        for position, size in enumerate(sorted(args.sizes)):
            config = with_text(bench.config(args.lang, args.seed), args.lang, size, debian_language)
            inputs = pipeline.resolve_inputs(config)
            points = curve_point(bench, inputs, teacher_dir, bench.root / "text_curve" / args.lang / f"seed{args.seed}" / f"n{size}")
            record["points"].append({
                "target_sentences": size, "phase1_sentences": len(inputs.target_text), "value": phase1_value(points, args.lang),
                **{student: points[student].row for student in STUDENTS},
            })  # fmt: skip
            record["progress"] = "" if position == len(args.sizes) - 1 else f"**Partial**: {position + 1} of {len(args.sizes)} sizes."
            args.out.mkdir(parents=True, exist_ok=True)
            write_report(args.out, name, record, markdown(record))
        log(f"text curve: {time.perf_counter() - started:.0f} s")
        print(markdown(record))


if __name__ == "__main__":
    main()
