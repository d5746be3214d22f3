"""The paper's claims on any task: BiStil against the models a user would otherwise pick.

    .venv/bin/python -m bench.claims CONFIG.yaml [--langs zh it ja] [--seeds 0 1 2]
        [--phase1-steps N] [--phase2-steps N] [--recipes full lt_sft frozen_body] [--budget-curve LANG]
        [--recipe-lr frozen_body=1e-3] [--recipe-steps frozen_body=1600] [--students bistil no_phase1]
        [--work-dir runs/claims] [--out bench/results]

CONFIG is a run config (configs/*.yaml: any task, built-in, hub, files or UD, and any teacher); its
`target_lang` is replaced by each of `--langs`. For each target language, the zero-shot test score of:

    teacher:<recipe>  the task teacher trained with each `task_teacher.method` of `--recipes`;
                      teacher:frozen_body is the probe on the frozen encoder
    trimmed_teacher   the config's task teacher with the bilingual vocabulary and nothing else changed
    bistil            BiStil: bilingual vocabulary, phase 1 (bilingual distillation), phase 2 (LT-SFT)
    no_phase1         the same student straight from the teacher's layers: phase 2 only
    scratch           the same shape, randomly initialised, phase 1 masked-language modelling alone on
                      the same bilingual text, then the same phase 2 (first seed only: its gap is large)
    multilingual      the same depth with the teacher's whole vocabulary, phase 1 on the text of every
                      language of the task (a built-in task's, a UD task's treebanks, else the source
                      and --langs; English batches alternating with all others pooled), then the same
                      phase 2

Every student distils the config's task teacher (`task_teacher.method` of CONFIG); every student with a
phase 1 gets the same phase-1 budget, every student the same phase 2; each seed seeds phase 1 and
phase 2 of every student (the task teachers are trained once, with the config's seed). Parameters,
bytes and batch-32 CPU throughput of every model of a language are measured side by side in one process.

Statistics, fixed before any measurement: each judged ordering `left REL right` compares, per
language, the two models' per-example correctness on the same test examples, paired by seed (a model
with one seed is paired with every seed of the other). Its 95% interval is a paired bootstrap:
2,000 resamples, each drawing the seeds with replacement and the test examples with replacement (the
same examples for both models), the statistic being the mean difference of accuracy (for `left >=
0.97 x right`, "students lose little", accuracy(left) - 0.97 accuracy(right)); the interval
is the 2.5th to 97.5th percentile. On the mean over languages each language is resampled on its own
and the statistic is the mean of the languages' differences. A token task's examples are its test
sentences (a sentence's words are not independent draws): a resample draws sentences, and accuracy
is the share of the drawn sentences' words tagged right. `>=` holds when the difference is >= 0,
`>` when the interval's lower end is above 0, `>>` when it is above 0.05 (five points). Beside each
ordering the report gives how often its two models agree (both right or both wrong on an example),
against BiStil with itself under another seed: where an ordering is a tie, this says whether the two
models differ at all beyond what a seed changes.

`--students` trains only the named student rows: a second phase-2 setting (`--set
phase2.target_text_ratio=0.5`, into another `--out`) needs only BiStil and no phase 1, and its students
sit beside the first setting's, from the same phase-1 students.
`--teachers-only` stops after the task teachers and the vocabulary-trimmed teacher: the recipe comparison.
`--budget-curve LANG` (one of --langs) also trains bistil and multilingual at 2x and 4x the phase-1
budget (first seed) on LANG, against the table's 1x rows and no_phase1 (which has no phase 1): does an
ordering appear, grow or vanish?

Everything is built under --work-dir and reused by a rerun; an interrupted step resumes from its last
checkpoint. A table outlives its work folder only on the kind of CPU its report names: the task
teacher's weights depend on the CPU's float kernels (bf16 products on AMX, AVX512-BF16 and AVX2 round
differently: bench/results/cpu_numerics.md), and a rebuilt teacher that differs from the rows' is
refused. After every model the tables are rewritten, so an interrupted run leaves a partial table:
claims-<task>.parquet (one row per task, target language, seed and model), claims-<task>.json (settings,
rows, judged orderings with difference and interval, recipe comparison) and claims-<task>.md under --out;
claims.parquet, claims.json and claims.md hold every task's in one, and claims.png plots target score
against throughput, one panel per task.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import ValidationError
from transformers import AutoTokenizer

from bench.claims_report import STUDENTS, combine, markdown, plot, write_parquet
from bench.claims_statistics import Scored, judge, seed_agreement, units_from_stored
from bench.common import RESULTS_DIR, at_least, cpu_model, machine, write_report
from bistil_ray import pipeline
from bistil_ray.artifacts import publish_at
from bistil_ray.config import PLACEMENT_FIELDS, PairSettings, RunConfig, load_config, resolve_phase2
from bistil_ray.console import quiet_libraries
from bistil_ray.data.builtin import builtin_task
from bistil_ray.data.corpora import load_corpus
from bistil_ray.errors import UserInputError, exit_on_user_error
from bistil_ray.executor import checkpoints_of, remove_checkpoints
from bistil_ray.inputs import Inputs
from bistil_ray.method.evaluation import count_parameters, gold_labels, measure_efficiency, predict
from bistil_ray.method.export import MODEL_CLASSES, load_exported
from bistil_ray.method.vocabulary import BilingualVocabulary, trim_embeddings, untrimmed_vocabulary
from bistil_ray.method.hooks import LocalHooks
from bistil_ray.output_paths import check_output_folder
from bistil_ray.run import log

RECIPES = ("full", "lt_sft", "frozen_body")


def work_step(name: str, final: Path, settings: dict, build: Callable[[Path, LocalHooks], dict]) -> dict:
    """Build one model of the bench into its named work folder `final` once, as the executor publishes
    a placed step (`artifacts.publish_at`): kept if published from the same settings, refused if from
    others, resumed from its checkpoints if interrupted. Named folders, not the content-keyed store:
    most of the bench's models (no phase 1, scratch, the multilingual start) are not steps of the
    pipeline, and a reader finds each by its name."""
    settings = json.loads(json.dumps(settings, default=lambda value: value.model_dump(mode="json")))
    hooks = LocalHooks(checkpoint_dir=checkpoints_of(final) / "checkpoint")
    artifact = publish_at(final, name, settings, lambda out: build(out, hooks))
    remove_checkpoints(final)
    log(f"{name}: reusing {final}" if artifact.cache_hit else f"{name}: built {final} in {artifact.build_seconds:.0f}s")
    return {**artifact.metrics, "seconds": artifact.build_seconds, "cache_hit": artifact.cache_hit}


@dataclass
class Bench:
    args: argparse.Namespace
    base: RunConfig

    @property
    def root(self) -> Path:
        return Path(self.args.work_dir) / self.base.task.name

    def config(self, lang: str, seed: int, phase1_steps: int | None = None) -> RunConfig:
        """CONFIG for one target and seed, with this bench's budget."""
        dense = self.args.phase2_steps // 2
        phase1 = {"seed": seed, "steps": phase1_steps or self.args.phase1_steps}
        phase2 = {"seed": seed, "full_steps": dense, "sparse_steps": self.args.phase2_steps - dense}
        return self.base.model_copy(
            update={
                "target_lang": lang,
                "phase1": self.base.phase1.model_copy(update=phase1),
                "phase2": self.base.phase2.model_copy(update=phase2),
            }
        )

    def step(self, name: str, final: Path, settings: dict, build) -> dict:
        # Named by its folder: the same step name recurs for every language and seed.
        folder_name = "-".join(final.relative_to(self.root).parts)
        log(f"{name}: {folder_name}")
        return work_step(folder_name, final, settings, build)

    # --- what is built ------------------------------------------------------------------------------

    def task_teacher(self, inputs: Inputs, recipe: str) -> Path:
        config = self.base.task_teacher.model_copy(update={"method": recipe})
        final = self.root / f"task_teacher-{recipe}"
        self.step(
            f"task_teacher-{recipe}",
            final,
            {"teacher": self.base.teacher, "task": self.base.task, "source": self.base.source_lang, "config": config},
            lambda out, hooks: pipeline.build_task_teacher(inputs, config, out, hooks, log=log),
        )
        return final

    def vocabulary(self, inputs: Inputs) -> Path:
        final = self.root / inputs.run.target_lang / "vocabulary"
        self.step(
            "vocabulary", final, {"teacher": self.base.teacher, "config": self.base.vocabulary},
            lambda out, hooks: pipeline.build_vocabulary(inputs, self.base.vocabulary, out),
        )  # fmt: skip
        return final

    def phase1(self, name: str, inputs: Inputs, vocabulary: Path, folder: Path, random_mlm: bool = False) -> tuple[Path, int]:
        config, student = inputs.run.phase1, inputs.run.student
        if random_mlm:
            student = student.model_copy(update={"initialisation": "random"})
            config = config.model_copy(update={"alpha_hidden": 0.0, "alpha_attn": 0.0, "alpha_mlm": 1.0})
        final = folder / "phase1_student"
        self.step(
            f"{name}_phase1", final, {"student": student, "config": config, "vocabulary": str(vocabulary)},
            lambda out, hooks: pipeline.build_phase1_student(inputs, vocabulary, student, config, out, hooks, log=log),
        )  # fmt: skip
        return final, config.steps

    def initial_student(self, inputs: Inputs, vocabulary: Path) -> Path:
        final = self.root / inputs.run.target_lang / "no_phase1_initial"
        self.step(
            "no_phase1_initial", final, {"student": inputs.run.student},
            lambda out, hooks: pipeline.build_initial_student(inputs, vocabulary, inputs.run.student, out),
        )  # fmt: skip
        return final

    def multilingual_start(self, inputs: Inputs, seed_folder: Path) -> tuple[Path, Path]:
        """The teacher's whole vocabulary and a phase-1 student on every language of the task."""
        vocabulary = self.root / "multilingual_vocabulary"

        def save_vocabulary(out: Path, hooks) -> dict:
            tokenizer = AutoTokenizer.from_pretrained(inputs.teacher_path, trust_remote_code=self.base.trust_remote_code)
            untrimmed_vocabulary(tokenizer).save(out)
            return {"vocab_size": len(tokenizer)}

        self.step("multilingual_vocabulary", vocabulary, {"teacher": self.base.teacher}, save_vocabulary)
        others = [lang for lang in self.task_languages() if lang != self.base.source_lang]
        text = [sentence for lang in others for sentence in load_corpus(self.base.task, self.base.corpora, lang)]
        pooled = replace(inputs, target_text=text)
        final = seed_folder / "phase1_student"
        config = inputs.run.phase1
        self.step(
            "multilingual_phase1", final,
            {"student": inputs.run.student, "config": config, "languages": [self.base.source_lang, *others]},
            lambda out, hooks: pipeline.build_phase1_student(pooled, vocabulary, inputs.run.student, config, out, hooks, log=log),
        )  # fmt: skip
        return final, vocabulary

    def phase2(self, name: str, inputs: Inputs, start: Path, vocabulary: Path, teacher: Path, folder: Path) -> tuple[Path, float]:
        # The two phase-2 settings of the claims (source examples only, or a share of target text)
        # start from the same phase-1 students; each keeps its own students.
        ratio = inputs.run.phase2.target_text_ratio
        final = folder / ("student" if ratio == 0 else f"student-target-text-{ratio:g}")
        built = self.step(
            f"{name}_phase2", final, {"config": inputs.run.phase2, "start": str(start), "teacher": str(teacher)},
            lambda out, hooks: pipeline.run_phase2(inputs, start, teacher, vocabulary, inputs.run.phase2, out, hooks, log=log),
        )  # fmt: skip
        return final, built["seconds"]

    def task_languages(self) -> list[str]:
        if self.base.task.builtin is not None:
            return builtin_task(self.base.task.builtin).available_languages()
        if self.base.task.ud is not None:
            return list(self.base.task.ud.treebanks)
        return [self.base.source_lang, *self.args.langs]


