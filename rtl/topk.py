"""SpAtten-style top-k engine: the k largest of n streamed scores (docs/design.md 3.4).

Scores arrive ``P`` per beat and never wait for the selection. Each beat is sorted, best
first, by a pipelined *beat sorter* (Batcher's odd-even merge sort, a register after every
layer of compare-exchanges), then flows as a group down a *systolic insertion list* of
``k_max`` slots, two register stages per slot, a group entering every cycle. A slot holds one
(score, index) entry; it compares the group's ``P`` candidates only with its own entry, keeps
the best of them and passes the other ``P``, still sorted, to the next slot. After a batch's
last group has passed, slot ``i`` holds the ``i``-th best score of the batch: the first
``min(k, n)`` slots are the selection and the last of them holds the threshold, the k-th
largest score.

As the last group passes each slot, the slot hands its index to an *index register file*
and starts empty for the next batch, whose scores follow right behind. The file sorts the
selected indices into ascending order (odd-even transposition, one round per cycle, one
round per index) and emits them, one per beat with the threshold, while the next batch's
scores stream in. Only a batch's *last* beat waits: it is taken once the indices of the
batch before it are all out.

Ties go to the lower index: the sorter orders equal scores of a beat by lane; a new score
displaces an entry only when strictly larger (the entry came earlier), and an entry displaced
from a slot, which is ahead of every entry below it, also when equal.
"""

from amaranth import Cat, Const, Module, Mux, Signal, Value, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

__all__ = ["Config", "ScoreBeat", "ResultBeat", "TopK", "sorting_layers"]


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


