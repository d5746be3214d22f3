"""The steps of one BiStil run, each a plain function from inputs to a model directory.

    resolve_inputs ─► build_task_teacher ─┐
                   ─► build_vocabulary ─► build_phase1_student ─► run_phase2 ─► evaluate_student

No Ray here: `bistil_ray.run` calls these in one process, the orchestration layer calls them in Ray
tasks and Ray Train workers. Training steps run identically on every data-parallel rank; rank 0
writes `out_dir`, an empty directory that the caller publishes atomically afterwards.
"""

from __future__ import annotations

import json
import random
from functools import cache, partial
from pathlib import Path
from typing import Any, Callable

import torch
from safetensors.torch import load_file, save_file
from transformers import AutoModel, AutoModelForMaskedLM, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

from bistil_ray.config import (
    Phase1Config,
    Phase2Config,
    StudentConfig,
    TaskTeacherConfig,
    VocabularyConfig,
    resolve_phase2,
)
from bistil_ray.data.qa import ANSWER_STARTS, CONTEXT, QUESTION
from bistil_ray.data.tasks import TaskData
from bistil_ray.data.word_frequencies import word_frequencies
from bistil_ray.inputs import Inputs, resolve_inputs  # noqa: F401 (resolve_inputs: a step of `steps.Pipeline`)
from bistil_ray.method.batching import tokenize_dataset, tokenize_texts
from bistil_ray.method.evaluation import count_parameters, directory_bytes, evaluate_task, measure_efficiency
from bistil_ray.method.export import MODEL_CLASSES, load_exported, write_student_directory
from bistil_ray.method.hooks import TrainHooks
from bistil_ray.method.losses import attention_implementation
from bistil_ray.method.phase1 import BilingualText, phase1_weights, train_phase1
from bistil_ray.method.phase2 import phase2_weights, train_phase2
from bistil_ray.method.student import LayerMap, build_student
from bistil_ray.method.task_teacher import train_task_teacher
from bistil_ray.method.training import compute_dtype, is_main_process, training_device
from bistil_ray.method.vocabulary import BilingualVocabulary, build_bilingual_vocabulary, trim_embeddings
from bistil_ray.results_schema import EFFICIENCY_FIGURES

PROJECTION_FILE = "bistil_projection.safetensors"
Log = Callable[[str], None]


def task_texts(dataset, text_fields) -> list[str]:
    """A task split's first text column as plain text (a token task's words joined by spaces; a qa
    task's contexts, then its questions)."""
    if ANSWER_STARTS in dataset.column_names:
        return list(dataset[CONTEXT]) + list(dataset[QUESTION])
    column = list(dataset[text_fields[0]])
    return [" ".join(words) for words in column] if column and isinstance(column[0], list) else column


def _labels(task: TaskData) -> dict[str, Any]:
    return {
        "num_labels": task.num_labels,
        "id2label": dict(enumerate(task.label_names)),
        "label2id": {name: index for index, name in enumerate(task.label_names)},
    }


def build_task_teacher(inputs: Inputs, config: TaskTeacherConfig, out_dir: Path, hooks: TrainHooks, log: Log = print) -> dict:
    """Fine-tune the teacher on source-language task data; best by source validation."""
    config = config.resolved()
    tokenizer = AutoTokenizer.from_pretrained(inputs.teacher_path, trust_remote_code=inputs.run.trust_remote_code)
    # Seeded before the model is built: its new task head is part of the run (unseeded, two builds
    # under one artifact key would differ).
    torch.manual_seed(config.seed)
    model = MODEL_CLASSES[inputs.task.kind].from_pretrained(
        inputs.teacher_path,
        trust_remote_code=inputs.run.trust_remote_code,
        use_safetensors=True,
        **_labels(inputs.task),
    )
    fields = inputs.task.text_fields
    train = tokenize_dataset(tokenizer, inputs.task.source_train, fields, config.max_length)
    validation = tokenize_dataset(tokenizer, inputs.task.source_validation, fields, config.max_length)
    metrics = train_task_teacher(model, train, validation, config, hooks, tokenizer.pad_token_id, log=log)
    if is_main_process():
        model.save_pretrained(out_dir)
        tokenizer.save_pretrained(out_dir)
    return metrics


