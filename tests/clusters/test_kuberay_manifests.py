"""Offline checks of the KubeRay manifests (clusters/kuberay/*.yaml, every document).

KubeRay v1.7.0's CRD schemas (vendored in tests/data/kuberay-v1.7.0), plus what the operator
enforces outside them (names, replicas, apiVersion, the RayJob rules, token auth's Ray
version), plus Flywheel's own rules: rayVersion and image tags equal the Ray version pinned in
pyproject.toml, every RayJob entrypoint is a `python -m` module of this repository with
absolute paths, its runtime environment keeps outputs off the job's temporary working
directory, and a RayService's serveConfigV2 passes Ray Serve's schema and a strict walk over
its key names. Each check is a function returning the problems it finds.
"""

from __future__ import annotations

import copy
import json
import re
import shlex
import typing
from pathlib import Path

import jsonschema
import pytest
import yaml

from tests.clusters.common import (
    DNS_1035,
    DNS_1123,
    KUBERAY,
    MAX_NAME,
    ROOT,
    SCHEMA_FILES,
    SCHEMAS,
    SHARED_SCHEMAS,
    TOKEN_AUTH_MIN_RAY,
    image_problems,
    pinned_dependency,
    pinned_ray_version,
    pyproject,
    version_tuple,
)
from tests.clusters.reward_security import (
    CR_NAME,
    SERVE_PORT,
    network_policy_problems,
    reward_token_problems,
)

tomllib = pytest.importorskip("tomllib", reason="reading pyproject.toml needs Python >= 3.11")

# ---------------------------------------------------------------------------------------------
# KubeRay manifests


def kuberay_documents() -> list[tuple[str, dict]]:
    docs = []
    for path in sorted(KUBERAY.glob("*.yaml")):
        with open(path) as f:
            for i, doc in enumerate(yaml.safe_load_all(f)):
                if doc is not None:
                    docs.append((f"{path.name}#{i}", doc))
    return docs


def _schema(kind: str) -> dict:
    with open(SCHEMAS / SCHEMA_FILES[kind]) as f:
        return json.load(f)


def schema_problems(doc: dict) -> list[str]:
    validator = jsonschema.Draft7Validator(_schema(doc["kind"]))
    return [
        f"schema: {'.'.join(str(p) for p in e.absolute_path) or '<root>'}: {e.message[:200]}"
        for e in validator.iter_errors(doc)
    ]


def kuberay_problems(doc: dict, pinned: str, names: dict[str, set[str]]) -> list[str]:
    """Every check of one KubeRay manifest; `names`: kind -> names defined in the folder."""
    kind = doc.get("kind")
    name = (doc.get("metadata") or {}).get("name", "")
    if kind == "PersistentVolumeClaim":
        return _volume_claim_problems(doc, name)
    if kind == "NetworkPolicy":
        return network_policy_problems(doc, name, names)
    if kind not in SCHEMA_FILES:
        return [f"kind {kind!r}: not a KubeRay resource (RayCluster, RayJob, RayService)"]
    problems = []
    if doc.get("apiVersion") != "ray.io/v1":
        problems.append(f"apiVersion {doc.get('apiVersion')!r}: should be ray.io/v1")
    if not DNS_1035.fullmatch(name) or len(name) > MAX_NAME[kind]:
        problems.append(
            f"metadata.name {name!r}: a DNS-1035 label of at most {MAX_NAME[kind]} characters"
        )
    problems += schema_problems(doc)
    spec = doc.get("spec") or {}
    cluster = {
        "RayCluster": spec,
        "RayJob": spec.get("rayClusterSpec"),
        "RayService": spec.get("rayClusterConfig"),
    }[kind]
    if cluster is not None:
        problems += _cluster_spec_problems(cluster, pinned, names)
    if kind == "RayJob":
        problems += _ray_job_problems(spec, names)
    if kind == "RayService":
        problems += serve_config_problems(spec.get("serveConfigV2"))
        problems += reward_token_problems(spec, names)
    for where, image in _images(doc):
        problems += image_problems(image, where, pinned)
    return problems


def _images(node, where: str = "") -> list[tuple[str, str]]:
    if isinstance(node, dict):
        found = [(f"{where}.image", node["image"])] if isinstance(node.get("image"), str) else []
        for k, v in node.items():
            found += _images(v, f"{where}.{k}" if where else k)
        return found
    if isinstance(node, list):
        return [x for i, v in enumerate(node) for x in _images(v, f"{where}[{i}]")]
    return []