class TaskTeachers:
    """Each recipe's task teacher, built when first asked for (a rerun whose teacher rows are all
    scored builds none). Its weights' SHA-256 goes into its rows, and a rebuilt teacher must match
    the one earlier rows were scored with and distilled from: otherwise those rows would be compared
    with students of another teacher. Only the same libraries on the same kind of CPU rebuild the same
    weights (`bench.common.cpu_model`), so a table that outlives its work folder is finished on the
    kind of CPU it was started on."""

    def __init__(self, bench: Bench, recipes: list[str], recipe_lr: dict[str, str], recipe_steps: dict[str, str],
                 earlier: list["Scored"], earlier_cpu: str | None):  # fmt: skip
        self.bench, self.recipes, self.earlier_cpu = bench, recipes, earlier_cpu
        self.recipe_lr, self.recipe_steps = recipe_lr, recipe_steps
        self.expected = {r.row["recipe"]: r.row["weights_sha256"] for r in earlier if r.row.get("weights_sha256")}
        self.built: dict[str, tuple[Path, str]] = {}
        self.source_scores: dict[str, float] = {r.row["model"]: r.row["source_score"] for r in earlier if r.row["model"].startswith("teacher:")}

    def path(self, recipe: str) -> Path:
        return self.build(recipe)[0]

    def sha256(self, recipe: str) -> str:
        return self.build(recipe)[1]

    def build(self, recipe: str) -> tuple[Path, str]:
        if recipe not in self.built:
            own = self.bench.base.task_teacher.resolved(recipe)  # with the config's per_method
            lr = float(self.recipe_lr.get(recipe, own.lr))
            steps = int(self.recipe_steps.get(recipe, own.steps))
            bench = replace_teacher(self.bench, recipe, lr, steps)
            path = bench.task_teacher(pipeline.resolve_inputs(bench.config(bench.args.langs[0], bench.args.seeds[0])), recipe)
            digest = hashlib.sha256((path / "model.safetensors").read_bytes()).hexdigest()
            if self.expected.get(recipe, digest) != digest:
                raise UserInputError(
                    f"{path}: the rebuilt task teacher ({recipe}) differs from the one the rows under --out were "
                    f"scored with (rows made on {self.earlier_cpu or 'an unrecorded CPU'}, this machine {cpu_model()}); "
                    "choose another --out to start a new table"
                )
            self.built[recipe] = (path, digest)
        return self.built[recipe]


