"""The first code cell of every chapter."""

SETUP = """\
import numpy as np
import matplotlib.pyplot as plt
import exact_bilevel as eb
np.set_printoptions(precision=6, suppress=True, linewidth=100)
plt.rcParams["figure.dpi"] = 80"""

#: For chapters that use only subpackages (``exact_bilevel.games``, ``exact_bilevel.lqr``).
SETUP_NO_EB = SETUP.replace("import exact_bilevel as eb\n", "")
