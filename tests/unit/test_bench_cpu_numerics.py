"""bench/cpu_numerics: a build is deterministic in one process, and the comparison reads it right."""

from __future__ import annotations

from bench.cpu_numerics import compared, trained_weights_sha256


def test_a_seeded_build_repeats_bit_for_bit_and_precision_changes_the_weights():
    assert trained_weights_sha256("fp32", 1) == trained_weights_sha256("fp32", 1)
    assert trained_weights_sha256("bf16", 1) != trained_weights_sha256("fp32", 1)


def test_each_cap_is_compared_with_the_uncapped_build_of_its_precision():
    digests = {"this CPU": {"bf16": "a", "fp32": "b"}, "AVX2": {"bf16": "c", "fp32": "b"}}
    assert compared(digests) == {"bf16": {"this CPU": True, "AVX2": False}, "fp32": {"this CPU": True, "AVX2": True}}