def _cluster_spec_problems(cluster: dict, pinned: str, names: dict[str, set[str]]) -> list[str]:
    problems = []
    version = str(cluster.get("rayVersion", ""))
    if version != pinned:
        problems.append(f"rayVersion {version!r}: should be {pinned}, as pyproject.toml pins")
    if (cluster.get("authOptions") or {}).get("mode") == "token" and (
        version_tuple(version) < TOKEN_AUTH_MIN_RAY
    ):
        problems.append("authOptions.mode token needs rayVersion >= 2.52")
    if (cluster.get("authOptions") or {}).get("mode") != "token":
        problems.append("authOptions.mode: token (Ray >= 2.59 clusters expect token auth)")
    autoscaling = cluster.get("enableInTreeAutoscaling") is True
    v2 = (cluster.get("autoscalerOptions") or {}).get("version") == "v2"
    head = cluster.get("headGroupSpec") or {}
    groups = [("headGroupSpec", head)] + [
        (f"workerGroupSpecs.{g.get('groupName')}", g) for g in cluster.get("workerGroupSpecs", [])
    ]
    seen = set()
    for where, group in groups:
        if where in seen:
            problems.append(f"{where}: groupName used twice")
        seen.add(where)
        pod = (group.get("template") or {}).get("spec") or {}
        containers = pod.get("containers") or []
        if not containers:
            problems.append(f"{where}: no container")
        start = group.get("rayStartParams") or {}
        if any(start.get(k) for k in ("num-cpus", "num-gpus", "memory", "resources")) and group.get(
            "resources"
        ):
            problems.append(f"{where}: resources both in rayStartParams and in resources")
        if "labels" in start:
            problems.append(f"{where}: rayStartParams labels: use the group's labels field")
        if autoscaling and v2 and pod.get("restartPolicy") not in (None, "Never"):
            problems.append(f"{where}: restartPolicy must be Never or unset with autoscaler v2")
        gpu = any(
            "nvidia.com/gpu" in ((c.get("resources") or {}).get("limits") or {}) for c in containers
        )
        if gpu and not any(t.get("key") == "nvidia.com/gpu" for t in pod.get("tolerations") or []):
            problems.append(f"{where}: asks for nvidia.com/gpu but tolerates no GPU taint")
        for volume in pod.get("volumes") or []:
            claim = (volume.get("persistentVolumeClaim") or {}).get("claimName")
            if claim and claim not in names.get("PersistentVolumeClaim", set()):
                problems.append(f"{where}: volume claim {claim!r} is defined in no manifest here")
        if group is head:
            continue
        low, high = group.get("minReplicas", 0), group.get("maxReplicas")
        if high is None:
            problems.append(f"{where}: maxReplicas missing")
            continue
        if low > high:
            problems.append(f"{where}: minReplicas {low} > maxReplicas {high}")
        replicas = group.get("replicas", low)
        if not low <= replicas <= high:
            problems.append(f"{where}: replicas {replicas} outside [{low}, {high}]")
    if autoscaling is False:
        problems.append("enableInTreeAutoscaling: true (worker groups scale from minReplicas)")
    return problems


def _ray_job_problems(spec: dict, names: dict[str, set[str]]) -> list[str]:
    problems = []
    selector = spec.get("clusterSelector") or {}
    has_cluster = spec.get("rayClusterSpec") is not None
    if bool(selector) == has_cluster:
        problems.append("exactly one of rayClusterSpec and clusterSelector")
    if selector:
        target = selector.get("ray.io/cluster")
        if not target:
            problems.append("clusterSelector: ray.io/cluster names no cluster")
        elif target not in names.get("RayCluster", set()):
            problems.append(f"clusterSelector: no RayCluster {target!r} in clusters/kuberay")
        if spec.get("suspend"):
            problems.append("a RayJob with clusterSelector cannot be suspended")
        if spec.get("submissionMode") == "SidecarMode":
            problems.append("clusterSelector is not supported in SidecarMode")
    if spec.get("suspend") and not spec.get("shutdownAfterJobFinishes"):
        problems.append("suspend needs shutdownAfterJobFinishes: true")
    if spec.get("ttlSecondsAfterFinished", 0) > 0 and not spec.get("shutdownAfterJobFinishes"):
        problems.append("ttlSecondsAfterFinished needs shutdownAfterJobFinishes: true")
    if spec.get("activeDeadlineSeconds") is not None and spec["activeDeadlineSeconds"] <= 0:
        problems.append("activeDeadlineSeconds must be positive")
    if (spec.get("backoffLimit") or 0) < 0:
        problems.append("backoffLimit must not be negative")
    problems += entrypoint_problems(spec.get("entrypoint", ""))
    problems += runtime_env_problems(spec.get("runtimeEnvYAML"))
    return problems


