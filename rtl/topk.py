"""SpAtten-style top-k engine: the k largest of n streamed scores (docs/design.md 3.4).

Scores arrive ``P`` per beat. A *threshold filter* compares every lane with the
current k-th best score (``P`` comparators) and lets through only the lanes that
could enter the top k; the survivors of a beat go, lowest index first, one per
cycle, into a sorted *insertion list* of ``k_max`` (score, index) entries that
keeps the best ``k`` (``k_max`` comparators). Once the list is full a survivor is
rare (for random scores, about ``k * ln(n / k)`` of ``n``), so the engine keeps
up with ``P`` scores per cycle; a beat with ``s`` survivors takes ``s`` cycles, so
an increasing sequence degrades to one score per cycle.

Ties go to the lower index: a score enters only when strictly larger than an
entry, and indices arrive in increasing order. At the end of a batch the engine
emits the selected indices in ascending order (a minimum search over the list,
one index per cycle), each beat also carrying the threshold, the k-th largest score.
"""

from amaranth import Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from rtl.pipeline import lowest_set

__all__ = ["Config", "ScoreBeat", "ResultBeat", "TopK"]


class Config(data.StructLayout):
    """A configuration word: ``k`` for the following batches (valid 1..k_max)."""

    def __init__(self, k_max):
        super().__init__({"k": range(k_max + 1)})


class ScoreBeat(data.StructLayout):
    """A beat of scores: ``par`` lanes (lane 0 first), ``count`` valid from lane 0, ``last``."""

    def __init__(self, score, par):
        super().__init__({
            "score": data.ArrayLayout(score, par),
            "count": range(par + 1),
            "last":  1,
        })


class ResultBeat(data.StructLayout):
    """A beat of the result: a selected index, the threshold (k-th largest score), ``last``."""

    def __init__(self, index_bits, score):
        super().__init__({
            "index":     unsigned(index_bits),
            "threshold": score,
            "last":      1,
        })


def _check(name, value, lo, hi):
    if not isinstance(value, int) or isinstance(value, bool) or not lo <= value <= hi:
        raise ValueError(f"{name} must be between {lo} and {hi}, not {value!r}")


