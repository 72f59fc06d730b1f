"""Official FourRooms windows (carried / reset episodes) and the fragment estimators.

Independent routes: the estimators' dual (prefix-weight) form against the explicit
fragment sums and every-visit tables; the fragment sums against a per-episode Python
loop; the scalar and vectorised walks draw identical windows.
"""

from __future__ import annotations

import numpy as np
import pytest

from exact_bilevel.estimators import carried, leader_knowledge
from exact_bilevel.estimators.carried import EpisodeStream
from exact_bilevel.estimators.critics import Critic
from exact_bilevel.estimators.fragments import (
    SarsaTable,
    closed_steps,
    fragment_sums,
    visit_means,
    window_bchg,
    window_hpgd_oracle,
    windowed_bchg,
)
from exact_bilevel.estimators.sampling import Sampler
from exact_bilevel.experiments.paper_problems import four_rooms_design
from exact_bilevel.experiments.reproduce import fourrooms_paper as paper


@pytest.fixture(scope="module")
def rooms():
    problem, _, grid = four_rooms_design(0.005)
    know = leader_knowledge(problem, np.random.default_rng(1).normal(0.0, 1.0, 105))
    return know, grid.state((1, 9))


def test_window_shapes_billing_and_episode_ends(rooms):
    know, goal = rooms
    stream = EpisodeStream(2, 30, [goal], carry=False)
    sampler = Sampler(know.state.mdp, np.random.default_rng(0))
    win = stream.window(sampler, know.pi, 400)
    assert win.states.shape == (2, 200) and sampler.steps == 400
    assert sampler.resets == 2 + win.ends[:, :-1].sum()   # one reset per episode started
    assert np.all(win.time[:, 0] == 0)                     # reset mode: fresh episodes
    # each step's time is the previous one's + 1 unless the previous step ended it
    nxt = np.where(win.ends[:, :-1], 0, win.time[:, :-1] + 1)
    assert np.array_equal(win.time[:, 1:], nxt)
    assert np.array_equal(win.ends, win.terminal | (win.time == 29))
    assert win.time.max() <= 29
    # within an episode the next state is the next step's state
    cont = ~win.ends[:, :-1]
    assert np.array_equal(win.next_states[:, :-1][cont], win.states[:, 1:][cont])


def test_carried_windows_continue_the_episodes(rooms):
    know, goal = rooms
    stream = EpisodeStream(3, 200, [goal], carry=True)
    rng = np.random.default_rng(4)
    a = stream.window(Sampler(know.state.mdp, rng), know.pi, 150)
    b = stream.window(Sampler(know.state.mdp, rng), know.pi, 150)
    go_on = ~a.ends[:, -1]
    assert go_on.any()
    assert np.array_equal(b.states[go_on, 0], a.next_states[go_on, -1])
    assert np.array_equal(b.time[go_on, 0], a.time[go_on, -1] + 1)
    assert np.all(b.time[~go_on, 0] == 0)


def test_scalar_and_vector_walks_draw_the_same_windows(rooms, monkeypatch):
    know, goal = rooms
    wins = []
    for limit in (8, 0):
        monkeypatch.setattr(carried, "SCALAR_ENVS", limit)
        stream = EpisodeStream(5, 25, [goal], carry=True)
        rng = np.random.default_rng(3)
        wins.append([stream.window(Sampler(know.state.mdp, rng), know.pi, 100)
                     for _ in range(3)])
    for w1, w2 in zip(*wins, strict=True):
        for f in ("states", "actions", "next_states", "time", "ends", "terminal"):
            assert np.array_equal(getattr(w1, f), getattr(w2, f)), f


def test_window_refuses_bad_input(rooms):
    know, goal = rooms
    sampler = Sampler(know.state.mdp, np.random.default_rng(0))
    with pytest.raises(ValueError, match="multiple of n_envs"):
        EpisodeStream(3, 200, [goal]).window(sampler, know.pi, 100)
    with pytest.raises(ValueError, match=r"terminal\[0\] = 0: must be absorbing"):
        EpisodeStream(1, 200, [0]).window(sampler, know.pi, 100)
    with pytest.raises(ValueError, match="cap"):
        EpisodeStream(1, 0, [goal])
    with pytest.raises(ValueError, match="does not fit"), sampler.capped(50):
        EpisodeStream(1, 200, [goal]).window(sampler, know.pi, 100)


