"""What the cluster-file checks share: paths, the pinned Ray version, image-tag rules."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

tomllib = pytest.importorskip("tomllib", reason="reading pyproject.toml needs Python >= 3.11")

ROOT = Path(__file__).resolve().parents[2]
CLUSTERS = ROOT / "clusters"
KUBERAY = CLUSTERS / "kuberay"
SCHEMAS = ROOT / "tests" / "data" / "kuberay-v1.7.0"
SHARED_SCHEMAS = ROOT.parent / "shared" / "schemas" / "kuberay-v1.7.0"

SCHEMA_FILES = {
    "RayCluster": "raycluster_v1.json",
    "RayJob": "rayjob_v1.json",
    "RayService": "rayservice_v1.json",
}
MAX_NAME = {"RayCluster": 53, "RayJob": 47, "RayService": 47}
DNS_1035 = re.compile(r"[a-z]([-a-z0-9]*[a-z0-9])?")
DNS_1123 = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
AMI_ID = re.compile(r"ami-[0-9a-f]{8,17}")
# AWS's public parameters naming the newest AMI of a family, resolved by EC2 at launch
SSM_AMI = re.compile(r"resolve:ssm:/aws/service/deeplearning/ami/\S+")
TOKEN_AUTH_MIN_RAY = (2, 52)


def pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def constraints() -> dict[str, str]:
    """constraints.txt's exact pins, package name (lower case) -> version."""
    pins = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        m = re.fullmatch(r"([A-Za-z0-9_.-]+)==([0-9][^;\s]*)", line.strip())
        if m:
            pins[m.group(1).lower()] = m.group(2)
    return pins


def pinned_ray_version() -> str:
    """The Ray that constraints.txt pins (pyproject.toml states a range that must hold it)."""
    version = constraints().get("ray")
    if version is None:
        raise AssertionError("constraints.txt pins no Ray version (ray==X)")
    return version


def pinned_dependency(dep: str) -> str:
    """pyproject.toml's requirement `dep` at constraints.txt's exact version (as it is when
    constraints.txt pins no such package): "torch>=2.11" -> "torch==2.13.0"."""
    m = re.match(r"([A-Za-z0-9_.-]+)(\[[^\]]*\])?", dep.strip())
    version = constraints().get(m.group(1).lower()) if m else None
    return f"{m.group(1)}{m.group(2) or ''}=={version}" if version else dep


def version_tuple(text: str) -> tuple[int, ...]:
    return tuple(int(p) for p in re.findall(r"\d+", text)[:3])


def image_problems(image: str, where: str, pinned: str) -> list[str]:
    """rayproject/ray images (ray-ml ended at 2.49) whose tag is the pinned Ray version."""
    repo, _, tag = image.rpartition(":")
    if not repo or "/" in tag:
        return [f"{where}: image {image!r} has no tag"]
    if repo != "rayproject/ray":
        return [f"{where}: image {image!r} is not rayproject/ray"]
    if tag != pinned and not tag.startswith(pinned + "-"):
        return [f"{where}: image {image!r} is not Ray {pinned}, the version constraints.txt pins"]
    return []
