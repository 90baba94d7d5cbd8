"""serving/reward.yaml: a valid Serve config (schema plus a strict key walk) that builds."""

import json
import socket
import typing
from pathlib import Path

import pytest
import yaml
from pydantic import BaseModel
from ray import serve
from ray.serve.schema import ServeDeploySchema

from pipelines.classifier.model import ClassifierConfig, RewardClassifier, save_model
from serving import reward
from serving.config import DEPLOYMENT, RewardAppConfig, ServeConfig
from serving.reward import build_app

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "serving" / "reward.yaml"
KUBERAY = ROOT.parent / "shared" / "schemas" / "kuberay-v1.7.0" / "rayservice_v1.json"


def _models(annotation) -> list[type[BaseModel]]:
    """The pydantic models a field's annotation allows (through Optional, List, Union)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [m for arg in typing.get_args(annotation) for m in _models(arg)]


def strict_walk(value, model: type[BaseModel], where: str) -> list[str]:
    """Keys a pydantic schema does not know, anywhere under `value` (it ignores them)."""
    if not isinstance(value, dict):
        return []
    fields = model.model_fields
    names = {alias for f in fields.values() for alias in (f.alias,) if alias} | set(fields)
    unknown = [f"{where}.{k}" for k in value if k not in names]
    for key, item in value.items():
        if key not in fields:
            continue
        for sub in _models(fields[key].annotation):
            items = item if isinstance(item, list) else [item]
            for i, element in enumerate(items):
                unknown += strict_walk(element, sub, f"{where}.{key}[{i}]")
            break
    return unknown


def test_the_walk_catches_misspelled_keys():
    doc = {
        "aplications": [],
        "applications": [
            {
                "name": "a",
                "import_path": "m:f",
                "deployments": [{"name": "D", "max_ongoing_request": 3}],
            }
        ],
    }
    ServeDeploySchema.model_validate(doc)  # the schema itself lets both through
    found = strict_walk(doc, ServeDeploySchema, "config")
    assert found == [
        "config.aplications",
        "config.applications[0].deployments[0].max_ongoing_request",
    ]


def test_reward_yaml_is_a_valid_serve_config_that_builds(tmp_path, monkeypatch):
    monkeypatch.setenv("FLYWHEEL_REWARD_TOKEN", "a-token-of-the-test-0123456789")
    doc = yaml.safe_load(CONFIG.read_text())
    ServeDeploySchema.model_validate(doc)
    assert strict_walk(doc, ServeDeploySchema, "reward.yaml") == []
    (app,) = doc["applications"]
    assert app["import_path"] == "serving.reward:build_app" and app["route_prefix"] == "/reward"
    args = RewardAppConfig.from_args(app["args"])  # every arg known, and consistent
    assert args.max_ongoing_requests >= args.max_batch_size
    for deployment in app.get("deployments", []):  # overrides must keep batches fillable
        assert deployment["name"] == DEPLOYMENT
        assert (
            deployment.get("max_ongoing_requests", args.max_ongoing_requests) >= args.max_batch_size
        )
    assert doc["http_options"]["host"] == "0.0.0.0"  # KubeRay needs every interface
    assert app["args"]["require_token"] is True  # so a token guards it

    checkpoint = save_model(
        tmp_path / "ckpt",
        RewardClassifier(ClassifierConfig(cameras=["observation.images.front"], image_size=32)),
    )
    built = build_app({**app["args"], "checkpoint": checkpoint})
    options = built._bound_deployment._deployment_config
    assert options.max_ongoing_requests == 16 and options.max_queued_requests == 64
    assert options.autoscaling_config.max_replicas == 4
    with pytest.raises(ValueError, match="not a classifier checkpoint"):
        build_app({**app["args"], "checkpoint": str(tmp_path)})
    with pytest.raises(ValueError, match="unknown \\['max_batch'\\]"):
        build_app({"checkpoint": checkpoint, "max_batch": 4})
    with pytest.raises(ValueError, match="max_ongoing_requests 2 < max_batch_size 8"):
        build_app({"checkpoint": checkpoint, "max_ongoing_requests": 2})
    with pytest.raises(ValueError, match="give both"):
        build_app({"checkpoint": checkpoint, "min_replicas": 1})
    monkeypatch.delenv("FLYWHEEL_REWARD_TOKEN")
    with pytest.raises(ValueError, match="require_token: no token; set FLYWHEEL_REWARD_TOKEN"):
        build_app({**app["args"], "checkpoint": checkpoint})


def test_reward_yaml_is_a_rayservice_serve_config_v2():
    if not KUBERAY.exists():
        pytest.skip(f"{KUBERAY} is not beside the clone")
    import jsonschema

    service = {
        "apiVersion": "ray.io/v1",
        "kind": "RayService",
        "metadata": {"name": "reward"},
        "spec": {
            "serveConfigV2": CONFIG.read_text(),
            "rayClusterConfig": {
                "rayVersion": "2.60.0",
                "headGroupSpec": {
                    "rayStartParams": {"dashboard-host": "0.0.0.0"},
                    "template": {
                        "spec": {
                            "containers": [
                                {"name": "ray-head", "image": "rayproject/ray:2.60.0-py311"}
                            ]
                        }
                    },
                },
            },
        },
    }
    schema = json.loads(KUBERAY.read_text())
    errors = [e.message for e in jsonschema.Draft7Validator(schema).iter_errors(service)]
    assert errors == []
    assert isinstance(service["spec"]["serveConfigV2"], str)  # KubeRay takes the YAML as text


def test_flags_build_the_nested_config_and_print_config_reads_back(tmp_path, capsys):
    flags = ["/ckpt", "--replicas", "3", "--cpus-per-replica", "0", "--gpus-per-replica", "0.5"]
    parser = reward.build_parser("serve-reward")
    with pytest.raises(SystemExit) as printed:
        parser.parse_config([*flags, "--print-config"], ServeConfig.from_flags)
    assert printed.value.code == 0
    config = tmp_path / "serve.yaml"
    config.write_text(capsys.readouterr().out)
    for argv in (flags, ["--config", str(config)]):
        cfg = reward.build_parser("serve-reward").parse_config(argv, ServeConfig.from_flags)
        assert cfg == ServeConfig(
            RewardAppConfig("/ckpt", num_replicas=3, num_cpus=0.0, num_gpus=0.5)
        )
    cfg = reward.build_parser("serve-reward").parse_config(["/ckpt"], ServeConfig.from_flags)
    assert cfg.app.num_gpus == "auto" and cfg.port == 8000 and cfg.route_prefix == "/reward"


def test_serve_reward_errors_are_one_line(ray_cluster, tmp_path, capsys):
    serve.shutdown()  # no Serve instance from another module
    checkpoint = save_model(
        tmp_path / "ckpt",
        RewardClassifier(ClassifierConfig(cameras=["observation.images.front"], image_size=32)),
    )
    assert reward.main([str(tmp_path)]) == 2
    assert "not a classifier checkpoint" in capsys.readouterr().err
    assert reward.main([checkpoint, "--max-batch-size", "0"]) == 2
    assert "max_batch_size 0: an integer >= 1" in capsys.readouterr().err
    assert reward.main([checkpoint, "--port", "70000"]) == 2
    assert "--port 70000" in capsys.readouterr().err
    assert reward.main([checkpoint, "--min-replicas", "2"]) == 2
    assert "give both" in capsys.readouterr().err
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        assert reward.main([checkpoint, "--port", str(port)]) == 2
        err = capsys.readouterr().err
        assert f"127.0.0.1:{port} is already in use" in err and len(err.strip().splitlines()) == 1
    assert reward.main([checkpoint, "--port", "8123", "--direct-port", "8123"]) == 2
    assert "--direct-port 8123: 1 to 65535, and not --port 8123" in capsys.readouterr().err
    assert (
        reward.main(
            [checkpoint, "--direct-port", "8124", "--min-replicas", "0", "--max-replicas", "2"]
        )
        == 2
    )
    assert "needs a replica running" in capsys.readouterr().err
    # this session's Ray cluster was started without Serve's direct ingress
    with socket.socket() as a, socket.socket() as b:
        a.bind(("127.0.0.1", 0))
        b.bind(("127.0.0.1", 0))
        http, direct = a.getsockname()[1], b.getsockname()[1]
    try:
        assert reward.main([checkpoint, "--port", str(http), "--direct-port", str(direct)]) == 2
    finally:
        serve.shutdown()
    err = capsys.readouterr().err
    assert "runs without direct ingress" in err and len(err.strip().splitlines()) == 1
