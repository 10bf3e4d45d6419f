"""Search agents on one evaluation budget: DDPG in CIM-AQ's form, random search, optuna TPE, greedy sensitivity.

Each agent calls ``evaluate(policies) -> list[result]`` (results carry ``acc`` and ``ratio``, cost over W8A8) and
stops after ``budget`` policies. Batches have a fixed size (never the number of workers), so a seed gives the same
policies whatever executes them.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

__all__ = ["AGENTS", "Space", "reward", "run_agent"]

BATCH = 4


def reward(acc: float, ratio: float, target: float) -> float:
    """CIM-AQ's reward: below the target ``-10 (target - acc)``, else ``100 (1/ratio - 1) + 0.1 (acc - target)``."""
    if acc < target:
        return -10.0 * (target - acc)
    return 100.0 * (1.0 / ratio - 1.0) + 0.1 * (acc - target)


class Space:
    """Allowed bits per layer: weights 2..8 (or multiples of the cell bits), activations 2..8; pinned layers 8/8."""

    def __init__(self, n: int, cell_bits: int, cell_multiples: bool = False, pin_first_last: bool = False):
        self.n = n
        self.w_bits = [b for b in range(2, 9) if not cell_multiples or b % cell_bits == 0] or [8]
        self.a_bits = list(range(2, 9))
        self.pinned = {0, n - 1} if pin_first_last else set()

    def fix(self, pol) -> list[tuple[int, int]]:
        return [(8, 8) if i in self.pinned else (int(w), int(a)) for i, (w, a) in enumerate(pol)]

    def from_unit(self, i: int, kind: str, u: float) -> int:
        """HAQ's mapping of an action in [0, 1] to a bit width of the allowed list."""
        opts = self.w_bits if kind == "w" else self.a_bits
        return opts[min(int(u * len(opts)), len(opts) - 1)]

    def random(self, rng) -> list[tuple[int, int]]:
        return self.fix([(rng.choice(self.w_bits), rng.choice(self.a_bits)) for _ in range(self.n)])


def _random(space: Space, evaluate: Callable, budget: int, seed: int, **_):
    rng = np.random.default_rng(seed)
    done = 0
    while done < budget:
        k = min(BATCH, budget - done)
        evaluate([space.random(rng) for _ in range(k)])
        done += k


