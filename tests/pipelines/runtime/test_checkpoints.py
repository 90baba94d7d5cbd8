"""Checkpoint folders: partial or corrupt ones are skipped, Ray's snapshot decides what is
whole, a corrupt state is one line, and every torch.load is weights_only."""

import ast
import json
import shutil
from pathlib import Path

import pytest
import torch

from pipelines.dataset import DatasetError
from pipelines.runtime import checkpoints
from pipelines.runtime.checkpoints import (
    CHECKPOINT_STATE,
    RAY_SNAPSHOT,
    latest_checkpoint,
    load_state,
    write_checkpoint,
)

REPO = Path(__file__).resolve().parents[3]


def make(run_dir: Path, name: str, step: int) -> Path:
    folder = run_dir / name
    folder.mkdir(parents=True)
    state = {"model": {"w": torch.arange(4096, dtype=torch.float32)}, "step": step}
    write_checkpoint(folder, "estimator", state, {"step": step})
    return folder


def truncate(folder: Path) -> None:
    data = (folder / CHECKPOINT_STATE).read_bytes()
    (folder / CHECKPOINT_STATE).write_bytes(data[: len(data) // 2])


def flip_a_byte(folder: Path) -> None:
    data = bytearray((folder / CHECKPOINT_STATE).read_bytes())
    data[len(data) // 3] ^= 0xFF  # inside the tensor's bytes: only its CRC tells
    (folder / CHECKPOINT_STATE).write_bytes(bytes(data))


RAY = "checkpoint_2026-01-01_00-00-0{}.000000"  # the folder names Ray Train gives


def snapshot(run_dir: Path, names: list[str]) -> None:
    results = [{"checkpoint_dir_name": n, "metrics": {}} for n in names]
    (run_dir / RAY_SNAPSHOT).write_text(
        json.dumps({"checkpoint_results": results, "latest_checkpoint_result": results[-1]})
    )


@pytest.mark.parametrize("damage", [truncate, flip_a_byte])
def test_a_broken_newest_checkpoint_is_skipped_for_the_newest_good_one(tmp_path, damage):
    good = make(tmp_path, "checkpoint_a", 1)
    damage(make(tmp_path, "checkpoint_b", 2))
    assert latest_checkpoint(tmp_path, "estimator") == good
    damage(good)
    assert latest_checkpoint(tmp_path, "estimator") is None


def test_rays_snapshot_decides_which_checkpoints_are_whole(tmp_path):
    first = make(tmp_path, RAY.format(1), 1)
    second = make(tmp_path, RAY.format(2), 2)
    make(tmp_path, RAY.format(3), 3)  # copied, but Ray has not registered it (yet)
    snapshot(tmp_path, [RAY.format(1), RAY.format(2)])
    assert latest_checkpoint(tmp_path, "estimator") == second
    truncate(second)
    assert latest_checkpoint(tmp_path, "estimator") == first
    own = make(tmp_path, "checkpoint_000000004_000000004", 4)  # a learner's own, written whole
    assert latest_checkpoint(tmp_path, "estimator") == own
    (tmp_path / RAY_SNAPSHOT).write_text('{"checkpoint_res')  # torn: verify every one
    assert latest_checkpoint(tmp_path, "estimator") == own
    shutil.rmtree(own)
    assert latest_checkpoint(tmp_path, "estimator").name == RAY.format(3)


@pytest.mark.parametrize("damage", [truncate, flip_a_byte])
def test_a_corrupt_state_is_one_line_naming_the_file(tmp_path, damage):
    folder = make(tmp_path, "checkpoint_a", 1)
    damage(folder)
    with pytest.raises(DatasetError) as e:
        load_state(folder)
        raise AssertionError("a corrupt state loaded")
    message = str(e.value)
    assert str(folder / CHECKPOINT_STATE) in message and "\n" not in message


def test_load_state_is_weights_only(tmp_path, monkeypatch):
    folder = make(tmp_path, "checkpoint_a", 1)
    seen = []
    real = torch.load
    monkeypatch.setattr(torch, "load", lambda *a, **kw: seen.append(kw) or real(*a, **kw))
    assert load_state(folder)["step"] == 1
    assert seen and all(kw.get("weights_only") is True for kw in seen)


def _torch_loads(tree: ast.AST):
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "load"
            and isinstance(node.func.value, ast.Name)
            and node.func.value.id == "torch"
        ):
            yield node


def test_every_torch_load_in_the_project_says_weights_only_true():
    found = 0
    unsafe = []
    for top in ("pipelines", "actors", "serving", "benchmarks"):
        for path in sorted((REPO / top).rglob("*.py")):
            for call in _torch_loads(ast.parse(path.read_text(), str(path))):
                found += 1
                flags = {k.arg: k.value for k in call.keywords}
                value = flags.get("weights_only")
                if not (isinstance(value, ast.Constant) and value.value is True):
                    unsafe.append(f"{path.relative_to(REPO)}:{call.lineno}")
    assert found >= 1 and not unsafe, unsafe
    assert checkpoints.load_state.__doc__ and "weights_only" in checkpoints.load_state.__doc__
