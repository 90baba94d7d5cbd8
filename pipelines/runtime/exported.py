"""A model `flywheel export` wrote: built from `config.json`, weights from `model.safetensors`.

This module imports only the standard library, numpy, torch and safetensors: no Ray, no MLflow,
no dataset layer, nothing of Flywheel's. `flywheel export` copies it into its output folder as
`flywheel_model.py`, so an exported model runs where Flywheel is not installed:

    import sys; sys.path.insert(0, "exported")          # the folder flywheel export wrote
    from flywheel_model import load_exported
    model = load_exported("exported")
    chunk = model.predict({                              # a policy: H x A actions
        "observation.state": state,                      # D floats, in config.json's "unit"
        "observation.images.front": frame,               # H x W x 3 uint8 RGB, any size
        "task": "pick the cube, Advantage: positive",    # optional: config's default prompt
    })

`model.predict` takes LeRobot's feature names and returns, by kind: a policy's action chunk
(chunk_size x action_dim, in the dataset's units), the reward classifier's success probability,
or a value model's value (estimator kai0 also takes `history=`, the observation of the episode's
first frame; recap takes the frame's `task`). A leading batch dimension (N x D states, N x H x W
x 3 images, a list of N tasks) gives N outputs. Frames of another size are resized to the
model's square input by area averaging, as training resized them (OpenCV's INTER_AREA, to
within one intensity level). `python flywheel_model.py FOLDER` loads a model and runs it once.

The architectures are copies of Flywheel's (pipelines.vision.encoders and .prompts, and the
policy, classifier and estimator models), module for module so that their weights' names are
the same; tests/pipelines/export checks that every kind's outputs equal the original model's.
"""

from __future__ import annotations

import hashlib
import json
import re
import sys
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file
from torch import nn

FORMAT = "flywheel-export"
FORMAT_VERSION = 1
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
CAMERA_PREFIX = "observation.images."
STATE = "observation.state"

# --------------------------------------------------------------------------- image encoders


class _Residual(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.skip = (
            nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
            if stride != 1 or cin != cout
            else nn.Identity()
        )

    def forward(self, x):
        y = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(self.bn2(self.conv2(y)) + self.skip(x))


def _conv(cin: int, cout: int, stride: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU()
    )


class _PooledEncoder(nn.Module):
    def __init__(self, trunk: nn.Module, channels: int, out_dim: int):
        super().__init__()
        self.body = trunk
        self.head = nn.Sequential(
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(channels, out_dim)
        )

    def trunk(self) -> nn.Module:
        return self.body

    def forward(self, x):
        return self.head(self.body(x))


class ResNetSmall(nn.Module):
    def __init__(self, out_dim: int = 128, width: int = 32):
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(3, width, 5, 2, 2, bias=False),
            nn.BatchNorm2d(width),
            nn.ReLU(),
            _Residual(width, width, 2),
            _Residual(width, 2 * width, 2),
            _Residual(2 * width, 4 * width, 2),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Linear(4 * width, out_dim),
        )

    def trunk(self) -> nn.Module:
        return self.net[:-3]

    def forward(self, x):
        return self.net(x)


class _DrQV2Trunk(nn.Module):
    def __init__(self, in_channels: int, channels: int):
        super().__init__()
        layers = [nn.Conv2d(in_channels, channels, 3, stride=2), nn.ReLU()]
        for _ in range(3):
            layers += [nn.Conv2d(channels, channels, 3, stride=1), nn.ReLU()]
        self.convs = nn.Sequential(*layers)

    def forward(self, x):
        return self.convs(x - 0.5)


class DrQV2Encoder(nn.Module):
    def __init__(self, out_dim: int = 50, in_channels: int = 3, image_size: int = 64, width=32):
        super().__init__()
        self.body = _DrQV2Trunk(in_channels, width)
        side = (image_size - 3) // 2 + 1 - 6
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(width * side * side, out_dim))

    def trunk(self) -> nn.Module:
        return self.body

    def forward(self, x):
        return self.head(self.body(x))