def build_vocabulary(inputs: Inputs, config: VocabularyConfig, out_dir: Path) -> dict:
    """The bilingual vocabulary: phase-1 text of both languages plus the source task's training text."""
    tokenizer = AutoTokenizer.from_pretrained(inputs.teacher_path, trust_remote_code=inputs.run.trust_remote_code)
    source = inputs.source_text + task_texts(inputs.task.source_train, inputs.task.text_fields)
    languages = (inputs.run.source_lang, inputs.run.target_lang)
    word_lists = [word_frequencies(lang) for lang in languages] if config.word_frequencies else []
    vocabulary = build_bilingual_vocabulary(
        tokenizer, source, inputs.target_text, config.threshold, [words for words in word_lists if words]
    )
    vocabulary.save(out_dir)
    return {
        "vocab_size": vocabulary.size,
        "teacher_vocab_size": len(tokenizer),
        "word_lists": [lang for lang, words in zip(languages, word_lists) if words],
    }


def bilingual_text(tokenizer, source: list[str], target: list[str], config: Phase1Config) -> BilingualText:
    """Tokenise both corpora; hold out a deterministic validation sample of each."""

    def split(texts: list[str]) -> tuple[list[str], list[str]]:
        shuffled = sorted(texts)
        random.Random(config.seed).shuffle(shuffled)
        held_out = min(config.validation_sentences, len(shuffled) // 10)
        return shuffled[held_out:], shuffled[:held_out]

    source_train, source_validation = split(source)
    target_train, target_validation = split(target)
    return BilingualText(
        source=tokenize_texts(tokenizer, source_train, config.max_length),
        target=tokenize_texts(tokenizer, target_train, config.max_length),
        validation=tokenize_texts(tokenizer, source_validation + target_validation, config.max_length),
    )


def build_phase1_student(
    inputs: Inputs,
    vocab_dir: Path,
    student_config: StudentConfig,
    config: Phase1Config,
    out_dir: Path,
    hooks: TrainHooks,
    log: Log = print,
) -> dict:
    """General bilingual distillation into a shallower student with the trimmed vocabulary."""
    vocabulary = BilingualVocabulary.load(vocab_dir)
    # Seeded before the models are built: a fresh MLM head or a random student is part of the run.
    torch.manual_seed(config.seed)
    # With an MLM term the student needs an MLM head: taken from the teacher where it has one
    # (mBERT, XLM-R), newly initialised where it has none (e5).
    model_class = AutoModelForMaskedLM if config.alpha_mlm > 0 else AutoModel
    teacher = _trimmed_teacher(inputs, vocabulary, model_class, attention_implementation(phase1_weights(config)))
    student, layer_map, projection = build_student(teacher, student_config)
    text = bilingual_text(vocabulary.tokenizer, inputs.source_text, inputs.target_text, config)
    metrics = train_phase1(
        teacher, student, layer_map, projection, text, config, hooks, vocabulary.tokenizer, log=log
    )
    _save_phase1_student(out_dir, student, vocabulary, layer_map, projection)
    return {**metrics, "student_layers": student.config.num_hidden_layers}


def build_initial_student(inputs: Inputs, vocab_dir: Path, student_config: StudentConfig, out_dir: Path) -> dict:
    """The student as `build_student` initialises it, untrained, written where a phase-1 student
    goes: phase 2 started from it is BiStil without phase 1."""
    vocabulary = BilingualVocabulary.load(vocab_dir)
    teacher = _trimmed_teacher(inputs, vocabulary, AutoModel, "sdpa")
    student, layer_map, projection = build_student(teacher, student_config)
    _save_phase1_student(out_dir, student, vocabulary, layer_map, projection)
    return {"student_layers": student.config.num_hidden_layers}


def _trimmed_teacher(inputs: Inputs, vocabulary: BilingualVocabulary, model_class, attention: str):
    teacher = model_class.from_pretrained(
        inputs.teacher_path,
        attn_implementation=attention,
        trust_remote_code=inputs.run.trust_remote_code,
        use_safetensors=True,
    )
    trim_embeddings(teacher, vocabulary.kept_ids)
    return teacher


def _save_phase1_student(out_dir: Path, student, vocabulary: BilingualVocabulary, layer_map: LayerMap, projection) -> None:
    """What phase 2 reads: the student, its tokenizer, its layer map and width projection (rank 0)."""
    if is_main_process():
        student.save_pretrained(out_dir)
        vocabulary.tokenizer.save_pretrained(out_dir)
        layer_map.save(out_dir)
        if projection is not None:
            save_file({"projection": projection.contiguous()}, out_dir / PROJECTION_FILE)


def _copy_task_head(teacher, student) -> bool:
    """Start the student's head (pooler, classifier) from the task teacher's when shapes match."""
    student_state = student.state_dict()
    head = {
        key: value
        for key, value in teacher.state_dict().items()
        if key.startswith(("classifier", "bert.pooler", "roberta.pooler", "pooler"))
        and key in student_state
        and student_state[key].shape == value.shape
    }
    student.load_state_dict(head, strict=False)
    return bool(head)


def run_phase2(
    inputs: Inputs,
    phase1_dir: Path,
    task_teacher_dir: Path,
    vocab_dir: Path,
    config: Phase2Config,
    out_dir: Path,
    hooks: TrainHooks,
    log: Log = print,
) -> dict:
    """Task distillation with LT-SFT; writes the shippable student directory."""
    vocabulary = BilingualVocabulary.load(vocab_dir)
    attention = attention_implementation(phase2_weights(config))
    task_model = MODEL_CLASSES[inputs.task.kind]
    teacher = task_model.from_pretrained(task_teacher_dir, attn_implementation=attention, use_safetensors=True)
    trim_embeddings(teacher, vocabulary.kept_ids)
    config = resolve_phase2(config, inputs.task.kind)
    # Seeded before the student is built: a head the teacher's cannot replace (another width) starts random.
    torch.manual_seed(config.seed)
    student = task_model.from_pretrained(
        phase1_dir, attn_implementation=attention, use_safetensors=True, **_labels(inputs.task)
    )
    _copy_task_head(teacher, student)
    layer_map = LayerMap.load(phase1_dir)
    projection_file = Path(phase1_dir) / PROJECTION_FILE
    projection = load_file(projection_file)["projection"] if projection_file.exists() else None

    fields = inputs.task.text_fields
    train = tokenize_dataset(vocabulary.tokenizer, inputs.task.source_train, fields, config.max_length)
    validation = tokenize_dataset(vocabulary.tokenizer, inputs.task.source_validation, fields, config.max_length)
    target_validation = (
        tokenize_dataset(vocabulary.tokenizer, inputs.target_validation, fields, config.max_length)
        if inputs.target_validation is not None
        else []
    )
    target_text = tokenize_texts(vocabulary.tokenizer, inputs.target_text, config.max_length) if config.target_text_ratio else []
    metrics = train_phase2(
        teacher,
        student,
        layer_map,
        projection,
        train,
        validation,
        config,
        hooks,
        vocabulary.tokenizer.pad_token_id,
        target_text=target_text,
        target_validation=target_validation,
        log=log,
    )
    if is_main_process():
        student.config.attn_implementation = "sdpa"
        run = inputs.run
        write_student_directory(
            student,
            vocabulary.tokenizer,
            out_dir,
            label_names=inputs.task.label_names,
            extra_metadata={
                "teacher": run.teacher,
                "task": run.task.name,
                "source_lang": run.source_lang,
                "target_lang": run.target_lang,
                "density": config.density,
                "student_layers": student.config.num_hidden_layers,
            },
        )
    return metrics


def score_task_teacher(inputs: Inputs, task_teacher_dir: Path, out_dir: Path) -> dict:
    """The task teacher's scores on the pair's evaluation sets, on this process's device, in float32:
    the same for every student of the pair, so computed once (an artifact) and reused."""
    task, fields = inputs.task, inputs.task.text_fields
    device = training_device()
    teacher = MODEL_CLASSES[task.kind].from_pretrained(task_teacher_dir, use_safetensors=True)
    tokenizer = AutoTokenizer.from_pretrained(task_teacher_dir)

    def evaluated(dataset) -> dict:
        max_length = inputs.run.task_teacher.max_length  # where the teacher learnt to cut texts
        return evaluate_task(teacher, tokenizer, dataset, fields, task.label_names, device=device, max_length=max_length)

    target = evaluated(inputs.target_test)
    scores = {
        "teacher_source_score": evaluated(task.source_validation)["score"],
        "teacher_target_score": target["score"],
        "teacher_target_uas": target.get("uas"),
        "teacher_target_validation_score": evaluated(inputs.target_validation)["score"] if inputs.target_validation is not None else None,
        "teacher_params": count_parameters(teacher),
        "teacher_scored_on": device.type,
    }
    (Path(out_dir) / "teacher_scores.json").write_text(json.dumps(scores, indent=1))
    return scores


# Every trial times its student beside the task teacher, so the timing is short: enough to rank
# students of different depths and give each its speed-up (bench/student_speed.py is the careful
# measurement, bench/results/trial_overhead.md what this costs a trial).
TIMED_TEXTS = 128
TIMING_SECONDS_PER_MODEL = 1.0


def evaluate_student(
    inputs: Inputs, student_dir: Path, task_teacher_dir: Path, teacher_scores: dict, *, efficiency: bool = True
) -> dict:
    """The student's scores on source validation, target validation (where the task has it) and the
    target test set, on this process's device (a trial's GPU, in phase 2's precision), beside the task
    teacher's `teacher_scores`; and the size and speed of both, measured side by side in this process:
    on the CPU (the deployment figure), and on the GPU as well where this process holds one."""
    task, fields = inputs.task, inputs.task.text_fields
    device = training_device()
    dtype = compute_dtype(device, inputs.run.phase2.precision)
    student, student_tokenizer = load_exported(student_dir)
    target_test = inputs.target_test

    def scores(dataset):
        max_length = inputs.run.phase2.max_length  # where the student learnt to cut texts
        return evaluate_task(student, student_tokenizer, dataset, fields, task.label_names, device=device, dtype=dtype, max_length=max_length)

    student_target = scores(target_test)
    result = {
        "metric": student_target["metric"],
        "source_score": scores(task.source_validation)["score"],
        "target_score": student_target["score"],
        "target_macro_f1": student_target.get("macro_f1"),
        "target_uas": student_target.get("uas"),
        "target_validation_score": scores(inputs.target_validation)["score"] if inputs.target_validation is not None else None,
        **teacher_scores,
        "retention": student_target["score"] / max(teacher_scores["teacher_target_score"], 1e-12),
        "vocab_size": len(student_tokenizer),
        "student_layers": student.config.num_hidden_layers,
        "student_params": count_parameters(student),
        "scored_on": device.type,
        "score_dtype": str(dtype).removeprefix("torch."),
    }
    if efficiency:
        models = {"teacher": timed_teacher(Path(task_teacher_dir), task.kind), "student": (student, student_tokenizer)}
        texts = task_texts(target_test, fields)[:TIMED_TEXTS]
        result["student_bytes"] = directory_bytes(student_dir)
        timing = partial(measure_efficiency, models, texts, warmup=1, seconds_budget=TIMING_SECONDS_PER_MODEL)
        result.update(efficiency_columns(timing(device="cpu")))
        if device.type == "cuda":
            result.update(efficiency_columns(timing(device=device), prefix="gpu_"))
    return result


@cache
def timed_teacher(task_teacher_dir: Path, kind: str) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """The task teacher that students are timed beside, loaded once per process: a sweep's worker
    evaluates one trial after another (Ray reuses task workers), and an artifact's directory never
    changes. Its tokenizer (a multilingual vocabulary) takes longer to load than the timing itself."""
    return MODEL_CLASSES[kind].from_pretrained(task_teacher_dir, use_safetensors=True), AutoTokenizer.from_pretrained(task_teacher_dir)


def efficiency_columns(measured: dict, prefix: str = "") -> dict:
    student, teacher = measured["student"], measured["teacher"]
    return {f"{prefix}{name}": figure(student, teacher) for name, (_, figure) in EFFICIENCY_FIGURES.items()}