def entrypoint_problems(entrypoint: str) -> list[str]:
    """`python -m <module of this repository> ...` with absolute (or URI) paths."""
    try:
        argv = shlex.split(entrypoint)
    except ValueError as e:
        return [f"entrypoint {entrypoint!r}: {e}"]
    if len(argv) < 3 or Path(argv[0]).name not in ("python", "python3") or argv[1] != "-m":
        return [f"entrypoint {entrypoint!r}: should be `python -m pipelines.<job> ...`"]
    module = argv[2]
    base = ROOT.joinpath(*module.split("."))
    if not (base.with_suffix(".py").is_file() or (base / "__main__.py").is_file()):
        return [f"entrypoint: module {module!r} does not exist in this repository"]
    return [
        f"entrypoint: {arg!r} is a relative path: the job's working directory is temporary"
        for arg in argv[3:]
        if "/" in arg and not arg.startswith("/") and "://" not in arg
    ]


def runtime_env_problems(text: str | None) -> list[str]:
    if not text:
        return ["runtimeEnvYAML: needed (the code and MLFLOW_TRACKING_URI)"]
    try:
        env = yaml.safe_load(text)
    except yaml.YAMLError as e:
        return [f"runtimeEnvYAML: not YAML ({str(e).splitlines()[0]})"]
    if not isinstance(env, dict):
        return ["runtimeEnvYAML: not a mapping"]
    problems = []
    working_dir = str(env.get("working_dir", ""))
    if "://" not in working_dir:
        problems.append(
            f"runtimeEnvYAML working_dir {working_dir!r}: a URI (local:///... on a shared "
            "volume, or a zip's https/s3/gs URI); a RayJob uploads nothing from your machine"
        )
    uri = str((env.get("env_vars") or {}).get("MLFLOW_TRACKING_URI", ""))
    if not uri:
        problems.append("runtimeEnvYAML env_vars: MLFLOW_TRACKING_URI (the default is temporary)")
    elif uri.startswith("sqlite:///") and not uri.startswith("sqlite:////"):
        problems.append(f"MLFLOW_TRACKING_URI {uri!r}: a relative SQLite path")
    elif "://" not in uri and not uri.startswith("/"):
        problems.append(f"MLFLOW_TRACKING_URI {uri!r}: a relative path")
    pip = env.get("pip")
    if pip is not None:
        packages = pip.get("packages", []) if isinstance(pip, dict) else pip
        missing = [
            pinned_dependency(d)
            for d in pyproject()["project"]["dependencies"]
            if d not in packages and pinned_dependency(d) not in packages
        ]
        if missing:
            problems.append(f"runtimeEnvYAML pip: lacks pyproject.toml's {missing}")
    return problems


def serve_config_problems(text) -> list[str]:
    """A RayService's serveConfigV2: Ray Serve's schema, then every key name, strictly."""
    if text is None:
        return ["serveConfigV2: missing"]
    try:
        config = yaml.safe_load(text) if isinstance(text, str) else text
    except yaml.YAMLError as e:
        return [f"serveConfigV2: not YAML ({str(e).splitlines()[0]})"]
    from pydantic import ValidationError
    from ray.serve.schema import ServeDeploySchema

    try:
        ServeDeploySchema.model_validate(config)
    except ValidationError as e:
        return [f"serveConfigV2: {line}" for line in str(e).splitlines()[:6]]
    return [f"serveConfigV2: unknown key {k}" for k in unknown_keys(config, ServeDeploySchema)]