class SmallConvNet(_PooledEncoder):
    def __init__(self, out_dim: int = 128):
        trunk = nn.Sequential(_conv(3, 16, 2), _conv(16, 32, 2), _conv(32, 32, 2), _conv(32, 64, 2))
        super().__init__(trunk, 64, out_dim)


class ResNet10(_PooledEncoder):
    def __init__(self, out_dim: int = 512):
        trunk = nn.Sequential(
            nn.Conv2d(3, 64, 7, 2, 3, bias=False),
            nn.BatchNorm2d(64),
            nn.ReLU(),
            nn.MaxPool2d(3, 2, 1),
            _Residual(64, 64, 1),
            _Residual(64, 128, 2),
            _Residual(128, 256, 2),
            _Residual(256, 512, 2),
        )
        super().__init__(trunk, 512, out_dim)


class SpatialSoftmaxEncoder(nn.Module):
    def __init__(self, out_dim: int = 64, width: int = 32, keypoints: int = 32):
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(3, width, 3, 2, 1),
            nn.ReLU(),
            nn.Conv2d(width, width, 3, 1, 1),
            nn.ReLU(),
            nn.Conv2d(width, 2 * width, 3, 2, 1),
            nn.ReLU(),
            nn.Conv2d(2 * width, 2 * width, 3, 1, 1),
            nn.ReLU(),
            nn.Conv2d(2 * width, keypoints, 1),
        )
        self.log_temperature = nn.Parameter(torch.zeros(()))
        self.out = nn.Linear(2 * keypoints, out_dim)

    def forward(self, x):
        maps = self.net(x - 0.5)
        b, k, h, w = maps.shape
        attention = torch.softmax(maps.reshape(b, k, h * w) / self.log_temperature.exp(), dim=-1)
        ys = torch.linspace(-1.0, 1.0, h, device=x.device, dtype=maps.dtype)
        xs = torch.linspace(-1.0, 1.0, w, device=x.device, dtype=maps.dtype)
        grid_y, grid_x = torch.meshgrid(ys, xs, indexing="ij")
        points = torch.stack(
            [attention @ grid_x.reshape(-1), attention @ grid_y.reshape(-1)], dim=-1
        )
        return self.out(points.reshape(b, 2 * k))


ENCODERS = {
    "resnet_small": ResNetSmall,
    "drqv2": DrQV2Encoder,
    "small_convnet": SmallConvNet,
    "resnet10": ResNet10,
    "spatial_softmax": SpatialSoftmaxEncoder,
}


# --------------------------------------------------------------------------- prompts

_WORD = re.compile(r"[a-z0-9]+")
_ADVANTAGE_SUFFIX = re.compile(r", Advantage: (?:negative|positive|-?\d+)$")


def word_id(word: str, vocab: int) -> int:
    """A word's id in 1 .. vocab - 1 (0 is padding): BLAKE2b-8 of its UTF-8, little-endian."""
    digest = hashlib.blake2b(word.encode("utf-8"), digest_size=8).digest()
    return 1 + int.from_bytes(digest, "little") % (vocab - 1)


def tokenize(texts: list[str], vocab: int) -> np.ndarray:
    """Texts -> len(texts) x L int64 word ids (lowercase [a-z0-9]+ words), 0-padded."""
    ids = [[word_id(w, vocab) for w in _WORD.findall(t.lower())] for t in texts]
    out = np.zeros((len(texts), max([1, *map(len, ids)])), dtype=np.int64)
    for i, row in enumerate(ids):
        out[i, : len(row)] = row
    return out


class PromptEncoder(nn.Module):
    def __init__(self, vocab: int, dim: int):
        super().__init__()
        self.bag = nn.EmbeddingBag(vocab, dim, mode="mean", padding_idx=0)

    def forward(self, tokens):
        return self.bag(tokens)


# --------------------------------------------------------------------------- images


