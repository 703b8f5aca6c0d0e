"""Plot a network file's learned input PSP kernel against the preset's start: python kernel.py NET.h5 OUT.png"""
import sys

import matplotlib
import numpy as np

from eventsnn.bridge import load_network
from eventsnn.model import srm

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

net = load_network(sys.argv[1])
L = net.layers[0]
h, d = L.psp_taps, L.psp_tap_ms
s = np.linspace(0, (len(h) + 2) * d, 1000)
fig, ax = plt.subplots(figsize=(6, 3.2))
ax.plot(s, srm.fir_kernel(s, srm.start_taps(len(h), 50.0, d), d), "--", color="0.5", label="start: alpha, tau 50 ms")
ax.plot(s, srm.fir_kernel(s, h, d), color="C0", label="learned (seed 0, no delays)")
ax.axhline(0, color="0.8", lw=0.8)
ax.set_xlabel("time after the input spike (ms)")
ax.set_ylabel("PSP (per unit weight)")
ax.set_title("The learned input PSP of the paper-isi preset, ISI task f = 0")
ax.legend(frameon=False, fontsize=8)
fig.tight_layout()
fig.savefig(sys.argv[2], dpi=120)