def unknown_keys(value, model, where: str = "") -> list[str]:
    """Keys of `value` that are not fields of the pydantic `model`, recursively (Serve's schema
    ignores them: a misspelled key is silently dropped)."""
    if not isinstance(value, dict):
        return []
    fields = model.model_fields
    by_name = {**{f.alias: n for n, f in fields.items() if f.alias}, **{n: n for n in fields}}
    found = []
    for key, item in value.items():
        path = f"{where}.{key}" if where else str(key)
        if key not in by_name:
            found.append(path)
            continue
        for sub in _models_in(fields[by_name[key]].annotation):
            if isinstance(item, dict):
                found += unknown_keys(item, sub, path)
            elif isinstance(item, list):
                for i, x in enumerate(item):
                    found += unknown_keys(x, sub, f"{path}[{i}]")
    return found


def _models_in(annotation) -> list[type]:
    from pydantic import BaseModel

    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [m for arg in typing.get_args(annotation) for m in _models_in(arg)]


def _volume_claim_problems(doc: dict, name: str) -> list[str]:
    problems = []
    if doc.get("apiVersion") != "v1":
        problems.append("PersistentVolumeClaim: apiVersion v1")
    if not DNS_1123.fullmatch(name) or len(name) > 253:
        problems.append(f"PersistentVolumeClaim name {name!r}: a DNS-1123 subdomain")
    if "ReadWriteMany" not in ((doc.get("spec") or {}).get("accessModes") or []):
        problems.append("PersistentVolumeClaim: ReadWriteMany (every Ray pod writes to it)")
    return problems


def defined_names(docs) -> dict[str, set[str]]:
    names: dict[str, set[str]] = {}
    for _, doc in docs:
        names.setdefault(doc.get("kind"), set()).add((doc.get("metadata") or {}).get("name"))
    return names


def test_the_kuberay_folder_has_a_cluster_and_the_jobs():
    kinds = {(doc["kind"], doc["metadata"]["name"]) for _, doc in kuberay_documents()}
    assert ("RayCluster", "flywheel") in kinds
    entrypoints = [
        doc["spec"]["entrypoint"] for _, doc in kuberay_documents() if doc["kind"] == "RayJob"
    ]
    for module in ("pipelines.label", "pipelines.train_estimator", "pipelines.train_policy"):
        assert any(f"-m {module} " in e for e in entrypoints), module
    assert ("RayService", "flywheel-reward") in kinds


def test_the_rayservice_serves_the_reward_config():
    """The RayService's application is serving/reward.yaml's: same import path, route and
    arguments (only the checkpoint's path differs, and the runtime environment is added)."""
    (service,) = [d for _, d in kuberay_documents() if d["kind"] == "RayService"]
    theirs = yaml.safe_load(service["spec"]["serveConfigV2"])
    ours = yaml.safe_load((ROOT / "serving" / "reward.yaml").read_text())
    (app,) = theirs["applications"]
    (want,) = ours["applications"]
    assert app["runtime_env"]["working_dir"].startswith("local:///mnt/flywheel/")
    assert app["args"]["checkpoint"].startswith("/mnt/flywheel/")
    for key in ("name", "route_prefix", "import_path"):
        assert app[key] == want[key], key
    strip = {"checkpoint"}
    assert {k: v for k, v in app["args"].items() if k not in strip} == {
        k: v for k, v in want["args"].items() if k not in strip
    }
    assert theirs["http_options"] == ours["http_options"]


@pytest.mark.parametrize("where, doc", kuberay_documents(), ids=[w for w, _ in kuberay_documents()])
def test_kuberay_manifest(where, doc):
    docs = kuberay_documents()
    assert kuberay_problems(doc, pinned_ray_version(), defined_names(docs)) == []


def _named(kind: str, name: str) -> dict:
    for _, doc in kuberay_documents():
        if doc["kind"] == kind and doc["metadata"]["name"] == name:
            return copy.deepcopy(doc)
    raise AssertionError(f"no {kind} {name}")


def _gpu_group(doc: dict) -> dict:
    return next(g for g in doc["spec"]["workerGroupSpecs"] if g["groupName"] == "gpu")


