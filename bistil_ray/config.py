"""Typed configuration: the one schema for everything a user writes in YAML.

Each training procedure has its own section model (`TaskTeacherConfig`, `Phase1Config`,
`Phase2Config`); a single run (`RunConfig`) and a sweep (see `bistil_ray.orchestration`) compose
them. Unknown keys are rejected and the error names the YAML path and the closest valid key.
"""

from __future__ import annotations

import difflib
import re
from pathlib import Path
from typing import Any, ClassVar, Literal, TypeVar, get_args

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator, model_validator
from pydantic.fields import FieldInfo

from bistil_ray.data.files import read_text
from bistil_ray.errors import UserInputError


class StrictModel(BaseModel):
    # No NaN or infinity: every bound check (gt, le, ...) is false for NaN, so one would slip through.
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    @field_validator("*", mode="before")
    @classmethod
    def _no_boolean_for_a_number(cls, value: Any, info: ValidationInfo) -> Any:
        """pydantic reads true as 1 where a number belongs; a person who wrote it meant something else."""
        if isinstance(value, bool) and info.field_name is not None:
            accepted = get_args(cls.model_fields[info.field_name].annotation) or (cls.model_fields[info.field_name].annotation,)
            if {int, float} & set(accepted) and bool not in accepted:
                raise ValueError(f"expected a number, got the boolean {str(value).lower()}")
        return value


# --- where the teacher, task data and corpora come from ------------------------------------------


TaskKind = Literal["sequence", "token", "parse", "qa"]
TASK_KIND_HELP = (
    "sequence: one label per text or text pair (classification, NLI); token: one tag per word "
    "(NER with BIO tags, scored by entity F1; POS and other tags, scored by token accuracy); parse: "
    "a dependency tree, each word's head and its UD relation (scored by LAS and UAS); qa: extractive "
    "question answering, SQuAD's schema (scored by F1 and exact match)"
)


def language_config(config: str | None, lang: str) -> str | None:
    """A dataset config with '{lang}' replaced by the language."""
    return config.replace("{lang}", lang) if config is not None else None


