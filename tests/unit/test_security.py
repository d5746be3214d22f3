"""Security defaults: weights only as safetensors and no unpickling of what a user can hand us, remote
code only when the configuration asks for it, the dashboard on 127.0.0.1 unless configured, a cluster
that opens no port to the world but SSH, and no secret from the environment in anything written.

The source checks read the package's syntax trees, so a new call site is checked the day it is added.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import json
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

import bistil_ray
from bistil_ray.config import HubCorpusSpec, HubTaskSpec, RunConfig
from bistil_ray.orchestration.sweep_config import SweepConfig
from bistil_ray.sweep import main
from sweep_fakes import fake_pipeline
from tiny_students import LABELS, bert_student

PACKAGE = Path(bistil_ray.__file__).resolve().parent
REPO = PACKAGE.parent

# The one unpickling call: Tune's checkpoint of the searcher (the Optuna studies, which only pickle),
# written by the sweep itself into its own storage. Tune's own experiment state is pickled the same way.
ALLOWED_UNPICKLING = {("orchestration/tuning.py", "restore")}
# Environment variables the package reads, one by one; it never reads the environment as a whole.
# HF_HUB_OFFLINE is written, not read: offline mode for the Ray workers, once the hub proved unreachable.
# RAY_AIR_NEW_OUTPUT is set for the sweep's own process: Tune's quieter output engine.
ALLOWED_ENVIRONMENT = {"BISTIL_RAY_CACHE", "BISTIL_RAY_UD", "LOCAL_RANK", "RAY_AUTH_MODE", "HF_HUB_OFFLINE", "RAY_AIR_NEW_OUTPUT"}
# The one read of a variable the user names: the serving bearer token (`--token-env NAME`), so that
# the token itself is in no command line and no Serve config.
ALLOWED_NAMED_READS = {("serve.py", "settings.token_env")}
SAFE_YAML_LOADERS = tuple(
    getattr(yaml, name) for name in ("SafeLoader", "CSafeLoader", "BaseLoader", "CBaseLoader") if hasattr(yaml, name)
)


# --- reading the package's source --------------------------------------------------------------------


def dotted(node: ast.expr) -> str:
    """`torch.load`, `model.save_pretrained`, ... for a call's function; '' when it is not a plain name."""
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        base = dotted(node.value)
        return f"{base}.{node.attr}" if base else node.attr
    return ""


