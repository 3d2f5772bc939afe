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
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

__all__ = ["Config", "ScoreBeat", "ResultBeat", "TopK", "sorting_layers"]

#: Lanes of one insertion list: a beat of more lanes is split into groups of at most this many
#: (a power of two of them), each with a sorter and a list of its own, and the lists'
#: selections are merged.
_LIST_LANES = 4


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
        self._groups = 1 << (-(-par // _LIST_LANES) - 1).bit_length()
        self._group_lanes = -(-par // self._groups)
        self._layers = sorting_layers(self._group_lanes)
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
    def lists(self):
        """Insertion lists: 1 up to ``par`` = 4, else the power of two that gives each at
        most 4 lanes (:attr:`list_lanes`)."""
        return self._groups

    @property
    def list_lanes(self):
        """Lanes of each insertion list: ``ceil(par / lists)``."""
        return self._group_lanes

    @property
    def sort_stages(self):
        """Register stages of the beat sorter: two per layer of Batcher's network for
        :attr:`list_lanes` lanes (compare, then exchange)."""
        return 2 * len(self._layers)

    @property
    def merge_stages(self):
        """Register stages between the lists' last slots and the index file, 0 with one list:
        gathering each list's slots into a stream (an OR of four slots, then of eight
        registers at a time, a register each), then three per level of the merge tree."""
        if self._groups == 1:
            return 0
        gathered, stages = -(-self._k_max // 4), 1
        while gathered > 1:
            gathered, stages = -(-gathered // 8), stages + 1
        return stages + 3 * (self._groups.bit_length() - 1)

    @property
    def latency(self):
        """Cycles from taking a batch's last beat to offering its first index, less ``min(k,
        n)`` (the index sort's rounds): the input register, the sorter, two cycles per slot
        and the merge."""
        return 1 + self.sort_stages + 2 * self._k_max + self.merge_stages

    @property
    def score_shape(self):
        """The shape of a score: ``signed(score_bits)`` or ``unsigned(score_bits)``."""
        return signed(self._score_bits) if self._signed else unsigned(self._score_bits)

    @property
    def _key_bias(self):
        """What a score's bits are XORed with to make its key, an unsigned number that
        orders as the score does: the sign bit for signed scores, nothing for unsigned."""
        return 1 << (self._score_bits - 1) if self._signed else 0

    def elaborate(self, platform):
        m = Module()
        P, K, W = self._par, self._k_max, self._score_bits
        G, Q = self._groups, self._group_lanes
        index_bits = self._index_bits
        bias = self._key_bias
        # ---- Input: at once, except a last beat while a batch is owed. -------------------
        k = Signal(range(K + 1), init=K)
        seen = Signal(index_bits + 2)                 # scores taken of the open batch
        opening = Signal(init=1)                      # seen == 0, as a register of its own
        owed = Signal()                               # a closed batch's indices are not all out
        batch_k = Signal(range(K + 1))                # min(k, n) of the batch being finished
        incoming = self.scores.payload
        config_ok = (self.config.payload.k >= 1) & (self.config.payload.k <= K)
        configuring = self.config.valid & opening
        m.d.comb += [
            self.config.ready.eq(opening),
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
            m.d.sync += [seen.eq(total), opening.eq(total == 0)]
            with m.If(total > self._n_max):
                m.d.sync += self.error.eq(1)
            with m.If(incoming.last):
                m.d.sync += [seen.eq(0), opening.eq(1), owed.eq(1),
                             batch_k.eq(Mux(total < k, total, k))]

        # A score's key: valid above the score, offset to compare unsigned (the larger key is
        # the better score; 0 is an empty place).
        # The beat, registered: every lane a candidate, its key apart from its tag (its lane
        # number, which breaks ties in the sorter, and its index), and the batch's last group
        # marked. Only keys and flags are reset: a tag matters only beside a nonzero key.
        # Lanes past P, which fill the last list's group, stay empty. The register takes
        # every score as it comes, and only the key's valid bit whether it was taken; the
        # key is zeroed behind the register, so that the input handshake drives one flip-flop
        # per lane, not the reset of every key bit.
        tag = data.StructLayout({"lane": unsigned(max(1, (P - 1).bit_length())),
                                 "index": unsigned(index_bits)})

        keys, tags = self._lane_signals("beat", G * Q, tag)
        last = Signal(name="beat_last")
        m.d.sync += last.eq(taking & incoming.last)
        for j in range(P):
            m.d.sync += [tags[j].lane.eq(j), tags[j].index.eq(seen + j),
                         keys[j].eq(Cat(Value.cast(incoming.score[j]).as_unsigned() ^ bias,
                                        taking & (j < incoming.count)))]
        keys = [Mux(k[W], k, 0) for k in keys]

        # The index register file's places, loaded as the selection is handed over.
        selected = [Signal(name=f"selected{i}") for i in range(K)]
        indices = [Signal(index_bits, name=f"selected_index{i}", reset_less=True)
                   for i in range(K)]
        if G == 1:
            threshold, handed_over = self._insertion_list(
                m, *self._beat_sorter(m, keys, tags, last, ""), "",
                selection=(batch_k, selected, indices))
        else:
            streams = []
            for g in range(G):
                lanes = slice(g * Q, (g + 1) * Q)
                handovers = self._insertion_list(
                    m, *self._beat_sorter(m, keys[lanes], tags[lanes], last, f"list{g}_"),
                    f"list{g}_")
                streams.append(self._selection_stream(m, handovers, f"list{g}"))
            level = 0
            while len(streams) > 1:
                streams = [self._merge(m, streams[i], streams[i + 1], f"merge{level}_{i // 2}")
                           for i in range(0, len(streams), 2)]
                level += 1
            threshold, handed_over = self._places(m, *streams[0], batch_k, selected, indices)

        # ---- Index register file: sort ascending, then emit place by place. --------------
        # The places stay put while they are emitted: a pointer selects the one offered, so
        # taking a beat touches the pointer only, not every place. It is kept twice: as a
        # number, compared with the final place for ``last``, and one-hot, whose AND-OR
        # with the places gives the index in fewer LUT levels than a multiplexer of K.
        # ``pairing`` is the round of this cycle, registered so that a pair's swap is its
        # compare and two flags: bit 0 pairs (0, 1), (2, 3), ..., bit 1 pairs (1, 2), (3, 4),
        # ...; none once the rounds are done. The selection is places 0 to min(k, n) - 1, so
        # a pair is in it when its second place is.
        rounds = Signal(range(K + 1))                 # transposition rounds still to do
        pairing = Signal(2)
        emitting = Signal()
        place = Signal(range(K))                      # the place offered
        offered = Signal(K, init=1)                   # the same, one-hot
        final_place = Signal(range(K))                # min(k, n) - 1
        with m.If(handed_over):
            m.d.sync += [rounds.eq(batch_k), pairing.eq(Mux(batch_k != 0, 0b01, 0)),
                         place.eq(0), offered.eq(1), final_place.eq(batch_k - 1)]
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
            self.result.payload.index.eq(_any(Mux(offered[i], indices[i], 0)
                                              for i in range(K))),
            self.result.payload.threshold.eq(threshold),
            self.result.payload.last.eq(final),
        ]
        with m.If(self.result.valid & self.result.ready):
            m.d.sync += [place.eq(place + 1), offered.eq(offered << 1)]
            with m.If(final):
                m.d.sync += [emitting.eq(0), owed.eq(0)]
        return m

    def _lane_signals(self, name, lanes, tag):
        """Per lane, a candidate's key register and its reset-less tag register."""
        return ([Signal(self._score_bits + 1, name=f"{name}{j}_key") for j in range(lanes)],
                [Signal(tag, name=f"{name}{j}_tag", reset_less=True) for j in range(lanes)])

    def _beat_sorter(self, m, keys, tags, last, prefix):
        """Sorts a group of lanes best first: a layer of compare-exchanges in two cycles,
        compare then exchange. Returns the sorted keys, tags and the last-group flag."""
        lanes = len(keys)
        tag = tags[0].shape()

        for depth, layer in enumerate(self._layers):
            compared_keys, compared_tags = self._lane_signals(
                f"{prefix}sort{depth}_compared", lanes, tag)
            better = Signal(len(layer), name=f"{prefix}sort{depth}_better")  # j beats i
            compared_last = Signal(name=f"{prefix}sort{depth}_compared_last")
            m.d.sync += [*(c.eq(k) for c, k in zip(compared_keys, keys)),
                         *(c.eq(t) for c, t in zip(compared_tags, tags)),
                         better.eq(Cat(Cat(~tags[j].lane, keys[j]) > Cat(~tags[i].lane, keys[i])
                                       for i, j in layer)),
                         compared_last.eq(last)]
            after_keys, after_tags = self._lane_signals(f"{prefix}sort{depth}_", lanes, tag)
            for j in range(lanes):
                m.d.sync += [after_keys[j].eq(compared_keys[j]),
                             after_tags[j].eq(compared_tags[j])]
            for pair, (i, j) in enumerate(layer):
                with m.If(better[pair]):
                    m.d.sync += [after_keys[i].eq(compared_keys[j]),
                                 after_tags[i].eq(compared_tags[j]),
                                 after_keys[j].eq(compared_keys[i]),
                                 after_tags[j].eq(compared_tags[i])]
            after_last = Signal(name=f"{prefix}sort{depth}_last")
            m.d.sync += after_last.eq(compared_last)
            keys, tags, last = after_keys, after_tags, after_last
        return keys, tags, last

    def _insertion_list(self, m, keys, tags, last, prefix, selection=None):
        """The systolic insertion list of ``k_max`` slots behind a sorted group of lanes.

        Each slot takes two cycles: it compares the group with its entry and keeps the best
        (the entry's loop), then merges its former entry into the rest of the group. A
        candidate is its rank (key, and ``resident``: displaced from a slot, so earlier than
        any entry of equal score below) and, reset-less, its index.

        With ``selection`` (``batch_k`` and the index file's places), the list is the
        engine's only one: as the last group passes slot ``i``, the slot loads place ``i``
        and the group carries the threshold; returns the threshold register and the flag
        that the last place is loaded. Without it, returns per slot what the slot hands
        over as the last group passes: the flag, the entry's key and its index.
        """
        K, W = self._k_max, self._score_bits
        index_bits = self._index_bits
        bias = self._key_bias
        lanes = len(keys)
        rank = data.StructLayout({"key": unsigned(W + 1), "resident": 1})
        group = [Signal(rank, name=f"{prefix}group0_{j}") for j in range(lanes)]
        group_index = [t.index for t in tags]
        for j in range(lanes):
            m.d.comb += group[j].key.eq(keys[j])

        # Travel with the last group, held between batches: the k-th score so far, and the
        # places of the selection left (min(k, n) at slot 0), so no slot reads batch_k.
        if selection is not None:
            left, selected, indices = selection
            threshold = Signal(self.score_shape)
        handovers = []
        for i in range(K):
            # Compare: a candidate beats the entry when larger, or equal and resident (the
            # lower index); the group is sorted, so only the first can take the slot. The
            # entry's loop: emptied by a batch's last group, else taking the group's first
            # candidate when it beats the entry.
            entry = Signal(W + 1, name=f"{prefix}slot{i}")
            beats = [_beats(g.key, g.resident, entry) for g in group]
            with m.If(last):
                m.d.sync += entry.eq(0)
            with m.Elif(beats[0]):
                m.d.sync += entry.eq(group[0].key)
            held = [Signal(rank, name=f"{prefix}held{i}_{j}") for j in range(lanes)]
            held_index = [Signal(index_bits, name=f"{prefix}held{i}_{j}_index",
                                 reset_less=True)
                          for j in range(lanes)]
            # Registered per lane j: the candidate at j beat the entry (it moves up a lane,
            # or takes the slot). The group is sorted, so lane j of the merge takes the
            # candidate at j + 1 if that one won (``rises``), else the entry if j won, else its
            # own. ``rises`` is a second register of ``won[1:]``, so that each selects in one
            # lane only; it is reset-less, which keeps synthesis from merging it with ``won``.
            won = Signal(lanes, name=f"{prefix}won{i}")
            rises = Signal(max(1, lanes - 1), name=f"{prefix}rises{i}", reset_less=True)
            held_last = Signal(name=f"{prefix}held{i}_last")
            m.d.sync += [*(h.eq(g) for h, g in zip(held, group)),
                         *(h.eq(g) for h, g in zip(held_index, group_index)),
                         won.eq(Cat(beats)), rises.eq(Cat(beats[1:])),
                         held_last.eq(last)]
            if selection is not None:
                held_threshold = Signal(self.score_shape, name=f"held{i}_threshold",
                                        reset_less=True)
                held_left = Signal(range(K + 1), name=f"held{i}_left", reset_less=True)
                m.d.sync += [held_threshold.eq(threshold), held_left.eq(left)]
            # The entry the held group was compared with, rebuilt from the registers of the
            # compare: empty after a last group, else the first held candidate if it won, else
            # unchanged. Its index lives only here.
            former = Signal(W + 1, name=f"{prefix}former{i}")
            former_index = Signal(index_bits, name=f"{prefix}former{i}_index", reset_less=True)
            with m.If(held_last):
                m.d.sync += former.eq(0)
            with m.Elif(won[0]):
                m.d.sync += [former.eq(held[0].key), former_index.eq(held_index[0])]

            # Merge: the former entry goes after the candidates that beat it.
            after = [Signal(rank, name=f"{prefix}group{i + 1}_{j}") for j in range(lanes)]
            after_index = [Signal(index_bits, name=f"{prefix}group{i + 1}_{j}_index",
                                  reset_less=True)
                           for j in range(lanes)]
            displaced = Cat(former, Const(1, 1))
            for j in range(lanes):
                merged = Mux(won[j], displaced, held[j])
                merged_index = Mux(won[j], former_index, held_index[j])
                if j + 1 < lanes:
                    merged = Mux(rises[j], held[j + 1], merged)
                    merged_index = Mux(rises[j], held_index[j + 1], merged_index)
                m.d.sync += [after[j].eq(merged), after_index[j].eq(merged_index)]
            after_last = Signal(name=f"{prefix}group{i + 1}_last")
            kept = Mux(won[0], held[0].key, former)      # the batch's i-th best
            kept_index = Mux(won[0], held_index[0], former_index)
            m.d.sync += after_last.eq(held_last)
            if selection is not None:
                after_threshold = Signal(self.score_shape, name=f"group{i + 1}_threshold",
                                         reset_less=True)
                after_left = Signal(range(K + 1), name=f"group{i + 1}_left", reset_less=True)
                chosen = held_left != 0                  # i < min(k, n)
                with m.If(held_last):
                    m.d.sync += [selected[i].eq(chosen),
                                 indices[i].eq(kept_index),
                                 after_threshold.eq(Mux(chosen, kept[:W] ^ bias,
                                                        held_threshold)),
                                 after_left.eq(held_left - chosen)]
                threshold, left = after_threshold, after_left
            handovers.append((held_last, kept, kept_index))
            group, group_index, last = after, after_index, after_last
        if selection is not None:
            return threshold, held_last     # of the last slot: every place of the file loaded
        return handovers

    def _selection_stream(self, m, handovers, name):
        """Gathers a list's handovers into a stream: its slot ``i``'s entry two cycles after
        slot ``i - 1``'s, best first, through :attr:`collect_stages` registers (an OR of four
        slots' entries, then of eight registers at a time). Returns the strobe, key and index
        registers."""
        W, index_bits = self._score_bits, self._index_bits
        words = [(flag, Mux(flag, kept, 0), Mux(flag, kept_index, 0))
                 for flag, kept, kept_index in handovers]
        width, stage = 4, 0
        while True:
            gathered = []
            for first in range(0, len(words), width):
                chunk = words[first:first + width]
                strobe = Signal(name=f"{name}_gather{stage}_{first // width}")
                key = Signal(W + 1, name=f"{name}_gather{stage}_{first // width}_key",
                             reset_less=True)
                index = Signal(index_bits, name=f"{name}_gather{stage}_{first // width}_index",
                               reset_less=True)
                m.d.sync += [strobe.eq(_any(w[0] for w in chunk)),
                             key.eq(_any(w[1] for w in chunk)),
                             index.eq(_any(w[2] for w in chunk))]
                gathered.append((strobe, key, index))
            words, width, stage = gathered, 8, stage + 1
            if len(words) == 1:
                return words[0]

    def _merge(self, m, x, y, name):
        """Merges two lists' selection streams, which arrive together (item ``i`` of each
        two cycles after item ``i - 1``), into one of the same form: the ``k_max`` best of
        both, best first, three cycles after the inputs. Each input is written into a
        distributed-RAM queue; per output, a cycle reads both heads into registers, the
        next compares them (the larger key, or on equal keys the lower index, wins), passes
        the winner on and advances its queue."""
        K, W, index_bits = self._k_max, self._score_bits, self._index_bits
        item = data.StructLayout({"key": unsigned(W + 1), "index": unsigned(index_bits)})
        strobe = x[0]                                # y's strobe is the same
        written = Signal(range(K), name=f"{name}_written")
        reading = Signal(name=f"{name}_reading")     # the heads are read for the next output
        comparing = Signal(name=f"{name}_comparing")
        m.d.sync += [reading.eq(strobe), comparing.eq(reading)]
        with m.If(strobe):
            m.d.sync += written.eq(Mux(written == K - 1, 0, written + 1))
        heads = []
        for side, (_, key, index) in (("x", x), ("y", y)):
            queue = Memory(shape=item, depth=K, init=[])
            m.submodules[f"{name}_{side}"] = queue
            write, read = queue.write_port(), queue.read_port(domain="comb")
            pointer = Signal(range(K + 1), name=f"{name}_{side}_pointer")
            head = Signal(item, name=f"{name}_{side}_head", reset_less=True)
            m.d.comb += [write.addr.eq(written), write.data.key.eq(key),
                         write.data.index.eq(index), write.en.eq(strobe),
                         read.addr.eq(pointer)]
            m.d.sync += head.eq(read.data)
            heads.append((pointer, head))
        (x_pointer, x_head), (y_pointer, y_head) = heads
        x_wins = Cat(~x_head.index, x_head.key) > Cat(~y_head.index, y_head.key)
        out_strobe = Signal(name=f"{name}_strobe")
        out_key = Signal(W + 1, name=f"{name}_key", reset_less=True)
        out_index = Signal(index_bits, name=f"{name}_index", reset_less=True)
        m.d.sync += [out_strobe.eq(comparing),
                     out_key.eq(Mux(x_wins, x_head.key, y_head.key)),
                     out_index.eq(Mux(x_wins, x_head.index, y_head.index))]
        with m.If(comparing):
            m.d.sync += [x_pointer.eq(x_pointer + x_wins), y_pointer.eq(y_pointer + ~x_wins)]
        with m.If(strobe & (written == 0)):           # a batch's first item: restart
            m.d.sync += [x_pointer.eq(0), y_pointer.eq(0)]
        return out_strobe, out_key, out_index

    def _places(self, m, strobe, key, index, batch_k, selected, indices):
        """Loads the index file from the merged stream: item ``i`` into place ``i`` (a token
        marks it), selected when ``i < min(k, n)``, the last selected one's score the
        threshold. Both tests are registers: which places are selected, from ``batch_k``
        (set when the batch's last beat is taken, long before its first item), and whether
        the token's place is one of them (the items come two cycles apart, so it is ready
        for each). Returns the threshold register and the flag that the last place is
        loaded."""
        K, W = self._k_max, self._score_bits
        bias = self._key_bias
        token = Signal(K, init=1, name="place_token")  # the place the next item goes to
        selecting = Signal(K, name="places_selected")  # place i: i < min(k, n)
        chosen = Signal(name="place_selected")         # the token's place is selected
        threshold = Signal(self.score_shape, name="threshold", reset_less=True)
        m.d.sync += [selecting.eq(Cat(batch_k > i for i in range(K))),
                     chosen.eq((token & selecting).any())]
        with m.If(strobe):
            m.d.sync += token.eq(token.rotate_left(1))
            with m.If(chosen):
                m.d.sync += threshold.eq(key[:W] ^ bias)
        for i in range(K):
            with m.If(strobe & token[i]):
                m.d.sync += [selected[i].eq(selecting[i]), indices[i].eq(index)]
        return threshold, strobe & token[K - 1]


def _beats(key, resident, entry):
    """A candidate beats an entry: ``key > entry``, or equal and ``resident``. Written as the
    carry out of ``key + ~entry + resident``, which synthesis builds as one carry chain;
    ``Cat(resident, key) > Cat(0, entry)`` says the same, but yosys splits a comparison
    with a constant bit into a shorter chain and an equality tree of LUTs beside it."""
    return (key + ~entry + resident)[len(entry)]


def _any(values):
    """The OR of ``values``."""
    values = list(values)
    result = values[0]
    for value in values[1:]:
        result = result | value
    return result