def comparable(settings: dict) -> dict:
    """The settings that make a row: not which languages and seeds this invocation asks for, nor
    where the models were written. The run config is read back through the config schema, so that a
    table made before a setting existed compares equal to one made with that setting's default."""
    run_config = {key: value for key, value in settings["run_config"].items() if key not in PLACEMENT_FIELDS}
    try:
        run_config = run_config_settings(PairSettings.model_validate(run_config))
    except ValidationError:
        pass  # a setting that no longer exists: compared as written, so never equal to today's
    return {**{key: value for key, value in settings.items() if key not in ("langs", "seeds", "budget_lang")}, "run_config": run_config}


def earlier_results(out: Path, task_name: str, settings: dict) -> tuple[list["Scored"], list[dict], dict]:
    """The rows (with per-example correctness), budget curve and machine of an earlier run of the same
    settings under `out`: the table is built over several runs, each adding what is missing, even
    where the work folder of the earlier run is gone."""
    table, report = out / f"claims-{task_name}.parquet", out / f"claims-{task_name}.json"
    if not (table.exists() and report.exists()):
        return [], [], {}
    try:
        previous = json.loads(report.read_text())
        if "correct" not in pq.read_schema(table).names or comparable(previous["settings"]) != comparable(settings):
            log(f"{table}: made with other settings; starting a new table")
            return [], [], {}
        rows = pq.read_table(table).to_pylist()
        results = [Scored(row, np.asarray(row.pop("correct"), dtype=bool), units_from_stored(row.pop("units", None))) for row in rows]
    except (OSError, ValueError, KeyError, TypeError, AttributeError, pa.ArrowException) as error:
        raise UserInputError(f"{table}: not a claims table ({error}); move it and {report.name} away to start a new one") from None
    results = [r for r in results if r.row["target_lang"] in settings["langs"] and r.row["seed"] in (None, *settings["seeds"])]
    same_curve = previous["settings"].get("budget_lang") == settings["budget_lang"]
    log(f"{table}: {len(results)} rows kept from an earlier run")
    return results, previous.get("budget_curve", []) if same_curve else [], previous.get("machine", {})


