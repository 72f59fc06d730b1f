r"""Independent routes to the exact numbers of :mod:`exact_bilevel.core`.

Each module computes ``F(x)`` or ``grad F(x)`` by a method that shares as
little as possible with the closed form, so that agreement is evidence:

* :mod:`.finite_differences` — central differences with Richardson extrapolation;
* :mod:`.complex_step` — ``Im F(x + i h e_k) / h`` through the complex-analytic solver;
* :mod:`.highprec` — the whole computation in mpmath at 50+ digits (golden vectors);
* :mod:`.symbolic` — a sympy derivation of the hypergradient on small MDPs;
* :mod:`.gradient_recursion` — the HPGD recursion for ``dQ`` (Thoma et al. 2024);
* :mod:`.unrolled` — differentiation through K unrolled soft value-iteration sweeps
  (converges to the implicit derivative as ``gamma^K``);
* :mod:`.game_bruteforce` — a Markov game's leader objective by soft value
  iteration on the game's own tables and evaluation of the joint chain (no
  reduction to a bilevel problem).

May import: :mod:`exact_bilevel.core`.
"""
