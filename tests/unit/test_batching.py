import pytest
import torch

from bistil_ray.method.batching import BucketedBatches, collate, fixed_batches


def examples(count: int, seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    lengths = torch.randint(3, 40, (count,), generator=generator).tolist()
    return [{"input_ids": list(range(1, length + 1)), "labels": index % 3} for index, length in enumerate(lengths)]


def test_collate_pads_dynamically_and_masks():
    batch = collate([{"input_ids": [5, 6, 7]}, {"input_ids": [8]}], pad_token_id=0)
    assert batch["input_ids"].tolist() == [[5, 6, 7], [8, 0, 0]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [1, 0, 0]]


def test_batch_of_a_step_is_a_pure_function_of_seed_and_step():
    data = examples(500)
    first, second = BucketedBatches(data, 16, 0, seed=3), BucketedBatches(data, 16, 0, seed=3)
    for step in (0, 7, 31, 45, 100):  # 31 steps per epoch: 45 and 100 lie in later epochs
        assert torch.equal(first.batch(step)["input_ids"], second.batch(step)["input_ids"])
    assert not torch.equal(first.batch(0)["labels"], BucketedBatches(data, 16, 0, seed=4).batch(0)["labels"])


def test_bucketing_reduces_padding_against_random_batches():
    data = examples(800)
    bucketed = BucketedBatches(data, 16, 0, seed=0)
    padded = sum(bucketed.batch(step)["input_ids"].numel() for step in range(bucketed.steps_per_epoch))
    real = sum(int(bucketed.batch(step)["attention_mask"].sum()) for step in range(bucketed.steps_per_epoch))
    unbucketed = BucketedBatches(data, 16, 0, seed=0, bucket_size=1)
    padded_random = sum(unbucketed.batch(step)["input_ids"].numel() for step in range(unbucketed.steps_per_epoch))
    assert padded < 0.75 * padded_random
    assert real / padded > 0.8


def test_each_epoch_covers_distinct_examples_and_ranks_are_disjoint():
    data = [{"input_ids": [1] * (1 + index % 20), "labels": index} for index in range(256)]
    ranks = [BucketedBatches(data, 8, 0, seed=1, rank=rank, world_size=2) for rank in range(2)]
    assert ranks[0].steps_per_epoch == ranks[1].steps_per_epoch == 16
    seen = [set(), set()]
    for rank, stream in enumerate(ranks):
        for step in range(stream.steps_per_epoch):
            seen[rank].update(stream.batch(step)["labels"].tolist())
    assert not seen[0] & seen[1]
    assert len(seen[0]) == len(seen[1]) == 128


def test_too_few_examples_for_one_batch_is_an_error():
    with pytest.raises(ValueError, match="cannot fill one batch"):
        BucketedBatches(examples(5), 8, 0)


def test_fixed_batches_cover_every_example_once():
    data = examples(37)
    batches = fixed_batches(data, 8, 0)
    assert sum(len(batch["labels"]) for batch in batches) == 37
    assert sorted(label for batch in batches for label in batch["labels"].tolist()) == sorted(e["labels"] for e in data)
