"""Fuzzing the metadata parsers (issue 22): any info.json, tasks/episodes JSON lines or v3.0
parquet metadata gives a dataset or a one-line DatasetError, never another exception, within
a memory bound.

Bounded for CI (FLYWHEEL_FUZZ_EXAMPLES examples per test, 60 by default); a long run:
`FLYWHEEL_FUZZ_EXAMPLES=5000 pytest tests/pipelines/dataset/test_fuzz_metadata.py`.
"""

import json
import os
import resource
import shutil

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipelines.dataset import DatasetError, LeRobotDataset
from tests.pipelines.dataset.conftest import record

EXAMPLES = int(os.environ.get("FLYWHEEL_FUZZ_EXAMPLES", "60"))
RSS_BOUND_KIB = 300_000
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=30),
    st.sampled_from(
        ["data/{", "../../x/{episode_index}", "{video_key}/{chunk_index:99999999}", "v2.1", "v3.0"]
    ),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=12,
)


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    base = tmp_path_factory.mktemp("fuzz")
    for version in ("v2.1", "v3.0"):
        record(base / version, version, camera=True)
    return base


def _fresh(made, tmp_path, version):
    root = tmp_path / f"ds-{version}"
    if root.exists():
        shutil.rmtree(root)
    return shutil.copytree(made / version, root)


def _load(root):
    """Everything a reader touches on loading (the parts inspect and label call first)."""
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    try:
        ds = LeRobotDataset(root)
        ds.summary()
        ds.missing().lines()
        _ = ds.episodes_stats, ds.camera_keys, ds.video_keys
    except DatasetError as e:
        assert "\n" not in str(e)
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss < RSS_BOUND_KIB


def _mutate(obj: dict, data) -> object:
    how = data.draw(st.sampled_from(["set", "delete", "replace", "nested"]))
    if how == "replace":
        return data.draw(values)
    out = dict(obj)
    if not out:
        return data.draw(values)
    key = data.draw(st.sampled_from(sorted(out)) | st.text(max_size=8))
    if how == "delete":
        out.pop(key, None)
    elif how == "nested" and isinstance(out.get(key), dict) and out[key]:
        out[key] = _mutate(out[key], data)
    else:
        out[key] = data.draw(values)
    return out


@FUZZ
@given(data=st.data(), version=st.sampled_from(["v2.1", "v3.0"]))
def test_any_info_json(made, tmp_path, data, version):
    root = _fresh(made, tmp_path, version)
    info = json.loads((root / "meta" / "info.json").read_text())
    for _ in range(data.draw(st.integers(1, 3))):
        info = _mutate(info, data) if isinstance(info, dict) else info
    (root / "meta" / "info.json").write_text(json.dumps(info))
    _load(root)


@FUZZ
@given(data=st.data(), name=st.sampled_from(["tasks", "episodes", "episodes_stats"]))
def test_any_jsonl_rows(made, tmp_path, data, name):
    root = _fresh(made, tmp_path, "v2.1")
    path = root / "meta" / f"{name}.jsonl"
    if data.draw(st.booleans()):
        path.write_bytes(data.draw(st.binary(max_size=200)))
    else:
        rows = [json.loads(line) for line in path.read_text().splitlines()]
        rows = [_mutate(r, data) if data.draw(st.booleans()) else r for r in rows]
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    _load(root)


def _column(data, n):
    return data.draw(
        st.one_of(
            st.lists(st.integers(-(2**63), 2**63 - 1) | st.none(), min_size=n, max_size=n).map(
                lambda v: pa.array(v, pa.int64())
            ),
            st.lists(st.text(max_size=5), min_size=n, max_size=n).map(pa.array),
            st.lists(st.floats(), min_size=n, max_size=n).map(pa.array),
            st.lists(st.lists(st.text(max_size=3), max_size=2), min_size=n, max_size=n).map(
                pa.array
            ),
        )
    )


@FUZZ
@given(data=st.data(), which=st.sampled_from(["tasks", "episodes"]))
def test_any_v30_parquet_metadata(made, tmp_path, data, which):
    root = _fresh(made, tmp_path, "v3.0")
    if which == "tasks":
        path = root / "meta" / "tasks.parquet"
    else:
        path = next((root / "meta" / "episodes").glob("chunk-*/file-*.parquet"))
    table = pq.read_table(path)
    for _ in range(data.draw(st.integers(1, 3))):
        names = table.column_names
        how = data.draw(st.sampled_from(["drop", "retype", "garbage"]))
        if how == "garbage":
            path.write_bytes(data.draw(st.binary(max_size=300)))
            break
        name = data.draw(st.sampled_from(names))
        if how == "drop" and len(names) > 1:
            table = table.drop([name])
        else:
            table = table.set_column(names.index(name), name, _column(data, table.num_rows))
    else:
        pq.write_table(table, path)
    _load(root)
