"""Generate the soft-LQR golden vectors in ``verification/golden_lqr/``.

Each file ``NN_name.json`` is an ``exact-bilevel-golden/1`` file whose ``problem`` is an
``exact-bilevel-lqr/1`` problem and whose ``expected`` holds ``F(x)`` and ``grad F(x)``
as decimal strings with 30 significant digits, computed by the mpmath route
(:mod:`exact_bilevel.lqr.highprec`: Newton on the Riccati equation, moment recursion,
central differences with step ``10^-(dps/3)``) at 60 digits and confirmed at 80 digits
(the script stops if the two disagree beyond 1e-35 relative). ``exact-bilevel
hypergradient FILE`` and ``check`` read these files directly.

Run: ``python verification/make_golden_lqr.py`` (~1 min).
"""

from __future__ import annotations

import json
import pathlib

import mpmath as mp
import numpy as np

from exact_bilevel.core._files import atomic_write
from exact_bilevel.io import lqr_to_dict
from exact_bilevel.lqr import highprec, tasks

OUT = pathlib.Path(__file__).resolve().parent / "golden_lqr"


def _cases() -> list[tuple[str, object, np.ndarray]]:
    building, _ = tasks.building_thermal_control()
    game, _ = tasks.lqr_game()
    hinge, _ = tasks.lqr_game("hinge")
    short, _ = tasks.building_thermal_control(horizon=20)
    return [("building_thermal_x0", building, np.zeros(8)),
            ("building_thermal_x_half", building, 0.5 * np.arange(-4, 4) / 4),
            ("building_thermal_horizon20", short, np.full(8, 0.25)),
            ("lqr_game_bump", game, np.array([-0.5, 0.25])),
            ("lqr_game_hinge", hinge, np.array([0.5, -0.25]))]


def _digits(x: object) -> str:
    return mp.nstr(x, 30, min_fixed=-5, max_fixed=5)


def main() -> None:
    OUT.mkdir(exist_ok=True)
    for k, (name, problem, x) in enumerate(_cases(), start=1):
        v60, v80 = highprec.value(problem, x, dps=60), highprec.value(problem, x, dps=80)
        with mp.workdps(80):
            if abs(v60 - v80) > mp.mpf(10) ** -35 * max(1, abs(v80)):
                raise SystemExit(f"{name}: value differs at 60 and 80 digits")
        g60 = _mp_gradient(problem, x, 60)
        g80 = _mp_gradient(problem, x, 80)
        with mp.workdps(80):
            scale = max(abs(g) for g in g80)
            if max(abs(a - b) for a, b in zip(g60, g80, strict=True)) > mp.mpf(10) ** -25 * scale:
                raise SystemExit(f"{name}: gradient differs at 60 and 80 digits")
            doc = {"format": "exact-bilevel-golden/1", "problem": lqr_to_dict(problem, x),
                   "expected": {"value": _digits(v80), "gradient": [_digits(g) for g in g80],
                                "significant_digits": 30,
                                "method": "exact_bilevel.lqr.highprec (mpmath) at 60 and 80 "
                                          "digits: Newton on the soft Riccati equation, "
                                          "moment recursion, central differences"}}
        path = OUT / f"{k:02d}_{name}.json"
        atomic_write(path, json.dumps(doc, indent=1) + "\n")
        print("wrote", path.name, flush=True)


def _mp_gradient(problem: object, x: np.ndarray, dps: int) -> list:
    with mp.workdps(dps):
        h = mp.mpf(10) ** (-(dps // 3))
        return [(highprec._value(problem, x, dps, (k, h)) - highprec._value(problem, x, dps,
                                                                              (k, -h))) / (2 * h)
                for k in range(x.size)]


if __name__ == "__main__":
    main()
