"""DrQ-v2 with a behaviour-cloning term on interventions (plain PyTorch, no Ray).

As the DrQ-v2 paper and code (facebookresearch/drqv2), on HIL-SERL's observations (camera
images or frozen-encoder features, and the robot's joints):

* **Encoder.** `drqv2`: the registry's `drqv2` convolutions over every camera (one set of
  weights, `3 x frame_stack` input channels), flattened and concatenated; trained only through
  the critic's loss, random-shift augmentation (replicate pad 4) of obs and next obs
  independently, next obs encoded by the online encoder under no_grad (no target encoder).
  `frozen`: the observation already holds a frozen encoder's features (computed once per frame
  by the collector, kept in the replay buffer); nothing of it trains.
* **Actor.** Its own trunk Linear(repr -> 50) + LayerNorm + Tanh on *detached* features, the
  normalized joints appended, an MLP (hidden, hidden) and a tanh mean; exploration and target
  actions from a normal with the scheduled std (`linear(0.2,0.05,5000)` by default, the seed's)
  truncated to +-`stddev_clip` (0.3) and to [-1, 1]; no entropy term.
* **Critic.** Its own trunk, twin Q heads; target y = R_n + gamma^n min(Q1', Q2')(s_{t+n}, a')
  with n = 3, gamma 0.99, no bootstrap after a true terminal (the replay buffer gives R_n and
  the discount: 0 after a terminal, gamma^m after a truncation); soft target update tau 0.01
  after every critic update. `clip_target_q` clips y to the reward setup's bound (the Q
  monitor's, `pipelines.rl.monitor`).
* **BC.** `actor_loss = -min_q.mean() + bc_weight * MSE(actor_actions[m], demo_actions[m])`,
  exactly seed 001's term, `actor_actions` the sampled actions the Q term uses, `m` the samples
  whose `is_intervention` is true, or (`bc_on="interventions+demos"`) also demo transitions: an
  offline demo carries no intervention flag, so the replay buffer keeps both masks.
* **UTD.** `utd_ratio` critic updates (each on its own batch) per actor update.

Adam, lr 1e-4 for encoder, actor and critic, as DrQ-v2. The networks' sizes are
`hidden_dim` (DrQ-v2: 1024) and `feature_dim` (50).
"""

from __future__ import annotations

import copy

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from pipelines.rl.config import AgentConfig, stddev
from pipelines.rl.frames import FEATURES_KEY, STATE_KEY
from pipelines.vision.encoders import ENCODERS


def _orthogonal(module: nn.Module) -> None:
    if isinstance(module, nn.Linear):
        nn.init.orthogonal_(module.weight.data)
        if module.bias is not None:
            module.bias.data.fill_(0.0)
    elif isinstance(module, nn.Conv2d):
        nn.init.orthogonal_(module.weight.data, nn.init.calculate_gain("relu"))
        if module.bias is not None:
            module.bias.data.fill_(0.0)


def sample_action(
    mean: torch.Tensor, std: float, clip: float | None, generator: torch.Generator | None = None
) -> torch.Tensor:
    """mean + N(0, std) noise clipped to +-clip, the action kept in [-1, 1] (straight-through
    gradient at the bounds, as DrQ-v2's truncated normal)."""
    noise = torch.randn(mean.shape, generator=generator, device=mean.device) * std
    if clip is not None:
        noise = noise.clamp(-clip, clip)
    x = mean + noise
    bounded = x.clamp(-1.0 + 1e-6, 1.0 - 1e-6)
    return x - x.detach() + bounded.detach()


def random_shift(x: torch.Tensor, pad: int, generator: torch.Generator | None = None):
    """DrQ's augmentation: replicate-pad by `pad`, crop back at a random offset per image."""
    n, c, h, w = x.shape
    padded = F.pad(x, (pad, pad, pad, pad), mode="replicate")
    oy = torch.randint(0, 2 * pad + 1, (n,), device=x.device, generator=generator)
    ox = torch.randint(0, 2 * pad + 1, (n,), device=x.device, generator=generator)
    rows = (oy[:, None] + torch.arange(h, device=x.device)[None])[:, None, :, None]
    cols = (ox[:, None] + torch.arange(w, device=x.device)[None])[:, None, None, :]
    batch = torch.arange(n, device=x.device)[:, None, None, None]
    chans = torch.arange(c, device=x.device)[None, :, None, None]
    return padded[batch, chans, rows, cols]