@pytest.mark.parametrize(
    "kind, name, break_it, problem",
    [
        ("RayCluster", "flywheel", lambda d: _gpu_group(d).update(minReplicas=5), "minReplicas 5"),
        ("RayCluster", "flywheel", lambda d: _gpu_group(d).update(minReplica=0), "schema"),
        ("RayCluster", "flywheel", lambda d: d.update(apiVersion="ray.io/v1alpha1"), "apiVersion"),
        ("RayCluster", "flywheel", lambda d: d["metadata"].update(name="f" * 54), "53"),
        ("RayCluster", "flywheel", lambda d: d["metadata"].update(name="Flywheel"), "DNS-1035"),
        ("RayCluster", "flywheel", lambda d: d["spec"].update(rayVersion="2.51.0"), "rayVersion"),
        ("RayCluster", "flywheel", lambda d: d["spec"].update(rayVersion="2.51.0"), ">= 2.52"),
        ("RayCluster", "flywheel", lambda d: d["spec"].pop("authOptions"), "authOptions"),
        (
            "RayCluster",
            "flywheel",
            lambda d: _gpu_group(d)["template"]["spec"]["containers"][0].update(
                image="rayproject/ray:2.59.0-py311-gpu"
            ),
            "is not Ray",
        ),
        (
            "RayCluster",
            "flywheel",
            lambda d: _gpu_group(d)["template"]["spec"].pop("tolerations"),
            "GPU taint",
        ),
        (
            "RayCluster",
            "flywheel",
            lambda d: _gpu_group(d)["rayStartParams"].update({"num-gpus": 1}),
            "schema",
        ),
        ("RayJob", "flywheel-label", lambda d: d["metadata"].update(name="j" * 48), "47"),
        (
            "RayJob",
            "flywheel-label",
            lambda d: d["spec"].update(entrypoint="python -m pipelines.nope /data"),
            "does not exist",
        ),
        (
            "RayJob",
            "flywheel-label",
            lambda d: d["spec"].update(entrypoint="python -m pipelines.label data/my_dataset"),
            "relative path",
        ),
        ("RayJob", "flywheel-label", lambda d: d["spec"].pop("clusterSelector"), "exactly one"),
        (
            "RayJob",
            "flywheel-label",
            lambda d: d["spec"].update(clusterSelector={"ray.io/cluster": "other"}),
            "no RayCluster 'other'",
        ),
        (
            "RayJob",
            "flywheel-label",
            lambda d: d["spec"].update(ttlSecondsAfterFinished=60),
            "shutdownAfterJobFinishes",
        ),
        (
            "RayJob",
            "flywheel-label",
            lambda d: d["spec"].update(
                runtimeEnvYAML=d["spec"]["runtimeEnvYAML"].replace("sqlite:////", "sqlite:///")
            ),
            "relative SQLite",
        ),
        (
            "RayJob",
            "flywheel-label",
            lambda d: d["spec"].update(
                runtimeEnvYAML=d["spec"]["runtimeEnvYAML"].replace("local:///mnt", "/mnt")
            ),
            "working_dir",
        ),
        (
            "RayJob",
            "flywheel-label",
            lambda d: d["spec"].update(
                runtimeEnvYAML=d["spec"]["runtimeEnvYAML"].replace("- torch==2.13.0\n", "")
            ),
            "torch==2.13.0",
        ),
    ],
)
def test_a_broken_manifest_is_caught(kind, name, break_it, problem):
    doc = _named(kind, name)
    break_it(doc)
    problems = kuberay_problems(doc, pinned_ray_version(), defined_names(kuberay_documents()))
    assert any(problem in p for p in problems), problems


def test_the_reward_service_requires_its_token_and_a_network_policy_guards_it():
    docs = kuberay_documents()
    (policy,) = [d for _, d in docs if d["kind"] == "NetworkPolicy"]
    assert policy["spec"]["podSelector"]["matchLabels"] == {CR_NAME: "flywheel-reward"}
    serve_port = [r for r in policy["spec"]["ingress"] if SERVE_PORT in _ports(r)]
    assert serve_port and all(r["from"] for r in serve_port)
    service = _named("RayService", "flywheel-reward")
    (app,) = yaml.safe_load(service["spec"]["serveConfigV2"])["applications"]
    assert app["args"]["require_token"] is True
    assert reward_token_problems(service["spec"], defined_names(docs)) == []


def _ports(rule: dict) -> list:
    return [p.get("port") for p in rule.get("ports") or []]


def _serve_args(doc: dict) -> dict:
    config = yaml.safe_load(doc["spec"]["serveConfigV2"])
    return config, config["applications"][0]["args"]


