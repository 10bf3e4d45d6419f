"""The hardware loop stack: LOOP pushes a level, the end of a body wraps or pops, iterations cost no cycles."""

from __future__ import annotations

from amaranth.hdl import Cat, Const, Module, Mux, Signal, signed
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from .params import TileConfig

__all__ = ["LoopStack", "OFFSET_BITS", "SPACES", "pc_bits", "room_shape"]

#: The address spaces a loop level strides (LOOP's ``stride_in``, ``stride_acc``, ``stride_out``).
SPACES = ("in", "acc", "out")
#: Width of a loop address offset: loop_depth x 255 x 4095 < 2**24.
OFFSET_BITS = 24
#: LOOP's iteration count field is 12 bits wide (count_m1 + 1 <= 4096).
COUNT_BITS = 13
STRIDE_BITS = 8


def pc_bits(cfg: TileConfig) -> int:
    """Width of a program address that can also hold ``prog_depth`` (one past the last word)."""
    return cfg.prog_depth.bit_length()


def space_depths(cfg: TileConfig) -> tuple[int, ...]:
    """The depth of each address space of :data:`SPACES`."""
    return (cfg.in_depth, cfg.acc_depth, cfg.out_depth)


def room_shape(cfg: TileConfig):
    """Shape of a space's room, ``depth - offset`` or -1 when the offset alone exceeds the depth."""
    return signed(max(space_depths(cfg)).bit_length() + 2)


