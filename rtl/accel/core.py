"""The accelerator: memories, controller and engines (docs/accel.md, docs/isa.md).

The controller fetches an instruction every other cycle at best, checks its fields, and
hands engine instructions to the engines (:class:`GemmEngine`, :class:`SparseEngine`,
:class:`SelectEngine`), which run concurrently; SYNC, DONE and WAIT hold it until the
engines they name have finished. A fault (a bad field, an address outside its memory) resets
every engine (in the cycle after it) and stops the program with ``error`` set. The host reads
and writes the memories in 32-bit chunks through :class:`rtl.accel.ports.HostPort`, at the
lowest priority.
``WEIGHT`` is a single-port memory (:class:`rtl.accel.memory.SinglePortMemory`, in the
iCE40UP5K's SPRAM there): a host write to it waits while the GEMM engine is busy.
"""

from amaranth import Cat, Const, Module, Mux, ResetInserter, Signal, unsigned
from amaranth.lib import enum, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In

from rtl.accel.config import AccelConfig
from rtl.accel.gemm import GemmEngine
from rtl.accel.isa import (ADDRESS_BITS, CHUNK_BITS, LANE_BITS, MAX_SHIFT, Engine,
                           Instruction, Opcode, Space)
from rtl.accel.memory import SinglePortMemory
from rtl.accel.ports import HostPort
from rtl.accel.select import SelectEngine
from rtl.accel.sparse import SparseEngine
from rtl.systolic import k_step_bounds, k_steps_fit

__all__ = ["Accelerator"]


class _State(enum.Enum):
    IDLE = 0
    FETCH = 1
    EXECUTE = 2