class TopK(wiring.Component):
    """Selects the ``k`` largest of up to ``n_max`` scores.

    Parameters
    ----------
    n_max : int
        Most scores per batch, 2..65536.
    k_max : int
        Largest ``k``, 1..n_max (and at most 256).
    par : int
        Scores per beat, ``P``, 1..32.
    score_bits : int
        Score width, 2..32.
    signed_scores : bool
        Scores are two's complement.

    Attributes
    ----------
    config : In(stream.Signature(Config(k_max)))
        ``k`` for the following batches (1..k_max; other values are dropped and set
        ``error``). Taken between batches; ``k_max`` after reset.
    scores : In(stream.Signature(ScoreBeat(score, par)))
        ``count`` valid lanes (from lane 0) of the next scores of the batch; ``last``
        on its final beat.
    result : Out(stream.Signature(ResultBeat(index_bits, score)))
        The ``min(k, n)`` selected indices in ascending order, one per beat, each with the
        threshold (the k-th largest score); ``last`` on the final one.
    error : Out(1)
        Sticky: a batch had more than ``n_max`` scores, or a ``k`` was out of range.
    """

    def __init__(self, n_max=1024, k_max=32, par=4, score_bits=16, signed_scores=True):
        _check("n_max", n_max, 2, 1 << 16)
        _check("k_max", k_max, 1, min(n_max, 256))
        _check("par", par, 1, 32)
        _check("score_bits", score_bits, 2, 32)
        self._n_max, self._k_max, self._par = n_max, k_max, par
        self._score_bits, self._signed = score_bits, bool(signed_scores)
        self._index_bits = max(1, (n_max - 1).bit_length())
        super().__init__({
            "config": In(stream.Signature(Config(k_max))),
            "scores": In(stream.Signature(ScoreBeat(self.score_shape, par))),
            "result": Out(stream.Signature(ResultBeat(self._index_bits, self.score_shape))),
            "error":  Out(1),
        })

    n_max = property(lambda self: self._n_max)
    k_max = property(lambda self: self._k_max)
    par = property(lambda self: self._par)
    score_bits = property(lambda self: self._score_bits)
    signed_scores = property(lambda self: self._signed)
    index_bits = property(lambda self: self._index_bits)

    @property
    def score_shape(self):
        """The shape of a score: ``signed(score_bits)`` or ``unsigned(score_bits)``."""
        return signed(self._score_bits) if self._signed else unsigned(self._score_bits)

    def elaborate(self, platform):
        m = Module()
        P, K = self._par, self._k_max
        score_shape = self.score_shape
        index_bits = self._index_bits

        k = Signal(range(K + 1), init=K)
        # The insertion list: best first; entries [0, filled) are valid.
        scores = [Signal(score_shape, name=f"score{i}") for i in range(K)]
        indices = [Signal(index_bits, name=f"index{i}") for i in range(K)]
        filled = Signal(range(K + 1))
        full = filled == k
        # The k-th best so far (the last valid entry before the list is full).
        threshold = Signal(score_shape)
        with m.Switch(Mux(full, k, filled)):
            for i in range(1, K + 1):
                with m.Case(i):
                    m.d.comb += threshold.eq(scores[i - 1])

        # Batch state.
        collecting = Signal(init=1)          # taking scores (else: emitting the result)
        seen = Signal(index_bits + 2)        # scores taken so far in this batch
        batch_end = Signal()                 # the last beat has been taken

        # Threshold filter on the beat being drained, against the current k-th best: a lane
        # that no longer beats it is dropped without costing a cycle.
        beat = Signal(data.ArrayLayout(score_shape, P))
        base = Signal(index_bits + 2)
        pending = Signal(P)                  # lanes of the beat not yet inserted or dropped
        live = Signal(P)
        m.d.comb += live.eq(pending & Cat(~full | (beat[i] > threshold) for i in range(P)))
        lowest = lowest_set(m, live, "lowest")
        inserting = live != 0
        others = Signal(P)
        m.d.comb += others.eq(live & ~(Const(1, P) << lowest))
        candidate_score = Signal(score_shape)
        candidate_index = Signal(index_bits + 2)
        m.d.comb += [candidate_score.eq(beat[lowest]), candidate_index.eq(base + lowest)]

        incoming = self.scores.payload
        m.d.comb += self.scores.ready.eq(collecting & ~batch_end & (others == 0))
        m.d.sync += pending.eq(others)
        with m.If(self.scores.valid & self.scores.ready):
            m.d.sync += [
                beat.eq(incoming.score),
                base.eq(seen),
                seen.eq(seen + incoming.count),
                pending.eq(Cat(i < incoming.count for i in range(P))),
            ]
            with m.If(seen + incoming.count > self._n_max):
                m.d.sync += self.error.eq(1)
            with m.If(incoming.last):
                m.d.sync += batch_end.eq(1)

        # Insertion: the candidate goes before the first entry it beats.
        beats = [Signal(name=f"beats{i}") for i in range(K)]
        for i in range(K):
            m.d.comb += beats[i].eq((i >= filled) | (candidate_score > scores[i]))
        with m.If(inserting):
            for i in range(K):
                with m.If(beats[i]):
                    if i == 0:
                        m.d.sync += [scores[0].eq(candidate_score), indices[0].eq(candidate_index)]
                    else:
                        with m.If(beats[i - 1]):
                            m.d.sync += [scores[i].eq(scores[i - 1]), indices[i].eq(indices[i - 1])]
                        with m.Else():
                            m.d.sync += [scores[i].eq(candidate_score),
                                         indices[i].eq(candidate_index)]
            with m.If(~full & beats[K - 1]):
                m.d.sync += filled.eq(filled + 1)

        with m.If(collecting & batch_end & (pending == 0)):
            m.d.sync += collecting.eq(0)

        # Output: the smallest index not yet emitted (a tree of comparators), with the threshold.
        emitted = Signal(K)
        unsent = Signal(K)
        m.d.comb += unsent.eq(Cat(~emitted[i] & (i < filled) for i in range(K)))
        nodes = [(unsent[i], indices[i], Const(i, range(K))) for i in range(K)]
        while len(nodes) > 1:
            paired = []
            for a, b in zip(nodes[0::2], nodes[1::2]):
                take_b = b[0] & (~a[0] | (b[1] < a[1]))
                paired.append((a[0] | b[0], Mux(take_b, b[1], a[1]), Mux(take_b, b[2], a[2])))
            nodes = paired + ([nodes[-1]] if len(nodes) % 2 else [])
        _, minimum, pick = nodes[0]
        # The list is final once the last beat's lanes are all inserted or dropped.
        emitting = ~collecting | (batch_end & (pending == 0))
        final = (unsent & ~(Const(1, K) << pick)) == 0
        m.d.comb += [
            self.result.valid.eq(emitting),
            self.result.payload.index.eq(minimum),
            self.result.payload.threshold.eq(threshold),
            self.result.payload.last.eq(final),
        ]
        with m.If(self.result.valid & self.result.ready):
            m.d.sync += emitted.eq(emitted | (Const(1, K) << pick))
            with m.If(final):
                m.d.sync += [collecting.eq(1), batch_end.eq(0), seen.eq(0), filled.eq(0),
                             emitted.eq(0)]

        # Configuration between batches.
        m.d.comb += self.config.ready.eq(collecting & (seen == 0) & (pending == 0))
        with m.If(self.config.valid & self.config.ready):
            with m.If((self.config.payload.k >= 1) & (self.config.payload.k <= K)):
                m.d.sync += k.eq(self.config.payload.k)
            with m.Else():
                m.d.sync += self.error.eq(1)
        return m
