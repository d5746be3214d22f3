"""What the benchmarks start from: the offline teacher, a trimmed bilingual vocabulary built by the
real pipeline, students of any depth, and tokenised chatterbot text.

Everything is built the way a run builds it (`bistil_ray.pipeline`, `bistil_ray.method.*`), so a
benchmark measures the code a user runs, on the data the demo uses.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

from transformers import AutoModel, AutoModelForSequenceClassification, PreTrainedModel

from bistil_ray.config import Phase1Config, RunConfig, StudentConfig, load_config
from bistil_ray.method.batching import Example, tokenize_dataset, tokenize_texts
from bistil_ray.method.phase1 import BilingualText
from bistil_ray.method.student import LayerMap, build_student
from bistil_ray.method.vocabulary import BilingualVocabulary, trim_embeddings
from bistil_ray.orchestration.sweep_config import SweepConfig
from bistil_ray.inputs import Inputs, resolve_inputs
from bistil_ray.pipeline import bilingual_text, build_vocabulary

DEMO_SWEEP = Path(__file__).resolve().parents[1] / "sweeps" / "demo.yaml"


def demo_sweep() -> SweepConfig:
    """The demo sweep's settings: the benchmarks measure what `make demo` runs."""
    return load_config(SweepConfig, DEMO_SWEEP)


@dataclass
class BenchData:
    """The demo's first pair (en -> zh by default) with its trimmed vocabulary."""

    inputs: Inputs
    vocab_dir: Path
    vocabulary: BilingualVocabulary

    @property
    def pad_token_id(self) -> int:
        return self.vocabulary.tokenizer.pad_token_id

    def phase1_text(self, config: Phase1Config) -> BilingualText:
        return bilingual_text(self.vocabulary.tokenizer, self.inputs.source_text, self.inputs.target_text, config)

    def task_examples(self, max_length: int) -> tuple[list[Example], list[Example]]:
        """Source-language (train, validation) task examples in the trimmed vocabulary."""
        task, tokenizer = self.inputs.task, self.vocabulary.tokenizer
        return (
            tokenize_dataset(tokenizer, task.source_train, task.text_fields, max_length),
            tokenize_dataset(tokenizer, task.source_validation, task.text_fields, max_length),
        )

    def target_text_examples(self, max_length: int) -> list[Example]:
        return tokenize_texts(self.vocabulary.tokenizer, self.inputs.target_text, max_length)

    def target_test_texts(self) -> list[str]:
        return list(self.inputs.target_test[self.inputs.task.text_fields[0]])


def load_bench_data(target_lang: str = "zh", work_dir: Path | None = None) -> BenchData:
    """Resolve the built-in teacher and task, and build the pair's vocabulary into `work_dir`
    (a fresh temporary folder if None)."""
    run = RunConfig(target_lang=target_lang)
    inputs = resolve_inputs(run)
    vocab_dir = Path(work_dir or tempfile.mkdtemp(prefix="bistil-bench-")) / "vocabulary"
    vocab_dir.mkdir(parents=True, exist_ok=True)
    build_vocabulary(inputs, run.vocabulary, vocab_dir)
    return BenchData(inputs, vocab_dir, BilingualVocabulary.load(vocab_dir))


def full_teacher(data: BenchData, attention: str | None, *, num_labels: int | None = None) -> PreTrainedModel:
    """The teacher as published, with its whole vocabulary: a base encoder, or with an (untrained)
    task head of `num_labels` classes, which costs what a task teacher's head costs. `attention`
    None: what `from_pretrained` picks by default, as a user's load of a saved model does."""
    path = data.inputs.teacher_path
    if num_labels is None:
        teacher = AutoModel.from_pretrained(path, attn_implementation=attention)
    else:
        teacher = AutoModelForSequenceClassification.from_pretrained(
            path, attn_implementation=attention, num_labels=num_labels
        )
    return teacher.eval()


def trimmed_teacher(data: BenchData, attention: str | None, *, num_labels: int | None = None) -> PreTrainedModel:
    """The teacher with the pair's vocabulary (see `full_teacher`)."""
    teacher = full_teacher(data, attention, num_labels=num_labels)
    trim_embeddings(teacher, data.vocabulary.kept_ids)
    return teacher


def student_of(teacher: PreTrainedModel, layers: int) -> tuple[PreTrainedModel, LayerMap]:
    student, layer_map, _ = build_student(teacher, StudentConfig(layers=layers))
    return student, layer_map