def test_fragment_sums_match_a_per_episode_loop():
    rng = np.random.default_rng(2)
    c, ends = rng.normal(size=(3, 40)), rng.random((3, 40)) < 0.15
    ref = np.zeros_like(c)
    for i in range(3):
        acc = 0.0
        for t in range(39, -1, -1):
            acc = c[i, t] + (0.9 * acc if (t < 39 and not ends[i, t]) else 0.0)
            ref[i, t] = acc
    assert np.allclose(fragment_sums(c, ends, 0.9), ref, rtol=1e-13, atol=1e-13)


def test_terminal_step_closes_with_the_absorbing_value(rooms):
    know, goal = rooms
    win = EpisodeStream(1, 200, [goal], carry=False).window(
        Sampler(know.state.mdp, np.random.default_rng(8)), know.pi, 600)
    assert win.terminal.any()
    c = closed_steps(know.r_leader, win, know.pi, know.gamma_leader)
    # the goal's leader reward is constant in a, so the closure is r / (1 - gamma)
    assert np.allclose(c[win.terminal], know.r_leader[goal, 0] / (1 - know.gamma_leader))


def _explicit(know, win, adv, dq_window, da_tables):
    """The estimators' formulas with the [n, W, d] sums and the tables formed explicitly."""
    S, A = know.pi.shape
    gL = fragment_sums(closed_steps(know.dr_leader, win, know.pi, know.gamma_leader),
                       win.ends, know.gamma_leader)
    direct = know.problem.initial @ visit_means(win.states.reshape(-1),
                                                gL.reshape(win.n_steps, -1), S)
    o = dq_window
    gF = fragment_sums(closed_steps(know.dr, o, know.pi, know.gamma), o.ends,
                       know.gamma).reshape(o.n_steps, -1)
    sa = (o.states * A + o.actions).reshape(-1)
    table = visit_means(sa, gF, S * A).reshape(S, A, -1)
    if da_tables:
        table = table - visit_means(o.states.reshape(-1), gF, S)[:, None, :]
    w = (know.gamma_leader ** win.time * adv[win.states, win.actions]).reshape(-1)
    ind = (w[:, None] * table.reshape(S * A, -1)[(win.states * A + win.actions).reshape(-1)])
    return direct + know.reg_grad + ind.sum(axis=0) / (know.tau * max(1, win.n_ends))


def test_dual_forms_equal_the_explicit_tables(rooms):
    know, goal = rooms
    S, A = know.pi.shape
    rng = np.random.default_rng(0)
    stream = EpisodeStream(2, 60, [goal], carry=True)
    for _ in range(2):
        win = stream.window(Sampler(know.state.mdp, rng), know.pi, 400)
        critic = Critic(q=rng.normal(size=(S, A)), v=rng.normal(size=S))
        ref = _explicit(know, win, critic.advantage, win, False)
        got = window_bchg(know, win, critic)
        assert np.allclose(got, ref, rtol=1e-12, atol=1e-12 * np.abs(ref).max())
        oracle = EpisodeStream(20, 60, [goal], carry=False).window(
            Sampler(know.state.mdp, rng), know.pi, 2000)
        G = fragment_sums(closed_steps(know.r_leader, oracle, know.pi, know.gamma_leader),
                          oracle.ends, know.gamma_leader).reshape(-1)
        sa = (oracle.states * A + oracle.actions).reshape(-1)
        adv = (visit_means(sa, G, S * A).reshape(S, A)
               - visit_means(oracle.states.reshape(-1), G, S)[:, None])
        ref = _explicit(know, win, adv, oracle, True)
        got = window_hpgd_oracle(know, win, oracle)
        assert np.allclose(got, ref, rtol=1e-12, atol=1e-12 * np.abs(ref).max())


