"""`flywheel inspect`: `--verify` finds silent corruption, and a damaged video is told apart."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from pipelines import inspect
from pipelines.dataset import LeRobotDataset

DATA = Path(__file__).resolve().parents[2] / "data"
CAMERA = "observation.images.front"


@pytest.fixture(params=["lerobot033_v21_av1", "lerobot061_v30_h264"])
def dataset(request, tmp_path) -> Path:
    return Path(shutil.copytree(DATA / request.param, tmp_path / request.param))


def test_verify_passes_a_good_dataset(dataset, capsys):
    assert inspect.main([str(dataset), "--verify"]) == 0
    assert "verified: every data file reads whole" in capsys.readouterr().out


def test_verify_finds_a_truncated_parquet_file_and_exits_1(dataset, capsys):
    ds = LeRobotDataset(dataset)
    path = ds.data_file(ds.episode_indices[0])
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    assert inspect.main([str(dataset)]) == 0  # without --verify: the description only
    capsys.readouterr()
    assert inspect.main([str(dataset), "--verify"]) == 1
    out = capsys.readouterr().out
    findings = [line.strip() for line in out.splitlines() if ds.relative(path) in line]
    assert findings and findings[-1].startswith(f"{ds.relative(path)}: ")
    assert "verify found" in out


def test_a_damaged_video_is_not_called_a_missing_codec(dataset, capsys):
    ds = LeRobotDataset(dataset)
    ds.video_file(ds.episode_indices[0], CAMERA).write_bytes(b"not a video" * 10)
    assert inspect.main([str(dataset)]) == 1  # a camera that does not decode: exit 1
    out = capsys.readouterr().out.splitlines()
    line = out[out.index("cameras (first frame decoded here):") + 1]
    assert line.startswith(f"  {CAMERA}: ")
    assert "file damaged or not a video" in line and "CANNOT" not in line


def test_verify_reads_back_from_print_config(tmp_path, capsys):
    with pytest.raises(SystemExit) as done:
        inspect.main([str(tmp_path), "--verify", "--print-config"])
    assert done.value.code == 0
    config = tmp_path / "inspect.yaml"
    config.write_text(capsys.readouterr().out)
    cfg = inspect.build_parser("inspect").parse_config(
        ["--config", str(config)], inspect.InspectConfig.from_flags
    )
    assert cfg == inspect.InspectConfig(str(tmp_path), verify=True)


def test_missing_files_exit_1_and_a_bad_dataset_is_one_line(dataset, tmp_path, capsys):
    ds = LeRobotDataset(dataset)
    ds.data_file(ds.episode_indices[-1]).unlink()
    assert inspect.main([str(dataset)]) == 1
    assert "missing from the folder:" in capsys.readouterr().out
    assert inspect.main([str(tmp_path / "nope")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "nope" in err[0]