def _axis_weights(src: int, dst: int, area: bool) -> np.ndarray:
    """dst x src weights of OpenCV's INTER_AREA along one axis: each output pixel the mean of
    the input it covers (`area`, when shrinking both axes), else OpenCV's linear blend."""
    scale = src / dst
    out = np.zeros((dst, src))
    if area:
        lo, hi, j = (
            np.arange(dst)[:, None] * scale,
            (np.arange(dst)[:, None] + 1) * scale,
            np.arange(src),
        )
        overlap = np.minimum(hi, j + 1) - np.maximum(lo, j)
        return np.clip(overlap, 0.0, None) / scale
    for d in range(dst):
        s = int(np.floor(d * scale))
        f = (d + 1) - (s + 1) / scale
        f = 0.0 if f <= 0 else f - np.floor(f)
        if s >= src - 1:
            s, f = src - 1, 0.0
        out[d, s] += 1.0 - f
        if f:
            out[d, s + 1] += f
    return out


def resize(frame: np.ndarray, size: int) -> np.ndarray:
    """An H x W x 3 uint8 frame as size x size (as pipelines.vision.images.resize does)."""
    h, w = frame.shape[:2]
    if (h, w) == (size, size):
        return np.ascontiguousarray(frame)
    area = h >= size and w >= size
    rows, cols = _axis_weights(h, size, area), _axis_weights(w, size, area)
    out = np.einsum("ih,hwc,jw->ijc", rows, frame.astype(np.float64), cols, optimize=True)
    return np.clip(np.floor(out + 0.5), 0, 255).astype(np.uint8)


# --------------------------------------------------------------------------- the models


class ChunkPolicy(nn.Module):
    """pipelines.policy.model.ChunkPolicy: a chunk from cameras and state, FiLM by the prompt."""

    def __init__(self, c: dict):
        super().__init__()
        self.c = c
        self.encoders = nn.ModuleList(
            ENCODERS[c["encoder"]](c["feature_dim"]) for _ in c["cameras"]
        )
        self.prompt = PromptEncoder(c["prompt_vocab"], c["prompt_dim"])
        n_in = len(c["cameras"]) * c["feature_dim"] + c["state_dim"]
        hidden, chunk, actions = c["hidden_dim"], c["chunk_size"], c["action_dim"]
        self.inp = nn.Sequential(nn.Linear(n_in, hidden), nn.LayerNorm(hidden))
        self.film = nn.Linear(c["prompt_dim"], 2 * hidden)
        self.head = nn.Sequential(
            nn.GELU(), nn.Linear(hidden, hidden), nn.GELU(), nn.Linear(hidden, chunk * actions)
        )
        self.register_buffer("state_mean", torch.zeros(c["state_dim"]))
        self.register_buffer("state_std", torch.ones(c["state_dim"]))
        self.register_buffer("action_mean", torch.zeros(chunk, actions))
        self.register_buffer("action_std", torch.ones(chunk, actions))

    def forward(self, images, state, tokens):
        """Images B x C x S x S x 3 uint8, raw state B x D, word ids B x L -> B x H x A actions
        in the dataset's units."""
        x = images.permute(0, 1, 4, 2, 3).float().div_(255.0)
        features = torch.cat([enc(x[:, i]) for i, enc in enumerate(self.encoders)], dim=1)
        normalized = (state.float() - self.state_mean) / self.state_std
        h = self.inp(torch.cat([features, normalized], dim=1))
        scale, shift = self.film(self.prompt(tokens)).chunk(2, dim=1)
        out = self.head(h * (1.0 + scale) + shift)
        chunk = out.reshape(-1, self.c["chunk_size"], self.c["action_dim"])
        actions = chunk * self.action_std + self.action_mean
        if self.c["action_frame"] == "relative":
            actions = actions + state[:, None, :].float()
        return actions


class SpatialEmbeddings(nn.Module):
    def __init__(self, channels: int, height: int, width: int, features: int):
        super().__init__()
        self.kernel = nn.Parameter(torch.zeros(channels, height, width, features))

    def forward(self, x):
        return torch.einsum("bchw,chwk->bck", x, self.kernel).flatten(1)


