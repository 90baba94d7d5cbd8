"""Offline checks of the cluster-launcher YAMLs (clusters/*.yaml): no cloud account, no network.

Ray's own validation, `validate_config(prepare_config(...))`, plus what Ray does not check:
per-type min_workers <= max_workers, explicit integer resources on every node type, GPU types
that scale from 0, the image's Ray version, a current AMI / boot image, token auth, a setup that
installs Flywheel. A new file is checked without touching this module; each check is a function
returning the problems it finds, so the tests also run it on broken copies made in memory.
"""

from __future__ import annotations

import copy
from pathlib import Path

import jsonschema
import pytest
import yaml

from tests.clusters.common import (
    AMI_ID,
    CLUSTERS,
    SSM_AMI,
    image_problems,
    pinned_ray_version,
)

tomllib = pytest.importorskip("tomllib", reason="reading pyproject.toml needs Python >= 3.11")

# ---------------------------------------------------------------------------------------------
# Cluster-launcher YAMLs


def launcher_files() -> list[Path]:
    return sorted(CLUSTERS.glob("*.yaml"))


def ray_validation_problems(config: dict) -> list[str]:
    """Ray's own check of a launcher config (the schema in ray/autoscaler/ray-schema.json)."""
    from ray.autoscaler._private.util import prepare_config, validate_config

    try:
        validate_config(prepare_config(copy.deepcopy(config)))
    except (jsonschema.ValidationError, ValueError, RuntimeError, KeyError) as e:
        return [f"Ray's validate_config: {str(e).splitlines()[0]}"]
    return []


def launcher_problems(config: dict, pinned: str) -> list[str]:
    """What Ray's validation does not check in a launcher config."""
    problems = []
    types = config.get("available_node_types") or {}
    head = config.get("head_node_type")
    if head not in types:
        problems.append(f"head_node_type {head!r} is not one of available_node_types")
    if not config.get("idle_timeout_minutes", 0) > 0:
        problems.append("idle_timeout_minutes: set it, so idle workers go away")
    provider = config.get("provider", {}).get("type")
    gpu_types, spot_types = [], []
    for name, node in types.items():
        where = f"available_node_types.{name}"
        resources = node.get("resources")
        if not resources or "CPU" not in resources:
            problems.append(f"{where}.resources: give CPU (and GPU) explicitly")
        for key, value in (resources or {}).items():
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                problems.append(f"{where}.resources.{key}: {value!r} is not a whole number")
        low, high = node.get("min_workers", 0), node.get("max_workers")
        if name != head and high is None:
            problems.append(f"{where}.max_workers: set it (Ray would take the global maximum)")
        if high is not None and low > high:
            problems.append(f"{where}: min_workers {low} > max_workers {high}")
        gpus = (resources or {}).get("GPU", 0)
        node_config = node.get("node_config") or {}
        if name == head:
            if gpus:
                problems.append(f"{where}: the head is meant to be a CPU node")
        elif gpus:
            gpu_types.append(name)
            if low != 0:
                problems.append(f"{where}: GPU workers scale from 0 (min_workers {low})")
        if _is_spot(provider, node_config):
            spot_types.append(name)
        if provider == "aws":
            image_id = str(node_config.get("ImageId", ""))
            if not (AMI_ID.fullmatch(image_id) or SSM_AMI.fullmatch(image_id)):
                problems.append(
                    f"{where}.node_config.ImageId {image_id!r}: an AMI id or a resolve:ssm: "
                    "Deep Learning AMI parameter (Ray's default AMI is Ubuntu 18.04)"
                )
            elif image_id in _ray_default_amis():
                problems.append(f"{where}.node_config.ImageId {image_id}: Ray's Ubuntu 18.04 AMI")
        if provider == "gcp":
            problems += _gcp_node_problems(where, node_config, gpus)
    if not gpu_types:
        problems.append("no GPU worker type")
    if not spot_types:
        problems.append("no spot/preemptible worker type")
    docker = config.get("docker") or {}
    expected = f"rayproject/ray:{pinned}-py311-gpu"
    if docker.get("image") != expected:
        problems.append(f"docker.image {docker.get('image')!r}: should be {expected}")
    for key in ("head_image", "worker_image"):
        if key in docker:
            problems += image_problems(docker[key], f"docker.{key}", pinned)
    for name, node in types.items():
        if "worker_image" in (node.get("docker") or {}):
            where = f"available_node_types.{name}.docker.worker_image"
            problems += image_problems(node["docker"]["worker_image"], where, pinned)
    problems += _token_auth_problems(config)
    problems += _setup_problems(config)
    return problems


def _is_spot(provider: str | None, node_config: dict) -> bool:
    if provider == "aws":
        return (node_config.get("InstanceMarketOptions") or {}).get("MarketType") == "spot"
    if provider == "gcp":
        scheduling = node_config.get("scheduling")
        return isinstance(scheduling, dict) and (
            scheduling.get("provisioningModel") == "SPOT" or scheduling.get("preemptible") is True
        )
    return False


def _ray_default_amis() -> set[str]:
    try:
        from ray.autoscaler._private.aws.config import DEFAULT_AMI
    except ImportError:  # needs boto3, which the checks do not
        return set()
    return set(DEFAULT_AMI.values())


