r"""The exact core: model -> soft solve -> sensitivities -> hypergradient.

Everything that defines the exact answer lives here, in the order of the math:

* **model** — :mod:`.mdp` (``FiniteMDP``: ``P[s, a, s']``, ``r[s, a]``, ``rho[s]``,
  validated), :mod:`._transitions` (dense and sparse storage of ``P`` behind one
  interface), :mod:`._validate` (the error messages), :mod:`.generators` (random
  MDPs, gridworlds, FourRooms);
* **soft solve** — :mod:`.soft_bellman` (``V = tau log sum_a exp(Q / tau)``,
  max-shifted), :mod:`.solve` (Newton / soft policy iteration and value
  iteration, raising :class:`~.errors.ConvergenceError` with the residual
  reached), :mod:`.evaluation` (exact policy evaluation and occupancies),
  :mod:`.linalg` (the reusable factorisation of ``I - gamma P_pi``),
  :mod:`.batched_solve` (many MDPs of one shape by one batched Newton);
* **how x enters** — :mod:`.parameterizations` (``r_x``, ``P_x`` and their
  Jacobian products, parameter axis last);
* **the bilevel problem** — :mod:`.follower` (the follower's data and solved
  state), :mod:`.objectives` (``F(x) = f(x, pi*(x))`` and its partials),
  :mod:`.problem` (``BilevelProblem``);
* **sensitivities and hypergradient** — :mod:`.sensitivities` (``dV``, ``dQ``,
  ``dlog pi`` by the implicit function theorem on the soft-Bellman fixed point)
  and :mod:`.hypergradient` (adjoint mode: one ``S``-sized solve whatever ``d``;
  forward mode); :mod:`.batched_hypergradient` (the leader's value and adjoint
  hypergradient of many transition models at one ``x``, and ``F`` at many ``x``).

May import: numpy and scipy only; nothing else of ``exact_bilevel``. Every other
layer builds on this one.
"""
