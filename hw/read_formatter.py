"""The read stream formatter: the items of RDOUT, RDACC, RDW and RDM cut into bus words for ``dout``."""

from __future__ import annotations

from amaranth.hdl import Module, Mux, Signal, unsigned
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from .dataformat import formats
from .isa import Opcode
from .load_formatter import last_word_register
from .params import ADDR_BITS, TileConfig

__all__ = ["READ_OPCODES", "ReadFormatter"]

#: The reads whose items this formatter sends.
READ_OPCODES = (Opcode.RDOUT, Opcode.RDACC, Opcode.RDW, Opcode.RDM)


class ReadFormatter(wiring.Component):
    """Cuts the items of a read into bus words: an output vector (RDOUT), an accumulator vector (RDACC),
    a column of cell levels (RDW) or mask bits (RDM); and addresses the memory the items come from.

    An item is ``formats(cfg)[opcode].words`` bus words (:func:`cimtile.hw.dataformat.formats`, the
    layout the host's :func:`~cimtile.hw.dataformat.unpack` reads): word ``w`` carries the item's bits
    ``[w * bus_bits, (w + 1) * bus_bits)``, zeros above the item. ``items`` has a field per read, named
    after its opcode (``items.rdacc``: ``elems x bits`` of the format), each wired to its source; the
    word is a constant slice of its field, selected by opcode and word index (no shifter).

    Timing contract. ``opcode`` is the read being executed (held for the whole instruction). In the
    cycle with ``start`` (the read's first cycle) ``base`` (the address of item 0, loop offset
    included) and ``count`` (items) are latched, and ``read_addr`` is ``base`` with ``read_en`` high:
    the source memory reads item 0 at that clock edge, so that its field of ``items`` holds it from
    the next cycle on. In every later cycle ``word`` is the current bus word of the read's field of ``items``
    (combinational); ``sent`` says the host takes it at this clock edge. When ``sent`` takes an
    item's last word, ``read_en`` is high and ``read_addr`` is the next item's address (one item beyond the last
    after the read's last word, which is harmless: nothing uses it); otherwise ``read_addr`` holds
    the address of the item being sent, for a source such as the crossbar's lane-0 port, which reads
    the address it is given in every cycle. ``last`` is high while the word on ``word`` is the read's
    last one (a register, valid from the cycle after ``start`` while ``opcode`` holds; ``last_next``, combinational,
    is what it takes at the clock edge). ``item_last`` is
    high while the word on ``word`` is its item's last one (a register, valid likewise): in a cycle after
    ``start``, ``read_en`` is ``sent & item_last``, so a source can decode its reads from registers and
    the bus's ready. ``word_index`` is the index within its item of the word on ``word`` (a register, valid
    likewise; ``item_last`` is high when it is the item's last word's), so a source whose item spans
    several words can tell from registers which of its parts have been sent. ``next_read_addr`` is
    ``read_addr`` in the cycles after ``start`` while the read executes, given the bus's ``ready`` (which is
    ``sent`` in those cycles), from registers and ``ready`` alone: for a source that reads in every cycle,
    without the sequencer's decode of ``sent``. Addresses are modulo ``2**ADDR_BITS``.

    Parameters
    ----------
    cfg : TileConfig
    """

    def __init__(self, cfg: TileConfig):
        self.cfg = cfg
        self.words = {op: formats(cfg)[op].words for op in READ_OPCODES}
        self.max_words = max(self.words.values())
        super().__init__({
            "opcode": In(Opcode),
            "start": In(1),
            "base": In(ADDR_BITS),
            "count": In(ADDR_BITS + 1),
            # a port per read (not one struct of all four: a simulator would copy the sources into it)
            "items": In(wiring.Signature({op.name.lower(): Out(unsigned(fmt.elems * fmt.bits))
                                          for op, fmt in formats(cfg).items() if op in READ_OPCODES})),
            "sent": In(1),
            "ready": In(1),
            "word": Out(cfg.bus_bits),
            "read_addr": Out(ADDR_BITS),
            "read_en": Out(1),
            "next_read_addr": Out(ADDR_BITS),
            "last": Out(1),
            "last_next": Out(1),
            "item_last": Out(1),
            "word_index": Out(range(max(self.max_words, 2))),
        })

    def elaborate(self, platform):
        m = Module()
        bus = self.cfg.bus_bits
        items_left = Signal(ADDR_BITS + 1)  # items not completely sent
        word_index = Signal(range(max(self.max_words, 2)))  # the word of the item being sent
        next_addr = Signal(ADDR_BITS)  # the address of the item after the one being sent
        held_addr = Signal(ADDR_BITS)  # the address last presented with read_en

        # Each (read, word) pair is a constant slice of its source (the top word of an item zero-extended):
        # one multiplexer of bus-wide words, no shifter.
        last_index = Signal.like(word_index)
        with m.Switch(self.opcode):
            for op, words in self.words.items():
                with m.Case(op):
                    item = getattr(self.items, op.name.lower())
                    m.d.comb += last_index.eq(words - 1)
                    with m.Switch(word_index):
                        for w in range(words):
                            with m.Case(w):
                                m.d.comb += self.word.eq(item[w * bus:(w + 1) * bus])

        # item_last (word_index == last_index) is a register stepped with word_index, so that a read's
        # enables start at registers
        item_last = Signal()
        one_word = Signal()  # the opcode's items are one bus word
        m.d.comb += [self.item_last.eq(item_last), self.word_index.eq(word_index), one_word.eq(last_index == 0)]
        advance = Signal()  # the item's last word leaves: the next item is read
        m.d.comb += [advance.eq(self.sent & item_last),
                     self.read_en.eq(self.start | advance),
                     self.read_addr.eq(Mux(self.start, self.base, Mux(advance, next_addr, held_addr)))]
        m.d.comb += self.next_read_addr.eq(Mux(self.ready & item_last, next_addr, held_addr))
        with m.If(self.read_en):
            m.d.sync += held_addr.eq(self.read_addr)

        last, last_next = last_word_register(m, self.words, self.opcode, self.start, self.count, self.sent,
                                             advance, items_left, word_index, last_index)
        m.d.comb += [self.last.eq(last), self.last_next.eq(last_next)]
        with m.If(self.start):
            m.d.sync += [next_addr.eq(self.base + 1), word_index.eq(0), items_left.eq(self.count),
                         item_last.eq(one_word)]
        with m.Elif(self.sent):
            with m.If(advance):
                m.d.sync += [word_index.eq(0), next_addr.eq(next_addr + 1), items_left.eq(items_left - 1),
                             item_last.eq(one_word)]
            with m.Else():
                m.d.sync += [word_index.eq(word_index + 1), item_last.eq(word_index + 1 == last_index)]
        return m
