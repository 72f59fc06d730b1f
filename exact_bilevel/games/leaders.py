r"""Leader parameterisations of a Markov game: ``theta -> logits[s, aL]``.

The leader plays ``piL(aL|s; theta) = softmax(logits(theta)[s, :])[aL]``. A
parameterisation maps the leader's parameter vector ``theta`` (length ``d``) to the
logits ``z[s, aL]`` and gives their Jacobian ``dz[s, aL, k]`` (parameter axis last).
Because ``F`` and every sampled score ``dlog piL(aL|s)`` depend on ``theta`` only
through ``z``, the chain rule

.. math:: \frac{\partial F}{\partial\theta_k}
          = \sum_{s, a} \frac{\partial F}{\partial z_{s a}}
            \frac{\partial z_{s a}}{\partial\theta_k}

turns any logits gradient (exact or estimated) into the gradient in ``theta``
(:func:`pull_back`). :class:`~exact_bilevel.games.model.MarkovGame` takes a
parameterisation as ``leader``; ``None`` is the tabular leader ``z = theta.reshape(S, AL)``.

:class:`MLPLeader` is the leader of Kudo et al. (2026, ``markov_game``): a multilayer
perceptron on the one-hot state (``garage`` ``CategoricalMLPPolicy``, hidden sizes
(64, 64), ReLU, linear output; Xavier-uniform weights, zero biases). It accepts complex
``theta`` (complex-step checks): ReLU is ``u`` where ``Re u > 0``, else 0.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import numpy as np

from ..core._budget import check_allocation

ACTIVATIONS = ("relu", "tanh")


@runtime_checkable
class LeaderParameterization(Protocol):
    """What :class:`~exact_bilevel.games.model.MarkovGame` needs of a leader:
    ``logits(theta) -> [S, AL]`` and ``logits_jacobian(theta) -> [S, AL, d]``."""

    n_states: int
    n_actions: int

    @property
    def n_params(self) -> int: ...

    def logits(self, theta: np.ndarray) -> np.ndarray: ...

    def logits_jacobian(self, theta: np.ndarray) -> np.ndarray: ...


def _act(name: str, u: np.ndarray) -> np.ndarray:
    """The activation, analytic off ReLU's kink (``Re u = 0``)."""
    if name == "tanh":
        return np.tanh(u)
    return np.where(u.real > 0, u, 0)


def _act_derivative(name: str, u: np.ndarray) -> np.ndarray:
    if name == "tanh":
        return 1.0 - np.tanh(u) ** 2
    return (u.real > 0).astype(np.float64)


