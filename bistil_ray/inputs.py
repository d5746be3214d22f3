"""What a run reads, resolved once: the teacher's local folder, the task data and the phase-1 text.

The step graph (`steps`) types its builds by `Inputs`; the method's steps (`pipeline`) read them.
"""

from __future__ import annotations

from dataclasses import dataclass

from bistil_ray.assets.teachers import resolve_teacher
from bistil_ray.config import RunConfig
from bistil_ray.data.corpora import load_corpus
from bistil_ray.data.tasks import TaskData, load_task


@dataclass
class Inputs:
    """Everything a run reads: the resolved teacher, the task data and the phase-1 text."""

    run: RunConfig
    teacher_path: str
    task: TaskData
    source_text: list[str]
    target_text: list[str]

    @property
    def target_test(self):
        return self.task.target_test[self.run.target_lang]

    @property
    def target_validation(self):
        """The target language's validation set, or None where the task has none."""
        return self.task.target_validation.get(self.run.target_lang)


def resolve_inputs(run: RunConfig) -> Inputs:
    teacher_path = resolve_teacher(run.teacher, trust_remote_code=run.trust_remote_code)
    task = load_task(run.task, run.source_lang, [run.target_lang])
    return Inputs(
        run=run,
        teacher_path=teacher_path,
        task=task,
        source_text=load_corpus(run.task, run.corpora, run.source_lang),
        target_text=load_corpus(run.task, run.corpora, run.target_lang),
    )