class LoopStack(wiring.Component):
    """``loop_depth`` levels of (body start, body end, iterations left, strides, offsets).

    Timing contract: ``next_pc`` is combinational from ``pc`` and the stack (``pc + 1``, or the
    start of the innermost level whose body ends at ``pc + 1`` and has iterations left; an
    exhausted level pops and the enclosing one looks at the same address, so several levels can
    end together); ``next_pc_plus1`` is ``next_pc + 1``, from registers the same way (the fetch
    unit's read address, with no incrementer after the choice), and ``next_beyond`` is
    ``next_pc >= prog_len`` (``prog_len`` constant during a run, and already the run's in the
    cycle with ``clear``). ``pc`` must follow ``next_pc``:
    after a cycle with ``advance`` (or ``push``) it is that cycle's ``next_pc``, otherwise it holds.
    The unit relies on it: whether a level's body ends at ``pc + 1`` and whether it has iterations
    left are registers computed a cycle ahead (``end == pc + 2`` beside the chain, or what it was
    when the level was pushed, after a wrap to its start), so the chain that decides wraps and
    pops, and the enables it drives, start at registers rather than at comparators; so is
    ``loop_room``, ``enclosing_end - pc - 2`` (LOOP's nesting check). ``offsets`` (per address space of
    :data:`SPACES`) are registers: the innermost level's (0 on an empty stack), set at the clock edges
    that change the stack (from ``clear`` on: before the first ``clear`` they are 0, and so are the
    rooms); ``enclosing_end`` is combinational from the registers (the innermost level's end,
    ``prog_len`` on an empty stack). In a cycle with ``advance`` (the instruction's
    last cycle) the wraps and pops that ``next_pc`` used take effect at the clock edge (a wrap adds
    the level's strides to its offsets). ``push`` (LOOP's cycle, which ends in it: ``push`` comes with
    ``advance``, so the registers that step with the stack are enabled by ``clear`` or ``advance`` alone)
    pushes ``push_start`` ..
    ``push_end`` with ``push_count`` iterations and ``push_strides``, taking the current offsets;
    ``next_pc`` is then ``pc + 1``, unless a level's body ends at ``pc + 1`` (a LOOP as the last word of a
    body, which the tile refuses: LOOP_NEST), where it is that level's wrap as without ``push``.
    ``push_start`` must be ``pc + 1`` (the body follows the LOOP word) and ``push_room``
    ``push_end - push_start - 2`` (the body's length minus two, which the caller has from its fields): the
    pushed level's body room and loop_room, with no subtraction of addresses.
    ``room`` (per space) is ``depth - offset`` (-1 when the offset exceeds the depth), kept in a
    register per level beside its offsets (a wrap subtracts the level's stride from it), and the
    innermost level's in a register like ``offsets``: the address checks see a register, with no
    subtraction and no level multiplexer.
    ``clear`` empties the stack (a run's start). ``wrap[i]`` (combinational, at most one high) says
    that ``next_pc`` is level ``i``'s body start: the fetch unit's taken branch.

    Parameters
    ----------
    cfg : TileConfig
    """

    def __init__(self, cfg: TileConfig):
        self.cfg = cfg
        pcb = pc_bits(cfg)
        super().__init__({
            "pc": In(pcb),
            "prog_len": In(pcb + 1),
            "advance": In(1),
            "push": In(1),
            "push_start": In(pcb),
            "push_end": In(pcb + 1),
            "push_room": In(signed(pcb + 3)),
            "push_count": In(COUNT_BITS),
            "push_strides": In(STRIDE_BITS).array(len(SPACES)),
            "clear": In(1),
            "next_pc": Out(pcb),
            "next_pc_plus1": Out(pcb + 1),
            "next_beyond": Out(1),
            "offsets": Out(OFFSET_BITS).array(len(SPACES)),
            "room": Out(room_shape(cfg)).array(len(SPACES)),
            "enclosing_end": Out(pcb + 1),
            "loop_room": Out(signed(pcb + 3)),
            "levels": Out(range(cfg.loop_depth + 1)),
            "wrap": Out(1).array(cfg.loop_depth),
        })

    def elaborate(self, platform):
        m = Module()
        depth, pcb, n_spaces = self.cfg.loop_depth, pc_bits(self.cfg), len(SPACES)
        start = [Signal(pcb, name=f"start{i}") for i in range(depth)]
        start_plus1 = [Signal(pcb + 1, name=f"start_plus1_{i}") for i in range(depth)]  # the fetch's next read
        end = [Signal(pcb + 1, name=f"end{i}") for i in range(depth)]
        # end - 2, set with end: "the body ends at pc + 1 after the step" is end - 2 == pc, an equality of
        # registers, with no pc + 2 adder before the comparators
        end_m2 = [Signal(pcb + 1, name=f"end_m2_{i}") for i in range(depth)]
        left = [Signal(COUNT_BITS, name=f"left{i}") for i in range(depth)]
        stride = [[Signal(STRIDE_BITS, name=f"stride{i}_{s}") for s in SPACES] for i in range(depth)]
        offset = [[Signal(OFFSET_BITS, name=f"offset{i}_{s}") for s in SPACES] for i in range(depth)]
        levels = self.levels
        depths = space_depths(self.cfg)
        room = [[Signal(room_shape(self.cfg), name=f"room{i}_{s}") for s in SPACES] for i in range(depth)]
        # registers a cycle ahead: end[i] == pc + 1, left[i] > 1, start[i] >= prog_len, and the
        # ends_next of levels 0..i at pc = start[i]
        ends_next = [Signal(name=f"ends_next{i}") for i in range(depth)]
        more = [Signal(name=f"more{i}") for i in range(depth)]
        start_beyond = [Signal(name=f"start_beyond{i}") for i in range(depth)]
        resume = [Signal(i + 1, name=f"resume{i}") for i in range(depth)]

        # The innermost level's offsets and rooms are registers of their own (``offsets``, ``room``),
        # set at the clock edges that change the levels (a push keeps them, a wrap of level i steps
        # them as it steps level i's, a pop to level i takes level i - 1's, or 0 and the depths on
        # an empty stack), so the address adders start at registers, with no level multiplexer.
        m.d.comb += self.enclosing_end.eq(self.prog_len)
        for i in range(depth):
            with m.If(levels == i + 1):
                m.d.comb += self.enclosing_end.eq(end[i])
        # LOOP's nesting check compares its body with loop_room = enclosing_end - pc - 2, a register
        # kept for the pc after the clock edge (like the look-aheads below): a sequential step
        # subtracts 1, unless levels pop (then the new innermost level's end - pc - 3); a push or a wrap
        # to a level's start gives its body's room (kept per level); a clear, the new run's prog_len - 2.
        # Level i pops only at pc = end[i] - 1 (its body's last word), so its room after the pop,
        # end[i - 1] - pc - 3 (prog_len for level 0), is end[i - 1] - end[i] - 2, which does not depend on
        # pc: a register per level set when it is pushed, as loop_room - push_room - 3 (loop_room is then
        # enclosing_end - pc - 2 and push_room push_end - pc - 3), not a subtraction from pc at the pop.
        body_room = [Signal(signed(pcb + 3), name=f"body_room{i}") for i in range(depth)]
        after_pop = [Signal(signed(pcb + 3), name=f"room_after_pop{i}") for i in range(depth)]

        # The loop-end chain, innermost level first, from registers kept a cycle ahead (see below):
        # whether each level's body ends at pc + 1 and whether it has iterations left.
        sequential = Signal(pcb + 1)
        m.d.comb += sequential.eq(self.pc + 1)
        m.d.comb += [self.next_pc.eq(sequential), self.next_pc_plus1.eq(self.pc + 2)]
        carry_on = Const(1, 1)
        wraps, pops = [], []
        for i in reversed(range(depth)):
            active = levels > i
            at_end = active & ends_next[i]
            wrap, pop, cont = Signal(name=f"wrap{i}"), Signal(name=f"pop{i}"), Signal(name=f"cont{i}")
            m.d.comb += [wrap.eq(carry_on & at_end & more[i]),
                         pop.eq(carry_on & at_end & ~more[i]),
                         cont.eq(carry_on & (~active | pop))]
            wraps.insert(0, wrap)
            pops.insert(0, pop)
            carry_on = cont
        m.d.comb += [self.wrap[i].eq(wraps[i]) for i in range(depth)]
        # next_pc >= prog_len, with no comparator after the choice: pc + 1's, or the level's start's
        # (registered when it was pushed)
        m.d.comb += self.next_beyond.eq(sequential[:pcb] >= self.prog_len)
        # (not gated by push: a LOOP at the last word of an enclosing body always fails its nesting check,
        # so the run stops wherever next_pc points; this keeps LOOP's decode, and the sequencer's pc check
        # that gates it, out of the program memory's read address: docs/microarchitecture.md)
        for i in range(depth):
            with m.If(wraps[i]):
                m.d.comb += [self.next_pc.eq(start[i]), self.next_pc_plus1.eq(start_plus1[i]),
                             self.next_beyond.eq(start_beyond[i])]

        # The look-ahead registers, for the pc after the clock edge (next_pc: the unit's contract).
        # After a sequential step each level's end is compared with pc + 2 (registers only, beside
        # the chain); after a push the new level's too. A wrap to level i puts pc back at its
        # start, where the comparisons are those made when level i was pushed (the ends of levels
        # 0..i have not changed since): ``resume[i]`` keeps them.
        # After an advance, level j's look-ahead is resume[i][j] if level i >= j wraps (at most one does:
        # an AND-OR of the wraps, each a shallow function of registers), else ahead[j].
        ahead = Signal(depth)
        m.d.comb += [ahead[j].eq(end_m2[j] == self.pc) for j in range(depth)]
        # (push comes with advance: these step with advance, push only chooses their data; the pushed level's
        # own take its comparisons with push, below)
        with m.If(~self.clear & self.advance):
            for j in range(depth):
                resumed = Cat(*[wraps[i] & resume[i][j] for i in range(j, depth)]).any()
                wrapped = Cat(*wraps[j:]).any()
                m.d.sync += ends_next[j].eq(Mux(self.push | ~wrapped, ahead[j], resumed))
        with m.If(self.push):
            for i in range(depth):
                with m.If(levels == i):
                    pushed_ends = Cat(ahead[:i], self.push_room == -1)  # push_end == pc + 2
                    m.d.sync += [ends_next[i].eq(pushed_ends[i]), resume[i].eq(pushed_ends),
                                 start_beyond[i].eq(self.push_start >= self.prog_len)]

        # A level's count, offsets and rooms change when it is pushed (inactive: levels == i) or wraps
        # (active): one enable for both, and their data chosen by ``levels > i`` (a register) rather
        # than by ``push``. (Written in a cycle with clear too: every level is pushed before it is used.)
        width = max(room_shape(self.cfg).width, STRIDE_BITS + 1) + 1
        stepped_offset = [[Signal(OFFSET_BITS, name=f"stepped_offset{i}_{s}") for s in SPACES] for i in range(depth)]
        stepped_room = [[Signal(room_shape(self.cfg), name=f"stepped_room{i}_{s}") for s in SPACES]
                        for i in range(depth)]
        for i in range(depth):
            for k in range(n_spaces):
                # the room of the new offset, from registers only (the wrap only enables it):
                # depth - (offset + stride) is room - stride, -1 once negative (offsets only grow),
                # a subtraction as narrow as the room instead of the offset's width
                diff = Signal(signed(width), name=f"room_minus_stride{i}_{SPACES[k]}")
                m.d.comb += [diff.eq(room[i][k] - stride[i][k]), stepped_room[i][k].eq(Mux(diff < 0, -1, diff)),
                             stepped_offset[i][k].eq(offset[i][k] + stride[i][k])]
            active = levels > i
            with m.If(self.advance & Mux(self.push, levels == i, wraps[i])):
                m.d.sync += [left[i].eq(Mux(active, left[i] - 1, self.push_count)),
                             more[i].eq(Mux(active, left[i] > 2, self.push_count > 1))]
                m.d.sync += [offset[i][k].eq(Mux(active, stepped_offset[i][k], self.offsets[k]))
                             for k in range(n_spaces)]
                m.d.sync += [room[i][k].eq(Mux(active, stepped_room[i][k], self.room[k])) for k in range(n_spaces)]

        with m.If(self.clear):
            m.d.sync += [levels.eq(0), self.loop_room.eq(self.prog_len - 2)]
            m.d.sync += [o.eq(0) for o in self.offsets]
            m.d.sync += [r.eq(depths[k]) for k, r in enumerate(self.room)]
        with m.Elif(self.advance & self.push):  # (loop_room's and levels' enable: clear or advance)
            m.d.sync += self.loop_room.eq(self.push_room)  # push_end - pc - 3
            # The push happens even when LOOP's checks fail: the run stops then, and every run
            # starts with an empty stack.
            m.d.sync += levels.eq(levels + 1)
        with m.Elif(self.advance):
            # loop_room after the step, as an AND-OR of one-hot terms: the wrapping level's body room, else
            # the lowest popping level's room after the pop (pops cascade downwards; a wrap ends them),
            # else loop_room - 1. Each term's select is a shallow function of registers (levels, ends_next,
            # more), not the end of a priority chain of multiplexers.
            n = len(self.loop_room)
            popped_to = [pops[i] & ~(pops[i - 1] | wraps[i - 1]) if i else pops[i] for i in range(depth)]
            terms = ([wraps[i].replicate(n) & body_room[i].as_unsigned() for i in range(depth)]
                     + [popped_to[i].replicate(n) & after_pop[i].as_unsigned() for i in range(depth)])
            ended = Cat(*wraps, *pops).any()
            chosen = terms[0]
            for t in terms[1:]:
                chosen = chosen | t
            m.d.sync += self.loop_room.eq(Mux(ended, chosen, self.loop_room - 1))
            for i in reversed(range(depth)):
                with m.If(pops[i]):
                    m.d.sync += levels.eq(i)
                    m.d.sync += [self.offsets[k].eq(offset[i - 1][k] if i else 0) for k in range(n_spaces)]
                    m.d.sync += [self.room[k].eq(room[i - 1][k] if i else depths[k]) for k in range(n_spaces)]
            for i in range(depth):
                with m.If(wraps[i]):
                    m.d.sync += levels.eq(i + 1)
                    m.d.sync += [self.offsets[k].eq(stepped_offset[i][k]) for k in range(n_spaces)]
                    m.d.sync += [self.room[k].eq(stepped_room[i][k]) for k in range(n_spaces)]
        # the pushed level's own registers, enabled by push alone (a decode of registers)
        with m.If(~self.clear & self.push):
            for i in range(depth):
                with m.If(levels == i):
                    m.d.sync += [body_room[i].eq(self.push_room),
                                 after_pop[i].eq(self.loop_room - self.push_room - 3),
                                 start[i].eq(self.push_start), start_plus1[i].eq(self.push_start + 1),
                                 end[i].eq(self.push_end), end_m2[i].eq(self.push_end - 2)]
                    m.d.sync += [stride[i][k].eq(self.push_strides[k]) for k in range(n_spaces)]
        return m