class RewardClassifier(nn.Module):
    """pipelines.classifier.model.RewardClassifier: one logit per frame of every camera."""

    def __init__(self, c: dict):
        super().__init__()
        self.trunk = ENCODERS[c["encoder"]](1).trunk()
        with torch.no_grad():
            probe = torch.zeros(1, 3, c["image_size"], c["image_size"])
            _, channels, h, w = self.trunk.eval()(probe).shape
        dim, hidden = c["camera_dim"], c["hidden_dim"]
        self.embed = nn.ModuleList(
            nn.Sequential(
                SpatialEmbeddings(channels, h, w, c["spatial_features"]),
                nn.Linear(channels * c["spatial_features"], dim),
                nn.LayerNorm(dim),
                nn.Tanh(),
            )
            for _ in c["cameras"]
        )
        self.head = nn.Sequential(
            nn.Linear(len(c["cameras"]) * dim, hidden),
            nn.Dropout(c["dropout"]),
            nn.LayerNorm(hidden),
            nn.ReLU(),
            nn.Linear(hidden, 1),
        )

    def forward(self, images):
        """N x C x S x S x 3 uint8 -> N logits."""
        n, c, h, w, _ = images.shape
        maps = self.trunk(images.reshape(n * c, h, w, 3).permute(0, 3, 1, 2).float().div_(255.0))
        maps = maps.reshape(n, c, *maps.shape[1:])
        features = torch.cat([embed(maps[:, i]) for i, embed in enumerate(self.embed)], dim=1)
        return self.head(features).squeeze(1)


class ValueModel(nn.Module):
    """pipelines.estimator.model.AdvantageEstimator: kai0 and pi06 (progress in [-1, 1]) and
    recap (the expectation of `bins` logits over [-1, 0])."""

    def __init__(self, c: dict):
        super().__init__()
        self.c = c
        self.recap = c["variant"] == "recap"
        self.timesteps = 2 if c["variant"] == "kai0" else 1
        self.encoder = ENCODERS[c["encoder"]](c["feature_dim"])
        n_in = self.timesteps * (len(c["cameras"]) * c["feature_dim"] + c["state_dim"])
        if self.recap:
            self.prompt = PromptEncoder(c["prompt_vocab"], c["prompt_dim"])
            n_in += c["prompt_dim"]
            self.register_buffer("state_mean", torch.zeros(c["state_dim"]))
            self.register_buffer("state_std", torch.ones(c["state_dim"]))
        hidden = c["hidden_dim"]
        out = [nn.Linear(hidden, c["bins"])] if self.recap else [nn.Linear(hidden, 1), nn.Tanh()]
        self.head = nn.Sequential(
            nn.Linear(n_in, hidden), nn.SiLU(), nn.Linear(hidden, hidden), nn.SiLU(), *out
        )

    def forward(self, images, state, tokens):
        """Images B x T x C x S x S x 3 uint8 (history first), state B x T x D, word ids B x L
        (recap) -> B values."""
        b, t, c, h, w, _ = images.shape
        x = images.reshape(b * t * c, h, w, 3).permute(0, 3, 1, 2).float().div_(255.0)
        features = self.encoder(x).reshape(b, -1)
        if not self.recap:
            scaled = state.reshape(b, -1).float() / self.c["state_scale"]
            return self.head(torch.cat([features, scaled], dim=1)).squeeze(1)
        normalized = (state.reshape(b, -1).float() - self.state_mean) / self.state_std
        logits = self.head(torch.cat([features, normalized, self.prompt(tokens)], dim=1))
        centers = torch.linspace(-1.0, 0.0, logits.shape[-1], device=logits.device)
        return torch.softmax(logits.float(), dim=-1) @ centers


ARCHITECTURES = {"policy": ChunkPolicy, "classifier": RewardClassifier, "estimator": ValueModel}


# --------------------------------------------------------------------------- the exported model