class ImageEncoder(nn.Module):
    """The drqv2 convolutions over each camera (shared weights), flattened and concatenated."""

    def __init__(self, config: AgentConfig):
        super().__init__()
        self.cameras = list(config.cameras)
        encoder = ENCODERS["drqv2"](
            config.feature_dim, in_channels=3 * config.frame_stack, image_size=config.image_size
        )
        self.convs = encoder.trunk()
        side = (config.image_size - 3) // 2 + 1 - 6
        self.repr_dim = len(self.cameras) * encoder.trunk_channels * side * side
        self.apply(_orthogonal)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """images: B x cameras x (3 * stack) x H x W float in [0, 1]."""
        b, c = images.shape[:2]
        out = self.convs(images.reshape(b * c, *images.shape[2:]))
        return out.reshape(b, -1)


class Actor(nn.Module):
    def __init__(self, repr_dim: int, config: AgentConfig):
        super().__init__()
        self.trunk = nn.Sequential(
            nn.Linear(repr_dim, config.feature_dim), nn.LayerNorm(config.feature_dim), nn.Tanh()
        )
        h = config.hidden_dim
        self.policy = nn.Sequential(
            nn.Linear(config.feature_dim + config.state_dim, h),
            nn.ReLU(inplace=True),
            nn.Linear(h, h),
            nn.ReLU(inplace=True),
            nn.Linear(h, config.action_dim),
        )
        self.apply(_orthogonal)

    def forward(self, features: torch.Tensor, state: torch.Tensor) -> torch.Tensor:
        """The action mean in [-1, 1]."""
        z = torch.cat([self.trunk(features), state], dim=1)
        return torch.tanh(self.policy(z))


class Critic(nn.Module):
    def __init__(self, repr_dim: int, config: AgentConfig):
        super().__init__()
        self.trunk = nn.Sequential(
            nn.Linear(repr_dim, config.feature_dim), nn.LayerNorm(config.feature_dim), nn.Tanh()
        )
        h = config.hidden_dim
        n_in = config.feature_dim + config.state_dim + config.action_dim

        def head():
            return nn.Sequential(
                nn.Linear(n_in, h), nn.ReLU(inplace=True), nn.Linear(h, h), nn.ReLU(inplace=True),
                nn.Linear(h, 1),
            )  # fmt: skip

        self.q1, self.q2 = head(), head()
        self.apply(_orthogonal)

    def forward(self, features, state, action) -> tuple[torch.Tensor, torch.Tensor]:
        z = torch.cat([self.trunk(features), state, action], dim=1)
        return self.q1(z).squeeze(1), self.q2(z).squeeze(1)


class ObservationCodec:
    """Numpy observations (replay batches or one observation) -> torch inputs of the networks."""

    def __init__(self, config: AgentConfig, device: torch.device):
        self.config = config
        self.device = device
        low = np.asarray(config.state_low or [-1.0] * config.state_dim, dtype=np.float32)
        high = np.asarray(config.state_high or [1.0] * config.state_dim, dtype=np.float32)
        self.state_mid = torch.as_tensor((low + high) / 2, device=device)
        self.state_half = torch.as_tensor(np.maximum((high - low) / 2, 1e-6), device=device)

    def state(self, obs: dict) -> torch.Tensor:
        """The current (newest) frame's joints, normalized to about [-1, 1]."""
        s = torch.as_tensor(np.asarray(obs[STATE_KEY])[:, -1], device=self.device)
        return (s.float() - self.state_mid) / self.state_half

    def observation(self, obs: dict) -> torch.Tensor:
        """drqv2: B x cameras x (3 * stack) x H x W in [0, 1]; frozen: B x (stack * F)."""
        if self.config.encoder == "frozen":
            f = torch.as_tensor(np.asarray(obs[FEATURES_KEY]), device=self.device)
            return f.float().reshape(f.shape[0], -1)
        cams = []
        for key in self.config.cameras:
            x = torch.as_tensor(np.asarray(obs[key]), device=self.device)  # B x S x H x W x 3
            b, s, h, w, _ = x.shape
            cams.append(x.permute(0, 1, 4, 2, 3).reshape(b, s * 3, h, w))
        return torch.stack(cams, dim=1).float().div_(255.0)


