"""ISA: layout snapshot, encode/decode and assembler round trips, opcode coverage, illegal words, docs."""

import json
import os
from pathlib import Path

import pytest
from cimtile.hw import isa
from cimtile.hw.isa import Cause, Opcode
from hypothesis import given
from hypothesis import strategies as st

ROOT = Path(__file__).resolve().parent.parent
SNAPSHOT = Path(__file__).parent / "snapshots" / "isa_layout.json"


def _layout_only(d: dict) -> dict:
    return {
        "word_bits": d["word_bits"],
        "opcode_bits": d["opcode_bits"],
        "opcodes": {
            k: {"value": v["value"], "args": v["args"], "fields": v["fields"]} for k, v in d["opcodes"].items()
        },
        "causes": d["causes"],
    }


def test_layout_snapshot():
    """An encoding change must be a deliberate diff: regenerate with UPDATE_SNAPSHOTS=1."""
    current = _layout_only(isa.describe())
    if os.environ.get("UPDATE_SNAPSHOTS"):
        SNAPSHOT.write_text(json.dumps(current, indent=1, sort_keys=True) + "\n")
    assert current == _layout_only(json.loads(SNAPSHOT.read_text()))


def test_every_opcode_has_a_spec_and_fits_the_word():
    assert set(isa.SPECS) == set(Opcode)
    assert isa.INSTR.size <= isa.WORD_BITS
    for op in Opcode:
        for f in isa.FIELDS[op]:
            assert f.offset + f.width <= isa.WORD_BITS


def test_every_opcode_has_a_sim_handler():
    from cimtile.sim.tile import HANDLERS

    assert set(HANDLERS) == set(Opcode)


def test_doc_is_generated_from_isa():
    """docs/isa.md must equal `python -m cimtile.hw.isa --doc` (run `make docs` after changing hw/isa.py)."""
    assert (ROOT / "docs" / "isa.md").read_text() == isa.render_doc()


def test_doc_lists_every_instruction_and_cause():
    doc = isa.render_doc()
    for op in Opcode:
        assert f"### {op.name} ({op.value})" in doc
        assert isa.SPECS[op].cycles in doc
    for c in Cause:
        assert f"`{c.name}`" in doc


@st.composite
def instructions(draw):
    op = draw(st.sampled_from(list(Opcode)))
    args = {f.user: draw(st.integers(f.lo, f.hi)) for f in isa.FIELDS[op]}
    return op, args


@given(instructions())
def test_fast_encode_equals_layout_encode(instr):
    op, args = instr
    assert isa.encode(op, **args) == isa.encode_via_layout(op, **args)


@given(instructions())
def test_encode_decode_round_trip(instr):
    op, args = instr
    d = isa.decode(isa.encode(op, **args))
    assert d.op is op and d.args == args and d.cause is Cause.NONE


@given(st.lists(instructions(), max_size=20))
def test_assembler_round_trip(instrs):
    words = [isa.encode(op, **a) for op, a in instrs]
    text = isa.disassemble(words)
    assert isa.assemble(text) == words
    assert isa.disassemble(isa.assemble(text)) == text


@given(st.integers(0, (1 << 64) - 1))
def test_any_word_decodes_and_disassembles_back(word):
    d = isa.decode(word)
    if d.op is None:
        assert d.cause is Cause.OPCODE
    elif word & ~isa.USED_MASK[d.op]:
        assert d.cause is Cause.RESERVED
    else:
        assert d.cause is Cause.NONE and isa.encode(d.op, **d.args) == word
    # Illegal words survive the text round trip as .word directives.
    assert isa.assemble(isa.disassemble([word])) == [word]


def test_undefined_opcodes_are_illegal():
    defined = {op.value for op in Opcode}
    for v in range(1 << isa.OPCODE_BITS):
        d = isa.decode(v)
        assert (d.cause is Cause.OPCODE) == (v not in defined)


def test_reserved_bit_is_illegal():
    w = isa.encode(Opcode.MVM, in_addr=1, acc_addr=2, accumulate=1)
    assert isa.decode(w).cause is Cause.NONE
    assert isa.decode(w | (1 << 63)).cause is Cause.RESERVED
    assert isa.decode(isa.encode(Opcode.HALT) | (1 << 5)).cause is Cause.RESERVED


def test_assembler_syntax():
    text = """
        ; a comment
        CFG wbits=4 abits=8 wsigned=1   # another comment
        LOOP count=3 body=1 stride_in=1
        MVM in_addr=0x2 acc_addr=0
        HALT
    """
    words = isa.assemble(text)
    assert [isa.decode(w).op for w in words] == [Opcode.CFG, Opcode.LOOP, Opcode.MVM, Opcode.HALT]
    assert isa.decode(words[2]).in_addr == 2
    assert isa.decode(words[1]).count == 3