class LabelledColumns(StrictModel):
    """Which columns hold the input and the labels; for token tasks a list of words and one tag per word."""

    kind: TaskKind = Field("sequence", description=TASK_KIND_HELP)
    text_fields: list[str] = Field(
        default_factory=lambda: ["text"], min_length=1, max_length=2,
        description="one text column, or two for pairs; token tasks: the one column of words (default tokens)",
    )  # fmt: skip
    label_field: str = Field(
        "label",
        description="the class column (class ids or names); token tasks: the tags column (default tags); "
        "parse tasks: the relations column (default deprel)",
    )
    head_field: str = Field("head", description="parse tasks: the column of each word's head (1-based; 0: the root)")

    @model_validator(mode="before")
    @classmethod
    def _token_defaults(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("kind") in ("token", "parse"):
            label_field = "tags" if data["kind"] == "token" else "deprel"
            data = {"text_fields": ["tokens"], "label_field": label_field, **data}
        if isinstance(data, dict) and data.get("kind") == "qa":
            data = {"text_fields": ["question", "context"], "label_field": "answers", **data}
        return data

    @model_validator(mode="after")
    def _one_column_of_words(self) -> "LabelledColumns":
        if self.kind in ("token", "parse") and len(self.text_fields) != 1:
            raise ValueError(f"text_fields: a {self.kind} task has one column of words")
        if self.kind == "qa" and len(self.text_fields) != 2:
            raise ValueError("text_fields: a qa task has a question column and a context column")
        return self


class HubTaskSpec(LabelledColumns):
    """A labelled dataset on the Hugging Face hub, one config per language (XNLI, WikiANN style)."""

    path: str = Field(description="dataset id on the hub, e.g. facebook/xnli or unimelb-nlp/wikiann")
    config: str | None = Field(None, description="dataset config; '{lang}' is replaced by the language")
    configs: dict[str, str] = Field(
        default_factory=dict,
        description="language -> dataset config, where configs are not named by language "
        "(universal_dependencies: {en: en_ewt, de: de_gsd}); takes precedence over `config`",
    )
    paths: dict[str, str] = Field(
        default_factory=dict,
        description="language -> dataset id, where languages come from different datasets (QA: squad for en, "
        "google/xquad for the targets); takes precedence over `path`",
    )
    train_split: str = Field("train", description="source-language training split")
    validation_split: str = Field("validation", description="source-language validation split")
    test_split: str = Field("test", description="target-language test split (target_score)")
    target_validation_split: str | None = Field(
        None, description="a target-language validation split; used as the search objective if set"
    )
    max_train_examples: int | None = Field(None, gt=0, description="use at most this many training examples")
    revision: str | None = Field(None, description="dataset revision: branch, tag or commit")
    trust_remote_code: bool = Field(False, description="let the dataset run its own loading code")

    def path_for(self, lang: str) -> str:
        """The dataset that holds `lang`'s data."""
        return self.paths.get(lang, self.path)

    def config_for(self, lang: str) -> str | None:
        """The dataset config that holds `lang`'s data."""
        return self.configs[lang] if lang in self.configs else language_config(self.config, lang)

    def names_each_language(self, langs: list[str]) -> bool:
        """Whether every language in `langs` loads its own config."""
        return all(lang in self.configs for lang in langs) or (self.config is not None and "{lang}" in self.config)


class FilesTaskSpec(LabelledColumns):
    """Labelled local files: jsonl, json, csv, tsv or parquet; token tasks also CoNLL (.conll: tab-separated,
    the word first, the tag last) and CoNLL-U (.conllu: FORM and the column `label_field` names, UPOS
    when it is `tags`)."""

    train: Path = Field(description="source-language training file")
    validation: Path = Field(description="source-language validation file")
    test: dict[str, Path] = Field(description="target language -> test file")
    target_validation: dict[str, Path] = Field(
        default_factory=dict, description="target language -> validation file (objective.score: target_validation)"
    )


UD_TREEBANKS = {"en": "en_ewt", "de": "de_gsd", "fi": "fi_tdt", "id": "id_gsd", "ja": "ja_gsd", "zh": "zh_gsd"}
UDSplit = Literal["train", "dev", "test"]


class UDTaskSpec(StrictModel):
    """Universal Dependencies treebanks in one folder laid out as a UD release
    (`UD_<Language>-<Name>/<code>-ud-<split>.conllu`): one tag column, one treebank per language.

    The splits are fixed here, before any measurement: the source treebank's `dev` trains and its
    `test` validates (UD's English train split is often not at hand, and a source test set is never a
    reported score); each target's `dev` is its validation set and its `test` is only ever scored."""

    folder: Path | None = Field(
        None,
        description="the folder holding the UD_* treebank folders; default: $BISTIL_RAY_UD, else "
        "../shared/data/ud beside this project's folder when it exists",
    )
    treebanks: dict[str, str] = Field(
        default_factory=lambda: dict(UD_TREEBANKS),
        description="language -> treebank code, the files' prefix (en_ewt for en_ewt-ud-dev.conllu); "
        "given, it replaces the default " + ", ".join(f"{lang}: {code}" for lang, code in UD_TREEBANKS.items()),
    )
    kind: Literal["token", "parse"] = Field(
        "token", description="token: tag each word with `column`; parse: each word's head and UD relation (DEPREL)"
    )
    column: Literal["upos", "xpos", "deprel"] = Field("upos", description="the CoNLL-U column a token task tags")
    source_train_split: UDSplit = Field("dev", description="the source treebank's split that trains")
    source_validation_split: UDSplit = Field("test", description="the source treebank's split that validates")
    target_validation_split: UDSplit = Field("dev", description="each target's validation split")
    target_test_split: UDSplit = Field("test", description="each target's scored split, never read for anything else")
    text_split: UDSplit = Field(
        "dev", description="the split whose `# text =` lines are a language's phase-1 text where `corpora` names none"
    )

    # The columns a UD task has once read, as `task.hub` and `task.files` name theirs.
    text_fields: ClassVar[list[str]] = ["tokens"]
    head_field: ClassVar[str] = "head"

    @property
    def label_field(self) -> str:
        return "deprel" if self.kind == "parse" else self.column

    @model_validator(mode="after")
    def _distinct_splits(self) -> "UDTaskSpec":
        if self.kind == "parse" and "column" in self.model_fields_set:
            raise ValueError("column: a parse task reads the heads and relations (HEAD, DEPREL), not one column")
        if self.source_train_split == self.source_validation_split:
            raise ValueError("source_validation_split: the source treebank trains on that split")
        if self.target_validation_split == self.target_test_split:
            raise ValueError("target_validation_split: a target's test split is never used to choose")
        if self.text_split == self.target_test_split:
            raise ValueError("text_split: a target's test split is never distilled on")
        return self


class TaskSpec(StrictModel):
    """Exactly one of `builtin`, `hub`, `files`, `ud`."""

    builtin: Literal["chatterbot", "quran"] | None = Field(
        None,
        description="an offline task: chatterbot (topics of short chat utterances, chatterbot-corpus) or quran "
        "(Meccan or Medinan chapter of a verse, npm quran-json)",
    )
    hub: HubTaskSpec | None = Field(None, description="a labelled dataset on the Hugging Face hub")
    files: FilesTaskSpec | None = Field(None, description="labelled local files")
    ud: UDTaskSpec | None = Field(None, description="Universal Dependencies treebanks in a local UD folder (a token task)")

    @model_validator(mode="after")
    def _exactly_one(self) -> "TaskSpec":
        given = [name for name in ("builtin", "hub", "files", "ud") if getattr(self, name) is not None]
        if len(given) != 1:
            raise ValueError(f"give exactly one of builtin, hub, files, ud (got {given or 'none'})")
        return self

    @property
    def kind(self) -> TaskKind:
        return "sequence" if self.builtin else (self.hub or self.files or self.ud).kind  # type: ignore[union-attr]

    @property
    def name(self) -> str:
        if self.builtin:
            return self.builtin
        if self.ud:
            return "ud-dp" if self.ud.kind == "parse" else f"ud-{self.ud.column}"
        if self.hub:
            return self.hub.path + (f"/{self.hub.config}" if self.hub.config else "")
        return Path(self.files.train).stem  # type: ignore[union-attr]


class HubCorpusSpec(StrictModel):
    path: str = Field(description="dataset id on the hub, e.g. wikimedia/wikipedia")
    config: str | None = Field(None, description="'{lang}' is replaced by the language")
    split: str = Field("train", description="the split to read")
    text_field: str = Field("text", description="the text column")
    revision: str | None = Field(None, description="dataset revision: branch, tag or commit")
    streaming: bool = Field(True, description="read only the sentences used, without downloading the whole dataset")
    trust_remote_code: bool = Field(False, description="let the dataset run its own loading code")


class DebianCorpusSpec(StrictModel):
    """Translated text from Debian's packages, fetched and cleaned once into the cache
    (`python -m bistil_ray.data.debian_text`: the sources and their licences)."""

    language: str | None = Field(
        None, description="the sources' language, default the corpus's own (zh-tw: traditional Chinese)"
    )


class CorpusSpec(StrictModel):
    """Unlabelled text of one language for phase 1: a local file, a hub dataset or Debian's packages."""

    file: Path | None = Field(None, description="plain text, one sentence per line")
    hub: HubCorpusSpec | None = None
    debian: DebianCorpusSpec | None = Field(None, description="translated text from Debian's packages")
    max_sentences: int | None = Field(None, gt=0, description="use at most this many sentences")

    @model_validator(mode="after")
    def _exactly_one(self) -> "CorpusSpec":
        if sum(source is not None for source in (self.file, self.hub, self.debian)) != 1:
            raise ValueError("give exactly one of file, hub, debian")
        return self


# --- the method's settings -------------------------------------------------------------------------

Precision = Literal["auto", "bf16", "fp32"]


class OptimConfig(StrictModel):
    lr: float = Field(1e-4, gt=0, description="peak learning rate (AdamW, linear warm-up then linear decay)")
    weight_decay: float = Field(0.01, ge=0, description="AdamW weight decay")
    warmup_ratio: float = Field(0.1, ge=0, lt=1, description="fraction of the steps spent warming up")
    batch_size: int = Field(32, gt=0, description="sequences per step on each data-parallel worker")
    max_length: int = Field(128, ge=8, description="tokens per sequence; longer texts are truncated")
    eval_every: int = Field(100, gt=0, description="steps between validations (and checkpoints)")
    seed: int = Field(0, description="seeds initialisation and data order")
    precision: Precision = Field(
        "auto",
        description="matrix products in bf16 (autocast; weights, optimiser and losses stay float32) or fp32; "
        "auto: bf16 on hardware that computes it natively (Ampere or later GPUs, CPUs with AVX512-BF16 or AMX)",
    )


class TaskOptimConfig(OptimConfig):
    """A procedure trained on labelled task data, choosing its best weights on source validation."""

    validation_examples: int | None = Field(
        None,
        gt=0,
        description="score a fixed sample of this many source (and target) validation examples at each "
        "evaluation, drawn once and the same for every run, to choose the weights; the full sets are scored "
        "once, at the end. Default: all of them",
    )


Recipe = Literal["full", "lt_sft", "frozen_body"]


class RecipeSettings(StrictModel):
    """A recipe's own optimiser settings, in place of the shared ones when it is the method."""

    lr: float | None = Field(None, gt=0)
    steps: int | None = Field(None, gt=0)


class TaskTeacherConfig(TaskOptimConfig):
    """Fine-tuning the teacher on source-language task data."""

    method: Recipe = Field(
        "full",
        description="full: fine-tune every parameter (but frozen embeddings); lt_sft: Lottery-Ticket Sparse "
        "Fine-Tuning as the reference trains its task SFTs, the first half of `steps` dense, then the `density` "
        "share of body entries that moved most trained from the pretrained values for the second half; "
        "frozen_body: the encoder stays as pretrained, only pooler and classifier train (a probe)",
    )
    density: float = Field(0.08, gt=0, le=1, description="lt_sft: the share of body entries the sparse half trains")
    lr: float = Field(5e-5, gt=0)
    steps: int = Field(400, gt=0, description="optimiser steps")
    per_method: dict[Recipe, RecipeSettings] = Field(
        default_factory=dict,
        description="a recipe's own lr and steps, used when it is the method (a sweep that searches "
        "teacher_method trains each recipe with its own): e.g. {frozen_body: {lr: 1.0e-3, steps: 1600}}, "
        "as a probe on a frozen encoder needs a larger learning rate and more steps than fine-tuning",
    )
    freeze_embeddings: bool = Field(
        True,
        description="keep the teacher's embeddings fixed: tokens unseen in source task data stay aligned "
        "across languages, and the optimiser skips the large multilingual embedding matrix",
    )

    @property
    def dense_steps(self) -> int:
        """Steps before the lottery ticket is drawn: all of them unless the method is lt_sft."""
        return self.steps // 2 if self.method == "lt_sft" else self.steps

    def resolved(self, method: Recipe | None = None) -> "TaskTeacherConfig":
        """What trains as `method` (default: the config's): its own settings of `per_method` in place of the shared ones."""
        method = method or self.method
        own = self.per_method.get(method)
        return self.model_copy(update={**(own.model_dump(exclude_none=True) if own else {}), "method": method, "per_method": {}})

    @model_validator(mode="after")
    def _lt_sft_has_both_halves(self) -> "TaskTeacherConfig":
        if self.method == "lt_sft" and self.resolved().steps < 2:
            raise ValueError("method lt_sft needs steps >= 2 (a dense and a sparse half)")
        return self


class VocabularyConfig(StrictModel):
    threshold: float = Field(1e-6, gt=0, lt=1, description="min relative frequency in either corpus")
    word_frequencies: bool = Field(
        True,
        description="also keep tokens frequent in wordfreq's word lists of either language (large corpora), "
        "so that a small corpus does not turn common words into the unknown token; languages without a list "
        "use the corpora alone",
    )


class StudentConfig(StrictModel):
    layers: int = Field(6, gt=0, description="student depth; at most the teacher's")
    layer_selection: Literal["regular", "bottom"] = Field(
        "regular", description="regular: every k-th teacher layer (k = teacher depth / layers); bottom: the first"
    )
    width_factor: int = Field(1, ge=1, description="divide hidden and intermediate size (SVD)")
    initialisation: Literal["teacher", "random"] = Field(
        "teacher",
        description="teacher: copy the teacher's layers (BiStil); random: the same shape freshly initialised, "
        "for a from-scratch baseline (e.g. phase 1 as MLM only: alpha_mlm > 0, alpha_hidden = alpha_attn = 0)",
    )


class Phase1Config(OptimConfig):
    """General bilingual distillation."""

    lr: float = Field(1e-4, gt=0, description="phase-1 peak learning rate")
    steps: int = Field(300, gt=0, description="optimiser steps")
    batching: Literal["alternate", "mixed"] = Field(
        "alternate", description="alternate: one language per batch, taking turns; mixed: both in every batch"
    )
    alpha_hidden: float = Field(1.0, ge=0, description="weight of the hidden-state MSE against the teacher")
    alpha_attn: float = Field(1.0, ge=0, description="weight of the attention MSE against the teacher")
    alpha_mlm: float = Field(0.0, ge=0, description="weight of a masked-language-model loss (0: off, as published)")
    validation_sentences: int = Field(200, gt=0, description="held out per language")


class Phase2Config(TaskOptimConfig):
    """Task distillation with Lottery-Ticket Sparse Fine-Tuning."""

    lr: float = Field(5e-5, gt=0, description="phase-2 peak learning rate")
    batch_size: int = Field(8, gt=0, description="sequences per step on each data-parallel worker")
    full_steps: int = Field(300, gt=0, description="steps of the dense phase")
    sparse_steps: int = Field(300, gt=0, description="steps of the sparse phase")
    density: float = Field(0.08, gt=0, le=1, description="fraction of the body's parameters the sparse phase updates")
    alpha_ce: float = Field(1.0, ge=0, description="weight of the soft cross-entropy on the task teacher's logits")
    alpha_hidden: float = Field(1.0, ge=0, description="weight of the hidden-state MSE against the task teacher")
    alpha_attn: float = Field(1.0, ge=0, description="weight of the attention MSE against the task teacher")
    alpha_task: float = Field(0.0, ge=0, description="weight of the gold-label loss (0: off, as published)")
    temperature: float = Field(2.0, gt=0, description="softens both models' logits in the soft cross-entropy")
    target_text_ratio: float = Field(
        0.5,
        ge=0,
        lt=1,
        description="share of steps that distil the task teacher's predictions on unlabelled target-language "
        "text (the phase-1 text) instead of labelled source examples; 0: source only, as published. "
        "Meant for single-text tasks: set 0 for sentence-pair tasks such as NLI",
    )
    freeze_layer_norm: bool | None = Field(
        None, description="keep layer norms fixed; default: fixed for token and parse tasks (as the reference), trained for sequence tasks"
    )


def resolve_phase2(config: Phase2Config, kind: TaskKind) -> Phase2Config:
    """`config` with its task-dependent defaults filled in: what phase 2 runs with."""
    if config.freeze_layer_norm is None:
        return config.model_copy(update={"freeze_layer_norm": kind != "sequence"})
    return config


class PairSettings(StrictModel):
    """What a single run and a sweep both set: the teacher, the task, the phase-1 text, and the
    settings of each step (the sections a step's key reads)."""

    teacher: str = Field(
        "builtin:multilingual-e5-small", description="a hub id, a local model directory, or the built-in offline e5"
    )
    trust_remote_code: bool = Field(False, description="let the teacher run its own code from the hub")
    task: TaskSpec = Field(TaskSpec(builtin="chatterbot"), description="exactly one of builtin, hub, files, ud")
    source_lang: str = Field("en", description="language of the labelled task data")
    corpora: dict[str, CorpusSpec] = Field(
        default_factory=dict, description="phase-1 text per language; the built-in task has its own"
    )
    task_teacher: TaskTeacherConfig = TaskTeacherConfig()
    vocabulary: VocabularyConfig = VocabularyConfig()
    student: StudentConfig = StudentConfig()
    phase1: Phase1Config = Phase1Config()
    phase2: Phase2Config = Phase2Config()
    # 1 GiB: a student with its checkpoint (model, best weights, optimiser state) is a few hundred MB
    # for a base-size teacher; a step that starts with less fails part-way, after its work.
    min_free_disk_mb: int = Field(
        1024, ge=0, description="free space a step needs on its output's filesystem to start; 0: no check"
    )


# Where and whether a run writes, not what it computes: results made under other values compare.
PLACEMENT_FIELDS = frozenset({"output_dir", "min_free_disk_mb"})


class RunConfig(PairSettings):
    """One language pair, end to end, without Ray (`python -m bistil_ray.run`)."""

    target_lang: str
    output_dir: Path | None = Field(None, description="default: runs/<task>; the task teacher is shared by every pair run into it")

    @model_validator(mode="after")
    def _distinct_languages(self) -> "RunConfig":
        if self.source_lang == self.target_lang:
            raise ValueError(f"target_lang equals source_lang ({self.source_lang!r})")
        return self


# --- loading YAML into these models with errors a person can act on --------------------------------

ModelT = TypeVar("ModelT", bound=BaseModel)


# The run settings a sweep may search, by the name its search_space and results table give each:
# name -> (section of the run config, field in that section).
DIMENSIONS: dict[str, tuple[str, str]] = {
    "teacher_method": ("task_teacher", "method"),
    "student_layers": ("student", "layers"),
    "density": ("phase2", "density"),
    "alpha_hidden": ("phase2", "alpha_hidden"),
    "alpha_attn": ("phase2", "alpha_attn"),
    "alpha_ce": ("phase2", "alpha_ce"),
    "temperature": ("phase2", "temperature"),
    "lr": ("phase2", "lr"),
    "phase1_lr": ("phase1", "lr"),
    "vocab_threshold": ("vocabulary", "threshold"),
}


def dimension_field(name: str) -> FieldInfo:
    """The run config's field that dimension `name` sets."""
    section, field = DIMENSIONS[name]
    return RunConfig.model_fields[section].annotation.model_fields[field]


def _valid_keys(model: type[BaseModel], location: tuple[Any, ...]) -> list[str]:
    """The field names valid at `location` (the parent of the offending key)."""
    current: Any = model
    for part in location:
        if isinstance(part, int) or current is None:
            continue
        field = getattr(current, "model_fields", {}).get(part)
        if field is None:
            return []
        current = _model_in(field.annotation)
    return list(getattr(current, "model_fields", {}))


def _model_in(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for argument in getattr(annotation, "__args__", ()):
        found = _model_in(argument)
        if found is not None:
            return found
    return None


def first_problem(error: ValidationError, model: type[BaseModel]) -> tuple[str, str]:
    """The first problem of `error`: the dotted path of the field, and what is wrong with it."""
    first = error.errors()[0]
    location = tuple(part for part in first["loc"] if not (isinstance(part, str) and part.startswith("function-")))
    path = ".".join(str(part) for part in location) or "(top level)"
    if first["type"] == "extra_forbidden":
        key = str(location[-1])
        close = difflib.get_close_matches(key, _valid_keys(model, location[:-1]), n=1)
        return path, "unknown key" + (f"; did you mean {close[0]!r}?" if close else "")
    return path, first["msg"].removeprefix("Value error, ")


def describe_validation_error(error: ValidationError, model: type[BaseModel], source: str) -> str:
    """The first problem as one line: `source: path.to.field: what is wrong`."""
    path, problem = first_problem(error, model)
    return f"{source}: {path}: {problem}"


def validate(model: type[ModelT], data: Any, source: str) -> ModelT:
    try:
        return model.model_validate(data)
    except ValidationError as error:
        raise UserInputError(describe_validation_error(error, model, source)) from None


class StrictYamlLoader(yaml.SafeLoader):
    """YAML as a person writing a config means it: a key given twice is an error (PyYAML keeps the
    last one silently), and only true/false are booleans (YAML 1.1 also reads yes, no, on and off as
    booleans, so `steps: yes` would be a count of 1 and the language code `no` a boolean)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"{key!r} is given twice in one mapping", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


StrictYamlLoader.yaml_implicit_resolvers = {
    first: [(tag, pattern) for tag, pattern in resolvers if tag != "tag:yaml.org,2002:bool"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
StrictYamlLoader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)


def parse_yaml(text: str, where: str) -> Any:
    """`text` parsed by `StrictYamlLoader`; any YAML error becomes one line naming `where`."""
    try:
        return yaml.load(text, Loader=StrictYamlLoader)  # noqa: S506 (a SafeLoader: no Python objects)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        line = f" at line {mark.line + 1}" if mark else ""
        problem = getattr(error, "problem", None) or type(error).__name__
        raise UserInputError(f"{where}: malformed YAML{line}: {problem}") from None


def read_yaml(path: Path) -> Any:
    data = parse_yaml(read_text(path), str(path))
    if not isinstance(data, dict):
        raise UserInputError(f"{path}: expected a mapping at the top level")
    return data


def set_override(data: dict, assignment: str) -> None:
    """Apply `a.b.c=value` (value parsed as YAML) to a nested dict in place."""
    key, sep, raw = assignment.partition("=")
    if not sep or not key:
        raise UserInputError(f"--set {assignment!r}: expected key=value")
    parts = key.split(".")
    node = data
    for part in parts[:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise UserInputError(f"--set {key}: {part} is not a mapping")
    node[parts[-1]] = parse_yaml(raw, f"--set {key}")


def expand_user(path: str | Path, where: str) -> Path:
    """`path` with `~` or `~user` expanded; an unknown user is an input error named by `where`."""
    try:
        return Path(path).expanduser()
    except RuntimeError:
        user = str(path).split("/", 1)[0]
        raise UserInputError(f"{where}: {user} is not a user on this machine") from None


def load_config(model: type[ModelT], path: Path, overrides: list[str] = ()) -> ModelT:
    """`path` with each `--set KEY=VALUE` applied; a problem with a value a `--set` gave is named by
    that flag, any other by the file."""
    data = read_yaml(path)
    for assignment in overrides:
        set_override(data, assignment)
    try:
        return model.model_validate(data)
    except ValidationError as error:
        field, problem = first_problem(error, model)
        for key in reversed([assignment.partition("=")[0] for assignment in overrides]):
            if field == key or field.startswith(key + "."):
                raise UserInputError(f"--set {field}: {problem}") from None
        raise UserInputError(f"{path}: {field}: {problem}") from None
