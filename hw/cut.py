"""A synthesis cut: a 2:1 multiplexer that synthesis keeps as a module of its own.

Yosys' LUT mapping (ABC9 in ``synth_ecp5``) gives a block RAM's outputs, like a flip-flop's, no arrival
time, so it may put a signal that arrives late (the read data, 5.6 ns after the clock on ECP5) at the
deepest LUT of a cone; a ``keep`` attribute on the nets around it does not stop that (the mapper still
folds across them: measured in the twentieth session, docs/microarchitecture.md). A
module that synthesis does not flatten is a hard boundary: :class:`LateMux`'s output is one LUT of its
``late`` input, its select and its other input, whatever drives those, so whichever of the three arrives
late (a block RAM's data, a select from deep logic) meets one LUT after the cut. The output should drive
its users directly: logic between the cut and them (say, the multiplexer assigned under an enclosing
condition, which ANDs it with that condition) is a LUT of its own that the mapper can no longer merge.
:func:`cimtile.hw.build.yosys_script` keeps the hierarchy of every module whose name ends in a submodule
named ``cut_...`` (:data:`CUT_PREFIX`); simulation (Amaranth's, Verilator's) sees an ordinary multiplexer.
"""

from __future__ import annotations

from amaranth.hdl import Module, Mux
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

__all__ = ["CUT_PREFIX", "AnyOf", "LateMux", "LateRegister"]

#: The prefix of the submodule names whose modules synthesis keeps whole.
CUT_PREFIX = "cut_"


class LateMux(wiring.Component):
    """``out = late if sel else other``, combinational, ``width`` bits: add it as a submodule named
    ``cut_<name>`` so that synthesis keeps it a module of its own (one LUT per bit, ``late`` at its input).

    Parameters
    ----------
    width : int
    """

    def __init__(self, width: int):
        self.width = width
        super().__init__({"sel": In(1), "late": In(width), "other": In(width), "out": Out(width)})

    def elaborate(self, platform):
        m = Module()
        m.d.comb += self.out.eq(Mux(self.sel, self.late, self.other))
        return m


class LateRegister(wiring.Component):
    """A register loaded with :class:`LateMux`'s choice: ``q`` takes ``late if sel else other`` in a cycle
    with ``en``. Kept as a module of its own like the multiplexer (name it ``cut_<name>``), so that two
    instances on the same inputs stay two registers (synthesis merges identical flip-flops within a
    module, not across kept modules): each copy can be placed near its own readers.

    Parameters
    ----------
    width : int
    """

    def __init__(self, width: int):
        self.width = width
        super().__init__({"en": In(1), "sel": In(1), "late": In(width), "other": In(width), "q": Out(width)})

    def elaborate(self, platform):
        m = Module()
        with m.If(self.en):
            m.d.sync += self.q.eq(Mux(self.sel, self.late, self.other))
        return m


class AnyOf(wiring.Component):
    """``out`` is high when any bit of ``ins`` is, combinational. Kept as a module of its own like the
    multiplexer (name it ``cut_<name>``), so that several instances on the same inputs stay several gates:
    a signal read by hundreds of flip-flops across the die (the sequencer's ``fin``) gets a copy per group of
    readers, each placed near its own, instead of one net that spans them all.

    Parameters
    ----------
    width : int
    """

    def __init__(self, width: int):
        self.width = width
        super().__init__({"ins": In(width), "out": Out(1)})

    def elaborate(self, platform):
        m = Module()
        m.d.comb += self.out.eq(self.ins.any())
        return m
