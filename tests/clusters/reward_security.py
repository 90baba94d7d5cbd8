"""The reward endpoint's guards in the KubeRay manifests: its RayService requires the bearer
token (from a Secret, in every pod), and a NetworkPolicy limits who reaches its pods."""

from __future__ import annotations

import yaml

from tests.clusters.common import DNS_1123

SERVE_PORT = 8000
TOKEN_ENV = "FLYWHEEL_REWARD_TOKEN"
CR_NAME = "ray.io/originated-from-cr-name"  # KubeRay's label on every pod of a RayService


def reward_token_problems(spec: dict, names: dict[str, set[str]]) -> list[str]:
    """A RayService binds every interface: its applications require the endpoint's token, every
    pod has it from a Secret, and a NetworkPolicy guards its pods."""
    problems = []
    try:
        config = yaml.safe_load(spec.get("serveConfigV2") or "") or {}
    except yaml.YAMLError:
        return []  # serve_config_problems reports it
    apps = [
        a
        for a in config.get("applications") or []
        if a.get("import_path") == "serving.reward:build_app"
    ]
    if not apps:
        return []  # not the reward endpoint
    for app in apps:
        if (app.get("args") or {}).get("require_token") is not True:
            problems.append(f"application {app.get('name')!r}: args.require_token must be true")
    cluster = spec.get("rayClusterConfig") or {}
    groups = [("headGroupSpec", cluster.get("headGroupSpec") or {})] + [
        (f"workerGroupSpecs.{g.get('groupName')}", g) for g in cluster.get("workerGroupSpecs", [])
    ]
    for where, group in groups:
        for container in ((group.get("template") or {}).get("spec") or {}).get("containers", []):
            env = {e.get("name"): e for e in container.get("env") or []}
            secret = ((env.get(TOKEN_ENV) or {}).get("valueFrom") or {}).get("secretKeyRef")
            if not secret:
                problems.append(f"{where}: {TOKEN_ENV} must come from a Secret (secretKeyRef)")
    if not names.get("NetworkPolicy"):
        problems.append("RayService: no NetworkPolicy in the folder guards its pods")
    return problems


def network_policy_problems(doc: dict, name: str, names: dict[str, set[str]]) -> list[str]:
    """A NetworkPolicy for a RayService of the folder: it selects that service's pods, limits
    ingress, and opens Serve's port only to selected pods (never to everyone)."""
    problems = []
    if doc.get("apiVersion") != "networking.k8s.io/v1":
        problems.append("NetworkPolicy: apiVersion networking.k8s.io/v1")
    if not DNS_1123.fullmatch(name) or len(name) > 253:
        problems.append(f"NetworkPolicy name {name!r}: a DNS-1123 subdomain")
    spec = doc.get("spec") or {}
    selected = ((spec.get("podSelector") or {}).get("matchLabels") or {}).get(CR_NAME)
    if selected not in names.get("RayService", set()):
        problems.append(f"podSelector {CR_NAME}={selected!r}: no RayService of that name here")
    if "Ingress" not in (spec.get("policyTypes") or []):
        problems.append("policyTypes: Ingress (or nothing is restricted)")
    for i, rule in enumerate(spec.get("ingress") or []):
        peers = rule.get("from")
        if not peers or any(not p for p in peers):
            problems.append(f"ingress[{i}]: open to every source (give `from`)")
        for peer in peers or []:
            if "ipBlock" in peer and peer["ipBlock"].get("cidr") in ("0.0.0.0/0", "::/0"):
                problems.append(f"ingress[{i}]: open to every address")
        ports = [p.get("port") for p in rule.get("ports") or []]
        if SERVE_PORT in ports and any(not (p.get("podSelector") or {}) for p in peers or []):
            problems.append(f"ingress[{i}]: port {SERVE_PORT} open to more than selected pods")
    return problems