def _tpe(space: Space, evaluate: Callable, budget: int, seed: int, target: float, **_):
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    sampler = optuna.samplers.TPESampler(seed=seed, n_startup_trials=max(2, min(10, budget // 3)))
    study = optuna.create_study(direction="maximize", sampler=sampler)
    dists = {}
    for i in range(space.n):
        if i in space.pinned:
            continue
        dists[f"w{i}"] = optuna.distributions.CategoricalDistribution(space.w_bits)
        dists[f"a{i}"] = optuna.distributions.IntDistribution(2, 8)
    done = 0
    while done < budget:
        k = min(BATCH, budget - done)
        trials = [study.ask(dists) for _ in range(k)]
        pols = [space.fix([(t.params.get(f"w{i}", 8), t.params.get(f"a{i}", 8)) for i in range(space.n)])
                for t in trials]
        for t, r in zip(trials, evaluate(pols)):
            study.tell(t, reward(r["acc"], r["ratio"], target))
        done += k


def _greedy(space: Space, evaluate: Callable, budget: int, seed: int, target: float, **_):
    """Lower one knob (a layer's weight or activation bits) one step at a time: each round tries every live knob,
    keeps the feasible step that saves the most cost; a knob whose step breaks the accuracy target is frozen."""
    cur = space.fix([(8, 8)] * space.n)
    live = [(i, k) for i in range(space.n) if i not in space.pinned for k in ("w", "a")]
    done = 0
    while live and done < budget:
        cands = []
        for i, k in live:
            opts = space.w_bits if k == "w" else space.a_bits
            v = cur[i][0 if k == "w" else 1]
            lower = [b for b in opts if b < v]
            if not lower:
                continue
            p = list(cur)
            p[i] = (max(lower), p[i][1]) if k == "w" else (p[i][0], max(lower))
            cands.append(((i, k), p))
        live = [c[0] for c in cands]
        if not cands:
            break
        cands = cands[:budget - done]
        res = []
        for j in range(0, len(cands), BATCH):
            res += evaluate([p for _, p in cands[j:j + BATCH]])
        done += len(cands)
        ok = [(r["ratio"], c) for c, r in zip(cands, res) if r["acc"] >= target]
        frozen = {c[0] for c, r in zip(cands, res) if r["acc"] < target}
        live = [k for k in live if k not in frozen]
        if not ok:
            break
        cur = min(ok, key=lambda t: t[0])[1][1]


def _ddpg(space: Space, evaluate: Callable, budget: int, seed: int, target: float, table: list[dict],
          batch_warmup: bool = True, **_):
    """stable-baselines3 DDPG on a gymnasium environment: one episode walks the layers, one action per layer for
    weights then activations, HAQ's normalised 10-dim layer embedding as state, CIM-AQ's reward at the episode's end
    (discount 1, as HAQ). The first quarter of the budget is random warm-up (HAQ: 100 of 600 episodes).

    Parallel where the algorithm allows: a warm-up episode's actions are random draws that no reward influences and
    nothing is learnt before the warm-up ends, so warm-up episodes are evaluated in batches of :data:`BATCH` (their
    rewards written into the replay buffer before any training step reads it); after the warm-up each episode's
    actions come from an actor updated with the previous episode's reward, so episodes run one after the other.
    The policies and rewards are the same as with every episode evaluated at once (``batch_warmup=False``; tested).
    """
    import gymnasium as gym
    import torch
    from stable_baselines3 import DDPG
    from stable_baselines3.common.callbacks import BaseCallback
    from stable_baselines3.common.logger import Logger
    from stable_baselines3.common.noise import NormalActionNoise

    torch.set_num_threads(1)
    feats = np.array([[0.0, t["cin"], t["cout"], t["stride"], t["kernel"], t["params"], t["positions"], i]
                      for i, t in enumerate(table)], dtype=np.float64)
    lo, hi = feats.min(0), feats.max(0)
    feats = (feats - lo) / np.where(hi > lo, hi - lo, 1.0)
    n = space.n

    class Env(gym.Env):
        observation_space = gym.spaces.Box(0.0, 1.0, (10,), np.float32)
        action_space = gym.spaces.Box(0.0, 1.0, (1,), np.float32)

        def __init__(self):
            self.t, self.prev, self.bits = 0, 1.0, []
            self.pending: list = []  # warm-up episodes awaiting their batch: (policy, replay buffer index)
            self.model = None

        def _obs(self):
            i, kind = divmod(self.t, 2)
            return np.concatenate([feats[min(i, n - 1)], [self.prev, float(kind)]]).astype(np.float32)

        def reset(self, *, seed=None, options=None):
            super().reset(seed=seed)
            self.t, self.prev, self.bits = 0, 1.0, []
            return self._obs(), {}

        def step(self, action):
            u = float(np.clip(action[0], 0.0, 1.0))
            i, kind = divmod(self.t, 2)
            self.bits.append(space.from_unit(i, "w" if kind == 0 else "a", u))
            self.prev = u
            self.t += 1
            if self.t < 2 * n:
                return self._obs(), 0.0, False, False, {}
            pol = space.fix([(self.bits[2 * j], self.bits[2 * j + 1]) for j in range(n)])
            if batch_warmup and self.model.num_timesteps < warmup:
                # a random warm-up episode: its reward is filled in when its batch is evaluated (Flush), before the
                # first training step; the transition is stored at the replay buffer's current position
                self.pending.append((pol, self.model.replay_buffer.pos))
                return self._obs(), 0.0, True, False, {}
            r = evaluate([pol])[0]
            return self._obs(), float(reward(r["acc"], r["ratio"], target)), True, False, {}

    class Flush(BaseCallback):
        """Evaluates the pending warm-up episodes once there are BATCH of them or the warm-up is over."""

        def _on_step(self) -> bool:
            return True

        def flush(self):
            if env.pending:
                pols = [p for p, _ in env.pending]
                for (_, pos), r in zip(env.pending, evaluate(pols)):
                    self.model.replay_buffer.rewards[pos, 0] = reward(r["acc"], r["ratio"], target)
                env.pending = []

        def _on_rollout_end(self) -> None:
            if len(env.pending) >= BATCH or self.model.num_timesteps >= warmup:
                self.flush()

        def _on_training_end(self) -> None:
            self.flush()

    env = Env()
    steps = 2 * n
    warmup = max(1, budget // 4) * steps
    model = DDPG("MlpPolicy", env, learning_rate=1e-3, buffer_size=max(1000, budget * steps), gamma=1.0,
                 learning_starts=warmup, batch_size=min(64, max(8, budget * steps // 4)),
                 train_freq=(1, "episode"), gradient_steps=steps, seed=seed, verbose=0, device="cpu",
                 action_noise=NormalActionNoise(np.zeros(1), 0.5 * np.ones(1)),  # HAQ's initial 0.5
                 policy_kwargs={"net_arch": [64, 64]})
    env.model = model
    # A logger with no outputs: without one, learn() makes stable-baselines3's default logger, which
    # creates an empty SB3-<date> folder in the temporary directory on every search.
    model.set_logger(Logger(folder=None, output_formats=[]))
    model.learn(total_timesteps=budget * steps, callback=Flush())


AGENTS = {"ddpg": _ddpg, "random": _random, "tpe": _tpe, "greedy": _greedy}


def run_agent(name: str, space: Space, evaluate: Callable, budget: int, seed: int, target: float,
              table: list[dict], **options) -> None:
    """Run agent ``name`` until it has evaluated ``budget`` policies (``options``: the agent's own, e.g.
    ``batch_warmup`` of DDPG)."""
    AGENTS[name](space, evaluate, budget, seed, target=target, table=table, **options)
