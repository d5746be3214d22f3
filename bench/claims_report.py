"""The reports of `bench.claims`: its tables (markdown), its Parquet files, every task's combined
files and the plot of target score against throughput."""

from __future__ import annotations

import json
from pathlib import Path
from statistics import mean

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from bench.claims_statistics import GREATLY
from bench.common import markdown_table, write_report
from bistil_ray.atomic import atomic_write_bytes

NAME = "claims"
STUDENTS = {
    "bistil": "BiStil",
    "no_phase1": "BiStil without phase 1",
    "scratch": "bilingual, from scratch",
    "multilingual": "multilingually distilled",
}

def recipe_table(rows: list[dict], langs: list[str]) -> str:
    header = ["task teacher", "source validation", "target validation (mean)", "target test (mean)"] + langs
    table = []
    for row_model in sorted({row["model"] for row in rows if row["model"].startswith("teacher:")}):
        mine = {row["target_lang"]: row for row in rows if row["model"] == row_model}
        validation = [row["target_validation_score"] for row in mine.values() if row["target_validation_score"] is not None]
        table.append(
            [row_model.split(":")[1], f"{mean(row['source_score'] for row in mine.values()):.3f}",
             f"{mean(validation):.3f}" if validation else "", f"{mean(row['target_score'] for row in mine.values()):.3f}"]
            + [f"{mine[lang]['target_score']:.3f}" if lang in mine else "" for lang in langs]
        )  # fmt: skip
    return markdown_table(header, table)


def model_label(model: str) -> str:
    if model in STUDENTS:
        return STUDENTS[model]
    return "vocabulary-trimmed teacher" if model == "trimmed_teacher" else f"task teacher ({model.removeprefix('teacher:')})"


def score_table(rows: list[dict], langs: list[str], teacher_model: str) -> str:
    header = ["model", "seeds", "layers", "vocabulary", "parameters", "throughput (batch 32, /s)", "source"]
    header += langs + ["mean"]
    table = []
    models = [teacher_model, "trimmed_teacher", *STUDENTS]
    for model in models:
        mine = [row for row in rows if row["model"] == model]
        if not mine:
            continue
        per_lang = {lang: [row["target_score"] for row in mine if row["target_lang"] == lang] for lang in langs}
        throughputs = [row["throughput"] for row in mine if row.get("throughput")]
        cell = lambda values: f"{mean(values):.3f}" + (f" ± {np.std(values, ddof=1):.3f}" if len(values) > 1 else "")  # noqa: E731
        label = model_label(model)
        table.append(
            [label, len({row["seed"] for row in mine}), mine[0]["layers"], f"{round(mean(row['vocab_size'] for row in mine)):,}",
             f"{mean(row['params'] for row in mine) / 1e6:.1f}M", f"{mean(throughputs):.1f}" if throughputs else "",
             f"{mean(row['source_score'] for row in mine):.3f}"]
            + [cell(per_lang[lang]) if per_lang[lang] else "" for lang in langs]
            + [f"{mean(mean(v) for v in per_lang.values() if v):.3f}"]
        )  # fmt: skip
    return markdown_table(header, table)


def claims_table(claims: list[dict], langs: list[str]) -> str:
    def cell(claim: dict, key: str) -> str:
        value = claim["by_language"].get(key)
        if value is None:
            return ""
        verdict = "holds" if value["holds"] else "**does not hold**"
        return f"{value['difference']:+.3f} [{value['low']:+.3f}, {value['high']:+.3f}] {verdict}"

    rows = [[claim["claim"], claim["paper"]] + [cell(claim, key) for key in [*langs, "mean"]] for claim in claims]
    return markdown_table(["claim", "the paper"] + langs + ["mean"], rows)


def agreement_table(claims: list[dict], by_seed: dict[str, float], langs: list[str]) -> str:
    share = lambda value: "" if value is None else f"{value:.3f}"  # noqa: E731
    rows = [[claim["claim"]] + [share(claim["by_language"].get(key, {}).get("agreement")) for key in [*langs, "mean"]] for claim in claims]
    rows.append(["bistil, one seed against another"] + [share(by_seed.get(key)) for key in [*langs, "mean"]])
    return markdown_table(["models"] + langs + ["mean"], rows)


def target_text_share(settings: dict) -> str:
    ratio = settings["run_config"]["phase2"]["target_text_ratio"]
    if ratio == 0:
        return "every phase-2 step on labelled source examples, as published"
    return f"{ratio:.0%} of phase-2 steps distil the teacher on unlabelled target-language text"


def scored_as(settings: dict) -> str:
    if settings.get("metric") == "las":
        return "LAS (words with the right head and relation; UAS in the Parquet table)"
    return "token accuracy" if settings.get("scored_unit") == "word" else "accuracy"