class ExportedModel:
    """An exported model: `module` (torch, eval mode), `config` (config.json) and `predict`."""

    def __init__(self, config: dict, module: nn.Module, device: str):
        self.config = config
        self.module = module
        self.device = device
        self.kind = config["kind"]
        self.cameras = list(config["model"]["cameras"])
        self.image_size = int(config["model"]["image_size"])

    def images(self, observation: dict) -> tuple[np.ndarray, bool]:
        """(N x C x S x S x 3 uint8 in the model's camera order, whether it was a batch)."""
        frames, batched = [], None
        for key in self.cameras:
            if key not in observation:
                raise ValueError(f"observation: no {key!r} (the model's cameras: {self.cameras})")
            a = np.asarray(observation[key])
            if a.dtype != np.uint8 or a.ndim not in (3, 4) or a.shape[-1] != 3:
                raise ValueError(
                    f"{key}: {a.dtype} {list(a.shape)}, expected H x W x 3 (or N x H x W x 3) uint8"
                )
            if batched is not None and (a.ndim == 4) != batched:
                raise ValueError(f"{key}: batched unlike the other cameras")
            batched = a.ndim == 4
            frames.append(np.stack([resize(f, self.image_size) for f in (a if batched else [a])]))
        if len({len(f) for f in frames}) > 1:
            raise ValueError(f"observation: the cameras have {[len(f) for f in frames]} frames")
        return np.ascontiguousarray(np.stack(frames, axis=1)), bool(batched)

    def state(self, observation: dict, frames: int, batched: bool) -> np.ndarray:
        """N x D float32 `observation.state`."""
        dim = int(self.config["model"]["state_dim"])
        if STATE not in observation:
            raise ValueError(f"observation: no {STATE!r} ({dim} values)")
        a = np.asarray(observation[STATE], dtype=np.float32)
        if a.shape != ((frames, dim) if batched else (dim,)):
            wanted = f"{frames} x {dim}" if batched else f"{dim}"
            raise ValueError(f"{STATE}: shape {list(a.shape)}, expected {wanted} values")
        return a if batched else a[None]

    def tasks(self, observation: dict, frames: int, batched: bool, default: str | None) -> list:
        task = observation.get("task", default)
        if task is None:
            raise ValueError("observation: no 'task' (the frame's task text)")
        tasks = [task] * frames if isinstance(task, str) else list(task)
        if len(tasks) != frames or not all(isinstance(t, str) for t in tasks):
            raise ValueError(f"task: one text, or a list of {frames} texts for a batch")
        return tasks

    def run(self, *arrays) -> np.ndarray:
        with torch.inference_mode():
            inputs = [torch.from_numpy(np.ascontiguousarray(a)).to(self.device) for a in arrays]
            return self.module(*inputs).float().cpu().numpy()

    def example_inputs(self, seed: int = 0) -> list[np.ndarray]:
        """Random inputs of the module's forward (a smoke test, and the export's own check)."""
        rng, m = np.random.default_rng(seed), self.config["model"]
        images = rng.integers(0, 256, (2, len(self.cameras), self.image_size, self.image_size, 3))
        images = images.astype(np.uint8)
        if self.kind == "classifier":
            return [images]
        state = rng.normal(0.0, 30.0, (2, m["state_dim"])).astype(np.float32)
        tokens = tokenize(["pick up the cube", "place it, Advantage: positive"], m["prompt_vocab"])
        if self.kind == "policy":
            return [images, state, tokens]
        t = 2 if m["variant"] == "kai0" else 1
        return [np.stack([images] * t, axis=1), np.stack([state] * t, axis=1), tokens]


class ExportedPolicy(ExportedModel):
    def predict(self, observation: dict, cfg_scale: float = 1.0) -> np.ndarray:
        """The action chunk (chunk_size x action_dim; N x ... for a batch) in the dataset's
        units. `task` defaults to config.json's `prompt.default`; `cfg_scale` != 1 is
        classifier-free guidance against the task without its ', Advantage: ...' label."""
        images, batched = self.images(observation)
        state = self.state(observation, len(images), batched)
        prompts = self.tasks(observation, len(images), batched, self.config["prompt"]["default"])
        vocab = int(self.config["model"]["prompt_vocab"])
        chunk = self.run(images, state, tokenize(prompts, vocab))
        if cfg_scale != 1.0:
            bare = [_ADVANTAGE_SUFFIX.sub("", p) for p in prompts]
            if bare == prompts:
                raise ValueError("cfg_scale: guidance needs a labeled task (', Advantage: ...')")
            uncond = self.run(images, state, tokenize(bare, vocab))
            chunk = uncond + cfg_scale * (chunk - uncond)
        return chunk if batched else chunk[0]