@dataclass(frozen=True)
class MLPLeader:
    """``logits[s, :] = W_L^T h_{L-1}(s) + b_L``, ``h_l = act(W_l^T h_{l-1} + b_l)``,
    ``h_0(s) = features[s]`` (default one-hot: ``features = I_S``).

    Parameters
    ----------
    n_states, n_actions : int
        ``S`` and ``AL`` of the game.
    hidden : tuple of int
        Hidden layer widths (the authors': ``(64, 64)``).
    activation : {"relu", "tanh"}
        Hidden nonlinearity (the authors': ReLU).
    features : array, shape (S, F), optional
        The network's input per state; default the one-hot encoding ``I_S``.

    ``theta`` packs, layer by layer, ``W_l`` (shape ``(n_in, n_out)``, row-major) then
    ``b_l`` (shape ``(n_out,)``); :attr:`n_params` is its length.
    """

    n_states: int
    n_actions: int
    hidden: tuple[int, ...] = (64, 64)
    activation: str = "relu"
    features: np.ndarray | None = None
    _shapes: tuple[tuple[int, int], ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        for name in ("n_states", "n_actions"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int | np.integer) or v < 1:
                raise ValueError(f"{name}: must be a positive integer, got {v!r}")
        hidden = tuple(self.hidden)
        for i, h in enumerate(hidden):
            if isinstance(h, bool) or not isinstance(h, int | np.integer) or h < 1:
                raise ValueError(f"hidden[{i}]: must be a positive integer, got {h!r}")
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"activation = {self.activation!r}: must be one of {ACTIVATIONS}")
        if self.features is None:
            feats = np.eye(self.n_states)
        else:
            feats = np.array(self.features, dtype=np.float64)
            if feats.ndim != 2 or feats.shape[0] != self.n_states:
                raise ValueError(f"features: must have shape (n_states = {self.n_states}, F), "
                                 f"got {feats.shape}")
            if not np.all(np.isfinite(feats)):
                raise ValueError("features: must be finite")
        widths = (feats.shape[1], *hidden, self.n_actions)
        shapes = tuple(itertools.pairwise(widths))
        check_allocation("MLP logits Jacobian [S, AL, d]",
                         (self.n_states, self.n_actions, sum(i * o + o for i, o in shapes)))
        object.__setattr__(self, "hidden", tuple(int(h) for h in hidden))
        object.__setattr__(self, "features", feats)
        object.__setattr__(self, "_shapes", shapes)

    @property
    def n_params(self) -> int:
        """``d = sum_l (n_in n_out + n_out)``."""
        return sum(i * o + o for i, o in self._shapes)

    def layers(self, theta: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
        """``[(W_l, b_l)]`` views into ``theta`` (shapes ``(n_in, n_out)``, ``(n_out,)``)."""
        out, k = [], 0
        for i, o in self._shapes:
            W = theta[k:k + i * o].reshape(i, o)
            k += i * o
            out.append((W, theta[k:k + o]))
            k += o
        return out

    def _forward(self, theta: np.ndarray) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """Inputs ``h_{l-1}`` and pre-activations ``u_l`` of every layer, ``[S, width]``."""
        h, inputs, pre = self.features, [], []
        for W, b in self.layers(theta):
            inputs.append(h)
            u = h @ W + b
            pre.append(u)
            h = _act(self.activation, u)
        return inputs, pre

    def logits(self, theta: np.ndarray) -> np.ndarray:
        """``z[s, aL]``, shape ``[S, AL]`` (complex if ``theta`` is)."""
        return self._forward(theta)[1][-1]

    def logits_jacobian(self, theta: np.ndarray) -> np.ndarray:
        r"""``dz[s, aL, k] = d z[s, aL] / d theta_k``, shape ``[S, AL, d]``, by back-propagation:
        ``delta_L[s, a, j] = 1[a = j]``, ``delta_l = (delta_{l+1} W_{l+1}^T) act'(u_l)``,
        ``dz/dW_l[i, j] = h_{l-1}[s, i] delta_l[s, a, j]``, ``dz/db_l = delta_l``."""
        inputs, pre = self._forward(theta)
        layers = self.layers(theta)
        S, AL = self.n_states, self.n_actions
        delta = np.broadcast_to(np.eye(AL), (S, AL, AL)).astype(pre[-1].dtype)
        blocks: list[np.ndarray] = []
        for n in range(len(layers) - 1, -1, -1):
            if n < len(layers) - 1:
                delta = (delta @ layers[n + 1][0].T) * _act_derivative(
                    self.activation, pre[n])[:, None, :]
            dW = np.einsum("si,saj->saij", inputs[n], delta).reshape(S, AL, -1)
            blocks[:0] = [dW, delta]
        return np.concatenate(blocks, axis=2)

    def xavier_uniform(self, rng: np.random.Generator) -> np.ndarray:
        """The authors' initial ``theta``: ``W_l ~ U(-a, a)``, ``a = sqrt(6 / (n_in + n_out))``
        (PyTorch ``xavier_uniform_``), ``b_l = 0``."""
        parts = []
        for i, o in self._shapes:
            a = np.sqrt(6.0 / (i + o))
            parts += [rng.uniform(-a, a, size=i * o), np.zeros(o)]
        return np.concatenate(parts)


def pull_back(jacobian: np.ndarray, grad_logits: np.ndarray) -> np.ndarray:
    """``g_theta[k] = sum_{s, a} g_z[s, a] dz[s, a, k]``: a logits gradient ``[S * AL]``
    (row-major) or ``[S, AL]`` as a gradient in ``theta``, shape ``[d]``."""
    S, AL, d = jacobian.shape
    return np.reshape(grad_logits, S * AL) @ jacobian.reshape(S * AL, d)