# --- scoring ----------------------------------------------------------------------------------------


def correctness(model, tokenizer, dataset, fields: list[str], max_length: int) -> tuple[np.ndarray, np.ndarray | None]:
    """Whether each example is right (each word of a token task; of a parse task, its head and
    relation: LAS's unit), and each sentence's word count."""
    predicted, gold = predict(model, tokenizer, dataset, fields, max_length=max_length), gold_labels(dataset)
    if not isinstance(predicted, list):
        return predicted == gold, None
    right = [(p == g).all(axis=1) if p.ndim == 2 else p == g for p, g in zip(predicted, gold)]
    return np.concatenate(right), np.array([len(g) for g in gold])


def score(model, tokenizer, inputs: Inputs, source: float | None = None) -> tuple[np.ndarray, np.ndarray | None, float, float | None]:
    """Correctness on the target test set (per unit, with the units per example); source (unless
    given) and target validation accuracy. Texts are cut where phase 2 cut them."""
    fields, max_length = list(inputs.task.text_fields), inputs.run.phase2.max_length
    correct, units = correctness(model, tokenizer, inputs.target_test, fields, max_length)
    if source is None:
        source = float(correctness(model, tokenizer, inputs.task.source_validation, fields, max_length)[0].mean())
    validation = None
    if inputs.target_validation is not None:
        validation = float(correctness(model, tokenizer, inputs.target_validation, fields, max_length)[0].mean())
    return correct, units, source, validation