class DrQV2Agent:
    """The learner's side: networks, optimizers, `update` (module docstring)."""

    def __init__(self, config: AgentConfig, device: str | torch.device = "cpu", seed: int = 0):
        self.config = config
        self.device = torch.device(device)
        self.codec = ObservationCodec(config, self.device)
        # the agent's own random streams: initialisation, augmentation and action noise do not
        # touch (or depend on) torch's global generator
        self.generator = torch.Generator(self.device).manual_seed(seed)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            if config.encoder == "drqv2":
                self.encoder: nn.Module | None = ImageEncoder(config).to(self.device)
                repr_dim = self.encoder.repr_dim
            else:
                self.encoder = None
                repr_dim = config.frozen_dim * config.frame_stack
            self.actor = Actor(repr_dim, config).to(self.device)
            self.critic = Critic(repr_dim, config).to(self.device)
        self.repr_dim = repr_dim
        self.critic_target = copy.deepcopy(self.critic)
        for p in self.critic_target.parameters():
            p.requires_grad_(False)
        self.actor_opt = torch.optim.Adam(self.actor.parameters(), lr=config.lr)
        self.critic_opt = torch.optim.Adam(self.critic.parameters(), lr=config.lr)
        self.encoder_opt = (
            torch.optim.Adam(self.encoder.parameters(), lr=config.lr) if self.encoder else None
        )
        self.updates = 0  # actor updates (learner steps)
        self.critic_updates = 0

    # ------------------------------------------------------------------ features

    def encode(self, obs: dict, augment: bool) -> torch.Tensor:
        x = self.codec.observation(obs)
        if self.encoder is None:
            return x
        if augment and self.config.shift_pad > 0:
            b, c = x.shape[:2]
            x = random_shift(x.reshape(b * c, *x.shape[2:]), self.config.shift_pad, self.generator)
            x = x.reshape(b, c, *x.shape[1:])
        return self.encoder(x)

    # ------------------------------------------------------------------ updates

    def update_critic(self, batch: dict, env_step: int) -> dict:
        cfg = self.config
        features = self.encode(batch["obs"], augment=True)
        state = self.codec.state(batch["obs"])
        action = torch.as_tensor(batch["action"], device=self.device)
        reward = torch.as_tensor(batch["reward"], device=self.device)
        discount = torch.as_tensor(batch["discount"], device=self.device)
        with torch.no_grad():
            next_features = self.encode(batch["next_obs"], augment=True)
            next_state = self.codec.state(batch["next_obs"])
            std = stddev(cfg.stddev_schedule, env_step)
            next_action = sample_action(
                self.actor(next_features, next_state), std, cfg.stddev_clip, self.generator
            )
            tq1, tq2 = self.critic_target(next_features, next_state, next_action)
            target = reward + discount * torch.min(tq1, tq2)
            raw_target_max = float(target.max())
            if cfg.clip_target_q:
                target = target.clamp(max=cfg.q_bound)
        q1, q2 = self.critic(features, state, action)
        loss = F.mse_loss(q1, target) + F.mse_loss(q2, target)
        if self.encoder_opt is not None:
            self.encoder_opt.zero_grad(set_to_none=True)
        self.critic_opt.zero_grad(set_to_none=True)
        loss.backward()
        self.critic_opt.step()
        if self.encoder_opt is not None:
            self.encoder_opt.step()
        with torch.no_grad():
            tau = cfg.critic_tau
            for p, tp in zip(
                self.critic.parameters(), self.critic_target.parameters(), strict=True
            ):
                tp.data.lerp_(p.data, tau)
        self.critic_updates += 1
        q = torch.cat([q1, q2]).detach()
        return {
            "critic_loss": float(loss.detach()),
            "q_mean": float(q.mean()),
            "q_max": float(q.max()),
            "target_q_mean": float(target.mean()),
            "target_q_max": raw_target_max,
            "features": features.detach(),
            "state": state,
        }

    def update_actor(self, batch: dict, features: torch.Tensor, state, env_step: int) -> dict:
        cfg = self.config
        std = stddev(cfg.stddev_schedule, env_step)
        action = sample_action(self.actor(features, state), std, cfg.stddev_clip, self.generator)
        q1, q2 = self.critic(features, state, action)
        q_loss = -torch.min(q1, q2).mean()
        mask = np.asarray(batch["intervention"], dtype=bool)
        if cfg.bc_on == "interventions+demos":
            mask = mask | np.asarray(batch["demo"], dtype=bool)
        bc_loss = torch.zeros((), device=self.device)
        if cfg.bc_weight > 0 and mask.any():
            m = torch.as_tensor(mask, device=self.device)
            demo = torch.as_tensor(batch["action"], device=self.device)[m]
            bc_loss = F.mse_loss(action[m], demo)
        loss = q_loss + cfg.bc_weight * bc_loss
        self.actor_opt.zero_grad(set_to_none=True)
        loss.backward()
        self.actor_opt.step()
        self.updates += 1
        return {
            "actor_loss": float(loss.detach()),
            "actor_q_loss": float(q_loss.detach()),
            "bc_loss": float(bc_loss.detach()),
            "bc_share": float(mask.mean()),
            "stddev": std,
        }

    def update(self, batches: list[dict], env_step: int) -> dict:
        """`utd_ratio` critic updates (one per batch) then one actor update on the last."""
        critic = [self.update_critic(b, env_step) for b in batches]
        last = critic[-1]
        actor = self.update_actor(batches[-1], last.pop("features"), last.pop("state"), env_step)
        for c in critic[:-1]:
            c.pop("features"), c.pop("state")
        metrics = {k: float(np.mean([c[k] for c in critic])) for k in critic[0]}
        metrics["q_max"] = max(c["q_max"] for c in critic)
        metrics["target_q_max"] = max(c["target_q_max"] for c in critic)
        metrics.update(actor)
        return metrics

    # ------------------------------------------------------------------ state

    def policy_state(self) -> dict:
        """What collectors need to act: actor (and trainable encoder) weights, as numpy."""
        state = {"actor": {k: v.detach().cpu().numpy() for k, v in self.actor.state_dict().items()}}
        if self.encoder is not None:
            state["encoder"] = {
                k: v.detach().cpu().numpy() for k, v in self.encoder.state_dict().items()
            }
        return state

    def state_dict(self) -> dict:
        state = {
            "actor": self.actor.state_dict(),
            "critic": self.critic.state_dict(),
            "critic_target": self.critic_target.state_dict(),
            "actor_opt": self.actor_opt.state_dict(),
            "critic_opt": self.critic_opt.state_dict(),
            "updates": self.updates,
            "critic_updates": self.critic_updates,
            "generator": self.generator.get_state(),
        }
        if self.encoder is not None:
            state["encoder"] = self.encoder.state_dict()
            state["encoder_opt"] = self.encoder_opt.state_dict()
        return state

    def load_state_dict(self, state: dict) -> None:
        self.actor.load_state_dict(state["actor"])
        self.critic.load_state_dict(state["critic"])
        self.critic_target.load_state_dict(state["critic_target"])
        self.actor_opt.load_state_dict(state["actor_opt"])
        self.critic_opt.load_state_dict(state["critic_opt"])
        if self.encoder is not None:
            self.encoder.load_state_dict(state["encoder"])
            self.encoder_opt.load_state_dict(state["encoder_opt"])
        self.updates = int(state["updates"])
        self.critic_updates = int(state["critic_updates"])
        if "generator" in state:
            self.generator.set_state(state["generator"])