def _gcp_node_problems(where: str, node_config: dict, gpus: int) -> list[str]:
    problems = []
    scheduling = node_config.get("scheduling", {})
    if not isinstance(scheduling, dict):
        return [f"{where}.node_config.scheduling: a mapping (the Compute API's Scheduling)"]
    if gpus and scheduling.get("onHostMaintenance") != "TERMINATE":
        problems.append(f"{where}: VMs with GPUs need scheduling.onHostMaintenance TERMINATE")
    if scheduling.get("provisioningModel") == "SPOT" and scheduling.get("automaticRestart"):
        problems.append(f"{where}: Spot VMs cannot restart automatically")
    for disk in node_config.get("disks", []):
        image = (disk.get("initializeParams") or {}).get("sourceImage", "")
        if disk.get("boot") and "/images/family/" not in image:
            problems.append(f"{where}: boot disk {image!r}: name an image family")
    return problems


def _token_auth_problems(config: dict) -> list[str]:
    """Ray's token-auth guide for `ray up`: mount ~/.ray/auth_token, RAY_AUTH_MODE=token."""
    problems = []
    mounts = config.get("file_mounts") or {}
    if not any(
        remote.endswith(".ray/auth_token") and local == "~/.ray/auth_token"
        for remote, local in mounts.items()
    ):
        problems.append("file_mounts: mount ~/.ray/auth_token (Ray's token-auth guide)")
    docker = config.get("docker") or {}
    options = " ".join(docker.get("run_options", []))
    starts = " ".join(config.get("head_start_ray_commands", []))
    if "RAY_AUTH_MODE=token" not in options and "RAY_AUTH_MODE=token" not in starts:
        problems.append("RAY_AUTH_MODE=token: in neither docker.run_options nor ray start")
    return problems


def _setup_problems(config: dict) -> list[str]:
    """The setup commands install the synced checkout on every node."""
    mounts = config.get("file_mounts") or {}
    project = [remote for remote, local in mounts.items() if local in (".", "./")]
    if not project:
        return ["file_mounts: sync the project ('.') to the nodes"]
    problems = []
    for key in ("head_setup_commands", "worker_setup_commands"):
        commands = config.get("setup_commands", []) + config.get(key, [])
        if not any("pip install" in c and f"-e {project[0]}" in c for c in commands):
            problems.append(f"{key}: `pip install -e {project[0]}` (the synced project)")
    for key in ("head_start_ray_commands", "worker_start_ray_commands"):
        if not any("ray start" in c for c in config.get(key, [])):
            problems.append(f"{key}: no `ray start`")
    if not any("--autoscaling-config" in c for c in config.get("head_start_ray_commands", [])):
        problems.append("head_start_ray_commands: ray start --head needs --autoscaling-config")
    return problems


def _load(path: Path) -> dict:
    with open(path) as f:
        return yaml.safe_load(f)


def test_there_are_aws_and_gcp_launcher_files():
    names = {p.name for p in launcher_files()}
    assert {"aws-gpu.yaml", "gcp-gpu.yaml"} <= names


@pytest.mark.parametrize("path", launcher_files(), ids=lambda p: p.name)
def test_launcher_yaml_passes_rays_validation_and_ours(path):
    config = _load(path)
    assert ray_validation_problems(config) == []
    assert launcher_problems(config, pinned_ray_version()) == []


@pytest.mark.parametrize(
    "break_it, problem",
    [
        (lambda c: c["available_node_types"]["gpu_l4"].update(min_workers=5), "min_workers 5 >"),
        (lambda c: c["available_node_types"]["gpu_l4"].pop("resources"), "resources"),
        (lambda c: c["available_node_types"]["gpu_l4"]["resources"].update(GPU=0.5), "GPU: 0.5"),
        (lambda c: c.update(head_node_type="nope"), "head_node_type"),
        (lambda c: c["docker"].update(image="rayproject/ray-ml:2.49.0-py311-gpu"), "docker.image"),
        (lambda c: c["docker"].update(image="rayproject/ray:2.59.0-py311-gpu"), "docker.image"),
        (
            lambda c: c["available_node_types"]["head"]["node_config"].update(ImageId=""),
            "ImageId",
        ),
        (lambda c: c["file_mounts"].pop("~/.ray/auth_token"), "auth_token"),
        (lambda c: c["docker"].update(run_options=[]), "RAY_AUTH_MODE"),
        (lambda c: c.update(worker_setup_commands=[]), "worker_setup_commands"),
        (
            lambda c: c["available_node_types"]["gpu_t4_spot"]["node_config"].pop(
                "InstanceMarketOptions"
            ),
            "spot",
        ),
    ],
)
def test_a_broken_aws_config_is_caught(break_it, problem):
    config = _load(CLUSTERS / "aws-gpu.yaml")
    break_it(config)
    problems = launcher_problems(config, pinned_ray_version()) + ray_validation_problems(config)
    assert any(problem in p for p in problems), problems


def test_a_broken_gcp_config_is_caught():
    config = _load(CLUSTERS / "gcp-gpu.yaml")
    config["available_node_types"]["gpu_t4"]["node_config"]["scheduling"] = [
        {"onHostMaintenance": "TERMINATE"}
    ]
    assert any("scheduling" in p for p in launcher_problems(config, pinned_ray_version()))
    config = _load(CLUSTERS / "gcp-gpu.yaml")
    del config["available_node_types"]["gpu_t4"]["node_config"]["scheduling"]
    assert any("onHostMaintenance" in p for p in launcher_problems(config, pinned_ray_version()))


def test_rays_validation_catches_a_misspelled_key():
    config = _load(CLUSTERS / "aws-gpu.yaml")
    config["max_worker"] = 3
    assert ray_validation_problems(config)
    config = _load(CLUSTERS / "aws-gpu.yaml")
    config["available_node_types"]["gpu_l4"]["resource"] = {"CPU": 1}
    assert ray_validation_problems(config)
