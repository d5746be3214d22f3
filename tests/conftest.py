"""Fixtures shared by the Ray test modules."""

from __future__ import annotations

import pytest


@pytest.fixture
def cluster():
    """A local Ray cluster of one node: 2 CPUs and 2 trial slots, like the sweep's own on this machine."""
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 2, "resources": {"trial_driver": 2}})
    yield cluster
    cluster.shutdown()