class ExportedClassifier(ExportedModel):
    def predict(self, observation: dict) -> float | np.ndarray:
        """The success probability (N of them for a batch); success is >= `threshold`."""
        images, batched = self.images(observation)
        p = 1.0 / (1.0 + np.exp(-self.run(images).astype(np.float64)))
        return p.astype(np.float32) if batched else float(p[0])

    @property
    def threshold(self) -> float:
        return float(self.config["threshold"])


class ExportedValue(ExportedModel):
    def predict(self, observation: dict, history: dict | None = None) -> float | np.ndarray:
        """The value: kai0 the progress from `history` (the episode's first frame, for the
        absolute value) to this frame, pi06 the progress of this frame, both in [-1, 1];
        recap V in [-1, 0] of this frame under its `task`."""
        variant = self.config["model"]["variant"]
        images, batched = self.images(observation)
        n = len(images)
        state = self.state(observation, n, batched)
        if variant == "kai0":
            if history is None:
                raise ValueError("kai0 compares two frames: give history=<the earlier observation>")
            old_images, old_batched = self.images(history)
            if old_batched != batched or len(old_images) != n:
                raise ValueError("history: as many frames as the observation, batched alike")
            images = np.stack([old_images, images], axis=1)
            state = np.stack([self.state(history, n, batched), state], axis=1)
        else:
            images, state = images[:, None], state[:, None]
        tokens = np.zeros((n, 1), np.int64)
        if variant == "recap":
            texts = self.tasks(observation, n, batched, None)
            tokens = tokenize(texts, int(self.config["model"]["prompt_vocab"]))
        v = self.run(images, state, tokens)
        return v if batched else float(v[0])


MODELS = {"policy": ExportedPolicy, "classifier": ExportedClassifier, "estimator": ExportedValue}


def load_exported(folder, device: str = "cpu") -> ExportedModel:
    """The model `flywheel export` wrote to `folder`; a one-line ValueError if it is not one."""
    folder = Path(folder)
    try:
        config = json.loads((folder / CONFIG_FILE).read_text())
    except (OSError, ValueError) as e:
        raise ValueError(
            f"{folder / CONFIG_FILE}: unreadable ({' '.join(str(e).split())})"
        ) from None
    if not isinstance(config, dict) or config.get("format") != FORMAT:
        raise ValueError(f"{folder / CONFIG_FILE}: not a {FORMAT} config")
    if config.get("format_version", 0) > FORMAT_VERSION:
        raise ValueError(
            f"{folder / CONFIG_FILE}: format version {config['format_version']}, this loader "
            f"reads up to {FORMAT_VERSION} (use the flywheel_model.py exported with it)"
        )
    kind = config.get("kind")
    if kind not in ARCHITECTURES:
        raise ValueError(f"{folder / CONFIG_FILE}: kind {kind!r}, one of {sorted(ARCHITECTURES)}")
    try:
        module = ARCHITECTURES[kind](config["model"])
    except (KeyError, TypeError) as e:
        raise ValueError(f"{folder / CONFIG_FILE}: incomplete model section ({e})") from None
    try:
        weights = load_file(folder / WEIGHTS_FILE, device="cpu")
    except Exception as e:  # safetensors raises its own SafetensorError, OSError, ...
        raise ValueError(
            f"{folder / WEIGHTS_FILE}: unreadable ({' '.join(str(e).split())})"
        ) from None
    try:
        module.load_state_dict(weights)
    except RuntimeError as e:  # names missing, unexpected and misshapen weights
        why = " ".join(str(e).split())[:300]
        raise ValueError(f"{folder / WEIGHTS_FILE}: does not fit {CONFIG_FILE} ({why})") from None
    return MODELS[kind](config, module.to(device).eval(), device)


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python flywheel_model.py FOLDER  (a folder flywheel export wrote)")
    try:
        exported = load_exported(sys.argv[1])
    except ValueError as e:
        sys.exit(f"flywheel_model: {e}")
    out = exported.run(*exported.example_inputs())
    print(
        json.dumps(
            {"kind": exported.kind, "inputs": exported.config["inputs"], "output": list(out.shape)}
        )
    )