def sorting_layers(lanes):
    """Batcher's odd-even merge sort of ``lanes`` values, as layers of compare-exchanges.

    Each layer is a list of ``(i, j)`` pairs, ``i < j``, that touch distinct lanes; after the
    exchange lane ``i`` holds the better value. A count that is not a power of two is sorted
    as the next power of two with the extra lanes worst, so their exchanges are left out.
    """
    size = 1 << max(0, (lanes - 1).bit_length())

    def merge(lo, n, r):
        step = r * 2
        if step < n:
            yield from merge(lo, n, step)
            yield from merge(lo + r, n, step)
            yield from ((i, i + r) for i in range(lo + r, lo + n - r, step))
        else:
            yield (lo, lo + r)

    def sort(lo, n):
        if n > 1:
            yield from sort(lo, n // 2)
            yield from sort(lo + n // 2, n // 2)
            yield from merge(lo, n, 1)

    depth = [0] * size
    layers = []
    for i, j in sort(0, size):
        if j >= lanes:
            continue
        layer = max(depth[i], depth[j])
        depth[i] = depth[j] = layer + 1
        if layer == len(layers):
            layers.append([])
        layers[layer].append((i, j))
    return layers


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
        ``error``). Taken between batches, before the next batch's first beat;
        ``k_max`` after reset.
    scores : In(stream.Signature(ScoreBeat(score, par)))
        ``count`` valid lanes (from lane 0) of the next scores of the batch; ``last``
        on its final beat. Every beat is taken at once, except a ``last`` beat while the
        previous batch's indices are still owed, and a first beat while ``config`` is valid.
    result : Out(stream.Signature(ResultBeat(index_bits, score)))
        The ``min(k, n)`` selected indices in ascending order, one per beat, each with the
        threshold (the k-th largest score); ``last`` on the final one. The first is offered
        :attr:`latency` ``+ min(k, n)`` cycles after the batch's last beat is taken.
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
        self._layers = sorting_layers(par)
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
    def sort_stages(self):
        """Register stages of the beat sorter: two per layer of Batcher's network for ``par``
        lanes (compare, then exchange)."""
        return 2 * len(self._layers)

    @property
    def latency(self):
        """Cycles from taking a batch's last beat to offering its first index, less ``min(k,
        n)`` (the index sort's rounds): the input register, the sorter and two cycles per
        slot."""
        return 1 + self.sort_stages + 2 * self._k_max

    @property
    def score_shape(self):
        """The shape of a score: ``signed(score_bits)`` or ``unsigned(score_bits)``."""
        return signed(self._score_bits) if self._signed else unsigned(self._score_bits)

    def elaborate(self, platform):
        m = Module()
        P, K, W = self._par, self._k_max, self._score_bits
        index_bits = self._index_bits
        bias = 1 << (W - 1) if self._signed else 0
        # A candidate: its key (valid above the score, offset to compare unsigned: the larger
        # key is the better score; 0 is an empty place) and its index.
        # ``resident``: displaced from a slot, so earlier than any entry of equal score below.
        place = data.StructLayout({"index": unsigned(index_bits), "key": unsigned(W + 1)})
        candidate = data.StructLayout({**place.members, "resident": 1})

        def key(score, valid):
            return Mux(valid, Cat(Value.cast(score).as_unsigned() ^ bias, Const(1, 1)), 0)

        # ---- Input: at once, except a last beat while a batch is owed. -------------------
        k = Signal(range(K + 1), init=K)
        seen = Signal(index_bits + 2)                 # scores taken of the open batch
        owed = Signal()                               # a closed batch's indices are not all out
        batch_k = Signal(range(K + 1))                # min(k, n) of the batch being finished
        incoming = self.scores.payload
        config_ok = (self.config.payload.k >= 1) & (self.config.payload.k <= K)
        configuring = self.config.valid & (seen == 0)
        m.d.comb += [
            self.config.ready.eq(seen == 0),
            self.scores.ready.eq(~(owed & incoming.last) & ~configuring),
        ]
        with m.If(self.config.valid & self.config.ready):
            with m.If(config_ok):
                m.d.sync += k.eq(self.config.payload.k)
            with m.Else():
                m.d.sync += self.error.eq(1)
        taking = self.scores.valid & self.scores.ready
        total = seen + incoming.count
        with m.If(taking):
            m.d.sync += seen.eq(total)
            with m.If(total > self._n_max):
                m.d.sync += self.error.eq(1)
            with m.If(incoming.last):
                m.d.sync += [seen.eq(0), owed.eq(1),
                             batch_k.eq(Mux(total < k, total, k))]

        # The beat, registered: every lane a candidate (its lane number breaks ties in the
        # sorter), and the batch's last group marked.
        sortable = data.StructLayout({"lane": unsigned(max(1, (P - 1).bit_length())),
                                      "index": unsigned(index_bits), "key": unsigned(W + 1)})
        lanes = [Signal(sortable, name=f"beat{j}") for j in range(P)]
        last = Signal(name="beat_last")
        m.d.sync += last.eq(taking & incoming.last)
        for j, lane in enumerate(lanes):
            m.d.sync += [lane.lane.eq(j), lane.index.eq(seen + j),
                         lane.key.eq(key(incoming.score[j], taking & (j < incoming.count)))]

        # ---- Beat sorter: a layer of compare-exchanges in two cycles, compare then exchange.
        for depth, layer in enumerate(self._layers):
            compared = [Signal(sortable, name=f"sort{depth}_compared{j}") for j in range(P)]
            better = Signal(len(layer), name=f"sort{depth}_better")   # lane j beats lane i
            compared_last = Signal(name=f"sort{depth}_compared_last")
            m.d.sync += [*(c.eq(lane) for c, lane in zip(compared, lanes)),
                         better.eq(Cat(Cat(~lanes[j].lane, lanes[j].key)
                                       > Cat(~lanes[i].lane, lanes[i].key) for i, j in layer)),
                         compared_last.eq(last)]
            exchanged = {}
            for pair, (i, j) in enumerate(layer):
                exchanged[i] = Mux(better[pair], compared[j], compared[i])
                exchanged[j] = Mux(better[pair], compared[i], compared[j])
            after = [Signal(sortable, name=f"sort{depth}_{j}") for j in range(P)]
            after_last = Signal(name=f"sort{depth}_last")
            m.d.sync += [*(a.eq(exchanged.get(j, compared[j])) for j, a in enumerate(after)),
                         after_last.eq(compared_last)]
            lanes, last = after, after_last

        # ---- Systolic insertion list, and the handover to the index register file. -------
        # Each slot takes two cycles: it compares the group with its entry and keeps the best
        # (the entry's loop), then merges its former entry into the rest of the group.
        group = [Signal(candidate, name=f"group0_{j}") for j in range(P)]
        for j in range(P):
            m.d.comb += [group[j].index.eq(lanes[j].index), group[j].key.eq(lanes[j].key)]
        # Travels with the last group, held between batches: the k-th score so far.
        threshold = Signal(self.score_shape)
        selected = [Signal(name=f"selected{i}") for i in range(K)]
        indices = [Signal(index_bits, name=f"selected_index{i}") for i in range(K)]
        for i in range(K):
            # Compare: a candidate beats the entry when larger, or equal and resident (the
            # lower index); the group is sorted, so only the first can take the slot.
            entry = Signal(place, name=f"slot{i}")
            beats = [Cat(g.resident, g.key) > Cat(Const(0, 1), entry.key) for g in group]
            held = [Signal(candidate, name=f"held{i}_{j}") for j in range(P)]
            won = Signal(P, name=f"won{i}")
            former = Signal(place, name=f"former{i}")
            held_last = Signal(name=f"held{i}_last")
            held_threshold = Signal(self.score_shape, name=f"held{i}_threshold")
            m.d.sync += [*(h.eq(g) for h, g in zip(held, group)), won.eq(Cat(beats)),
                         former.eq(entry), held_last.eq(last), held_threshold.eq(threshold)]
            with m.If(last):
                m.d.sync += entry.eq(0)
            with m.Elif(beats[0]):
                m.d.sync += [entry.index.eq(group[0].index), entry.key.eq(group[0].key)]

            # Merge: the former entry goes after the candidates that beat it.
            after = [Signal(candidate, name=f"group{i + 1}_{j}") for j in range(P)]
            displaced = Cat(former.index, former.key, Const(1, 1))
            for j in range(P):
                merged = Mux(won[j], displaced, held[j])
                if j + 1 < P:
                    merged = Mux(won[j + 1], held[j + 1], merged)
                m.d.sync += after[j].eq(merged)
            after_last = Signal(name=f"group{i + 1}_last")
            after_threshold = Signal(self.score_shape, name=f"group{i + 1}_threshold")
            kept = candidate(Mux(won[0], held[0], former))      # the batch's i-th best
            m.d.sync += after_last.eq(held_last)
            with m.If(held_last):
                m.d.sync += [selected[i].eq(i < batch_k), indices[i].eq(kept.index),
                             after_threshold.eq(Mux(i < batch_k, kept.key[:W] ^ bias,
                                                    held_threshold))]
            group, last, threshold = after, after_last, after_threshold
            handed_over = held_last          # of the last slot: every place of the file loaded

        # ---- Index register file: sort ascending, then emit from place 0. ----------------
        rounds = Signal(range(K + 1))                 # transposition rounds still to do
        odd = Signal()                                # this round pairs (1, 2), (3, 4), ...
        emitting = Signal()
        with m.If(handed_over):                      # an empty batch: straight to its end
            m.d.sync += [rounds.eq(batch_k), odd.eq(0), emitting.eq(batch_k == 0)]
        with m.Elif(rounds != 0):
            m.d.sync += [rounds.eq(rounds - 1), odd.eq(~odd)]
            with m.If(rounds == 1):
                m.d.sync += emitting.eq(1)
        for i in range(K - 1):
            swap = selected[i] & selected[i + 1] & (indices[i + 1] < indices[i])
            with m.If((rounds != 0) & (odd == i % 2) & swap):
                m.d.sync += [indices[i].eq(indices[i + 1]), indices[i + 1].eq(indices[i])]

        final = ~selected[1] if K > 1 else Const(1)
        m.d.comb += [
            self.result.valid.eq(emitting & selected[0]),
            self.result.payload.index.eq(indices[0]),
            self.result.payload.threshold.eq(threshold),
            self.result.payload.last.eq(final),
        ]
        with m.If(self.result.valid & self.result.ready):
            for i in range(K):
                following = (selected[i + 1], indices[i + 1]) if i + 1 < K else (0, indices[i])
                m.d.sync += [selected[i].eq(following[0]), indices[i].eq(following[1])]
            with m.If(final):
                m.d.sync += [emitting.eq(0), owed.eq(0)]
        with m.If(emitting & ~selected[0]):          # an empty batch ends here, no beat
            m.d.sync += [emitting.eq(0), owed.eq(0)]
        return m
