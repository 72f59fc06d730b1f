r"""The linear-Gaussian bilevel problem: a soft (MaxEnt) LQR follower and a leader.

Follower (one leader parameter ``x``; shapes ``n`` states, ``m`` follower inputs,
``p`` leader inputs)::

    s' = A s + B u + C a + xi,          xi ~ N(0, W)
    a  ~ N(K_L s, Sigma_L)              (the leader's action, observed by the follower)
    cost c(s, u) = s' Q s + u' R u,     follower minimises E sum_t gamma^t [c + tau log pi(u|s, a)]

``A[n, n]``, ``B[n, m]``, ``C[n, p]``, ``K_L[p, n]``, ``Sigma_L[p, p]``, ``Q[n, n]``,
``R[m, m]``, ``W[n, n]``. A bilevel problem without a leader action has ``p = 0``.
The soft-optimal policy is Gaussian (:mod:`exact_bilevel.lqr.riccati`).

Leader: stage reward (a function of the state at which the follower acts and of
its input)::

    r_L(s, u) = -(s' Q_L s + u' R_L u)
                + bump_weight  * exp(-1/2 (s - c)' D (s - c))
                + hinge_weight * min(s[i], 0)
                - sum_k cost_weight[k] * z[k]^2

and ``F(x) = E sum_{t < T} gamma_L^t r_L(s_t, u_t)`` from ``s_0 ~ N(mu0, Sigma0)``
(``T = horizon``; ``None`` means summed until the terms reach the rounding floor).

Parameterisation: ``z = link(x)`` elementwise (``"identity"`` or ``"sigmoid"``), and
every follower matrix is *affine* in ``z``: ``A(z) = A + sum_k dA[..., k] z[k]``
(parameter axis last), likewise ``B, C, K_L, Q, R``. This covers both of the BC-HG
paper's continuous tasks (insulation / airflow entering ``A``; the leader's gain
``K_L``) and keeps the exact derivatives exact. See :ref:`docs/math.md, section 8, "Soft LQR"
<math-lqr>`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

import numpy as np

from ..core._validate import (
    complex_step_vector,
    discount,
    real_array,
    real_scalar,
    temperature,
)

#: Follower matrices that may depend on the parameters, with their axes.
FIELDS = ("A", "B", "C", "K_L", "Q", "R")
LINKS = ("identity", "sigmoid")


@dataclasses.dataclass(frozen=True)
class LeaderReward:
    """The leader's stage reward ``r_L(s, u)`` (see the module docstring).

    Attributes
    ----------
    Q_L : ndarray, shape (n, n)
        Symmetric state weight (enters with a minus sign).
    R_L : ndarray, shape (m, m)
        Symmetric input weight (enters with a minus sign).
    bump_weight : float
        Weight of the Gaussian bump ``exp(-1/2 (s - c)' D (s - c))``; 0 switches it off.
    bump_center : ndarray, shape (n,)
    bump_precision : ndarray, shape (n, n)
        Symmetric positive definite ``D``.
    hinge_weight : float
        Weight of ``min(s[hinge_index], 0)``; 0 switches it off.
    hinge_index : int
    cost_weight : ndarray, shape (d,)
        Parameter cost ``-sum_k cost_weight[k] z[k]^2`` (paid every step).
    """

    Q_L: np.ndarray
    R_L: np.ndarray
    bump_weight: float = 0.0
    bump_center: np.ndarray | None = None
    bump_precision: np.ndarray | None = None
    hinge_weight: float = 0.0
    hinge_index: int = 0
    cost_weight: np.ndarray | None = None


@dataclasses.dataclass(frozen=True)
class LQRInstance:
    """All matrices at one ``x`` (real, or complex for the complex-step route).

    ``A_bar = A + C K_L`` is the drift the follower plans with.
    """

    A: np.ndarray
    B: np.ndarray
    C: np.ndarray
    K_L: np.ndarray
    Sigma_L: np.ndarray
    Q: np.ndarray
    R: np.ndarray
    W: np.ndarray
    gamma: float
    tau: float

    @property
    def A_bar(self) -> np.ndarray:
        return self.A + self.C @ self.K_L


def _sym_psd(name: str, M: np.ndarray, *, definite: bool) -> None:
    if not np.allclose(M, M.T, rtol=0.0, atol=1e-12 * max(1.0, float(np.abs(M).max(initial=0)))):
        i, j = np.unravel_index(np.argmax(np.abs(M - M.T)), M.shape)
        raise ValueError(f"{name}[{i}, {j}] = {M[i, j]} but {name}[{j}, {i}] = {M[j, i]}: "
                         "must be symmetric")
    if M.size == 0:
        return
    lo = float(np.linalg.eigvalsh(M).min())
    scale = max(1.0, float(np.abs(M).max()))
    if definite and not lo > 1e-12 * scale:
        raise ValueError(f"{name}: smallest eigenvalue {lo:.3e} but must be positive definite")
    if not definite and lo < -1e-12 * scale:
        raise ValueError(f"{name}: smallest eigenvalue {lo:.3e} but must be positive semidefinite")


@dataclasses.dataclass(frozen=True, eq=False)
class LQRProblem:
    r"""A bilevel soft-LQR problem ``x -> F(x)``.

    Build it with :func:`make_problem`, which validates every field. Shapes:
    ``base[name]`` as in the module docstring, ``jac[name][..., k]`` the derivative
    of that matrix with respect to ``z[k]`` (parameter axis last).
    """

    base: Mapping[str, np.ndarray]
    jac: Mapping[str, np.ndarray]
    Sigma_L: np.ndarray
    W: np.ndarray
    gamma: float
    tau: float
    leader: LeaderReward
    gamma_L: float
    horizon: int | None
    mu0: np.ndarray
    Sigma0: np.ndarray
    link: str = "identity"
    names: tuple[str, ...] = ()

    @property
    def n(self) -> int:
        return self.base["A"].shape[0]

    @property
    def m(self) -> int:
        return self.base["B"].shape[1]

    @property
    def p(self) -> int:
        return self.base["C"].shape[1]

    @property
    def d(self) -> int:
        return len(self.names)

    def z(self, x: np.ndarray) -> np.ndarray:
        """``z = link(x)`` (analytic: works for complex ``x``)."""
        return x if self.link == "identity" else 1.0 / (1.0 + np.exp(-x))

    def dz_dx(self, x: np.ndarray) -> np.ndarray:
        if self.link == "identity":
            return np.ones_like(x)
        s = 1.0 / (1.0 + np.exp(-x))
        return s * (1.0 - s)

    def check_x(self, x: object) -> np.ndarray:
        """``x`` as a float64 vector of length ``d`` (complex passes for complex step)."""
        arr = np.asarray(x)
        if arr.dtype.kind == "c":
            return complex_step_vector("x", arr, self.d)
        return real_array("x", arr, shape=(self.d,))

    def instance(self, x: object) -> LQRInstance:
        """Every matrix at ``x``: ``M(z) = M + sum_k dM[..., k] z[k]``."""
        x = self.check_x(x)
        z = self.z(x)
        mats = {}
        for name in FIELDS:
            M = self.base[name]
            if name in self.jac:
                M = M + self.jac[name] @ z
            mats[name] = M
        return LQRInstance(Sigma_L=self.Sigma_L, W=self.W, gamma=self.gamma, tau=self.tau,
                           **mats)


def _field(name: str, value: object, shape: tuple[int, int]) -> np.ndarray:
    return real_array(name, value, shape=shape)


def make_problem(*, A: object, B: object, Q: object, R: object, gamma: float, tau: float,
                 W: object | None = None, C: object | None = None, K_L: object | None = None,
                 Sigma_L: object | None = None, jac: Mapping[str, object] | None = None,
                 d: int | None = None, link: str = "identity", names: tuple[str, ...] = (),
                 Q_L: object | None = None, R_L: object | None = None,
                 bump_weight: float = 0.0, bump_center: object | None = None,
                 bump_precision: object | None = None, hinge_weight: float = 0.0,
                 hinge_index: int = 0, cost_weight: object | None = None,
                 gamma_L: float | None = None, horizon: int | None = 100,
                 mu0: object | None = None, Sigma0: object | None = None) -> LQRProblem:
    r"""Validate and assemble an :class:`LQRProblem`.

    Every argument is checked and a bad one raises ``ValueError`` naming it, the
    index and the rule (``Q`` symmetric PSD, ``R`` symmetric PD, ``W``/``Sigma_L``/
    ``Sigma0`` symmetric PSD, ``D`` PD, ``0 <= gamma < 1``, ``tau > 0``, the
    parameter axis of every ``jac[name]`` of length ``d``). Unspecified leader weights
    are zero; ``C``/``K_L`` default to no leader action (``p = 0``); ``mu0 = 0``,
    ``Sigma0 = 0``; ``gamma_L = gamma``.
    """
    A = real_array("A", A, ndim=2)
    n = A.shape[0]
    if A.shape != (n, n) or n == 0:
        raise ValueError(f"A: must be square and non-empty, got shape {A.shape}")
    B = real_array("B", B, ndim=2)
    if B.shape[0] != n or B.shape[1] == 0:
        raise ValueError(f"B: must have shape ({n}, m) with m >= 1, got {B.shape}")
    m = B.shape[1]
    C = np.zeros((n, 0)) if C is None else real_array("C", C, ndim=2)
    if C.shape[0] != n:
        raise ValueError(f"C: axis 0 must have length {n}, got shape {C.shape}")
    p = C.shape[1]
    K_L = np.zeros((p, n)) if K_L is None else _field("K_L", K_L, (p, n))
    Sigma_L = np.zeros((p, p)) if Sigma_L is None else _field("Sigma_L", Sigma_L, (p, p))
    Q = _field("Q", Q, (n, n))
    R = _field("R", R, (m, m))
    W = np.zeros((n, n)) if W is None else _field("W", W, (n, n))
    _sym_psd("Q", Q, definite=False)
    _sym_psd("R", R, definite=True)
    _sym_psd("W", W, definite=False)
    _sym_psd("Sigma_L", Sigma_L, definite=False)
    gamma = discount("gamma", gamma)
    tau = temperature("tau", tau)
    if link not in LINKS:
        raise ValueError(f"link = {link!r}: must be one of {LINKS}")
    base = {"A": A, "B": B, "C": C, "K_L": K_L, "Q": Q, "R": R}
    jac_in = dict(jac or {})
    unknown = sorted(set(jac_in) - set(FIELDS))
    if unknown:
        raise ValueError(f"jac[{unknown[0]!r}]: unknown field; parameters may enter {FIELDS}")
    if d is None:
        d = len(names) if names else (next(iter(np.shape(v)[-1] for v in jac_in.values()), 0)
                                      if jac_in else 0)
    names = tuple(names) if names else tuple(f"x{k}" for k in range(d))
    if len(names) != d:
        raise ValueError(f"names: {len(names)} names for d = {d} parameters")
    jacs = {}
    for name, val in jac_in.items():
        J = real_array(f"jac[{name!r}]", val, shape=(*base[name].shape, d))
        if name in ("Q", "R"):
            asym = np.abs(J - np.swapaxes(J, 0, 1)).max(initial=0.0)
            if asym > 1e-12:
                raise ValueError(f"jac[{name!r}]: must be symmetric in its first two axes "
                                 f"(max asymmetry {asym:.3e})")
        jacs[name] = J
    Q_L = np.zeros((n, n)) if Q_L is None else _field("Q_L", Q_L, (n, n))
    R_L = np.zeros((m, m)) if R_L is None else _field("R_L", R_L, (m, m))
    for nm, M in (("Q_L", Q_L), ("R_L", R_L)):
        if np.abs(M - M.T).max(initial=0.0) > 1e-12 * max(1.0, float(np.abs(M).max(initial=0))):
            raise ValueError(f"{nm}: must be symmetric")
    bump_weight = real_scalar("bump_weight", bump_weight)
    center = np.zeros(n) if bump_center is None else real_array("bump_center", bump_center,
                                                                  shape=(n,))
    prec = np.eye(n) if bump_precision is None else _field("bump_precision", bump_precision, (n, n))
    _sym_psd("bump_precision", prec, definite=True)
    hinge_weight = real_scalar("hinge_weight", hinge_weight)
    if isinstance(hinge_index, bool) or not isinstance(hinge_index, (int, np.integer)) \
            or not 0 <= hinge_index < n:
        raise ValueError(f"hinge_index = {hinge_index!r}: must be an integer in [0, {n})")
    cw = np.zeros(d) if cost_weight is None else real_array("cost_weight", cost_weight, shape=(d,))
    leader = LeaderReward(Q_L, R_L, bump_weight, center, prec, hinge_weight, int(hinge_index), cw)
    gamma_L = gamma if gamma_L is None else discount("gamma_L", gamma_L)
    if horizon is not None and (isinstance(horizon, bool)
                                or not isinstance(horizon, (int, np.integer))
                                or not 1 <= horizon <= 10**6):
        raise ValueError(f"horizon = {horizon!r}: must be an integer in [1, 1e6] or None")
    mu0 = np.zeros(n) if mu0 is None else real_array("mu0", mu0, shape=(n,))
    Sigma0 = np.zeros((n, n)) if Sigma0 is None else _field("Sigma0", Sigma0, (n, n))
    _sym_psd("Sigma0", Sigma0, definite=False)
    return LQRProblem(base=base, jac=jacs, Sigma_L=Sigma_L, W=W, gamma=gamma, tau=tau,
                      leader=leader, gamma_L=gamma_L,
                      horizon=None if horizon is None else int(horizon), mu0=mu0,
                      Sigma0=Sigma0, link=link, names=names)
