"""The SRM-alpha neuron (kind "srm"): its definition, the network file, and every engine against it."""
import math

import numpy as np
import pytest

from eventsnn import srm
from eventsnn.contract import propagators as lif_propagators


def test_kernels_are_the_impulse_responses_of_the_filter_pairs():
    tau_sr, tau_ref, scale, theta, w = 1.7, 2.9, 2.0, 10.0, 0.6
    for s in (0.0, 0.3, 1.7, 4.0, 25.0):
        v, I, vr, Ir = srm.evolve(0.0, srm.E * w, 0.0, float(srm.refractory_jump(scale, theta)), s, tau_sr, tau_ref)
        assert v == pytest.approx(w * float(srm.eps(s, tau_sr)), rel=1e-14, abs=1e-300)
        assert vr == pytest.approx(float(srm.nu(s, tau_ref, scale, theta)), rel=1e-14, abs=1e-300)
        assert I == pytest.approx(srm.E * w * math.exp(-s / tau_sr), rel=1e-14)
    # the PSP peaks at w, tau_sr after the arrival; the refractory kernel at -scale*theta
    assert float(srm.eps(tau_sr, tau_sr)) == pytest.approx(1.0, rel=1e-15)
    assert float(srm.nu(tau_ref, tau_ref, scale, theta)) == pytest.approx(-scale * theta, rel=1e-15)
    assert float(srm.eps(-0.1, tau_sr)) == 0.0


def test_one_step_of_the_closed_form_is_the_discrete_propagator():
    tau_sr, tau_ref, dt = np.array([1.0, 3.3]), np.array([2.0, 3.3]), 0.25
    a, k, ar, kr = srm.propagators(tau_sr, tau_ref, dt)
    la, lb, lk = lif_propagators(tau_sr, tau_sr, dt)  # the equal-tau LIF case, not restated
    np.testing.assert_array_equal(a, la)
    np.testing.assert_array_equal(a, lb)
    np.testing.assert_array_equal(k, lk)
    for i in range(2):
        v, I, vr, Ir = srm.evolve(0.4, -1.1, -0.7, -2.0, dt, tau_sr[i], tau_ref[i])
        assert v == pytest.approx(a[i] * 0.4 + k[i] * -1.1, rel=1e-14)
        assert I == pytest.approx(a[i] * -1.1, rel=1e-14)
        assert vr == pytest.approx(ar[i] * -0.7 + kr[i] * -2.0, rel=1e-14)
        assert Ir == pytest.approx(ar[i] * -2.0, rel=1e-14)


def test_potential_sums_the_kernels_and_its_slope_matches():
    tau_sr, tau_ref, scale, theta = 1.0, 2.0, 2.0, 10.0
    J = float(srm.refractory_jump(scale, theta))
    # one arrival at 0 (w=3), one own spike at 0.5: state at 0.5 just after the spike, evolved to 1.2
    v, I, vr, Ir = srm.evolve(0.0, srm.E * 3.0, 0.0, 0.0, 0.5, tau_sr, tau_ref)
    v, I, vr, Ir = srm.evolve(v, I, vr, Ir + J, 0.7, tau_sr, tau_ref)
    u = srm.potential(1.2, [0.0], [3.0], [0.5], tau_sr, tau_ref, scale, theta)
    assert v + vr == pytest.approx(float(u), rel=1e-13)
    h = 1e-6
    du = (srm.potential(1.2 + h, [0.0], [3.0], [0.5], tau_sr, tau_ref, scale, theta)
          - srm.potential(1.2 - h, [0.0], [3.0], [0.5], tau_sr, tau_ref, scale, theta)) / (2 * h)
    assert srm.u_slope(v, I, vr, Ir, tau_sr, tau_ref) == pytest.approx(float(du), rel=1e-7)