def parse_figures(model, tokenizer, inputs: Inputs) -> dict[str, float]:
    """A parser's target UAS, and its LAS and UAS with heads decoded as well-formed trees: does the
    tree constraint change the scores? One prediction per decoding."""
    fields, max_length, gold = list(inputs.task.text_fields), inputs.run.phase2.max_length, gold_labels(inputs.target_test)
    figures = {}
    for trees, prefix in ((False, "target"), (True, "target_tree")):
        predicted = predict(model, tokenizer, inputs.target_test, fields, max_length=max_length, trees=trees)
        right = np.concatenate([p == g for p, g in zip(predicted, gold)])  # (words, head and relation)
        figures[f"{prefix}_uas"] = float(right[:, 0].mean())
        if trees:
            figures["target_tree_las"] = float(right.all(axis=1).mean())
    return figures


def scored(model_name: str, seed: int | None, model, tokenizer, inputs: Inputs, extra: dict, source: float | None = None) -> Scored:
    correct, units, source, validation = score(model, tokenizer, inputs, source)
    row = {
        "task": inputs.run.task.name,
        "target_lang": inputs.run.target_lang,
        "seed": seed,
        "model": model_name,
        "target_score": float(correct.mean()),
        "source_score": source,
        "target_validation_score": validation,
        "test_examples": int(correct.size if units is None else units.size),
        **(parse_figures(model, tokenizer, inputs) if inputs.task.kind == "parse" else {}),
        "layers": model.config.num_hidden_layers,
        "vocab_size": len(tokenizer),
        "params": count_parameters(model),
        **extra,
    }
    return Scored(row, correct, units)


# --- one language -----------------------------------------------------------------------------------


def measure_speed(models: dict[str, tuple], inputs: Inputs, directories: dict[str, Path]) -> dict[str, dict]:
    texts = pipeline.task_texts(inputs.target_test, inputs.task.text_fields)[:256]
    measured = measure_efficiency(models, texts, directories=directories)
    return {name: {"throughput": e.throughput_batch32, "latency_ms": e.latency_ms_batch1, "bytes": e.bytes_on_disk} for name, e in measured.items()}


def expected_models(recipes: list[str], first_seed: bool, students: list[str]) -> list[str]:
    """The models one (language, seed) scores, in the order they are built."""
    teachers = [f"teacher:{recipe}" for recipe in recipes] + ["trimmed_teacher"] if first_seed else []
    return teachers + [name for name in STUDENTS if name in students and (first_seed or name != "scratch")]