class Sites(ast.NodeVisitor):
    """Every call in one module with the function it is in, and every node's parent."""

    def __init__(self, module: str):
        self.module = module
        self.function = "<module>"
        self.calls: list[tuple[str, str, ast.Call]] = []
        self.parents: dict[ast.AST, ast.AST] = {}

    def generic_visit(self, node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            self.parents[child] = node
        super().generic_visit(node)

    def visit_FunctionDef(self, node: ast.FunctionDef) -> None:
        outer, self.function = self.function, node.name
        self.generic_visit(node)
        self.function = outer

    visit_AsyncFunctionDef = visit_FunctionDef

    def visit_Call(self, node: ast.Call) -> None:
        self.calls.append((self.module, self.function, node))
        self.generic_visit(node)


def package_sites() -> list[Sites]:
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        sites = Sites(str(path.relative_to(PACKAGE)))
        sites.visit(ast.parse(path.read_text(encoding="utf-8")))
        found.append(sites)
    return found


SITES = package_sites()
CALLS = [(module, function, call) for sites in SITES for module, function, call in sites.calls]


def keyword(call: ast.Call, name: str) -> ast.expr | None:
    return next((item.value for item in call.keywords if item.arg == name), None)


def is_true(node: ast.expr | None) -> bool:
    return isinstance(node, ast.Constant) and node.value is True


def where(module: str, call: ast.Call) -> str:
    return f"bistil_ray/{module}:{call.lineno}"


# --- weights and pickles -----------------------------------------------------------------------------


def test_torch_load_is_always_weights_only():
    loads = [(module, call) for module, _, call in CALLS if dotted(call.func) == "torch.load"]
    assert loads, "the optimiser state is read with torch.load"
    assert [where(module, call) for module, call in loads if not is_true(keyword(call, "weights_only"))] == []


def test_nothing_is_unpickled_but_the_searcher_checkpoint():
    unpicklers = {"load", "loads", "Unpickler"}
    sites = {
        (module, function)
        for module, function, call in CALLS
        if dotted(call.func).split(".")[0] in {"pickle", "cloudpickle", "dill", "joblib"}
        and dotted(call.func).split(".")[-1] in unpicklers
    }
    assert sites == ALLOWED_UNPICKLING


def test_yaml_is_read_with_safe_loaders_only():
    for module, _, call in CALLS:
        name = dotted(call.func)
        assert name not in {"yaml.unsafe_load", "yaml.full_load", "yaml.load_all"}, where(module, call)
        if name == "yaml.load":
            loader = keyword(call, "Loader")
            assert isinstance(loader, ast.Name), where(module, call)
            package_module = importlib.import_module("bistil_ray." + module.removesuffix(".py").replace("/", "."))
            assert issubclass(getattr(package_module, loader.id), SAFE_YAML_LOADERS), where(module, call)


def test_models_are_saved_and_read_as_safetensors():
    saves = [(module, call) for module, _, call in CALLS if dotted(call.func).endswith(".save_pretrained")]
    assert saves
    unsafe = [where(module, call) for module, call in saves if keyword(call, "safe_serialization") is not None]
    assert unsafe == []  # the default, safetensors
    # `X.from_pretrained` and `MODEL_CLASSES[kind].from_pretrained` alike: the receiver of the latter is
    # no plain name, so its dotted name is the bare method.
    model_reads = [
        (module, call)
        for module, _, call in CALLS
        if dotted(call.func).split(".")[-1] == "from_pretrained"
        and not ["", *dotted(call.func).split(".")][-2].endswith(("Tokenizer", "Config"))
    ]
    assert len(model_reads) >= 5
    assert [where(module, call) for module, call in model_reads if not is_true(keyword(call, "use_safetensors"))] == []


# --- remote code -------------------------------------------------------------------------------------


def from_configuration(value: ast.expr) -> bool:
    """`run.trust_remote_code`, `spec.trust_remote_code`, a parameter `trust_remote_code`: a setting."""
    return isinstance(value, (ast.Name, ast.Attribute)) and dotted(value).endswith("trust_remote_code")


def test_remote_code_runs_only_when_the_configuration_says_so():
    for model in (RunConfig, SweepConfig, HubTaskSpec, HubCorpusSpec):
        assert model.model_fields["trust_remote_code"].default is False, model.__name__
    passed = [(module, call, keyword(call, "trust_remote_code")) for module, _, call in CALLS]
    passed = [(module, call, value) for module, call, value in passed if value is not None]
    assert passed
    assert [where(module, call) for module, call, value in passed if not from_configuration(value)] == []
    for sites in SITES:
        for node, parent in sites.parents.items():
            if not isinstance(node, ast.Dict):
                continue
            for key, value in zip(node.keys, node.values):
                if isinstance(key, ast.Constant) and key.value == "trust_remote_code" and not from_configuration(value):
                    # `{"trust_remote_code": True} if trust_remote_code else {}`
                    conditional = isinstance(parent, ast.IfExp) and from_configuration(parent.test)
                    assert conditional, f"bistil_ray/{sites.module}:{node.lineno}"


# --- what reads the environment -------------------------------------------------------------------


def environment_reads(sites: Sites) -> list[tuple[ast.AST, ast.expr | None]]:
    """Each use of `os.environ` or `os.getenv`, with the variable name it reads: None when the use is
    not `os.environ.get(NAME, ...)`, `os.environ[NAME]` or `os.getenv(NAME, ...)` (a copy, `items()`,
    `**os.environ`, `dict(os.environ)` would hand on the whole environment)."""
    reads = []
    for node, parent in sites.parents.items():
        name = dotted(node) if isinstance(node, ast.Attribute) else ""
        if name == "os.getenv":
            reads.append((node, parent.args[0] if isinstance(parent, ast.Call) and parent.func is node else None))
        elif name == "os.environ":
            call = sites.parents.get(parent)
            if isinstance(parent, ast.Subscript):
                reads.append((node, parent.slice))
            elif isinstance(parent, ast.Attribute) and parent.attr == "get" and isinstance(call, ast.Call):
                reads.append((node, call.args[0]))
            else:
                reads.append((node, None))
    return reads


def test_the_environment_is_read_one_allowed_variable_at_a_time():
    reads = [(sites.module, node, name) for sites in SITES for node, name in environment_reads(sites)]
    assert reads
    for module, node, name in reads:
        allowed = isinstance(name, ast.Constant) and name.value in ALLOWED_ENVIRONMENT
        named = name is not None and (module, ast.unparse(name)) in ALLOWED_NAMED_READS
        assert allowed or named, f"bistil_ray/{module}:{node.lineno}"


# --- services ------------------------------------------------------------------------------------------


def test_the_dashboard_binds_localhost_unless_configured(tmp_path, monkeypatch):
    from bistil_ray.orchestration import driver
    from bistil_ray.orchestration.sweep_config import ResourcesConfig

    assert inspect.signature(driver.run_sweep).parameters["dashboard_host"].default == "127.0.0.1"
    chosen = []

    class Started(Exception):
        pass

    def run_sweep(*args, dashboard_host: str, **kwargs):
        chosen.append(dashboard_host)
        raise Started

    monkeypatch.setattr(driver, "run_sweep", run_sweep)
    config = tmp_path / "sweep.yaml"
    config.write_text(yaml.safe_dump({"name": "local", "target_langs": ["de"]}))
    for extra in ([], ["--dashboard-host", "0.0.0.0"]):
        with pytest.raises(Started):
            main([str(config), "--storage", str(tmp_path / "storage"), *extra])
    assert chosen == ["127.0.0.1", "0.0.0.0"]

    init_arguments = {}

    def init(**kwargs):
        init_arguments.update(kwargs)
        return SimpleNamespace(dashboard_url="127.0.0.1:8265")

    monkeypatch.setattr(driver.ray, "init", init)
    assert driver.start_ray(ResourcesConfig(), None, "127.0.0.1") == "http://127.0.0.1:8265"
    assert init_arguments["dashboard_host"] == "127.0.0.1"


def ray_default_ssh_rules() -> list[dict]:
    """The rules Ray's AWS launcher opens to the world in a security group it creates, read from
    its source (importing it needs boto3): its other default admits only the cluster's own group."""
    import ray.autoscaler._private.aws as aws

    tree = ast.parse((Path(aws.__file__).parent / "config.py").read_text())
    functions = {node.name: node for node in ast.walk(tree) if isinstance(node, ast.FunctionDef)}
    intracluster = ast.unparse(functions["_create_default_intracluster_inbound_rules"])
    assert "IpRanges" not in intracluster and "Cidr" not in intracluster
    ssh = functions["_create_default_ssh_inbound_rules"].body[-1]
    assert isinstance(ssh, ast.Return)
    return ast.literal_eval(ssh.value)


def open_to_the_world(rule: dict) -> bool:
    ipv4 = any(block.get("CidrIp") == "0.0.0.0/0" for block in rule.get("IpRanges", []))
    return ipv4 or any(block.get("CidrIpv6") == "::/0" for block in rule.get("Ipv6Ranges", []))


CLUSTER_FILES = [REPO / "cluster.yaml", REPO / "examples" / "cluster-local.yaml"]


@pytest.mark.parametrize("path", CLUSTER_FILES, ids=lambda path: path.name)
def test_cluster_opens_no_port_to_the_world_but_ssh(path):
    config = yaml.safe_load(path.read_text())
    for node_type in config.get("available_node_types", {}).values():
        # A security group of the user's choosing could open anything: the defaults are what is checked.
        assert not {"SecurityGroupIds", "NetworkInterfaces"} & set(node_type["node_config"])
    commands = [command for key, value in config.items() if key.endswith("_commands") for command in value]
    assert commands and not any("0.0.0.0" in command for command in commands)
    if config["provider"]["type"] == "aws":
        # `ray up` adds the config's own rules (provider.security_group) to its defaults.
        extra = config["provider"].get("security_group", {}).get("IpPermissions", [])
        world = [rule for rule in [*ray_default_ssh_rules(), *extra] if open_to_the_world(rule)]
        assert [(rule["IpProtocol"], rule["FromPort"], rule["ToPort"]) for rule in world] == [("tcp", 22, 22)]


# --- secrets -------------------------------------------------------------------------------------------

SECRETS = {
    "AWS_ACCESS_KEY_ID": "AKIASEKRETKEYID12345",
    "AWS_SECRET_ACCESS_KEY": "sekret-aws-access-key-123",
    "RAY_AUTH_TOKEN": "sekret-ray-auth-token-123",
    "HF_TOKEN": "hf_sekretHubToken123",
}


def test_no_secret_from_the_environment_reaches_what_the_package_writes(tmp_path, monkeypatch, capsys):
    from bistil_ray.method.export import write_student_directory
    from bistil_ray.model_card import write_model_card
    from bistil_ray.artifacts import ArtifactStore, store_under
    from bistil_ray.orchestration.paths import SweepPaths
    from bistil_ray.orchestration.results import ResultsWriter
    from bistil_ray.orchestration.sweep_config import load_sweep
    from bistil_ray.orchestration.train_runner import ray_train_env_vars
    from bistil_ray.executor import LocalBackend, StepGraph
    from bistil_ray.steps import VOCABULARY, Fingerprints

    for name, value in SECRETS.items():
        monkeypatch.setenv(name, value)
    config = tmp_path / "sweep.yaml"
    config.write_text(yaml.safe_dump({"name": "secrets", "target_langs": ["de"]}))
    sweep = load_sweep(config)
    paths = SweepPaths(tmp_path / "storage", sweep.name)

    # What the driver writes: the configuration snapshot, the environment it gives Ray, the tables.
    paths.experiment.mkdir(parents=True)
    paths.config_snapshot.write_text(sweep.with_absolute_paths().model_dump_json(indent=1))
    assert set(ray_train_env_vars(sweep.resources)) == {
        "RAY_TRAIN_WORKER_GROUP_START_TIMEOUT_S",
        "RAY_TRAIN_HEALTH_CHECK_INTERVAL_S",
    }
    writer = ResultsWriter(paths, {"sweep": sweep.name, "teacher": sweep.teacher}, "student_latency_ms")
    writer.setup()
    result = {"objective_score": 0.8, "student_latency_ms": 2.0, "completed": True}
    trial = SimpleNamespace(trial_id="t1", config={"target_lang": "de"}, last_result=result, get_error=lambda: None)
    writer.on_trial_complete(0, [], trial)
    failed = SimpleNamespace(
        trial_id="t2", config={"target_lang": "de"}, last_result={}, get_error=lambda: "RuntimeError: boom"
    )
    writer.on_trial_error(0, [], failed)

    # What trials and single runs write: artifacts with their manifests, step records, a student.
    store = ArtifactStore(paths.artifacts)
    store.get_or_build("vocabulary", {"teacher": sweep.teacher}, lambda out: {"vocab_size": 10})
    run = RunConfig(target_lang="de")
    prints = Fingerprints(teacher="t", task="k", corpora={"en": "c-en", "de": "c-de"}, targets={"de": "t-de"})
    graph = StepGraph(fake_pipeline(), run, prints, store_under(tmp_path / "run"), LocalBackend(SimpleNamespace(run=run)))
    graph.shared(VOCABULARY)
    student = tmp_path / "student"
    student.mkdir()
    model, tokenizer = bert_student()
    write_student_directory(model, tokenizer, student, label_names=LABELS, extra_metadata={"teacher": sweep.teacher})
    write_model_card(student, run, {"target_score": 0.5, "source_score": 0.6, "metric": "accuracy"})

    written = [path for path in tmp_path.rglob("*") if path.is_file()]
    assert {path.name for path in written} >= {"sweep.json", "trials.parquet", "bistil_artifact.json", "README.md"}
    output = capsys.readouterr()
    for path in written:
        content = path.read_bytes()
        assert not [name for name, value in SECRETS.items() if value.encode() in content], path
    assert not [name for name, value in SECRETS.items() if value in output.out + output.err]
    assert json.loads(paths.config_snapshot.read_text())["name"] == "secrets"
