"""Where episode outcomes come from: `--from csv:FILE`, `reward`, `classifier:CKPT_OR_URL`,
`set:3,5,9=success`.

`parse_source` checks the text of `--from`; `read_outcomes` gives the outcome of each episode
the source names. Every problem (a malformed source, an unknown or duplicate episode, a value
that is not a boolean, a dataset without `next.reward`, a dataset without a camera the
classifier takes) is a one-line DatasetError.

The classifier source: Flywheel's reward classifier (`flywheel train-classifier`) scores every
frame of every episode, each camera it takes decoded and resized to its input size; an episode
succeeded when `--success-frames K` consecutive frames are positive (`consecutive_success`,
as HIL-SERL's `--success-frames` rewards: one-frame flickers do not count). The frames are
scored by a `FrameScorer`: `LocalScorer`, the checkpoint loaded here (a checkpoint folder, or a
run folder: its latest checkpoint), or the served endpoint's client, which the job
(`pipelines.outcomes`) builds for an http(s) URL and hands down (this floor cannot reach
`serving`).
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import numpy as np

from pipelines.dataset import DatasetError, LeRobotDataset, column_to_numpy, read_columns
from pipelines.recap.config import SUCCESS_FRAMES
from pipelines.runtime.checkpoints import latest_checkpoint, meta_name, read_meta

if TYPE_CHECKING:  # the classifier family (torch) is imported only by the classifier source
    from pipelines.classifier.model import RewardModel

REWARD = "next.reward"
CLASSIFIER = "classifier"
_TRUE = {"1", "true"}
_FALSE = {"0", "false"}
_FORMS = "csv:FILE, reward, classifier:CKPT_OR_URL or set:3,5,9=success (or =failure)"


@dataclass(frozen=True)
class Source:
    kind: str  # csv, reward, set, classifier
    path: Path | None = None  # csv
    episodes: tuple[int, ...] = ()  # set
    success: bool = True  # set
    target: str = ""  # classifier: a checkpoint or run folder, or an http(s) URL
    success_frames: int = SUCCESS_FRAMES  # classifier

    @property
    def name(self) -> str:
        if self.kind == "csv":
            return f"csv:{self.path}"
        if self.kind == "set":
            eps = ",".join(map(str, self.episodes))
            return f"set:{eps}={'success' if self.success else 'failure'}"
        if self.kind == CLASSIFIER:
            k = self.success_frames
            return f"classifier:{self.target} ({k} positive frame{'s' * (k > 1)} in a row)"
        return self.kind

    @property
    def served(self) -> bool:
        """A classifier source that names the served endpoint (an http:// or https:// URL)."""
        return self.kind == CLASSIFIER and self.target.lower().startswith(("http://", "https://"))


def parse_source(text: str, success_frames: int = SUCCESS_FRAMES) -> Source:
    """`--from`'s value checked (module docstring); `success_frames`: `--success-frames`."""
    text = (text or "").strip()
    kind, sep, rest = text.partition(":")
    if text == "reward":
        return Source("reward")
    if kind == "csv" and sep and rest.strip():
        return Source("csv", path=Path(rest.strip()))
    if kind == "set" and sep:
        return _parse_set(text, rest)
    if kind == CLASSIFIER and sep and rest.strip():
        if isinstance(success_frames, bool) or not isinstance(success_frames, int):
            raise DatasetError(f"--success-frames {success_frames!r}: a whole number")
        if success_frames < 1:
            raise DatasetError(f"--success-frames {success_frames}: at least 1")
        return Source(CLASSIFIER, target=rest.strip(), success_frames=success_frames)
    raise DatasetError(f"--from {text!r}: not a source; one of {_FORMS}")


def _parse_set(text: str, rest: str) -> Source:
    episodes, eq, value = rest.partition("=")
    value = value.strip().lower()
    if not eq or value not in ("success", "failure"):
        raise DatasetError(f"--from {text}: end with =success or =failure (set:3,5,9=success)")
    out = []
    for part in episodes.split(","):
        part = part.strip()
        if not part.isdigit():
            raise DatasetError(f"--from {text}: {part!r} is not an episode index")
        if int(part) in out:
            raise DatasetError(f"--from {text}: episode {int(part)} is named twice")
        out.append(int(part))
    return Source("set", episodes=tuple(out), success=value == "success")


def read_outcomes(
    source: Source, ds: LeRobotDataset, scorer: FrameScorer | None = None
) -> dict[int, bool]:
    """The outcome of each episode `source` names, checked against `ds`'s episodes; a
    classifier source scores with `scorer` (None: the local checkpoint it names)."""
    if source.kind == "csv":
        return _from_csv(source.path, ds)
    if source.kind == "reward":
        return _from_reward(ds)
    if source.kind == CLASSIFIER:
        if scorer is None:
            if source.served:
                raise DatasetError(
                    f"--from {source.target}: a served classifier is asked by `flywheel "
                    "outcomes` (pipelines.outcomes), which builds the endpoint's client"
                )
            scorer = LocalScorer.load(source.target)
        return classifier_outcomes(ds, scorer, source.success_frames)
    for ep in source.episodes:
        _known(ds, ep, f"--from {source.name}")
    return dict.fromkeys(source.episodes, source.success)


def _known(ds: LeRobotDataset, ep: int, where: str) -> None:
    if ep not in ds.episodes:
        raise DatasetError(f"{where}: episode {ep} is not in {ds.root} (it lists {_span(ds)})")


def _span(ds: LeRobotDataset) -> str:
    eps = ds.episode_indices
    return f"episodes {eps[0]}-{eps[-1]}" if eps else "no episodes"


def _from_csv(path: Path, ds: LeRobotDataset) -> dict[int, bool]:
    try:
        with open(path, newline="", encoding="utf-8") as f:
            rows = list(csv.reader(f))
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise DatasetError(f"{path}: cannot be read as CSV ({e.__class__.__name__}: {e})") from e
    rows = [r for r in rows if any(c.strip() for c in r)]
    header = [c.strip() for c in rows[0]] if rows else []
    if "episode_index" not in header or "success" not in header:
        raise DatasetError(f"{path}: needs the columns episode_index,success (found {header})")
    ei, si = header.index("episode_index"), header.index("success")
    out: dict[int, bool] = {}
    for n, row in enumerate(rows[1:], 2):
        where = f"{path}:{n}"
        if len(row) != len(header):
            raise DatasetError(f"{where}: {len(row)} fields, the header has {len(header)}")
        cell, value = row[ei].strip(), row[si].strip().lower()
        if not cell.isdigit():
            raise DatasetError(f"{where}: episode_index {cell!r} is not an episode index")
        ep = int(cell)
        _known(ds, ep, where)
        if ep in out:
            raise DatasetError(f"{where}: episode {ep} appears twice")
        if value not in _TRUE | _FALSE:
            raise DatasetError(f"{where}: success {row[si]!r} is not 1/0 or true/false")
        out[ep] = value in _TRUE
    if not out:
        raise DatasetError(f"{path}: no episodes (only a header)")
    return out


def _from_reward(ds: LeRobotDataset) -> dict[int, bool]:
    if REWARD not in ds.features:
        raise DatasetError(
            f"{ds.root}: no {REWARD} feature, so the reward source has nothing to read "
            f"(use --from csv:FILE or set:EPISODES=success)"
        )
    out: dict[int, bool] = {}
    cache: dict[Path, object] = {}
    for ep in ds.episode_indices:
        path = ds.data_file(ep)
        if path not in cache:  # v3.0: several episodes share a file, read it once
            if not path.exists():
                raise DatasetError(f"{ds.relative(path)}: missing (episode {ep})")
            cache.clear()
            cache[path] = read_columns(path, ["episode_index", REWARD])
        table = cache[path]
        eps = column_to_numpy(table, "episode_index")
        reward = column_to_numpy(table, REWARD)[eps == ep]
        if reward.size == 0:
            raise DatasetError(f"{ds.relative(path)}: no frames of episode {ep}")
        out[ep] = bool(np.any(np.nan_to_num(reward, nan=0.0) > 0))
    return out


# --------------------------------------------------------------------------- the classifier


class FrameScorer(Protocol):
    """What the classifier source scores frames with (module docstring)."""

    name: str  # what the report and errors call it
    cameras: list[str]  # the camera features it takes, in its order
    image_size: int  # its input: image_size x image_size

    def positive(self, images: np.ndarray) -> np.ndarray:
        """N x C x S x S x 3 uint8 (C cameras in `cameras` order) -> N bools: success frames."""
        ...


class LocalScorer:
    """A classifier checkpoint loaded in this process: positive when its success probability
    reaches the threshold chosen at training time."""

    def __init__(self, model: RewardModel, batch: int = 64):
        self.model = model
        self.name = model.name
        self.cameras = list(model.cameras)
        self.image_size = int(model.image_size)
        self.batch = batch

    @classmethod
    def load(cls, target: str) -> LocalScorer:
        """The classifier checkpoint at `target`, or a run folder's latest one."""
        from pipelines.classifier.config import KIND as CLASSIFIER_KIND
        from pipelines.classifier.model import load_reward_model

        path = Path(target)
        if not path.is_dir():
            raise DatasetError(f"--from classifier:{target}: no such checkpoint or run folder")
        if not (path / meta_name(CLASSIFIER_KIND)).exists() and any(path.glob("checkpoint_*")):
            latest = latest_checkpoint(path, CLASSIFIER_KIND)
            if latest is None:
                raise DatasetError(
                    f"{path}: no loadable classifier checkpoint in the run folder (a "
                    "checkpoint of flywheel train-classifier, or its run folder)"
                )
            path = latest
        read_meta(path, CLASSIFIER_KIND)  # one line naming what the folder is instead
        try:
            return cls(load_reward_model(path))
        except (KeyError, TypeError, ValueError, RuntimeError) as e:  # its config or weights
            why = " ".join(str(e).split())[:200] or type(e).__name__
            raise DatasetError(f"{path}: not a loadable classifier checkpoint ({why})") from None

    def positive(self, images: np.ndarray) -> np.ndarray:
        probs = [
            self.model.probabilities(images[a : a + self.batch])
            for a in range(0, len(images), self.batch)
        ]
        if not probs:
            return np.zeros(0, bool)
        return np.concatenate(probs) >= self.model.threshold


def consecutive_success(positive: np.ndarray, frames: int) -> bool:
    """Whether `frames` (>= 1) consecutive entries of `positive` are true."""
    run = 0
    for p in np.asarray(positive, bool):
        run = run + 1 if p else 0
        if run >= frames:
            return True
    return False


def classifier_outcomes(ds: LeRobotDataset, scorer: FrameScorer, frames: int) -> dict[int, bool]:
    """Every episode's outcome by the classifier: `frames` positive frames in a row."""
    from pipelines.classifier.data import load_frames
    from pipelines.classifier.labels import EpisodeLabels

    missing = [c for c in scorer.cameras if c not in ds.camera_keys]
    if missing:
        raise DatasetError(
            f"{ds.root}/meta/info.json: no camera {missing[0]}, which the classifier "
            f"{scorer.name} takes (it takes {scorer.cameras}; the dataset has {ds.camera_keys})"
        )
    out = {}
    for ep in ds.episode_indices:
        images = load_frames(ds, EpisodeLabels(ep, ()), scorer.cameras, scorer.image_size).images
        out[ep] = consecutive_success(scorer.positive(images), frames)
    return out
