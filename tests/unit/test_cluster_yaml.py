"""cluster.yaml and the on-premises example pass the checks `ray up` runs first (Ray's schema and
config preparation, offline), and hold what a sweep needs; a multi-machine cluster refuses storage
that some machine cannot see."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path

import jsonschema
import pytest
import yaml
from ray.autoscaler._private.util import prepare_config, validate_config

from bistil_ray.errors import UserInputError
from bistil_ray.orchestration import driver
from bistil_ray.orchestration.paths import SweepPaths
from bistil_ray.orchestration.train_runner import TRIAL_DRIVER

REPO = Path(__file__).resolve().parents[2]
CLUSTER_FILES = [REPO / "cluster.yaml", REPO / "examples" / "cluster-local.yaml"]


def ray_up_checks(config: dict) -> dict:
    """What `ray up` does before it contacts a provider: fill in defaults, validate against the schema."""
    prepared = prepare_config(copy.deepcopy(config))
    validate_config(prepared)
    return prepared


@pytest.mark.parametrize("path", CLUSTER_FILES, ids=lambda path: path.name)
def test_passes_rays_own_checks_and_every_command_is_one_string(path):
    config = ray_up_checks(yaml.safe_load(path.read_text()))
    for key in ("initialization_commands", "setup_commands", "head_start_ray_commands", "worker_start_ray_commands"):
        assert all(isinstance(command, str) for command in config[key]), key  # an unquoted ': ' makes a mapping
    head = config["head_start_ray_commands"]
    assert any("ray start --head" in command and "--dashboard-host=127.0.0.1" in command for command in head)
    assert config["file_mounts"] == {"~/bistil_ray": "."}
    assert any("pip install" in command and "~/bistil_ray" in command for command in config["setup_commands"])


def test_rays_checks_catch_a_misspelt_key():
    config = yaml.safe_load(CLUSTER_FILES[0].read_text())
    config["available_node_types"]["gpu_worker"]["min_worker"] = 1
    with pytest.raises(jsonschema.ValidationError, match="min_worker"):
        ray_up_checks(config)


def test_aws_cluster_has_a_cpu_head_with_trial_slots_and_an_autoscaled_gpu_worker_type():
    config = ray_up_checks(yaml.safe_load(CLUSTER_FILES[0].read_text()))
    assert config["provider"]["type"] == "aws"
    types = config["available_node_types"]
    head = types[config["head_node_type"]]
    assert head["resources"].get("GPU", 0) == 0 and head["resources"][TRIAL_DRIVER] >= 1
    assert not head["node_config"]["InstanceType"].startswith(("g", "p"))  # AWS GPU families
    workers = [spec for name, spec in types.items() if name != config["head_node_type"]]
    assert len(workers) == 1 and workers[0]["node_config"]["InstanceType"].startswith("g")
    assert 1 <= workers[0]["min_workers"] <= workers[0]["max_workers"] <= config["max_workers"]
    mount = "/mnt/efs"
    assert any("mount -t nfs4" in command and mount in command for command in config["initialization_commands"])
    assert f"-v {mount}:{mount}" in config["docker"]["run_options"]


def test_on_premises_head_declares_the_trial_slots_in_its_start_command():
    config = ray_up_checks(yaml.safe_load(CLUSTER_FILES[1].read_text()))
    assert config["provider"]["type"] == "local"
    start = next(command for command in config["head_start_ray_commands"] if "ray start --head" in command)
    resources = json.loads(re.search(r"--resources='([^']*)'", start).group(1))
    assert resources[TRIAL_DRIVER] >= 1


def test_storage_some_machine_cannot_see_is_refused_with_its_address(tmp_path, monkeypatch):
    seeing = {"10.0.0.10": True, "10.0.0.11": False}  # the second machine has its own disk

    def readers(probe: Path) -> dict[str, str | None]:
        return {host: probe.read_text() if sees else None for host, sees in seeing.items()}

    monkeypatch.setattr(driver, "storage_readers", readers)
    with pytest.raises(UserInputError, match=r"--storage .*not seen from node 10\.0\.0\.11.*every node mounts"):
        driver.check_storage_shared(SweepPaths(tmp_path, "s"))
    assert list(tmp_path.iterdir()) == []  # the probe is gone

    seeing["10.0.0.11"] = True
    driver.check_storage_shared(SweepPaths(tmp_path, "s"))
    assert list(tmp_path.iterdir()) == []