def test_sarsa_table(rooms):
    know, goal = rooms
    S, A = know.pi.shape
    a = SarsaTable(S, A, 0.5, np.random.default_rng(7))
    assert np.array_equal(a.q, np.random.default_rng(7).normal(size=(S, A)))  # N(0, 1)
    assert not SarsaTable(S, A, 0.5).q.any()
    for bad in (0.0, 1.5, True):
        with pytest.raises(ValueError, match="step_size"):
            SarsaTable(S, A, bad)
    # alpha = 1 on a window whose every step ends an episode: Q = the closed reward
    win = EpisodeStream(1, 1, [goal], carry=False).window(
        Sampler(know.state.mdp, np.random.default_rng(1)), know.pi, 50)
    assert win.ends.all()
    table = SarsaTable(S, A, 1.0, np.random.default_rng(2))
    critic = table.update(know, win, np.random.default_rng(3))
    r = closed_steps(know.r_leader, win, know.pi, know.gamma_leader)
    assert np.array_equal(critic.q[win.states, win.actions], r)
    assert np.allclose(critic.v, np.sum(know.pi * critic.q, axis=1))
    e = windowed_bchg(know, Sampler(know.state.mdp, np.random.default_rng(0)),
                      EpisodeStream(1, 200, [goal], carry=False), 100, table)
    assert e.transitions == 100 + e.resets and np.all(np.isfinite(e.gradient))


def test_paper_runs_and_section(tmp_path):
    for row, budget in (("bc-hg", 100), ("hpgd-oracle", 100), ("exact-sgd", 0)):
        curve = paper.run_job(paper.Job(row, 0.001, budget, 0.5, 0, 2, "pilot"))
        assert curve.shape == (3,) and np.all(np.isfinite(curve))
    md = tmp_path / "reproduce_fourrooms.md"
    md.write_text("# Title\n\nold table\n")
    paper.write_block(md, paper.BEGIN + "\nfirst\n" + paper.END)
    paper.write_block(md, paper.BEGIN + "\nsecond\n" + paper.END)
    text = md.read_text()
    assert "second" in text and "first" not in text and text.count(paper.BEGIN) == 1
    assert paper.existing_block(md) == paper.BEGIN + "\nsecond\n" + paper.END
    assert text.startswith("# Title") and text.rstrip().endswith("old table")
    block = paper.render_block({}, {}, paper.BUDGETS, paper.SEEDS)
    assert "not run yet" in block and "Missing" in block


def test_fourrooms_full_runs_the_paper_protocol_and_the_comparison_keeps_its_section(
        tmp_path, monkeypatch):
    from exact_bilevel.experiments.reproduce import fourrooms
    from exact_bilevel.experiments.reproduce._common import RunSize

    calls = []
    monkeypatch.setattr(paper, "paper_protocol",
                        lambda out, **kw: calls.append(kw) or "paper")
    assert fourrooms.four_rooms(tmp_path, size=fourrooms.FULL) == "paper"
    assert calls == [dict(budgets=(100, 200, 400, 1000), seeds=10, workers=1)]
    md = tmp_path / "reproduce_fourrooms.md"
    md.write_text("# Title\n\n" + paper.BEGIN + "\nkept\n" + paper.END + "\n\nold\n")
    tiny = RunSize(steps=2, seeds=1, budgets=(100,), learning_rates=(0.5,), label="tiny")
    text = fourrooms.four_rooms(tmp_path, size=tiny)
    assert paper.BEGIN + "\nkept\n" + paper.END in text and "old\n" not in text
    assert md.read_text() == text


def test_bias_cells_and_their_lines(monkeypatch):
    monkeypatch.setattr(paper, "BIAS_WINDOWS", {100: 40, 1000: 20})
    monkeypatch.setattr(paper, "BIAS_BATCHES", 10)
    x = paper.bias_points()["x = 0"]
    cells = {}
    for method, budget in (("reset", 100), ("carried", 100), ("package", 1000)):
        rec = paper.fragment_bias(x, method, budget)
        assert rec["windows"] == paper.BIAS_WINDOWS[budget] and np.isfinite(rec["scale_se"])
        assert np.all(np.isfinite(rec["mean"])) and rec["g"].shape == rec["se"].shape
        cells[("x = 0", method, budget)] = rec
    text = "\n".join(paper._bias_lines(cells))
    assert "| x = 0 | reset | 100 | 40 |" in text and "package" in text
    assert ("x = 0", "package", 100) not in paper.bias_cells()