def language(
    bench: Bench, lang: str, seed: int, first_seed: bool, teachers: TaskTeachers, results: list[Scored], save, students: list[str]
) -> None:
    """Every model of one (language, seed) not scored yet; `save` after each. A (language, seed)
    whose every row is scored (and, on the first seed, measured) is skipped without building anything."""
    done = {(r.row["model"], r.row["target_lang"], r.row["seed"]): r.row for r in results}
    keys = [(model, lang, None if model.startswith("teacher") or model == "trimmed_teacher" else seed)
            for model in expected_models(teachers.recipes, first_seed, students)]  # fmt: skip
    measured = not (first_seed and students) or all(done[key].get("throughput") for key in keys if key in done)
    if all(key in done for key in keys) and measured:
        log(f"{lang}, seed {seed}: every model scored by an earlier run")
        return
    inputs = pipeline.resolve_inputs(bench.config(lang, seed))
    teacher_dir = teachers.path(bench.base.task_teacher.method)
    vocabulary = bench.vocabulary(inputs)
    speed_models: dict[str, tuple] = {}
    directories: dict[str, Path] = {}
    new: list[Scored] = []

    def add(model_name: str, row_seed: int | None, model, tokenizer, directory: Path | None, extra: dict) -> None:
        speed_models[model_name], directories[model_name] = (model, tokenizer), directory
        if (model_name, lang, row_seed) not in done:
            # A task teacher's source score is the same for every target language: scored once.
            known = teachers.source_scores.get(model_name)
            new.append(scored(model_name, row_seed, model, tokenizer, inputs, extra, source=known))
            if model_name.startswith("teacher:"):
                teachers.source_scores[model_name] = new[-1].row["source_score"]

    if first_seed:
        for recipe in teachers.recipes:
            path = teachers.path(recipe)
            model = MODEL_CLASSES[inputs.task.kind].from_pretrained(path, use_safetensors=True)
            add(f"teacher:{recipe}", None, model, AutoTokenizer.from_pretrained(path), path,
                {"recipe": recipe, "weights_sha256": teachers.sha256(recipe)})  # fmt: skip
        trimmed = MODEL_CLASSES[inputs.task.kind].from_pretrained(teacher_dir, use_safetensors=True)
        trimmed_vocabulary = BilingualVocabulary.load(vocabulary)
        trim_embeddings(trimmed, trimmed_vocabulary.kept_ids)
        add("trimmed_teacher", None, trimmed, trimmed_vocabulary.tokenizer, None, {})

    if not students:
        results.extend(new)
        save()
        return
    folder = bench.root / lang / f"seed{seed}"
    budget = {"phase1_steps": inputs.run.phase1.steps, "phase1_batch": inputs.run.phase1.batch_size,
              "phase2_steps": bench.args.phase2_steps, "phase2_batch": inputs.run.phase2.batch_size}  # fmt: skip
    # Each student's start, built only if that student is: on later seeds a student scored by an
    # earlier run is not rebuilt; on the first seed every model is loaded to be timed side by side.
    starts = {
        "bistil": lambda: (bench.phase1("bistil", inputs, vocabulary, folder / "bistil")[0], vocabulary, budget),
        "no_phase1": lambda: (bench.initial_student(inputs, vocabulary), vocabulary, {**budget, "phase1_steps": 0}),
        "scratch": lambda: (bench.phase1("scratch", inputs, vocabulary, folder / "scratch", random_mlm=True)[0], vocabulary, budget),
        "multilingual": lambda: (*bench.multilingual_start(inputs, bench.root / "multilingual" / f"seed{seed}"), budget),
    }
    for name in [model for model in expected_models(teachers.recipes, first_seed, students) if model in STUDENTS]:
        if not first_seed and (name, lang, seed) in done:
            continue
        start, vocab, extra = starts[name]()
        student_dir, seconds = bench.phase2(name, inputs, start, vocab, teacher_dir, folder / name)
        model, tokenizer = load_exported(student_dir)
        add(name, seed, model, tokenizer, student_dir, {**extra, "phase2_seconds": seconds})
        results.extend(new)
        new.clear()
        save()
    if first_seed:
        speed = measure_speed(speed_models, inputs, {k: v for k, v in directories.items() if v is not None})
        for result in results:
            figures = speed.get(result.row["model"])
            if result.row["target_lang"] == lang and figures:
                result.row.update(throughput=figures["throughput"], latency_ms=figures["latency_ms"], bytes=figures["bytes"])
        save()


