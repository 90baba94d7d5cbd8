"""Flags declared on the config dataclass: add_flags, sections, switches, subclass defaults."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import yaml

from pipelines.runtime.cli import JobParser
from pipelines.runtime.flags import FlagConfig, add_flags, config_from_flags, flag, section


@dataclass
class Model:
    encoder: str = flag("small", "the image encoder", choices=("small", "big"))
    image_size: int = flag(64, "input size in pixels")
    derived_fps: float = 0.0  # set by the job from the dataset: not a flag


@dataclass
class Run:
    steps: int = flag(100, "training steps")
    mlflow: bool = flag(True, "log nothing to MLflow")
    augment_more: bool = flag(False, "stronger augmentation")
    camera: list[str] = flag(default_factory=list, help="NAME=SOURCE", append=True)


@dataclass
class LongRun(Run):
    steps: int = 5000  # another default, the same flag


@dataclass
class Job(FlagConfig):
    dataset: str = flag(help="a LeRobot dataset", positional=True)
    model: Model = section(Model, "model")
    run: LongRun = section(LongRun, "run")


def parser() -> JobParser:
    p = JobParser(prog="flywheel job")
    add_flags(p, Job)
    return p


def build(ns) -> Job:
    return config_from_flags(Job, ns)


def test_the_fields_are_the_flags_with_their_sections_and_switches():
    p = parser()
    options = {s for a in p._actions for s in a.option_strings}
    assert {"--encoder", "--image-size", "--steps", "--no-mlflow", "--augment-more"} <= options
    assert "--derived-fps" not in options
    titles = [g.title for g in p._action_groups]
    assert "model" in titles and "run" in titles
    text = p.format_help()
    assert "training steps (default: 5000)" in text  # the subclass's default, the base's help
    assert "{small,big}" in text


def test_flags_build_the_nested_config():
    cfg = parser().parse_config(
        ["d", "--encoder", "big", "--steps", "7", "--no-mlflow", "--augment-more"], build
    )
    assert cfg == Job("d", Model("big", 64), LongRun(steps=7, mlflow=False, augment_more=True))
    assert Job.from_flags(dataset="d", steps=7, mlflow=False).run.steps == 7
    with pytest.raises(TypeError, match="no field 'stepz'"):
        Job.from_flags(dataset="d", stepz=7)


def test_choices_are_enforced(capsys):
    with pytest.raises(SystemExit) as e:
        parser().parse_config(["d", "--encoder", "huge"], build)
    assert e.value.code == 2
    assert "--encoder" in capsys.readouterr().err


def test_print_config_shows_only_flags_and_reads_back(tmp_path, capsys):
    argv = ["d", "--image-size", "32", "--no-mlflow"]
    with pytest.raises(SystemExit):
        parser().parse_config([*argv, "--print-config"], build)
    printed = capsys.readouterr().out
    data = yaml.safe_load(printed)
    assert "derived_fps" not in data["model"]
    assert data["run"] == {"steps": 5000, "mlflow": False, "augment_more": False, "camera": []}
    path = tmp_path / "c.yaml"
    path.write_text(printed)
    assert parser().parse_config(["--config", str(path)], build) == parser().parse_config(
        argv, build
    )


def test_a_repeatable_flag_collects_its_uses(tmp_path):
    cfg = parser().parse_config(["d", "--camera", "front=0", "--camera", "wrist=1"], build)
    assert cfg.run.camera == ["front=0", "wrist=1"]
    assert parser().parse_config(["d"], build).run.camera == []
    path = tmp_path / "c.yaml"
    path.write_text("dataset: d\ncamera: [front=0]\n")
    assert parser().parse_config(["--config", str(path)], build).run.camera == ["front=0"]
