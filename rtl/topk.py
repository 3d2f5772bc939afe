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

from amaranth import Array, Cat, Const, Module, Mux, Signal, Value, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

__all__ = ["Config", "ScoreBeat", "ResultBeat", "TopK", "sorting_layers"]

#: Up to this ``par``, one copy of a slot's entry key (the entry's loop) serves every
#: comparator; beyond it, the loop has a copy of its own and each :data:`_COPY_LANES` of the
#: other lanes one.
_SHARED_LANES = 4
_COPY_LANES = 2


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
        # A score's key: valid above the score, offset to compare unsigned (the larger key is
        # the better score; 0 is an empty place).
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

        # The beat, registered: every lane a candidate, its key apart from its tag (its lane
        # number, which breaks ties in the sorter, and its index), and the batch's last group
        # marked. Only keys and flags are reset: a tag matters only beside a nonzero key.
        tag = data.StructLayout({"lane": unsigned(max(1, (P - 1).bit_length())),
                                 "index": unsigned(index_bits)})

        def lane_signals(name):
            return ([Signal(W + 1, name=f"{name}{j}_key") for j in range(P)],
                    [Signal(tag, name=f"{name}{j}_tag", reset_less=True) for j in range(P)])

        keys, tags = lane_signals("beat")
        last = Signal(name="beat_last")
        m.d.sync += last.eq(taking & incoming.last)
        for j in range(P):
            m.d.sync += [tags[j].lane.eq(j), tags[j].index.eq(seen + j),
                         keys[j].eq(key(incoming.score[j], taking & (j < incoming.count)))]

        # ---- Beat sorter: a layer of compare-exchanges in two cycles, compare then exchange.
        for depth, layer in enumerate(self._layers):
            compared_keys, compared_tags = lane_signals(f"sort{depth}_compared")
            better = Signal(len(layer), name=f"sort{depth}_better")   # lane j beats lane i
            compared_last = Signal(name=f"sort{depth}_compared_last")
            m.d.sync += [*(c.eq(k) for c, k in zip(compared_keys, keys)),
                         *(c.eq(t) for c, t in zip(compared_tags, tags)),
                         better.eq(Cat(Cat(~tags[j].lane, keys[j]) > Cat(~tags[i].lane, keys[i])
                                       for i, j in layer)),
                         compared_last.eq(last)]
            after_keys, after_tags = lane_signals(f"sort{depth}_")
            for j in range(P):
                m.d.sync += [after_keys[j].eq(compared_keys[j]),
                             after_tags[j].eq(compared_tags[j])]
            for pair, (i, j) in enumerate(layer):
                with m.If(better[pair]):
                    m.d.sync += [after_keys[i].eq(compared_keys[j]),
                                 after_tags[i].eq(compared_tags[j]),
                                 after_keys[j].eq(compared_keys[i]),
                                 after_tags[j].eq(compared_tags[i])]
            after_last = Signal(name=f"sort{depth}_last")
            m.d.sync += after_last.eq(compared_last)
            keys, tags, last = after_keys, after_tags, after_last

        # ---- Systolic insertion list, and the handover to the index register file. -------
        # Each slot takes two cycles: it compares the group with its entry and keeps the best
        # (the entry's loop), then merges its former entry into the rest of the group. A
        # candidate is its rank (key, and ``resident``: displaced from a slot, so earlier than
        # any entry of equal score below) and, reset-less, its index.
        rank = data.StructLayout({"key": unsigned(W + 1), "resident": 1})
        group = [Signal(rank, name=f"group0_{j}") for j in range(P)]
        group_index = [t.index for t in tags]
        for j in range(P):
            m.d.comb += group[j].key.eq(keys[j])

        def entry_copy(name, group, last):
            # A copy of a slot's entry key and the entry's loop: emptied by a batch's last
            # group, else taking the group's first candidate when it beats the entry (when
            # larger, or equal and resident).
            entry = Signal(W + 1, name=name)
            takes = Cat(group[0].resident, group[0].key) > Cat(Const(0, 1), entry)
            with m.If(last):
                m.d.sync += entry.eq(0)
            with m.Elif(takes):
                m.d.sync += entry.eq(group[0].key)
            return entry, takes

        # Travel with the last group, held between batches: the k-th score so far, and the
        # places of the selection left (min(k, n) at slot 0), so no slot reads batch_k.
        threshold = Signal(self.score_shape)
        left = batch_k
        selected = [Signal(name=f"selected{i}") for i in range(K)]
        indices = [Signal(index_bits, name=f"selected_index{i}", reset_less=True)
                   for i in range(K)]
        for i in range(K):
            # Compare: a candidate beats the entry when larger, or equal and resident (the
            # lower index); the group is sorted, so only the first can take the slot. The
            # copies of the entry's key: see _SHARED_LANES.
            entry, takes = entry_copy(f"slot{i}", group, last)
            beats = [takes]
            step = P if P <= _SHARED_LANES else _COPY_LANES
            for first in range(1, P, step):
                if P > _SHARED_LANES:
                    entry = entry_copy(f"slot{i}_lanes{first}", group, last)[0]
                beats += [Cat(g.resident, g.key) > Cat(Const(0, 1), entry)
                          for g in group[first:first + step]]
            held = [Signal(rank, name=f"held{i}_{j}") for j in range(P)]
            held_index = [Signal(index_bits, name=f"held{i}_{j}_index", reset_less=True)
                          for j in range(P)]
            # Registered per lane j: the candidate at j beat the entry (it moves up a lane,
            # or takes the slot). The group is sorted, so lane j of the merge takes the
            # candidate at j + 1 if that one won (``rises``), else the entry if j won, else its
            # own. ``rises`` is a second register of ``won[1:]``, so that each selects in one
            # lane only; it is reset-less, which keeps synthesis from merging it with ``won``.
            won = Signal(P, name=f"won{i}")
            rises = Signal(max(1, P - 1), name=f"rises{i}", reset_less=True)
            held_last = Signal(name=f"held{i}_last")
            held_threshold = Signal(self.score_shape, name=f"held{i}_threshold",
                                    reset_less=True)
            held_left = Signal(range(K + 1), name=f"held{i}_left", reset_less=True)
            m.d.sync += [*(h.eq(g) for h, g in zip(held, group)),
                         *(h.eq(g) for h, g in zip(held_index, group_index)),
                         won.eq(Cat(beats)), rises.eq(Cat(beats[1:])),
                         held_last.eq(last), held_threshold.eq(threshold),
                         held_left.eq(left)]
            # The entry the held group was compared with, rebuilt from the registers of the
            # compare: empty after a last group, else the first held candidate if it won, else
            # unchanged. Its index lives only here.
            former = Signal(W + 1, name=f"former{i}")
            former_index = Signal(index_bits, name=f"former{i}_index", reset_less=True)
            with m.If(held_last):
                m.d.sync += former.eq(0)
            with m.Elif(won[0]):
                m.d.sync += [former.eq(held[0].key), former_index.eq(held_index[0])]

            # Merge: the former entry goes after the candidates that beat it.
            after = [Signal(rank, name=f"group{i + 1}_{j}") for j in range(P)]
            after_index = [Signal(index_bits, name=f"group{i + 1}_{j}_index", reset_less=True)
                           for j in range(P)]
            displaced = Cat(former, Const(1, 1))
            for j in range(P):
                merged = Mux(won[j], displaced, held[j])
                merged_index = Mux(won[j], former_index, held_index[j])
                if j + 1 < P:
                    merged = Mux(rises[j], held[j + 1], merged)
                    merged_index = Mux(rises[j], held_index[j + 1], merged_index)
                m.d.sync += [after[j].eq(merged), after_index[j].eq(merged_index)]
            after_last = Signal(name=f"group{i + 1}_last")
            after_threshold = Signal(self.score_shape, name=f"group{i + 1}_threshold",
                                     reset_less=True)
            after_left = Signal(range(K + 1), name=f"group{i + 1}_left", reset_less=True)
            kept = Mux(won[0], held[0].key, former)      # the batch's i-th best
            chosen = held_left != 0                      # i < min(k, n)
            m.d.sync += after_last.eq(held_last)
            with m.If(held_last):
                m.d.sync += [selected[i].eq(chosen),
                             indices[i].eq(Mux(won[0], held_index[0], former_index)),
                             after_threshold.eq(Mux(chosen, kept[:W] ^ bias, held_threshold)),
                             after_left.eq(held_left - chosen)]
            group, group_index, last = after, after_index, after_last
            threshold, left = after_threshold, after_left
            handed_over = held_last          # of the last slot: every place of the file loaded

        # ---- Index register file: sort ascending, then emit place by place. --------------
        # The places stay put while they are emitted: a pointer selects the one offered, so
        # taking a beat touches the pointer only, not every place.
        # ``pairing`` is the round of this cycle, registered so that a pair's swap is its
        # compare and two flags: bit 0 pairs (0, 1), (2, 3), ..., bit 1 pairs (1, 2), (3, 4),
        # ...; none once the rounds are done. The selection is places 0 to min(k, n) - 1, so
        # a pair is in it when its second place is.
        rounds = Signal(range(K + 1))                 # transposition rounds still to do
        pairing = Signal(2)
        emitting = Signal()
        place = Signal(range(K))                      # the place offered
        final_place = Signal(range(K))                # min(k, n) - 1
        with m.If(handed_over):
            m.d.sync += [rounds.eq(batch_k), pairing.eq(Mux(batch_k != 0, 0b01, 0)),
                         place.eq(0), final_place.eq(batch_k - 1)]
            with m.If(batch_k == 0):                  # an empty batch ends here, no beat
                m.d.sync += owed.eq(0)
        with m.Elif(rounds != 0):
            m.d.sync += [rounds.eq(rounds - 1),
                         pairing.eq(Mux(rounds == 1, 0, Mux(pairing[1], 0b01, 0b10)))]
            with m.If(rounds == 1):
                m.d.sync += emitting.eq(1)
        for i in range(K - 1):
            with m.If(pairing[i % 2] & selected[i + 1] & (indices[i + 1] < indices[i])):
                m.d.sync += [indices[i].eq(indices[i + 1]), indices[i + 1].eq(indices[i])]

        final = place == final_place
        m.d.comb += [
            self.result.valid.eq(emitting),
            self.result.payload.index.eq(Array(indices)[place]),
            self.result.payload.threshold.eq(threshold),
            self.result.payload.last.eq(final),
        ]
        with m.If(self.result.valid & self.result.ready):
            m.d.sync += place.eq(place + 1)
            with m.If(final):
                m.d.sync += [emitting.eq(0), owed.eq(0)]
        return m
