"""numba kernels of the cochlea's stages 3-4 (imported on first use; compiled once and cached, see
:mod:`eventsnn.util.jit`): the Meddis hair cell of one channel, and its 40 fibres and bushy cell, drawing from a
compiled MT19937 that continues numpy's legacy generator. See :mod:`eventsnn.data.cochlea` for the chain.

The fibres' loop is bound by the generator (80 words per sample and channel): the words are tempered a few
blocks ahead into a buffer and each sample reads its 40 uniforms as 40 contiguous 64-bit pairs of words, so the
twist, the tempering and the fibres (every fibre, every sample, without branches) compile to vector code.
"""
import sys

import numpy as np

from eventsnn.util.jit import jit

U, L, A = np.uint32(0x80000000), np.uint32(0x7fffffff), np.uint32(0x9908b0df)
B, C, ONE = np.uint32(0x9d2c5680), np.uint32(0xefc60000), np.uint32(1)
S7, S11, S15, S18 = np.uint32(7), np.uint32(11), np.uint32(15), np.uint32(18)
AHEAD = 8       # MT19937 blocks (of 624 words) tempered ahead into the fibres' word buffer
# A uniform's two words read as one 64-bit integer: the first word in its low half on a little-endian machine
LO32 = np.uint64(0xffffffff)
FIRST, SECOND = (np.uint64(0), np.uint64(32)) if sys.byteorder == "little" else (np.uint64(32), np.uint64(0))
S5, S6 = np.uint64(5), np.uint64(6)


@jit
def twist(key):
    """The generator's next block: MT19937's 624-word state advanced in place (its recurrence, as numpy runs it)."""
    for i in range(227):
        y = (key[i] & U) | (key[i + 1] & L)
        key[i] = key[i + 397] ^ (y >> ONE) ^ ((y & ONE) * A)
    for i in range(227, 623):
        y = (key[i] & U) | (key[i + 1] & L)
        key[i] = key[i - 227] ^ (y >> ONE) ^ ((y & ONE) * A)
    y = (key[623] & U) | (key[0] & L)
    key[623] = key[396] ^ (y >> ONE) ^ ((y & ONE) * A)


@jit
def temper(key, out):
    """The 624 outputs of the current block into ``out`` (a contiguous view: the loop vectorises)."""
    for i in range(624):
        y = key[i]
        y ^= y >> S11
        y ^= (y << S7) & B
        y ^= (y << S15) & C
        y ^= y >> S18
        out[i] = y


@jit
def hair_cell(bm, meddis, limit):  # pragma: no cover - compiled; tested through eventsnn.data.cochlea
    """Meddis on one channel's membrane velocity ``bm``: ``limit[j]`` = the release probability of sample j
    times 2^53 (the scale of numpy's 53-bit uniforms; a power of two, so exact)."""
    ymdt, xdt, ydt, rdt, gdt, hdt, lplusrdt, a, b, m, q, c, w = meddis
    for j in range(bm.shape[0]):
        x = bm[j]
        if x + a > 0:
            kt = gdt * (x + a) / (x + a + b)
        else:
            kt = 0.0
        replenish = ymdt - ydt * q if q < m else 0.0
        eject = kt * q
        loss = lplusrdt * c
        reuptake = rdt * c
        reprocess = xdt * w
        q = max(q + replenish - eject + reprocess, 0.0)
        c = max(c + eject - loss, 0.0)
        w = max(w + reuptake - reprocess, 0.0)
        limit[j] = c * hdt * 9007199254740992.0


@jit
def bushy(limit, key, st, n_fibres, refrac, dmem, dsyn, weight, dt, out):  # pragma: no cover - compiled
    """Fibres then bushy cell on one channel's release limits (:func:`hair_cell`). Returns the number of output
    spike steps written to ``out``. ``key`` (a copy of numpy's MT19937 key, uint32) and ``st[0]`` (the position
    in it) advance as numpy's legacy generator would advance them."""
    n = limit.shape[0]
    need = 2 * n_fibres            # 32-bit words per sample: two per uniform, one uniform per fibre
    # the generator's outputs, tempered a few blocks at a time; buf[r:filled] are those not used yet
    buf = np.empty(AHEAD * 624 + need, np.uint32)
    pairs64 = buf.view(np.uint64)    # sample j's uniforms: n_fibres pairs of words from an even offset r
    filled = 0
    if st[0] < 624:                # the rest of the current block
        head = np.empty(624, np.uint32)
        temper(key, head)
        filled = 624 - st[0]
        buf[:filled] = head[st[0]:]
    r = 0
    last = np.empty(n_fibres)
    isyn = np.zeros(n_fibres)
    for k in range(n_fibres):
        last[k] = -refrac
    vm = 0.0
    counter = 0.0
    n_out = 0
    for j in range(n):
        if r + need > filled:      # move the unused words to the front, temper the blocks still needed
            left = filled - r
            for t in range(left):
                buf[t] = buf[r + t]
            filled, r = left, 0
            for _ in range(min(AHEAD, ((n - j) * need - left + 623) // 624)):
                twist(key)
                temper(key, buf[filled:filled + 624])
                filled += 624
        pairs = pairs64[r // 2:r // 2 + n_fibres]
        r += need
        lim = limit[j]
        # the LIF's membrane before this sample's input
        if j > 0:
            if counter <= 0:
                if vm < 1.0:
                    vm = vm * dmem
                else:
                    counter = refrac
                    vm = 0.0
                    out[n_out] = j - 1
                    n_out += 1
            else:
                vm = 0.0
        # fibres: one uniform per fibre (numpy's random_sample), 1 ms refractoriness, synaptic currents.
        # numpy's random_sample is (a * 2^26 + b) / 2^53 with a = w0 >> 5, b = w1 >> 6: u < prob exactly when the
        # integer a * 2^26 + b < prob * 2^53 (both scalings by powers of two are exact). isyn * decay + 0.0 is
        # isyn * decay exactly (isyn >= 0), so adding 0.0 where a fibre does not release changes nothing.
        fj = float(j)
        for k in range(n_fibres):
            p = pairs[k]
            v = np.int64(((p >> FIRST) & LO32) >> S5) * 67108864 + np.int64(((p >> SECOND) & LO32) >> S6)
            release = (v < lim) & (fj - last[k] >= refrac)
            last[k] = fj if release else last[k]
            isyn[k] = isyn[k] * dsyn + (1.0 if release else 0.0)
        if counter <= 0:
            # numpy's pairwise order of summing the fibres' currents (8 accumulators below 128 terms)
            if n_fibres < 8:
                tot = 0.0
                for k in range(n_fibres):
                    tot += isyn[k]
            else:
                r0, r1, r2, r3 = isyn[0], isyn[1], isyn[2], isyn[3]
                r4, r5, r6, r7 = isyn[4], isyn[5], isyn[6], isyn[7]
                k = 8
                while k < n_fibres - (n_fibres % 8):
                    r0 += isyn[k]
                    r1 += isyn[k + 1]
                    r2 += isyn[k + 2]
                    r3 += isyn[k + 3]
                    r4 += isyn[k + 4]
                    r5 += isyn[k + 5]
                    r6 += isyn[k + 6]
                    r7 += isyn[k + 7]
                    k += 8
                tot = ((r0 + r1) + (r2 + r3)) + ((r4 + r5) + (r6 + r7))
                while k < n_fibres:
                    tot += isyn[k]
                    k += 1
            vm += tot * weight * dt
        if vm > 1.0:
            vm = 1.0
        counter -= 1
    st[0] = 624 - (filled - r)     # the unused words are the tail of the current block
    return n_out
