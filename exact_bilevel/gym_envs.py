r"""Discrete Gymnasium environments that expose their model, as :class:`FiniteMDP`.

Gymnasium's toy-text environments (FrozenLake, Taxi, CliffWalking) publish
``env.unwrapped.P[s][a] = [(prob, next_state, reward, terminated), ...]``.
:func:`from_gymnasium` turns that into ``P[s, a, s']``, ``r[s, a]`` and ``rho[s]``:

* ``r(s, a) = sum_i prob_i * reward_i`` (the expected reward of the step);
* **terminal transitions** (``terminated = True``) lead to one extra absorbing
  state, index ``S`` (so the MDP has ``S + 1`` states), whose actions all loop
  to itself with reward 0: the episode's return is exactly the discounted sum
  Gymnasium would pay. States that Gymnasium never leaves except by a terminal
  transition (holes, the goal) are thereby left for good after one step;
* repeated ``(s, a, s')`` entries (FrozenLake lists some twice) are summed;
* ``rho`` is ``env.unwrapped.initial_state_distrib`` (0 on the absorbing
  state), or ``initial`` if given.

Needs the optional ``gym`` extra (``pip install exact_bilevel[gym]``).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .core import _validate
from .core.mdp import FiniteMDP


def from_gymnasium(env: Any, gamma: float, *, initial: object | None = None) -> FiniteMDP:
    """``FiniteMDP`` of a discrete Gymnasium environment with a published model.

    Parameters
    ----------
    env : gymnasium.Env
        An environment (wrapped or not) whose ``unwrapped.P`` holds the model and
        whose observation and action spaces are ``Discrete``.
    gamma : float
        Discount factor of the resulting MDP.
    initial : array_like, shape (S,), optional
        Initial distribution over Gymnasium's ``S`` states (default: the
        environment's ``initial_state_distrib``).

    Returns
    -------
    FiniteMDP
        ``S + 1`` states (the last is the absorbing terminal state), ``A`` actions.
    """
    base = getattr(env, "unwrapped", env)
    model = getattr(base, "P", None)
    if not isinstance(model, dict):
        raise ValueError("env: has no model dictionary env.unwrapped.P[s][a]")
    try:
        S, A = int(base.observation_space.n), int(base.action_space.n)
    except AttributeError:
        raise ValueError("env: observation and action spaces must be Discrete") from None
    T = S  # the absorbing terminal state
    P = np.zeros((S + 1, A, S + 1))
    r = np.zeros((S + 1, A))
    P[T, :, T] = 1.0
    for s in range(S):
        if s not in model:
            raise ValueError(f"env.P: state {s} is missing")
        for a in range(A):
            if a not in model[s]:
                raise ValueError(f"env.P[{s}]: action {a} is missing")
            for i, entry in enumerate(model[s][a]):
                try:
                    prob, nxt, reward, terminated = entry
                except (TypeError, ValueError):
                    raise ValueError(f"env.P[{s}][{a}][{i}]: must be (prob, next_state, reward, "
                                     "terminated)") from None
                nxt = int(nxt)
                if not 0 <= nxt < S:
                    raise ValueError(f"env.P[{s}][{a}][{i}]: next_state = {nxt} not in [0, {S})")
                P[s, a, T if terminated else nxt] += float(prob)
                r[s, a] += float(prob) * float(reward)
    if initial is None:
        rho0 = getattr(base, "initial_state_distrib", None)
        if rho0 is None:
            raise ValueError("initial: the environment has no initial_state_distrib; pass one")
    else:
        rho0 = initial
    rho0 = _validate.real_array("initial", rho0, shape=(S,))
    return FiniteMDP(P, r, gamma, np.append(rho0, 0.0))