def _without_token(doc: dict) -> None:
    config, args = _serve_args(doc)
    args.pop("require_token")
    doc["spec"]["serveConfigV2"] = yaml.safe_dump(config)


@pytest.mark.parametrize(
    "kind, name, break_it, problem",
    [
        ("RayService", "flywheel-reward", _without_token, "require_token must be true"),
        (
            "RayService",
            "flywheel-reward",
            lambda d: d["spec"]["rayClusterConfig"]["headGroupSpec"]["template"]["spec"][
                "containers"
            ][0].pop("env"),
            "headGroupSpec: FLYWHEEL_REWARD_TOKEN must come from a Secret",
        ),
        (
            "NetworkPolicy",
            "flywheel-reward",
            lambda d: d["spec"]["ingress"][1].pop("from"),
            "open to every source",
        ),
        (
            "NetworkPolicy",
            "flywheel-reward",
            lambda d: d["spec"]["ingress"][1]["from"].append({"namespaceSelector": {}}),
            "port 8000 open to more than selected pods",
        ),
        (
            "NetworkPolicy",
            "flywheel-reward",
            lambda d: d["spec"]["podSelector"]["matchLabels"].update({CR_NAME: "other"}),
            "no RayService of that name",
        ),
        ("NetworkPolicy", "flywheel-reward", lambda d: d["spec"].pop("policyTypes"), "Ingress"),
    ],
)
def test_a_broken_token_or_network_policy_is_caught(kind, name, break_it, problem):
    doc = _named(kind, name)
    break_it(doc)
    problems = kuberay_problems(doc, pinned_ray_version(), defined_names(kuberay_documents()))
    assert any(problem in p for p in problems), problems


def test_an_unknown_kind_is_refused():
    doc = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "x"}}
    assert kuberay_problems(doc, pinned_ray_version(), {}) != []


def test_a_rayservice_is_checked_with_its_serve_config():
    cluster = _named("RayCluster", "flywheel")["spec"]
    serve = {
        "applications": [
            {
                "name": "reward",
                "import_path": "serving.reward:app",
                "deployments": [{"name": "Reward", "max_ongoing_requests": 32}],
            }
        ]
    }
    service = {
        "apiVersion": "ray.io/v1",
        "kind": "RayService",
        "metadata": {"name": "flywheel-reward"},
        "spec": {"rayClusterConfig": cluster, "serveConfigV2": yaml.safe_dump(serve)},
    }
    names = defined_names(kuberay_documents())
    assert kuberay_problems(service, pinned_ray_version(), names) == []
    # keys Serve's schema silently drops
    serve["aplications"] = serve.pop("applications")
    serve["applications"] = copy.deepcopy(serve["aplications"])
    serve["applications"][0]["deployments"][0]["max_ongoing_request"] = 8
    service["spec"]["serveConfigV2"] = yaml.safe_dump(serve)
    problems = kuberay_problems(service, pinned_ray_version(), names)
    assert "serveConfigV2: unknown key aplications" in problems
    assert (
        "serveConfigV2: unknown key applications[0].deployments[0].max_ongoing_request" in problems
    )
    service["spec"]["serveConfigV2"] = "applications: [{deployments: 3}]"
    assert any(p.startswith("serveConfigV2:") for p in kuberay_problems(service, "2.60.0", names))
    service["metadata"]["name"] = "r" * 48
    assert any("47" in p for p in kuberay_problems(service, pinned_ray_version(), names))


def test_vendored_schemas_match_the_shared_ones():
    if not SHARED_SCHEMAS.is_dir():
        pytest.skip(f"{SHARED_SCHEMAS} is not beside the clone; the vendored copies are used")
    for file in SCHEMA_FILES.values():
        assert (SCHEMAS / file).read_bytes() == (SHARED_SCHEMAS / file).read_bytes(), file


def test_the_pinned_version_is_read_from_constraints_within_pyprojects_range():
    version = pinned_ray_version()
    assert re.fullmatch(r"\d+\.\d+\.\d+", version)
    minor = ".".join(version.split(".")[:2])
    major, m = version.split(".")[:2]
    assert (
        f"ray[train,data,serve,tune]>={minor},<{major}.{int(m) + 1}"
        in (pyproject()["project"]["dependencies"])
    )
