"""`flywheel outcomes DATASET --from SOURCE`: each episode's success flag, in place.

Writes `episode_success` (the field Evo-RL's recorder and value trainer use) into v2.1
`meta/episodes.jsonl` or v3.0's `meta/episodes/` parquet files, as one atomic commit under the
dataset's writer lock; episodes the source does not name keep theirs. Sources: `csv:FILE`
(columns episode_index,success), `reward` (any next.reward > 0 in the episode),
`classifier:CKPT_OR_URL` (the reward classifier over the episode's frames: a success is
`--success-frames K` consecutive positive frames), `set:3,5,9=success` (or =failure). The
design is in `pipelines.recap.outcomes`; this module parses the flags and, for a classifier
served by `flywheel serve-reward` (an http(s) URL), builds its client (`ServedScorer`).

Also `python -m pipelines.outcomes` (for `ray job submit`).
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from pipelines.dataset import DatasetError, LeRobotDataset
from pipelines.recap import OutcomesConfig, OutcomesResult
from pipelines.recap import run as run_outcomes
from pipelines.recap.outcomes import report_lines
from pipelines.recap.sources import parse_source
from pipelines.runtime.cli import Job
from pipelines.runtime.cluster import exit_process

__all__ = ["OutcomesConfig", "OutcomesResult", "ServedScorer", "build_parser", "main", "run"]


class ServedScorer:
    """The classifier `flywheel serve-reward` serves at `url`, as the classifier source's
    `FrameScorer`: `GET /reward` once for its cameras, size and name, then one `POST` per
    frame (a .npy body, `threads` requests in flight so that the endpoint can batch them),
    positive where it answers success. Each thread has its own client (`HTTPRewardClient`:
    retries, TLS, the token from FLYWHEEL_REWARD_TOKEN). Anything the endpoint does not answer
    is a one-line DatasetError naming the URL. `serving` (Ray Serve) is imported here only:
    the other sources do not wait for it."""

    def __init__(self, url: str, threads: int = 8):
        from serving.client import RewardUnavailable
        from serving.request_body import RewardRequestError

        self.url = url
        self._refusals = (RewardUnavailable, RewardRequestError)
        self._clients: list = []
        self._local = threading.local()
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(threads, thread_name_prefix="reward")
        info = self._ask(lambda client: client.info())
        try:
            self.cameras = [str(c) for c in info["cameras"]]
            self.image_size = int(info["image_size"])
            self.name = f"{info['model']} at {url}"
        except (KeyError, TypeError, ValueError):
            raise DatasetError(
                f"--from classifier:{url}: GET answered {str(info)[:120]!r}, not the reward "
                "endpoint's description (is this URL flywheel serve-reward's?)"
            ) from None

    def _client(self):
        """This thread's `serving.client.HTTPRewardClient` (one keep-alive connection each)."""
        from serving.client import HTTPRewardClient

        client = getattr(self._local, "client", None)
        if client is None:
            try:
                client = HTTPRewardClient(self.url, body="npy")
            except ValueError as e:  # not an http(s) URL with a host
                raise DatasetError(f"--from classifier:{self.url}: {e}") from None
            with self._lock:
                self._clients.append(client)
            self._local.client = client
        return client

    def _ask(self, call):
        try:
            return call(self._client())
        except self._refusals as e:
            why = " ".join(str(e).split())
            raise DatasetError(f"--from classifier:{self.url}: {why}") from None

    def _frame_positive(self, frame: np.ndarray) -> bool:
        images = {camera: frame[c] for c, camera in enumerate(self.cameras)}
        answer = self._ask(lambda client: client.score(images))
        if not isinstance(answer, dict) or not isinstance(answer.get("success"), bool):
            raise DatasetError(
                f"--from classifier:{self.url}: answered {str(answer)[:120]!r}, without a "
                "success of true or false"
            )
        return answer["success"]

    def positive(self, images: np.ndarray) -> np.ndarray:
        return np.array(list(self._pool.map(self._frame_positive, images)), dtype=bool)

    def close(self) -> None:
        self._pool.shutdown(cancel_futures=True)
        for client in self._clients:
            client.close()


def run(cfg: OutcomesConfig) -> OutcomesResult:
    """`pipelines.recap.run`, with the served classifier's client for a URL source."""
    source = parse_source(cfg.source, cfg.success_frames)
    if not source.served:
        return run_outcomes(cfg)
    LeRobotDataset(cfg.dataset)  # a missing dataset is said before the endpoint is asked
    scorer = ServedScorer(source.target)
    try:
        return run_outcomes(cfg, scorer=scorer)
    finally:
        scorer.close()


def report(cfg: OutcomesConfig, result: OutcomesResult) -> list[str]:
    lines = report_lines(result)
    if not result.written:
        return [*lines, "(dry run: nothing written)"]
    return [*lines, f"Results: {result.dataset} (episode_success in meta/episodes)"]


JOB = Job("outcomes", __doc__, OutcomesConfig, run, report)
build_parser = JOB.build_parser
main = JOB.main


if __name__ == "__main__":
    exit_process(main(prog="python -m pipelines.outcomes"))