def markdown(record: dict) -> str:
    settings, langs = record["settings"], record["settings"]["langs"]
    rows, teacher_model = record["rows"], f"teacher:{settings['recipe']}"
    budget = (
        f"phase 1 {settings['phase1_steps']} steps x {settings['phase1_batch']}, phase 2 {settings['phase2_steps']} steps "
        f"x {settings['phase2_batch']} (half dense, half sparse; {target_text_share(settings)})"
    )
    words = settings.get("scored_unit") == "word"
    drawn, compared = ("sentences", "words") if words else ("examples", "examples")
    text = (
        f"# The paper's claims on {settings['task']} ({settings['source_lang']} -> {', '.join(langs)})\n\n"
        f"Zero-shot target-language test {scored_as(settings)}, mean ± standard deviation over seeds; source: "
        f"{settings['source_lang']} validation {scored_as(settings)}. Teacher {settings['teacher']}; the students distil the "
        f"`{settings['recipe']}` task teacher; every student has {settings['layers']} layers; {budget}; seeds "
        f"{settings['seeds']} (from scratch: the first only). Throughput: batch-32 sequences per second on this CPU, "
        "every model of a language measured side by side.\n\n"
        + ("**Partial table**: " + record["progress"] + "\n\n" if record.get("progress") else "")
        + "## Task-teacher recipes\n\n"
        + recipe_table(rows, langs)
        + "\n## Models\n\n"
        + score_table(rows, langs, teacher_model)
        + "\n## The orderings the paper claims\n\n"
        "Difference of accuracies, left - right (left - 0.97 x right where the claim names a share) [95% interval, paired "
        f"bootstrap over test {drawn} and seeds, 2,000 resamples]. `>=` holds when the difference is >= 0, `>` when the "
        f"interval's low end is above 0, `>>` when above {GREATLY} (rules fixed in `bench/claims.py` before any measurement).\n\n"
        + claims_table(record["claims"], langs)
    )
    if record.get("seed_agreement"):
        text += (
            f"\n## How alike the models are\n\nThe share of test {compared} on which both models of an ordering are right or both "
            "wrong (mean over the pairs the interval uses), against BiStil with itself under another seed: two models "
            "that agree about as often as two seeds of one are, on this test set, the same model up to seed noise.\n\n"
            + agreement_table(record["claims"], record["seed_agreement"], langs)
        )
    if record.get("budget_curve"):
        curve = record["budget_curve"]
        text += "\n## Phase-1 budget curve (" + settings["budget_lang"] + ", first seed)\n\n" + markdown_table(
            ["model", "phase-1 steps", "target test", "target validation", "source"],
            [[row["model"], row["phase1_steps"], f"{row['target_score']:.3f}",
              "" if row["target_validation_score"] is None else f"{row['target_validation_score']:.3f}", f"{row['source_score']:.3f}"]
             for row in curve],
        )  # fmt: skip
    measured = record["machine"]
    return text + (
        f"\nMeasured {measured['measured_at']} on {measured['cpu_count']} CPUs ({measured.get('cpu', measured['processor'])}); models built "
        f"by earlier runs are reused (each model's phase-2 time is in the Parquet table).\n"
    )


def write_parquet(path: Path, rows: list[dict]) -> None:
    """Every key of any row is a column (from_pylist alone takes the first row's keys: a teacher's row
    has no phase-2 fields, and the students' would be dropped)."""
    columns = list(dict.fromkeys(key for row in rows for key in row))
    buffer = pa.BufferOutputStream()
    pq.write_table(pa.Table.from_pylist([{key: row.get(key) for key in columns} for row in rows]), buffer)
    atomic_write_bytes(path, buffer.getvalue().to_pybytes())


def combine(out: Path) -> None:
    """claims.parquet, .json and .md: every task's table in `out` in one."""
    tasks = sorted(out.glob("claims-*.json"))
    records = {path.stem.removeprefix("claims-"): json.loads(path.read_text()) for path in tasks}
    rows = [row for record in records.values() for row in record["rows"]]
    write_parquet(out / "claims.parquet", rows)
    summary = {
        task: {key: record.get(key) for key in ("settings", "claims", "budget_curve", "progress", "machine")}
        for task, record in records.items()
    }
    text = "\n\n".join((out / f"claims-{task}.md").read_text().rstrip() for task in records)
    figure = "\n\n![target score against throughput](claims.png)\n" if (out / "claims.png").exists() else "\n"
    write_report(out, NAME, {"tasks": summary}, text + figure)


def plot(out: Path) -> None:
    """Target score against throughput, one panel per task with a table in `out`."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tables = [path for path in sorted(out.glob("claims-*.parquet")) if "throughput" in pq.read_schema(path).names]
    if not tables:
        return  # no model measured yet (e.g. --teachers-only): nothing to plot
    figure, axes = plt.subplots(1, len(tables), figsize=(6 * len(tables), 4.5), squeeze=False)
    for axis, path in zip(axes[0], tables):
        rows = pq.read_table(path).to_pylist()
        speed = {(row["model"], row["target_lang"]): row.get("throughput") for row in rows if row.get("throughput")}
        for model in sorted({row["model"] for row in rows}):
            points = {}
            for row in rows:
                if row["model"] == model and speed.get((model, row["target_lang"])):
                    points.setdefault(row["target_lang"], []).append(row["target_score"])
            if not points:
                continue
            by_lang = [np.mean(values) for values in points.values()]
            spread = [np.std(values, ddof=1) if len(values) > 1 else 0.0 for values in points.values()]
            x = np.mean([speed[model, lang] for lang in points])
            axis.errorbar(x, np.mean(by_lang), yerr=np.sqrt(np.mean(np.square(spread))) if any(spread) else None, fmt="o", capsize=3)
            axis.annotate(model, (x, np.mean(by_lang)), textcoords="offset points", xytext=(5, 5), fontsize=8)
        axis.set_xscale("log")
        axis.set_xlabel("batch-32 throughput on this CPU (sequences/s, log)")
        axis.set_ylabel("target test accuracy (mean over languages)")
        axis.set_title(path.stem.removeprefix("claims-"))
        axis.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(out / "claims.png", dpi=110)
    plt.close(figure)