@pytest.mark.parametrize(
    "text, message",
    [
        ("FOO a=1", "line 1: unknown mnemonic 'FOO'"),
        ("MVM in_addr=1\nMVM bogus=1",
         "line 2: MVM: unknown field 'bogus' (fields: acc_addr, accumulate, count, in_addr)"),
        ("LDIN start=0 count=0", "line 1: LDIN count=0: allowed range is 1..1024"),
        ("CFGRQ zero_point=300", "line 1: CFGRQ zero_point=300: allowed range is -256..255"),
        ("MVM in_addr", "line 1: MVM: expected field=value, got 'in_addr'"),
    ],
)
def test_assembler_errors_are_one_line(text, message):
    with pytest.raises(isa.AsmError) as e:
        isa.assemble(text)
    assert str(e.value) == message


def test_encode_rejects_bad_values():
    with pytest.raises(isa.EncodeError, match="MVM in_addr=1024: allowed range is 0..1023"):
        isa.encode(Opcode.MVM, in_addr=1024)
    with pytest.raises(isa.EncodeError, match="expected an integer"):
        isa.encode(Opcode.MVM, in_addr=1.5)


def test_geometry():
    from cimtile.hw.params import PRESETS

    g = isa.geometry(PRESETS["isaac"], wbits=8, abits=8, wsigned=True, asigned=False, nr=128, nc=128)
    # 7 magnitude bits in 2-bit cells -> 4 slices, x2 for differential columns.
    assert (g.nis, g.nws, g.group, g.n_out, g.nrg, g.nconv) == (8, 4, 8, 16, 1, 128)
    g = isa.geometry(PRESETS["isaac"].replace(weight_encoding="differential-analog"), 8, 8, True, True, 100, 64)
    assert (g.nis, g.n_out, g.nrg, g.nconv) == (8, 8, 1, 32)
    g = isa.geometry(PRESETS["tiny"].replace(dac_bits=2), 3, 5, False, True, 16, 6)
    # unsigned 3-bit weights in 2-bit cells -> 2 columns; signed 5-bit inputs: 2 magnitude slices + sign.
    assert (g.nis, g.group, g.n_out, g.nrg) == (3, 2, 3, 2)
    assert not isa.geometry(PRESETS["tiny"], 8, 8, True, False, 16, 6).aligned


def test_count_one_words_and_texts_are_unchanged():
    """The multi-vector MVM/REQ: count=1 (the default) is the word and the text of before ``count`` existed."""
    for op, args in ((Opcode.MVM, {"in_addr": 5, "acc_addr": 7, "accumulate": 1}),
                     (Opcode.REQ, {"acc_addr": 3, "out_addr": 9})):
        w = isa.encode(op, **args)
        assert isa.encode(op, count=1, **args) == w
        # the field sits above the old ones: a count=1 word has the old fields only (the layout of before)
        old = sum(v << f.offset for f in isa.FIELDS[op] for k, v in args.items() if f.user == k) | op.value
        assert w == old
        assert "count" not in isa.disassemble([w])
        w4 = isa.encode(op, count=4, **args)
        assert w4 != w and isa.decode(w4).count == 4
        assert isa.disassemble([w4]).strip().endswith("count=4")
        assert isa.assemble(isa.disassemble([w4])) == [w4]
    # LDIN's count is not optional in the text (only MVM's and REQ's are)
    assert "count=1" in isa.disassemble([isa.encode(Opcode.LDIN, start=0, count=1)])


def test_cycles_with_count():
    """The formulas: count vectors cost count rounds of work plus one issue and one drain cycle in all."""
    from cimtile.hw.params import PRESETS

    cfg = PRESETS["isaac"]
    ns = isa.cfg_namespace(cfg)
    g = isa.geometry(cfg, 8, 8, True, False, 128, 128)
    work = isa.adc_bound(cfg, g)
    assert work == 128
    for n in (1, 2, 64, 1024):
        mvm = isa.cycles(Opcode.MVM, ns, {"count": n}, g)
        assert mvm == 1 + n * work + isa.MVM_LATENCY
        req = isa.cycles(Opcode.REQ, ns, {"count": n}, g)
        assert req == 1 + isa.ACC_READ_WAIT + n * -(-g.n_out // cfg.rq_lanes) + isa.REQ_LATENCY
    # a field left out takes encode's default: count 1 (callers that predate count)
    assert isa.cycles(Opcode.MVM, ns, {}, g) == isa.cycles(Opcode.MVM, ns, isa.decode(isa.encode(Opcode.MVM)).args, g)
    # the layer on isaac: MVM count=64 and REQ count=64 (8329 cycles with MVM_LATENCY 3,
    # REQ_LATENCY 3 and ACC_READ_WAIT 1), plus CFG, WIN and HALT
    body = isa.cycles(Opcode.MVM, ns, {"count": 64}, g) + isa.cycles(Opcode.REQ, ns, {"count": 64}, g)
    assert body == 8329 and 64 * work / (body + 3) >= 0.98