def budget_curve(bench: Bench, lang: str, seed: int, teacher_dir: Path, results: list[Scored]) -> list[dict]:
    """bistil and multilingual at 2x and 4x the phase-1 budget on `lang`; 1x (and no_phase1, which has
    no phase 1) are the main table's rows of the first seed, so nothing is trained twice."""
    point = lambda model, factor, steps, target, source, validation: {  # noqa: E731
        "model": model, "phase1_factor": factor, "phase1_steps": steps,
        "target_score": target, "source_score": source, "target_validation_score": validation,
    }  # fmt: skip
    rows = [
        point(r.row["model"], *((0, 0) if r.row["model"] == "no_phase1" else (1, bench.args.phase1_steps)),
              r.row["target_score"], r.row["source_score"], r.row["target_validation_score"])
        for r in results
        if (r.row["target_lang"], r.row["seed"]) == (lang, seed) and r.row["model"] in ("bistil", "multilingual", "no_phase1")
    ]  # fmt: skip
    for factor in (2, 4):
        steps = bench.args.phase1_steps * factor
        inputs = pipeline.resolve_inputs(bench.config(lang, seed, phase1_steps=steps))
        vocabulary = bench.vocabulary(inputs)
        folder = bench.root / "budget" / lang / f"x{factor}"
        starts = {
            "bistil": (bench.phase1("bistil", inputs, vocabulary, folder / "bistil")[0], vocabulary),
            "multilingual": bench.multilingual_start(inputs, folder / "multilingual_phase1"),
        }
        for name, (start, vocab) in starts.items():
            student_dir, _ = bench.phase2(name, inputs, start, vocab, teacher_dir, folder / name)
            model, tokenizer = load_exported(student_dir)
            correct, _, source, validation = score(model, tokenizer, inputs)
            rows.append(point(name, factor, steps, float(correct.mean()), source, validation))
    return rows


# --- the report -------------------------------------------------------------------------------------


def parse_arguments(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.claims", description=__doc__.splitlines()[0])
    parser.add_argument("config", type=Path, help="a run config (configs/*.yaml)")
    parser.add_argument("--langs", nargs="+", required=True, help="target languages")
    parser.add_argument("--seeds", nargs="+", type=at_least(0), default=[0, 1, 2], help="seeds of phase 1 and phase 2")
    parser.add_argument("--phase1-steps", type=at_least(1), help="default: the config's")
    parser.add_argument("--phase2-steps", type=at_least(2), help="half dense, half sparse; default: the config's")
    parser.add_argument("--recipes", nargs="+", choices=RECIPES, default=list(RECIPES), help="task-teacher recipes to compare")
    parser.add_argument("--recipe-lr", nargs="*", default=[], metavar="RECIPE=LR",
                        help="a recipe's own learning rate, over the config's task_teacher.per_method (a probe needs a larger one than fine-tuning)")  # fmt: skip
    parser.add_argument("--recipe-steps", nargs="*", default=[], metavar="RECIPE=STEPS",
                        help="a recipe's own task_teacher.steps, over the config's task_teacher.per_method")  # fmt: skip
    parser.add_argument("--students", nargs="+", choices=list(STUDENTS), default=list(STUDENTS),
                        help="the student rows to train (default: all); the teachers' rows are always scored")
    parser.add_argument("--teachers-only", action="store_true", help="the task-teacher rows only: compare the recipes")
    parser.add_argument("--budget-curve", metavar="LANG", help="also train at 2x and 4x the phase-1 budget on LANG")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE", help="override the config")
    parser.add_argument("--work-dir", type=Path, default=Path("runs") / "claims", help="built models, reused by a rerun")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR, help="folder for the tables and the plot")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_arguments(argv)
    with exit_on_user_error("bench.claims"):
        quiet_libraries()
        if args.budget_curve and args.budget_curve not in args.langs:
            raise UserInputError(f"--budget-curve: '{args.budget_curve}' is not one of --langs {args.langs}")
        recipe_lr = parse_recipe_values("--recipe-lr", args.recipe_lr, float)
        recipe_steps = parse_recipe_values("--recipe-steps", args.recipe_steps, int)
        base = load_config(RunConfig, args.config, args.overrides)
        args.phase1_steps = args.phase1_steps or base.phase1.steps
        args.phase2_steps = args.phase2_steps or base.phase2.full_steps + base.phase2.sparse_steps
        if base.task_teacher.method not in args.recipes:
            raise UserInputError(f"--recipes: must include the config's task_teacher.method '{base.task_teacher.method}'")
        check_output_folder(Path(args.work_dir), "--work-dir")
        check_output_folder(Path(args.out), "--out")
        bench = Bench(args, base.model_copy(update={"output_dir": Path(args.work_dir)}))
        task_name = base.task.name
        resolved = base.model_copy(update={"phase2": resolve_phase2(base.phase2, base.task.kind)})
        settings = {
            "task": task_name, "teacher": base.teacher, "source_lang": base.source_lang, "langs": args.langs,
            "seeds": args.seeds, "recipe": base.task_teacher.method, "recipes": args.recipes, "recipe_lr": recipe_lr,
            **({"recipe_steps": recipe_steps} if recipe_steps else {}),  # absent where none: earlier tables stay comparable
            **({"students": args.students} if args.students != list(STUDENTS) else {}),
            **({"scored_unit": "word"} if base.task.kind != "sequence" else {}),
            **({"metric": "las"} if base.task.kind == "parse" else {}),
            "layers": base.student.layers, "phase1_steps": args.phase1_steps, "phase1_batch": base.phase1.batch_size,
            "phase2_steps": args.phase2_steps, "phase2_batch": base.phase2.batch_size,
            "budget_lang": args.budget_curve, "run_config": run_config_settings(resolved),
            "statistics": f"paired bootstrap over test {'examples' if base.task.kind == 'sequence' else 'sentences'} and seeds, 2000 resamples, 95% percentile interval",
        }  # fmt: skip
        results, budget_rows, earlier_machine = earlier_results(args.out, task_name, settings)
        teachers = TaskTeachers(bench, args.recipes, recipe_lr, recipe_steps, results, earlier_machine.get("cpu"))
        # A run that measures nothing new (the tables re-rendered) keeps the machine the rows were measured on.
        measured = lambda: (len(results), sum(bool(r.row.get("throughput")) for r in results), len(budget_rows))  # noqa: E731
        measured_before = measured()
        record: dict = {}

        def save(progress: str = "") -> None:
            record.update(
                settings=settings,
                machine=machine() if measured() != measured_before or not earlier_machine else earlier_machine,
                rows=[result.row for result in results],
                claims=judge(results, args.langs, f"teacher:{base.task_teacher.method}"),
                seed_agreement=seed_agreement(results, args.langs),
                progress=progress,
            )
            if budget_rows:
                record["budget_curve"] = budget_rows
            args.out.mkdir(parents=True, exist_ok=True)
            write_parquet(args.out / f"claims-{task_name}.parquet", [result.stored_row() for result in results])
            write_report(args.out, f"claims-{task_name}", record, markdown(record))
            plot(args.out)
            combine(args.out)

        started = time.perf_counter()
        if args.teachers_only:
            teachers_only = lambda: save("task teachers only (`--teachers-only`): no student trained")  # noqa: E731
            for lang in args.langs:
                language(bench, lang, args.seeds[0], True, teachers, results, teachers_only, students=[])
            save("task teachers only (`--teachers-only`): no student trained")
            print(markdown(record))
            return
        for index, seed in enumerate(args.seeds):
            for lang in args.langs:
                language(bench, lang, seed, index == 0, teachers, results, lambda: save(f"seed {seed}, {lang} in progress"), args.students)
        if args.budget_curve and not budget_rows:
            budget_rows = budget_curve(bench, args.budget_curve, args.seeds[0], teachers.path(base.task_teacher.method), results)
        save()
        log(f"claims on {task_name}: {time.perf_counter() - started:.0f} s")
        print(markdown(record))


