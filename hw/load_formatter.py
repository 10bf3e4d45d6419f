"""The load stream formatter: bus words from ``din`` packed into the records of LDW, LDM, LDIN and LDD."""

from __future__ import annotations

from amaranth.hdl import Cat, Module, Signal, unsigned
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from .dataformat import formats
from .isa import Opcode
from .params import ADDR_BITS, TileConfig

__all__ = ["LOAD_OPCODES", "LoadFormatter", "last_word_register"]

#: The loads whose items this formatter assembles (LDRQ's records run on across words and go to the
#: requantisation bank word by word: :class:`cimtile.hw.requant_bank.RequantBank`).
LOAD_OPCODES = (Opcode.LDW, Opcode.LDM, Opcode.LDIN, Opcode.LDD)


class LoadFormatter(wiring.Component):
    """Packs the bus words of a load into items: a column of cell levels (LDW) or mask bits (LDM), an
    input vector (LDIN), a delta vector (LDD).

    An item is ``formats(cfg)[opcode].words`` bus words (:func:`cimtile.hw.dataformat.formats`, the
    layout the host's :func:`~cimtile.hw.dataformat.pack` writes): word ``w`` of an item holds its bits
    ``[w * bus_bits, (w + 1) * bus_bits)``. The first ``words - 1`` words wait in staging registers;
    the item is complete with its last word. ``items`` has a field per load, named after its opcode
    (``items.ldin``: ``words x bus_bits`` bits): the staged words and the incoming one, wired, with
    no multiplexer between the bus and the memories' write data.

    Timing contract. ``opcode`` is the load being executed (held for the whole instruction). In the
    cycle with ``start`` (the load's first cycle), ``base`` (the address of item 0, loop offset
    included) and ``count`` (items) are latched; no word is taken in that cycle. In each later cycle
    with ``take``, ``word`` is one bus word of the load, in order. In a cycle whose ``take`` brings
    an item's last word, ``item_valid`` is high with the whole item on the load's field of ``items``
    (the other fields undefined) and its address on ``item_addr`` (``base``
    plus the item's index, modulo ``2**ADDR_BITS``), combinationally, for a memory write port that
    writes at this clock edge. ``last`` is high while the next word taken is the load's last one
    (``count x words - 1`` taken; a register, valid from the cycle after ``start`` while ``opcode``
    holds; ``last_next`` is what it takes at the clock edge, combinational), ``empty`` once every item is
    complete (a register of its own beside the item count, high
    before the first ``start``). ``item_last`` is high while the
    next word taken is its item's last (a register, valid likewise): ``item_valid`` is ``take & item_last``.

    Parameters
    ----------
    cfg : TileConfig
    """

    def __init__(self, cfg: TileConfig):
        self.cfg = cfg
        self.words = {op: formats(cfg)[op].words for op in LOAD_OPCODES}
        self.max_words = max(self.words.values())
        super().__init__({
            "opcode": In(Opcode),
            "start": In(1),
            "base": In(ADDR_BITS),
            "count": In(ADDR_BITS + 1),
            "take": In(1),
            "word": In(cfg.bus_bits),
            "item_valid": Out(1),
            "item_last": Out(1),
            "item_addr": Out(ADDR_BITS),
            # a port per load (not one struct of all four: a simulator would copy the words into it in
            # every cycle)
            "items": Out(wiring.Signature({op.name.lower(): Out(unsigned(words * cfg.bus_bits))
                                           for op, words in self.words.items()})),
            "last": Out(1),
            "last_next": Out(1),
            "empty": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        bus = self.cfg.bus_bits
        items_left = Signal(ADDR_BITS + 1)  # items not yet complete
        word_index = Signal(range(max(self.max_words, 2)))  # the word of the item that comes next
        item_addr = Signal(ADDR_BITS)  # the address of the item being assembled
        staged = [Signal(bus, name=f"staged{i}") for i in range(self.max_words - 1)]
        # items_left == 0, a register stepped with items_left: LDW's end (empty after its last column's
        # programming time) then starts at a flip-flop, not at a compare of the count
        empty = Signal(init=1)

        # The index of an item's last word, by opcode: a register latched at start (the opcode is held
        # for the whole load), so item_valid and last are decoded from registers and take.
        last_index = Signal.like(word_index)
        with m.If(self.start):
            with m.Switch(self.opcode):
                for op, words in self.words.items():
                    with m.Case(op):
                        m.d.sync += last_index.eq(words - 1)
        for op, words in self.words.items():
            m.d.comb += getattr(self.items, op.name.lower()).eq(Cat(*staged[:words - 1], self.word))

        # item_last (word_index == last_index) is a register stepped with word_index, so that the items'
        # write enables are take and registers (no compare of the word index)
        item_last, one_word = Signal(), Signal()
        with m.Switch(self.opcode):
            for op, words in self.words.items():
                with m.Case(op):
                    m.d.comb += one_word.eq(words == 1)
        item_complete = Signal()
        m.d.comb += [item_complete.eq(self.take & item_last), self.item_last.eq(item_last),
                     self.item_valid.eq(item_complete), self.item_addr.eq(item_addr),
                     self.empty.eq(empty)]

        last, last_next = last_word_register(m, self.words, self.opcode, self.start, self.count, self.take,
                                             item_complete, items_left, word_index, last_index)
        m.d.comb += [self.last.eq(last), self.last_next.eq(last_next)]
        with m.If(self.start):
            m.d.sync += [item_addr.eq(self.base), word_index.eq(0), items_left.eq(self.count), item_last.eq(one_word),
                         empty.eq(self.count == 0)]
        with m.Elif(self.take):
            with m.If(item_complete):
                m.d.sync += [word_index.eq(0), item_addr.eq(item_addr + 1), items_left.eq(items_left - 1),
                             item_last.eq(last_index == 0), empty.eq(items_left == 1)]
            with m.Else():
                m.d.sync += [word_index.eq(word_index + 1), item_last.eq(word_index + 1 == last_index)]
        # Staging register w follows the bus while word w is the next one: the last cycle it does so is
        # the one that takes word w (word_index moves on only with take), so it holds that word until the
        # item completes. Its enable is then the word index alone (registers), not ``take``.
        with m.Switch(word_index):
            for w in range(self.max_words - 1):
                with m.Case(w):
                    m.d.sync += staged[w].eq(self.word)
        return m


def last_word_register(m, words: dict, opcode, start, count, moved, item_done, items_left, word_index,
                       last_index) -> tuple[Signal, Signal]:
    """A stream formatter's ``last`` (the bus word moving is the instruction's last), as a register looked
    ahead beside the formatter's item count and word index, so that the sequencer's ``fin`` starts at a
    register: ``(items_left == 1) & (word_index == last_index)`` one cycle early.

    ``words`` maps each opcode of the formatter to its words per item; ``opcode`` holds through the
    instruction. In the cycle with ``start`` the register takes whether the first word is the last (one item
    of one word, decoded from the opcode here, beside the formatter's own item-size decode); in a cycle where
    a word ``moved`` (taken or sent) it takes whether the next word is: the item's last word (``item_done``)
    leaves one item of one word, or another word of the same item is the last. Both formatters' counters
    step exactly so (:class:`LoadFormatter`, :class:`~cimtile.hw.read_formatter.ReadFormatter`). Returns the
    register and what it takes at the clock edge (combinational: the sequencer looks its end a cycle ahead from
    it, :meth:`cimtile.hw.tile.Tile._stream_end`)."""
    last, last_next = Signal(name="last"), Signal(name="last_next")
    one_word = Signal(name="one_word")  # the opcode's items are one bus word
    with m.Switch(opcode):
        for op, n in words.items():
            with m.Case(op):
                m.d.comb += one_word.eq(n == 1)
    m.d.comb += last_next.eq(last)
    with m.If(start):
        m.d.comb += last_next.eq((count == 1) & one_word)
    with m.Elif(moved):
        with m.If(item_done):
            m.d.comb += last_next.eq((items_left == 2) & (last_index == 0))
        with m.Else():
            m.d.comb += last_next.eq((items_left == 1) & (word_index + 1 == last_index))
    m.d.sync += last.eq(last_next)
    return last, last_next
