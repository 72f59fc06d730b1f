r"""Symbolic route (sympy): soft Bellman equations of a tiny MDP and the implicit hypergradient.

For ``S <= 2`` states and ``A <= 2`` actions, with symbolic leader parameters
``x``, discount ``gamma`` and temperature ``tau``:

.. math::

    Q_{sa} = r_{sa}(x) + \gamma \sum_{s'} P_{sas'} V_{s'}, \qquad
    V_s = T_s(V, x) = \tau \log \sum_a e^{Q_{sa}/\tau}.

The implicit function theorem on ``G(V, x) = V - T(V, x) = 0`` gives

.. math::

    \frac{dV}{dx} = \Big(I - \frac{\partial T}{\partial V}\Big)^{-1}
                    \frac{\partial T}{\partial x},
    \qquad \frac{\partial T}{\partial V} = \gamma P_\pi,

and the leader objective ``F(V, x) = rho^T (I - gamma_L P_pi)^{-1} sum_a pi r_L``
(``pi`` the Boltzmann policy of ``Q``) has total derivative
``dF/dx = dF/dx|_V + dF/dV . dV/dx``. Everything here is derived by sympy
from the equations above (``jacobian``, ``LUsolve``), independently of the
hand-derived formulas in :mod:`exact_bilevel.core.hypergradient`.

One state: ``V = tau log sum_a exp(r_a/tau) / (1 - gamma)`` in closed form, so
``F(x)`` is explicit and can be differentiated directly. Two states: the fixed
point is found by ``mpmath.findroot`` at high precision and substituted.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import mpmath
import numpy as np
import sympy as sp

from ..core.objectives import LeaderReturn
from ..core.parameterizations import AffineReward, FixedTransitions
from ..core.problem import BilevelProblem


@dataclass(frozen=True)
class SymbolicBilevel:
    """Symbolic soft-MDP bilevel problem and its implicit hypergradient.

    Attributes
    ----------
    x : tuple of Symbol
        Leader parameters.
    gamma, tau, gamma_L : Symbol
        Follower discount, temperature, leader discount.
    V : Matrix (S x 1) of Symbol
        Unknown soft values.
    Q, policy : Matrix (S x A)
        ``Q(V, x)`` and the Boltzmann policy ``pi(V, x)``.
    T : Matrix (S x 1)
        Soft Bellman right-hand side ``T(V, x)``.
    dT_dV, dT_dx : Matrix
        Partial Jacobians of ``T`` (``S x S`` and ``S x d``).
    dV_dx : Matrix (S x d)
        ``(I - dT/dV)^{-1} dT/dx`` (implicit function theorem).
    F : Expr
        Leader objective ``rho^T V_L(V, x)``.
    gradient : Matrix (d x 1)
        Total derivative ``dF/dx`` as an expression in ``V`` and ``x``.
    """

    x: tuple[sp.Symbol, ...]
    gamma: sp.Symbol
    tau: sp.Symbol
    gamma_L: sp.Symbol
    V: sp.Matrix
    Q: sp.Matrix
    policy: sp.Matrix
    T: sp.Matrix
    dT_dV: sp.Matrix
    dT_dx: sp.Matrix
    dV_dx: sp.Matrix
    F: sp.Expr
    gradient: sp.Matrix
    P: list
    r: sp.Matrix
    r_L: sp.Matrix
    rho: sp.Matrix

    @property
    def n_states(self) -> int:
        return self.Q.shape[0]

    @property
    def n_actions(self) -> int:
        return self.Q.shape[1]


def build(P: Sequence, r: Sequence, r_L: Sequence, rho: Sequence,
          x: Sequence[sp.Symbol]) -> SymbolicBilevel:
    """Build the symbolic problem.

    Parameters
    ----------
    P : nested sequence [S][A][S]
        Transition probabilities (numbers or sympy expressions, not depending on ``x``).
    r, r_L : nested sequence [S][A]
        Follower and leader rewards, sympy expressions in ``x``.
    rho : sequence [S]
        Initial distribution.
    x : sequence of Symbol
        The leader parameters.
    """
    S, A = len(r), len(r[0])
    if S > 2 or A > 2:
        raise ValueError(f"(S, A) = ({S}, {A}): the symbolic route is for S <= 2, A <= 2")
    gamma, tau, gamma_L = sp.symbols("gamma tau gamma_L", positive=True)
    xs = tuple(x)
    V = sp.Matrix(sp.symbols(f"V_0:{S}", real=True))
    Pm = [[[sp.sympify(P[s][a][t]) for t in range(S)] for a in range(A)] for s in range(S)]
    rm = sp.Matrix(S, A, lambda s, a: sp.sympify(r[s][a]))
    rLm = sp.Matrix(S, A, lambda s, a: sp.sympify(r_L[s][a]))
    Q = sp.Matrix(S, A, lambda s, a: rm[s, a] + gamma * sum(Pm[s][a][t] * V[t]
                                                             for t in range(S)))
    T = sp.Matrix(S, 1, lambda s, _: tau * sp.log(sum(sp.exp(Q[s, a] / tau)
                                                       for a in range(A))))
    policy = sp.Matrix(S, A, lambda s, a: sp.exp(Q[s, a] / tau)
                       / sum(sp.exp(Q[s, b] / tau) for b in range(A)))
    dT_dV = T.jacobian(V)
    dT_dx = T.jacobian(sp.Matrix(xs))
    dV_dx = (sp.eye(S) - dT_dV).LUsolve(dT_dx)
    # leader: V_L = (I - gamma_L P_pi)^{-1} sum_a pi r_L
    P_pi = sp.Matrix(S, S, lambda s, t: sum(policy[s, a] * Pm[s][a][t] for a in range(A)))
    r_pi = sp.Matrix(S, 1, lambda s, _: sum(policy[s, a] * rLm[s, a] for a in range(A)))
    V_L = (sp.eye(S) - gamma_L * P_pi).LUsolve(r_pi)
    rho_m = sp.Matrix([sp.sympify(p) for p in rho])
    F = (rho_m.T * V_L)[0, 0]
    grad = (sp.Matrix([F]).jacobian(sp.Matrix(xs))
            + sp.Matrix([F]).jacobian(V) * dV_dx).T
    return SymbolicBilevel(x=xs, gamma=gamma, tau=tau, gamma_L=gamma_L, V=V, Q=Q,
                           policy=policy, T=T, dT_dV=dT_dV, dT_dx=dT_dx, dV_dx=dV_dx, F=F,
                           gradient=grad, P=Pm, r=rm, r_L=rLm, rho=rho_m)


def tiny_example(n_states: int = 2) -> SymbolicBilevel:
    """A fixed 1- or 2-state, 2-action example with ``x = (x_0, x_1)`` and affine rewards.

    All coefficients are dyadic rationals, exactly representable in float64, so
    the numeric problem of :func:`to_problem` is the *same* problem, not a rounding of it.
    """
    x0, x1 = sp.symbols("x_0 x_1", real=True)
    R = sp.Rational
    if n_states == 1:
        return build(P=[[[1], [1]]], r=[[x0, R(1, 2) - x1]], r_L=[[1, x0 / 2]], rho=[1],
                     x=(x0, x1))
    if n_states == 2:
        return build(P=[[[R(3, 4), R(1, 4)], [R(1, 8), R(7, 8)]],
                        [[R(1, 2), R(1, 2)], [R(5, 8), R(3, 8)]]],
                     r=[[x0, R(1, 2) - x1], [R(3, 8) + x1, x0 - x1]],
                     r_L=[[1, 0], [x0 / 2, R(-1, 4)]], rho=[R(3, 4), R(1, 4)], x=(x0, x1))
    raise ValueError(f"n_states = {n_states}: must be 1 or 2")


def single_state_closed_form(sb: SymbolicBilevel) -> tuple[sp.Expr, sp.Matrix]:
    """For ``S = 1``: explicit ``F(x)`` and its gradient by direct differentiation.

    ``V = tau log sum_a exp(r_a / tau) / (1 - gamma)``; ``pi`` is the softmax of
    ``r / tau`` (the ``gamma V`` shift cancels), ``V_L = sum_a pi r_L / (1 - gamma_L)``.
    """
    if sb.n_states != 1:
        raise ValueError("single_state_closed_form: needs S = 1")
    A = sb.n_actions
    e = [sp.exp(sb.r[0, a] / sb.tau) for a in range(A)]
    pi = [ea / sum(e) for ea in e]
    F = sum(pi[a] * sb.r_L[0, a] for a in range(A)) / (1 - sb.gamma_L)
    return F, sp.Matrix([sp.diff(F, xk) for xk in sb.x])


def _substitutions(sb: SymbolicBilevel, x: Sequence[float], gamma: float, tau: float,
                   gamma_L: float | None) -> dict:
    subs = {sb.gamma: sp.Float(gamma, 60), sb.tau: sp.Float(tau, 60),
            sb.gamma_L: sp.Float(gamma if gamma_L is None else gamma_L, 60)}
    subs.update({xk: sp.Float(float(v), 60) for xk, v in zip(sb.x, x, strict=True)})
    return subs


def solve_values(sb: SymbolicBilevel, subs: Mapping, *, dps: int = 50) -> dict:
    """Solve ``V = T(V)`` numerically at ``dps`` digits (``mpmath.findroot``)."""
    T = sb.T.subs(subs)
    f = sp.lambdify(list(sb.V), list(T - sb.V), modules="mpmath")
    with mpmath.workdps(dps):
        root = mpmath.findroot(lambda *v: f(*v), [mpmath.mpf(0)] * sb.n_states)
        vals = ([root[i] for i in range(sb.n_states)] if isinstance(root, mpmath.matrix)
                else [root])
    return {Vs: sp.Float(val, dps) for Vs, val in zip(sb.V, vals, strict=True)}


@dataclass(frozen=True)
class SymbolicValue:
    """Value and gradient of a symbolic problem evaluated at ``dps`` digits (``mpf``)."""

    value: mpmath.mpf
    gradient: list
    V: list

    def gradient_float(self) -> np.ndarray:
        return np.array([float(g) for g in self.gradient])


def evaluate(sb: SymbolicBilevel, x: Sequence[float], *, gamma: float, tau: float,
             gamma_L: float | None = None, dps: int = 50) -> SymbolicValue:
    """Value and gradient at numbers, from the symbolic implicit formula.

    The fixed point ``V`` is found at ``dps`` digits and substituted into the
    symbolic ``F`` and ``dF/dx`` (compiled with common-subexpression elimination).
    """
    subs = _substitutions(sb, x, gamma, tau, gamma_L)
    subs.update(solve_values(sb, subs, dps=dps))
    args = [*sb.V, *sb.x, sb.gamma, sb.tau, sb.gamma_L]
    fn = sp.lambdify(args, [sb.F, *sb.gradient], modules="mpmath", cse=True)
    with mpmath.workdps(dps):
        out = fn(*[mpmath.mpf(str(subs[a])) for a in args])
        return SymbolicValue(value=+out[0], gradient=[+g for g in out[1:]],
                             V=[mpmath.mpf(str(subs[v])) for v in sb.V])


def to_problem(sb: SymbolicBilevel, *, gamma: float, tau: float,
               gamma_L: float | None = None) -> BilevelProblem:
    """The numeric :class:`BilevelProblem` of a symbolic one with affine rewards in ``x``."""
    S, A, d = sb.n_states, sb.n_actions, len(sb.x)
    zero = dict.fromkeys(sb.x, 0)

    def affine(R: sp.Matrix) -> AffineReward:
        base = np.array([[float(R[s, a].subs(zero)) for a in range(A)] for s in range(S)])
        feats = np.empty((S, A, d))
        for s in range(S):
            for a in range(A):
                for k, xk in enumerate(sb.x):
                    c = sp.diff(R[s, a], xk)
                    if c.free_symbols:
                        raise ValueError(f"r[{s}, {a}] is not affine in {xk}")
                    feats[s, a, k] = float(c)
        return AffineReward(base, feats)

    P = np.array([[[float(sb.P[s][a][t]) for t in range(S)] for a in range(A)]
                  for s in range(S)])
    return BilevelProblem(affine(sb.r), FixedTransitions(P, d),
                          LeaderReturn(affine(sb.r_L), leader_gamma=gamma_L), gamma=gamma,
                          tau=tau, initial=[float(p) for p in sb.rho])


def latex_derivation(sb: SymbolicBilevel) -> str:
    """The derivation as LaTeX lines (``align*`` body), for notebooks and docs."""
    L = sp.latex
    lines = [r"Q &= " + L(sb.Q) + r"\\",
             r"V &= T(V, x) = " + L(sb.T) + r"\\",
             r"\pi &= " + L(sb.policy) + r"\\",
             r"\frac{\partial T}{\partial V} &= " + L(sp.simplify(sb.dT_dV))
             + r" \;=\; \gamma P_\pi\\",
             r"\frac{\partial T}{\partial x} &= " + L(sp.simplify(sb.dT_dx)) + r"\\",
             r"\frac{dV}{dx} &= \Big(I - \frac{\partial T}{\partial V}\Big)^{-1}"
             r"\frac{\partial T}{\partial x}\\",
             r"F &= \rho^\top (I - \gamma_L P_\pi)^{-1} \textstyle\sum_a \pi\, r_L\\",
             r"\nabla F &= \frac{\partial F}{\partial x}"
             r" + \frac{\partial F}{\partial V}\,\frac{dV}{dx}"]
    return "\n".join(lines)
