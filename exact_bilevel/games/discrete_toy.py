"""The DiscreteToy game of Kudo et al. (2026): three states, a leader who can
push the follower out of state A, a follower tempted by the reward ``R``."""

from __future__ import annotations

import numpy as np

from .model import OBSERVES_STATE_AND_LEADER_ACTION, MarkovGame


def discrete_toy(R: float = 1.0, *, gamma: float = 0.99, tau: float = 0.05) -> MarkovGame:
    """The DiscreteToy game of Kudo et al. (2026).

    States S, A, B (0, 1, 2); leader actions {0, 1}; follower actions s, a, b
    (0, 1, 2). The state is unchanged unless listed: from S, follower a -> A,
    b -> B; from A, leader 0 with follower s -> S, leader 0 with b -> B, leader
    1 -> S; from B, follower s -> S. Follower reward: +1 at S for a or b; -1 at A
    whenever the leader plays 1; ``R`` at A for leader 0 with follower b. Leader
    reward: +1 at S when the follower plays a. Start at S. The follower observes
    ``(s, aL)``.
    """
    S_, A_, B_ = 0, 1, 2
    P = np.zeros((3, 2, 3, 3))
    for s in range(3):
        for aL in range(2):
            for aF in range(3):
                nxt = s
                if s == S_ and aF == 1:
                    nxt = A_
                elif s == S_ and aF == 2:
                    nxt = B_
                elif s == A_ and aL == 1:
                    nxt = S_
                elif s == A_ and aL == 0 and aF == 0:
                    nxt = S_
                elif s == A_ and aL == 0 and aF == 2:
                    nxt = B_
                elif s == B_ and aF == 0:
                    nxt = S_
                P[s, aL, aF, nxt] = 1.0
    rF = np.zeros((3, 2, 3))
    rF[S_, :, 1] = rF[S_, :, 2] = 1.0
    rF[A_, 1, :] = -1.0
    rF[A_, 0, 2] = R
    rL = np.zeros((3, 2, 3))
    rL[S_, :, 1] = 1.0
    return MarkovGame(P, rF, rL, np.array([1.0, 0.0, 0.0]), gamma, tau,
                      observes=OBSERVES_STATE_AND_LEADER_ACTION)