class Accelerator(wiring.Component):
    """The systolic array, the optional sparse unit and top-k engine, their memories and the
    controller that runs a program (docs/isa.md).

    Parameters
    ----------
    config : AccelConfig

    Attributes
    ----------
    host : In(HostPort())
        Memory access, start, the input and result pages' handshakes, and the status.
    """

    def __init__(self, config=None):
        config = AccelConfig() if config is None else config
        if not isinstance(config, AccelConfig):
            raise TypeError(f"config must be an AccelConfig, not {config!r}")
        self._config = config
        super().__init__({"host": In(HostPort())})

    config = property(lambda self: self._config)

    def elaborate(self, platform):
        m = Module()
        c = self._config
        abort = Signal()

        # ---- Memories -------------------------------------------------------------------------
        def whole_bytes(space):
            # The host writes whole bytes: a word of ``space`` rounded up to them.
            return -(-c.word_bits_of(space) // 8) * 8

        def memory(name, space, depth):
            mem = m.submodules[name] = Memory(shape=unsigned(whole_bytes(space)), depth=depth,
                                              init=[])
            return mem
        program = memory("program", Space.PROGRAM, c.program_words)
        act = memory("act", Space.ACT, c.act_words)
        weight = m.submodules.weight = SinglePortMemory(whole_bytes(Space.WEIGHT),
                                                        c.weight_words)
        param = memory("param", Space.PARAM, c.param_words)
        result = m.submodules.result = Memory(shape=unsigned(c.word_bits_of(Space.RESULT)),
                                              depth=2 * c.result_words, init=[])
        output = m.submodules.output = Memory(shape=unsigned(c.word_bits_of(Space.OUTPUT)),
                                              depth=2 * c.output_words, init=[])
        program_read = program.read_port()
        act_read, act_write = act.read_port(), act.write_port(granularity=8)
        param_read, param_write = param.read_port(), param.write_port(granularity=8)
        program_write = program.write_port(granularity=8)
        result_read, result_write = result.read_port(), result.write_port()
        output_read, output_write = output.read_port(), output.write_port()

        # ---- Engines (reset together on a fault, in the cycle after it: a register of its
        # own drives each engine's reset, not the fault's logic, whose fan-out to every
        # engine register would be the design's longest path) ------------------------------
        def engine(name, component):
            reset = Signal(name=f"{name}_abort")
            m.d.sync += reset.eq(abort)
            m.submodules[name] = ResetInserter(reset)(component)
            return component
        gemm = engine("gemm", GemmEngine(c))
        sparse = engine("sparse", SparseEngine(c)) if c.spmv else None
        select = engine("select", SelectEngine(c)) if c.topk else None
        if sparse is not None:
            csc = memory("csc", Space.CSC, c.csc_words)
            csc_read, csc_write = csc.read_port(), csc.write_port(granularity=8)

        # ---- Pages ---------------------------------------------------------------------------
        page_in = Signal(init=1)          # the input page the program works on
        next_filled = Signal()            # the host has filled the other one
        page_out = Signal()               # the result page the program fills
        published = Signal()              # page ~page_out is the host's until it is taken
        input_base = Mux(page_in, c.input_words, 0)
        result_base = Mux(page_out, c.result_words, 0)
        output_base = Mux(page_out, c.output_words, 0)
        m.d.comb += [gemm.input_base.eq(input_base), gemm.result_base.eq(result_base)]
        if sparse is not None:
            m.d.comb += sparse.input_base.eq(input_base)
        if select is not None:
            m.d.comb += [select.result_base.eq(result_base), select.output_base.eq(output_base)]

        # ---- Controller ----------------------------------------------------------------------
        state = Signal(_State)
        pc = Signal(ADDRESS_BITS)
        error = Signal()
        error_pc = Signal(ADDRESS_BITS)
        instruction = Instruction(program_read.data)
        m.d.comb += [program_read.addr.eq(pc), program_read.en.eq(state == _State.FETCH)]
        busy = {Engine.ARRAY: gemm.busy,
                Engine.SPMV: sparse.busy if sparse is not None else Const(0),
                Engine.TOPK: select.busy if select is not None else Const(0)}
        all_idle = ~(gemm.busy | busy[Engine.SPMV] | busy[Engine.TOPK])
        faults = [gemm.fault] + [e.fault for e in (sparse, select) if e is not None]
        go_on = Signal()                  # this instruction is done: fetch the next
        bad = Signal()                    # this instruction is in error

        args = instruction.args
        g = args.gemm
        gemm_ok = (k_steps_fit(m, g.mode, g.k_steps, k_step_bounds(c.precision, c.acc_width))
                   & (g.k_steps != 0) & (g.tile_rows != 0) & (g.tile_cols != 0)
                   & (~g.requantize | ((g.shift >= 1) & (g.shift <= MAX_SHIFT)
                                       & (g.out_bits >= 1) & (g.out_bits <= LANE_BITS))))
        m.d.comb += [gemm.command.payload.eq(g),
                     gemm.command.valid.eq((state == _State.EXECUTE)
                                           & (instruction.opcode == Opcode.GEMM) & gemm_ok)]
        spmv_ok = Const(0)
        load_ok = Const(0)
        topk_ok = Const(0)
        if sparse is not None:
            sp = args.spmv
            spmv_ok = ((sp.cols != 0) & (sp.rows != 0) & (sp.images != 0)
                       & (sp.cols <= c.spmv.cols) & (sp.rows <= c.spmv.rows))
            load_ok = args.load_spmv.count != 0
            m.d.comb += [
                sparse.command.payload.eq(sp),
                sparse.command.valid.eq((state == _State.EXECUTE)
                                        & (instruction.opcode == Opcode.SPMV) & spmv_ok),
                sparse.load_command.payload.eq(args.load_spmv),
                sparse.load_command.valid.eq((state == _State.EXECUTE)
                                             & (instruction.opcode == Opcode.LOAD_SPMV)
                                             & load_ok),
            ]
        if select is not None:
            tk = args.topk
            topk_ok = ((tk.n != 0) & (tk.n <= c.topk.n_max) & (tk.k != 0)
                       & (tk.k <= c.topk.k_max) & (tk.k <= tk.n) & (tk.images != 0))
            m.d.comb += [
                select.command.payload.eq(tk),
                select.command.valid.eq((state == _State.EXECUTE)
                                        & (instruction.opcode == Opcode.TOPK) & topk_ok),
            ]

        with m.If(state == _State.EXECUTE):
            with m.Switch(instruction.opcode):
                with m.Case(Opcode.HALT):
                    m.d.sync += state.eq(_State.IDLE)
                with m.Case(Opcode.SYNC):
                    with m.If(all_idle & next_filled):
                        m.d.comb += go_on.eq(1)
                        m.d.sync += [page_in.eq(~page_in), next_filled.eq(0)]
                with m.Case(Opcode.DONE):
                    with m.If(all_idle & ~published):
                        m.d.comb += go_on.eq(1)
                        m.d.sync += [published.eq(1), page_out.eq(~page_out)]
                with m.Case(Opcode.WAIT):
                    engines = args.wait.engines.as_value()
                    waiting = Cat(busy[Engine.ARRAY], busy[Engine.SPMV], busy[Engine.TOPK])
                    m.d.comb += go_on.eq((engines & waiting) == 0)
                with m.Case(Opcode.JUMP):
                    m.d.sync += [pc.eq(args.jump.target), state.eq(_State.FETCH)]
                with m.Case(Opcode.GEMM):
                    m.d.comb += [bad.eq(~gemm_ok), go_on.eq(gemm.command.ready)]
                with m.Case(Opcode.SPMV):
                    m.d.comb += bad.eq(~spmv_ok)
                    if sparse is not None:
                        m.d.comb += go_on.eq(sparse.command.ready)
                with m.Case(Opcode.LOAD_SPMV):
                    m.d.comb += bad.eq(~load_ok)
                    if sparse is not None:
                        m.d.comb += go_on.eq(sparse.load_command.ready)
                with m.Case(Opcode.TOPK):
                    m.d.comb += bad.eq(~topk_ok)
                    if select is not None:
                        m.d.comb += go_on.eq(select.command.ready)
                with m.Default():
                    m.d.comb += bad.eq(1)
            with m.If(go_on & ~bad):
                m.d.sync += [pc.eq(pc + 1), state.eq(_State.FETCH)]
        with m.If(state == _State.FETCH):
            m.d.sync += state.eq(_State.EXECUTE)
            with m.If(pc >= c.program_words):
                m.d.comb += bad.eq(1)

        # Each engine remembers the instruction it runs: a fault it meets is that one's.
        faulty = pc
        for component in reversed([gemm, sparse, select]):
            if component is None:
                continue
            running = Signal(ADDRESS_BITS, name=f"{type(component).__name__.lower()}_pc")
            with m.If(component.command.valid & component.command.ready):
                m.d.sync += running.eq(pc)
            if component is sparse:
                with m.If(sparse.load_command.valid & sparse.load_command.ready):
                    m.d.sync += running.eq(pc)
            faulty = Mux(component.fault, running, faulty)
        fault = (bad & (state != _State.IDLE)) | Cat(*faults).any()
        m.d.comb += abort.eq(fault & (state != _State.IDLE))
        with m.If(abort):
            m.d.sync += [state.eq(_State.IDLE), error.eq(1), error_pc.eq(faulty)]

        # ---- Host port -----------------------------------------------------------------------
        host = self.host
        with m.If(host.start & (state == _State.IDLE)):
            m.d.sync += [state.eq(_State.FETCH), pc.eq(0), error.eq(0),
                         page_in.eq(1), next_filled.eq(0), page_out.eq(0), published.eq(0)]
        with m.If(host.input_filled):
            m.d.sync += next_filled.eq(1)
        with m.If(host.results_taken):
            m.d.sync += published.eq(0)
        status = host.status
        m.d.comb += [status.running.eq(state != _State.IDLE), status.error.eq(error),
                     status.error_pc.eq(error_pc), status.input_free.eq(~next_filled),
                     status.input_page.eq(~page_in), status.results_ready.eq(published),
                     status.results_page.eq(~page_out)]

        # Writes: the chunk replicated over the word, its bytes enabled.
        request = host.write.payload
        chunk_data = Cat(*(request.data for _ in range(
            -(-max(c.word_bits_of(s) for s in Space) // CHUNK_BITS))))

        # The write ports: engines first, then the host.
        act_bits = len(act_write.data)
        act_host_word, act_host_en, act_host_hit = _host_chunk(request, c, Space.ACT, act_bits,
                                                               c.act_words, host.write.valid)
        writers = [gemm.act_write] + ([sparse.act_write] if sparse is not None else [])
        engines_write = Cat(*(writer.en.any() for writer in writers)).any()
        host_act = act_host_hit & ~engines_write
        for i, writer in enumerate(writers):
            with (m.If if i == 0 else m.Elif)(writer.en.any()):
                m.d.comb += [act_write.addr.eq(writer.addr), act_write.data.eq(writer.data),
                             act_write.en.eq(writer.en)]
        with m.Else():
            m.d.comb += [act_write.addr.eq(act_host_word),
                         act_write.data.eq(chunk_data[:act_bits]),
                         act_write.en.eq(Mux(host_act, act_host_en, 0))]
        if sparse is not None:
            m.d.comb += sparse.act_write_grant.eq(~gemm.act_write.en.any())
        for port, space, depth in ((program_write, Space.PROGRAM, c.program_words),
                                   (param_write, Space.PARAM, c.param_words),
                                   *(((csc_write, Space.CSC, c.csc_words),)
                                     if sparse is not None else ())):
            bits = len(port.data)
            word, enables, hit = _host_chunk(request, c, space, bits, depth, host.write.valid)
            m.d.comb += [port.addr.eq(word), port.data.eq(chunk_data[:bits]),
                         port.en.eq(Mux(hit, enables, 0))]

        # Loader words into the sparse unit: chunk 0 is kept, chunk 1 sends the word.
        load_pending = Signal()
        if sparse is not None:
            low = Signal(CHUNK_BITS)
            to_unit = host.write.valid & (request.space == Space.SPMV)
            with m.If(to_unit & ~request.address[0]):
                m.d.sync += low.eq(request.data)
            m.d.comb += [sparse.host_load.payload.eq(Cat(low, request.data)),
                         sparse.host_load.valid.eq(to_unit & request.address[0]),
                         load_pending.eq(to_unit & request.address[0] & ~sparse.host_load.ready)]
        act_held = act_host_hit & ~host_act
        # WEIGHT's one address: the GEMM engine's while it runs (a write would lose the word
        # it holds), else the host's.
        weight_word, weight_host_en, weight_hit = _host_chunk(
            request, c, Space.WEIGHT, len(weight.write_data), c.weight_words, host.write.valid)
        weight_held = (request.space == Space.WEIGHT) & gemm.busy
        m.d.comb += [weight.addr.eq(Mux(gemm.busy, gemm.weight_read.addr, weight_word)),
                     weight.write_data.eq(chunk_data[:len(weight.write_data)]),
                     weight.write_en.eq(Mux(weight_hit & ~gemm.busy, weight_host_en, 0)),
                     host.write.ready.eq(~act_held & ~weight_held & ~load_pending)]

        # Reads: RESULT (when the top-k engine does not hold it) and OUTPUT; 0 elsewhere.
        read = host.read.payload
        read_space = Signal(Space)
        result_chunks = c.chunk_bits(Space.RESULT)
        read_chunk = Signal(max(1, result_chunks))
        read_pending = Signal()
        result_held = select.busy if select is not None else Const(0)
        can_read = ~read_pending | host.read_data.ready
        take_read = host.read.valid & can_read & ~((read.space == Space.RESULT) & result_held)
        m.d.comb += host.read.ready.eq(take_read)
        result_word = read.address[result_chunks:]
        if select is not None:
            m.d.comb += [result_read.addr.eq(Mux(result_held, select.result_read.addr,
                                                 result_word)),
                         result_read.en.eq(Mux(result_held, select.result_read.en, take_read)),
                         select.result_read.data.eq(result_read.data),
                         output_write.addr.eq(select.output_write.addr),
                         output_write.data.eq(select.output_write.data),
                         output_write.en.eq(select.output_write.en)]
        else:
            m.d.comb += [result_read.addr.eq(result_word), result_read.en.eq(take_read)]
        m.d.comb += [output_read.addr.eq(read.address), output_read.en.eq(take_read),
                     result_write.addr.eq(gemm.result_write.addr),
                     result_write.data.eq(gemm.result_write.data),
                     result_write.en.eq(gemm.result_write.en)]
        with m.If(take_read):
            m.d.sync += [read_pending.eq(1), read_space.eq(read.space),
                         read_chunk.eq(read.address[:result_chunks] if result_chunks else 0)]
        with m.Elif(host.read_data.ready):
            m.d.sync += read_pending.eq(0)
        result_chunk = Signal(CHUNK_BITS)
        padded = Cat(result_read.data, Const(0, CHUNK_BITS))
        with m.Switch(read_chunk):
            for i in range(c.chunks(Space.RESULT)):
                with m.Case(i):
                    m.d.comb += result_chunk.eq(padded[i * CHUNK_BITS:(i + 1) * CHUNK_BITS])
        # The chunk is kept once read, as the memory's output changes with the next read.
        held = Signal(CHUNK_BITS)
        fresh = Signal()
        m.d.sync += fresh.eq(take_read)
        chunk_now = Mux(read_space == Space.RESULT, result_chunk,
                        Mux(read_space == Space.OUTPUT, output_read.data, 0))
        with m.If(fresh):
            m.d.sync += held.eq(chunk_now)
        m.d.comb += [host.read_data.valid.eq(read_pending),
                     host.read_data.payload.eq(Mux(fresh, chunk_now, held))]

        # The engines' memory ports.
        m.d.comb += [
            act_read.addr.eq(gemm.act_read.addr), act_read.en.eq(gemm.act_read.en),
            gemm.act_read.data.eq(act_read.data),
            weight.read_en.eq(gemm.weight_read.en), gemm.weight_read.data.eq(weight.read_data),
            param_read.addr.eq(gemm.param_read.addr), param_read.en.eq(gemm.param_read.en),
            gemm.param_read.data.eq(param_read.data),
        ]
        if sparse is not None:
            gemm_reads = gemm.busy
            m.d.comb += [
                sparse.act_read_grant.eq(~gemm_reads),
                sparse.act_read.data.eq(act_read.data),
                csc_read.addr.eq(sparse.csc_read.addr), csc_read.en.eq(sparse.csc_read.en),
                sparse.csc_read.data.eq(csc_read.data),
            ]
            with m.If(~gemm_reads):
                m.d.comb += [act_read.addr.eq(sparse.act_read.addr),
                             act_read.en.eq(sparse.act_read.en)]
        return m


def _host_chunk(request, config, space, bits, depth, valid):
    """A host chunk write into memory ``space``: (word address, byte enables, hit)."""
    chunk_bits = config.chunk_bits(space)
    word = request.address[chunk_bits:]
    chunk = request.address[:chunk_bits] if chunk_bits else Const(0, 1)
    enables = Cat(*((chunk == i // 4) for i in range(bits // 8)))
    hit = valid & (request.space == space) & (word < depth)
    return word, enables, hit