class AgentPolicy:
    """The collectors' side: the actor (and trainable encoder) only, acting on one observation.

    `act(obs, env_step, explore)`: obs is key -> (frame_stack, ...) arrays (the newest last);
    returns the normalized action; `explore` adds the scheduled noise.
    """

    def __init__(self, config: AgentConfig, device: str = "cpu"):
        self.config = config
        self.device = torch.device(device)
        self.codec = ObservationCodec(config, self.device)
        if config.encoder == "drqv2":
            self.encoder: nn.Module | None = ImageEncoder(config).to(self.device).eval()
            repr_dim = self.encoder.repr_dim
        else:
            self.encoder = None
            repr_dim = config.frozen_dim * config.frame_stack
        self.actor = Actor(repr_dim, config).to(self.device).eval()
        self.version = -1

    def load(self, state: dict, version: int) -> None:
        def tensors(d):
            return {k: torch.as_tensor(np.array(v)) for k, v in d.items()}

        self.actor.load_state_dict(tensors(state["actor"]))
        if self.encoder is not None:
            self.encoder.load_state_dict(tensors(state["encoder"]))
        self.version = version

    @torch.inference_mode()
    def act(self, obs: dict, env_step: int = 0, explore: bool = False, rng=None) -> np.ndarray:
        batch = {k: np.asarray(v)[None] for k, v in obs.items()}
        x = self.codec.observation(batch)
        features = self.encoder(x) if self.encoder is not None else x
        mean = self.actor(features, self.codec.state(batch))[0].cpu().numpy()
        if not explore:
            return mean.astype(np.float32)
        rng = rng or np.random.default_rng()
        std = stddev(self.config.stddev_schedule, env_step)
        # DrQ-v2 explores with the untruncated noise; only the action is kept in [-1, 1]
        return np.clip(mean + rng.normal(0.0, std, mean.shape), -1.0, 1.0).astype(np.float32)
