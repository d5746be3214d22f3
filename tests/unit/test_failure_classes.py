"""Which failures a sweep retries: the classification of errors into those a retry can change
(process deaths, out of memory) and those it cannot (the trial's own code, shape mismatches)."""

from __future__ import annotations


from bistil_ray.orchestration.failures import is_deterministic, one_line


def test_classification_of_errors():
    assert is_deterministic(KeyError("x")) and is_deterministic(ValueError("bad"))
    assert is_deterministic(RuntimeError("size mismatch for bert.embeddings.word_embeddings.weight"))
    assert not is_deterministic(RuntimeError("[gloo] Connection closed by peer"))
    assert not is_deterministic(MemoryError()) and not is_deterministic(OSError(28, "No space left on device"))
    import ray.exceptions

    assert not is_deterministic(ray.exceptions.WorkerCrashedError())
    assert one_line(KeyError("target_score")) == "KeyError: 'target_score'"