def run_config_settings(run: PairSettings) -> dict:
    """The config a table is made with, as its settings record it; `task_teacher.per_method` only where
    given (tables made before it existed stay comparable)."""
    settings = run.model_dump(mode="json", exclude={"target_lang", *PLACEMENT_FIELDS} & set(type(run).model_fields))
    if not settings["task_teacher"]["per_method"]:
        del settings["task_teacher"]["per_method"]
    return settings


def parse_recipe_values(flag: str, items: list[str], kind: type) -> dict[str, str]:
    """`RECIPE=VALUE` items of `flag` as {recipe: value}, each value a positive finite `kind`, kept as
    written (it is part of the table's settings)."""
    values = {}
    for item in items:
        recipe, _, value = item.partition("=")
        try:
            valid = recipe in RECIPES and 0 < kind(value) < float("inf")
        except ValueError:
            valid = False
        if not valid:
            raise UserInputError(f"{flag}: {item!r} is not RECIPE=VALUE with RECIPE one of {', '.join(RECIPES)} and VALUE a positive {kind.__name__}")
        values[recipe] = value
    return values


def replace_teacher(bench: Bench, recipe: str, lr: float, steps: int) -> Bench:
    """The bench with one recipe's learning rate and step count in its task-teacher settings."""
    teacher = bench.base.task_teacher.model_copy(update={"lr": lr, "steps": steps, "per_method": {}})
    return Bench(bench.args, bench.base.model_copy(update={"task_teacher": teacher}))


if __name__ == "__main__":
    main()
