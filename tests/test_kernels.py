"""The fast MVM (``sim.fastmvm.mvm``) equals the straightforward bit-sliced loop (``mvm_sliced``) exactly.

Every fast path is forced at least once by a targeted case that also asserts the path was taken
(lossless, corrections on all rows or on gathered rows, direct conversion under an ADC shift, slices
packed two per float32 GEMM or not, float64 linear GEMM and float64 class reduction), and hypothesis
draws random configurations on top.
"""

from __future__ import annotations

import numpy as np
import pytest
from cimtile.hw import isa
from cimtile.hw.encoding import decode_weights
from cimtile.hw.params import ENCODINGS, TileConfig
from cimtile.sim import fastmvm, kernels
from cimtile.sim.kernels import Layer
from hypothesis import given, settings
from hypothesis import strategies as st


def _setup(seed: int, *, cell_bits: int, dac_bits: int, adc_bits: int, rows_per_conv: int, encoding: str,
           wbits: int, abits: int, wsigned: bool, asigned: bool, adc_shift: int, nr: int, n_out: int, m: int,
           levels: str = "uniform", inputs: str = "uniform", mask_p: float = 0.0):
    """Operands of one MVM: (raw, levels, masks, layer, geo, cfg)."""
    rng = np.random.default_rng(seed)
    nc = isa.weight_slices(wbits, wsigned, cell_bits) * (2 if wsigned else 1) * n_out
    cfg = TileConfig(rows=max(nr, 2), cols=max(nc, 2), cell_bits=cell_bits, dac_bits=dac_bits, adc_bits=adc_bits,
                     n_adcs=1, rows_per_conv=min(rows_per_conv, max(nr, 2)), weight_encoding=encoding, rq_lanes=1)
    geo = isa.geometry(cfg, wbits, abits, wsigned, asigned, nr, nc)
    top = cfg.max_level
    if levels == "uniform":
        lv = rng.integers(0, top + 1, (nr, nc))
    elif levels == "high":  # near the maximum: column sums clip
        lv = rng.integers(max(top - 1, 0), top + 1, (nr, nc))
    elif levels == "low":  # mostly zero: column bounds often show no clipping
        lv = np.where(rng.random((nr, nc)) < 0.9, 0, rng.integers(0, top + 1, (nr, nc)))
    elif levels == "encoded":  # the one encoder's levels of random logical weights (x @ W fits int8 at 8 bits)
        from cimtile.hw.encoding import encode_weights, weight_range

        lo_w, hi_w = weight_range(wbits, wsigned)
        lv = encode_weights(cfg, rng.integers(lo_w, hi_w + 1, (nr, n_out)), wbits, wsigned)
    else:  # one heavy column type, the rest light: some classes clip, others never do
        lv = rng.integers(0, top + 1, (nr, nc))
        lv[:, 1:] = np.where(rng.random((nr, nc - 1)) < 0.8, 0, lv[:, 1:])
    masks = rng.random((nr, nc)) < mask_p
    if inputs == "uniform":
        raw = rng.integers(-128, 256, (m, nr))
    elif inputs == "high":
        raw = rng.integers(200, 256, (m, nr))
    else:  # relu-like: many zeros, otherwise small
        raw = np.where(rng.random((m, nr)) < 0.6, 0, rng.integers(0, 40, (m, nr)))
    layer = Layer(wbits, abits, wsigned, asigned, adc_shift)
    return raw, lv, masks, layer, geo, cfg


def _paths(raw, lv, masks, layer, geo, cfg) -> dict[str, np.ndarray]:
    """``fastmvm.mvm`` through the float path (int8 GEMM off) and through the integer path (forced on every
    size, in chunks of 7 vectors); the integer path's entry is missing when this PyTorch has no int8 GEMM."""
    saved = fastmvm.INT_GEMM, fastmvm.INT_MIN_MACS, fastmvm.INT_CHUNK
    try:
        fastmvm.INT_GEMM = False
        out = {"float": fastmvm.mvm(raw, lv, masks, layer, geo, cfg)}
        fastmvm.INT_GEMM, fastmvm.INT_MIN_MACS, fastmvm.INT_CHUNK = True, 0, 7
        if fastmvm._i8mm() is not None:
            out["int"] = fastmvm.mvm(raw, lv, masks, layer, geo, cfg)
    finally:
        fastmvm.INT_GEMM, fastmvm.INT_MIN_MACS, fastmvm.INT_CHUNK = saved
    return out


def _check(ops) -> fastmvm._Plan:
    raw, lv, masks, layer, geo, cfg = ops
    want = kernels.mvm_sliced(raw, lv, masks, layer, geo, cfg)
    for path, got in _paths(raw, lv, masks, layer, geo, cfg).items():
        assert got.dtype == np.int64 and got.shape == want.shape, path
        np.testing.assert_array_equal(got, want, err_msg=path)
    return fastmvm._plan(lv, masks, layer, geo, cfg)


@pytest.fixture
def small_chunks(monkeypatch):
    """Chunks of a few vectors, so that multi-chunk and gathered-row paths run on small batches."""
    monkeypatch.setattr(fastmvm, "CHUNK", 7)


BASE = dict(cell_bits=2, dac_bits=1, adc_bits=4, rows_per_conv=8, encoding="differential", wbits=8, abits=8,
            wsigned=True, asigned=False, adc_shift=0, nr=16, n_out=3, m=40)


def _case(**kw):
    return {**BASE, **kw}


@pytest.mark.parametrize("name, kw, path", [
    ("lossless", _case(adc_bits=8, levels="low"), lambda p: p.lossless),
    ("all rows", _case(levels="high", inputs="high"), lambda p: not p.lossless and not p.direct),
    ("gathered rows", _case(adc_bits=4, nr=24, rows_per_conv=24, levels="mixed", inputs="relu"),
     lambda p: not p.lossless and not p.direct),
    ("direct under shift", _case(adc_shift=2), lambda p: p.direct),
    ("direct tiny adc", _case(adc_bits=2, cell_bits=3), lambda p: p.direct),
    ("packed", _case(), lambda p: p.s > 0),
    ("unpacked", _case(cell_bits=4, dac_bits=4, adc_bits=10, nr=200, rows_per_conv=200, m=9),
     lambda p: p.s == 0),
    ("f64 linear", _case(cell_bits=4, adc_bits=14, nr=300, rows_per_conv=30, m=9, wsigned=False, levels="high",
                         n_out=2),
     lambda p: p.lin_dtype is np.float64),
    ("f64 reduction", _case(cell_bits=1, dac_bits=4, adc_bits=14, abits=8, asigned=True, rows_per_conv=16),
     lambda p: p.red_dtype is np.float64),
    ("analog", _case(encoding="differential-analog", adc_bits=3, mask_p=0.2),
     lambda p: not p.lossless),
    ("analog shift", _case(encoding="differential-analog", adc_shift=3, asigned=True), lambda p: p.direct),
    ("unsigned weights", _case(wsigned=False, wbits=5, levels="high"), lambda p: not p.lossless),
    ("one input slice", _case(abits=1, dac_bits=1, levels="high"), lambda p: not p.lossless),
    ("masked", _case(mask_p=0.5, inputs="high"), lambda p: True),
    ("many groups", _case(nr=37, rows_per_conv=5, levels="mixed", inputs="relu"), lambda p: len(p.groups) == 8),
])
def test_fast_paths(name, kw, path, small_chunks):
    for seed in range(3):
        plan = _check(_setup(seed, **kw))
        assert path(plan), f"{name}: the case no longer takes its path"


def test_gather_really_gathers(small_chunks, monkeypatch):
    """The gathered-row branch of ``_Plan.correct`` runs (rows selected, not the whole chunk)."""
    calls = []
    orig = fastmvm._Plan._segment

    def spy(self, Xg, rows, *a):
        calls.append(rows is None)
        return orig(self, Xg, rows, *a)

    monkeypatch.setattr(fastmvm._Plan, "_segment", spy)
    for seed in range(3):
        _check(_setup(seed, **_case(adc_bits=4, nr=24, rows_per_conv=24, levels="mixed", inputs="relu", m=60)))
    assert False in calls and True in calls


BITS = st.one_of(st.sampled_from([1, 8]), st.integers(1, 8))


@st.composite
def mvm_cases(draw):
    wsigned = draw(st.booleans())
    wbits = draw(BITS.filter(lambda b: b >= 2)) if wsigned else draw(BITS)
    nr = draw(st.one_of(st.sampled_from([1, 40]), st.integers(1, 40)))
    return dict(
        cell_bits=draw(st.integers(1, 4)), dac_bits=draw(st.integers(1, 4)),
        adc_bits=draw(st.one_of(st.sampled_from([2, 14]), st.integers(2, 14))),
        rows_per_conv=draw(st.integers(1, 40)), encoding=draw(st.sampled_from(ENCODINGS)),
        wbits=wbits, abits=draw(BITS), wsigned=wsigned, asigned=draw(st.booleans()),
        adc_shift=draw(st.one_of(st.just(0), st.integers(0, 15))), nr=nr, n_out=draw(st.integers(1, 4)),
        m=draw(st.integers(1, 30)), levels=draw(st.sampled_from(["uniform", "high", "low", "mixed"])),
        inputs=draw(st.sampled_from(["uniform", "high", "relu"])), mask_p=draw(st.sampled_from([0.0, 0.1, 0.6])),
    )


@settings(deadline=None, max_examples=150)
@given(kw=mvm_cases(), seed=st.integers(0, 2**32 - 1), chunk=st.sampled_from([3, 7, fastmvm.CHUNK]))
def test_mvm_equals_sliced(kw, seed, chunk):
    saved, fastmvm.CHUNK = fastmvm.CHUNK, chunk
    try:
        _check(_setup(seed, **kw))
    finally:
        fastmvm.CHUNK = saved


@settings(deadline=None, max_examples=60)
@given(kw=mvm_cases(), seed=st.integers(0, 2**32 - 1))
def test_lossless_adc_is_plain_product(kw, seed):
    """An ADC that cannot clip (and no shift) makes the MVM the integer product x @ W."""
    kw = {**kw, "adc_bits": 14, "adc_shift": 0, "rows_per_conv": min(kw["rows_per_conv"], 8)}
    raw, lv, masks, layer, geo, cfg = _setup(seed, **kw)
    x = kernels.input_values(raw, layer.abits, layer.asigned)
    w = decode_weights(cfg, lv, masks, layer.wbits, layer.wsigned)
    want = np.array([[sum(int(a) * int(b) for a, b in zip(row, col)) for col in w.T] for row in x],
                    dtype=np.int64).reshape(len(x), geo.n_out)
    for path, got in _paths(raw, lv, masks, layer, geo, cfg).items():
        np.testing.assert_array_equal(got, want, err_msg=path)


def test_plan_cache_sees_changed_levels():
    """A cached analysis is reused only for equal levels and masks."""
    raw, lv, masks, layer, geo, cfg = _setup(0, **_case())
    lv[:] = 0
    assert fastmvm._plan(lv, masks, layer, geo, cfg).lossless
    lv[:] = cfg.max_level  # in place, as a Tile's VAU does
    assert not fastmvm._plan(lv, masks, layer, geo, cfg).lossless
    np.testing.assert_array_equal(fastmvm.mvm(raw, lv, masks, layer, geo, cfg),
                                  kernels.mvm_sliced(raw, lv, masks, layer, geo, cfg))
    masks[:] = True
    assert not fastmvm.mvm(raw, lv, masks, layer, geo, cfg).any()


def test_input_dtypes_agree():
    """uint8 bytes and signed integers of the same bytes give the same result."""
    raw, lv, masks, layer, geo, cfg = _setup(1, **_case(asigned=True, levels="high"))
    u8 = (raw & 0xFF).astype(np.uint8)
    np.testing.assert_array_equal(fastmvm.mvm(raw, lv, masks, layer, geo, cfg),
                                  fastmvm.mvm(u8, lv, masks, layer, geo, cfg))


def test_empty_batch():
    raw, lv, masks, layer, geo, cfg = _setup(2, **_case(levels="high"))
    assert fastmvm.mvm(raw[:0], lv, masks, layer, geo, cfg).shape == (0, geo.n_out)


@settings(deadline=None, max_examples=50)
@given(bits=st.integers(16, 40), vals=st.lists(st.integers(-(1 << 45), 1 << 45), max_size=20),
       small=st.booleans())
def test_wrap(bits, vals, small):
    """Two's complement wrap, with and without values out of range (the fast path returns its input)."""
    if small:
        vals = [v % (1 << (bits - 1)) for v in vals]
    got = kernels.wrap(np.array(vals, dtype=np.int64), bits)
    want = [((v + (1 << (bits - 1))) % (1 << bits)) - (1 << (bits - 1)) for v in vals]
    assert got.dtype == np.int64 and got.tolist() == want


def test_plan_cache_keeps_windows_apart():
    """Equal-sized windows with different levels get their own analyses, and both stay cached."""
    ops_a = _setup(3, **_case(levels="high"))
    ops_b = _setup(4, **_case(levels="high"))
    ops_b[1][:] = 0
    assert ops_a[3:] == ops_b[3:]  # same layer, geometry and TileConfig: one cache key
    for _ in range(2):
        for raw, lv, masks, layer, geo, cfg in (ops_a, ops_b):
            np.testing.assert_array_equal(fastmvm.mvm(raw, lv, masks, layer, geo, cfg),
                                          kernels.mvm_sliced(raw, lv, masks, layer, geo, cfg))
    pa = fastmvm._plan(*ops_a[1:])
    pb = fastmvm._plan(*ops_b[1:])
    assert pa is not pb and not pa.lossless and pb.lossless
    assert fastmvm._plan(*ops_a[1:]) is pa


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_slice_rows_match_tables(encoding):
    """GEMM input rows built from bit fields equal the packed input slices, for every input format."""
    u8 = np.arange(256, dtype=np.uint8)[None, :]
    for abits in range(1, 9):
        for asigned in (False, True):
            for dac_bits in (1, 2, 3, 4):
                raw, lv, masks, layer, geo, cfg = _setup(0, **_case(abits=abits, asigned=asigned, dac_bits=dac_bits,
                                                                    encoding=encoding))
                plan = fastmvm._plan(lv, masks, layer, geo, cfg)
                sl = kernels.input_slices(u8[0], abits, asigned, dac_bits)
                step = 2 if plan.s else 1
                for i, (_, bits) in enumerate(plan.units):
                    want = sum(v * (plan.s ** j) for j, (v, _) in enumerate(sl[i * step:(i + 1) * step]))
                    np.testing.assert_array_equal(plan._slice_rows(u8, bits)[0], want)


@settings(deadline=None, max_examples=60)
@given(kw=mvm_cases(), seed=st.integers(0, 2**32 - 1), acc_bits=st.sampled_from([16, 17, 24, 32, 40]),
       accumulate=st.booleans())
def test_mvm_acc_is_wrapped_sum(kw, seed, acc_bits, accumulate):
    """What MVM stores: (previous accumulator +) the MVM, wrapped to acc_bits, whatever the integer dtype."""
    raw, lv, masks, layer, geo, cfg = _setup(seed, **kw)
    cfg = cfg.replace(acc_bits=acc_bits)
    rng = np.random.default_rng(seed)
    half = 1 << (acc_bits - 1)
    prev = rng.integers(-half, half, (raw.shape[0], geo.n_out)) if accumulate else None
    got = fastmvm.mvm_acc(raw, lv, masks, layer, geo, cfg, prev)
    want = kernels.mvm_sliced(raw, lv, masks, layer, geo, cfg) + (0 if prev is None else prev)
    want = ((want + half) % (2 * half)) - half
    assert np.issubdtype(got.dtype, np.integer)
    np.testing.assert_array_equal(got.astype(np.int64), want)


@pytest.mark.parametrize("strides, accumulate, req_acc", [
    ((1, 1, 1), 0, 1),  # independent iterations: one vectorised step
    ((1, 0, 1), 1, 1),  # every iteration accumulates into one vector that REQ reads
    ((1, 1, 1), 0, 2),  # REQ of iteration i reads what the MVM of iteration i+1 writes
    ((1, 0, 1), 0, 1),  # every MVM writes the same accumulator vector
])
def test_vectorised_loops_equal_sequential(strides, accumulate, req_acc):
    """``Tile._independent`` (vectorised) decides like running the iterations one by one."""
    from cimtile.hw.isa import Opcode, encode
    from cimtile.hw.params import PRESETS
    from cimtile.sim.tile import Tile

    cfg = PRESETS["tiny"]
    rng = np.random.default_rng(5)
    si, sa, so = strides
    prog = [encode(Opcode.CFG, wbits=4, abits=4, wsigned=1, asigned=0, adc_shift=0),
            encode(Opcode.WIN, row_start=0, row_count=16, col_start=0, col_count=16),
            encode(Opcode.LDW, start=0, count=16), encode(Opcode.LDIN, start=0, count=16),
            encode(Opcode.LOOP, count=8, body=2, stride_in=si, stride_acc=sa, stride_out=so),
            encode(Opcode.MVM, in_addr=0, acc_addr=1, accumulate=accumulate),
            encode(Opcode.REQ, acc_addr=req_acc, out_addr=0),
            encode(Opcode.RDACC, start=0, count=cfg.acc_depth), encode(Opcode.RDOUT, start=0, count=cfg.out_depth),
            encode(Opcode.HALT)]
    feed = [rng.integers(0, cfg.max_level + 1, (cfg.rows, 16)), rng.integers(0, 256, (3, 16, cfg.rows))]
    runs = []
    for vec in (True, False):
        t = Tile(cfg, batch=3, vectorize=vec)
        r = t.run(prog, list(feed)).check()
        runs.append((r.cycles, [o.tolist() for o in r.outputs]))
    assert runs[0] == runs[1]


def _requantise_ints(acc, bias, mult, shift, zp, lo, hi, relu):
    p = (acc + bias) * mult
    r = (p + (1 << (shift - 1) if shift else 0)) >> shift
    return min(max(r + zp, max(lo, zp) if relu else lo), hi)


@settings(deadline=None, max_examples=80)
@given(seed=st.integers(0, 2**32 - 1), acc_bits=st.sampled_from([16, 24, 32, 36, 40]),
       zp=st.integers(-128, 255), lo=st.integers(-128, 255), hi=st.integers(-128, 255), relu=st.booleans(),
       big_shift=st.booleans())
def test_requantise_matches_integers(seed, acc_bits, zp, lo, hi, relu, big_shift):
    """The float64 fast path and the int64 fallback both equal the documented integer formula."""
    rng = np.random.default_rng(seed)
    n = 12
    half = 1 << (acc_bits - 1)
    acc = np.concatenate([rng.integers(-half, half, (3, n)), np.full((1, n), -half), np.full((1, n), half - 1)])
    bias = rng.integers(-(1 << 31), 1 << 31, n)
    mult = rng.integers(0, 1 << 16, n)
    shift = rng.integers(0, 64 if big_shift else 40, n)
    shift[0], mult[1] = 0, (1 << 16) - 1
    lo, hi = min(lo, hi), max(lo, hi)
    got = kernels.requantise(acc, bias, mult, shift, zp, lo, hi, relu)
    want = [[_requantise_ints(int(a), int(b), int(m), int(s), zp, lo, hi, relu)
             for a, b, m, s in zip(row, bias, mult, shift)] for row in acc]
    assert got.dtype == np.int64 and got.tolist() == want


@settings(deadline=None, max_examples=150)
@given(kw=mvm_cases(), seed=st.integers(0, 2**32 - 1), wide=st.booleans())
def test_linear_check_equals_plan_lossless(kw, seed, wide):
    """``_linear`` (the cheap column bound that skips the plan) fires exactly when the plan is lossless,
    and then gives the plan's W and a bound at least the plan's exact one (it picks the float type)."""
    if wide:  # mostly lossless: an ADC wide enough for the column sums
        kw = {**kw, "adc_bits": 14, "adc_shift": 0}
    raw, lv, masks, layer, geo, cfg = _setup(seed, **kw)
    if lv.shape[0] == 0 or geo.n_out == 0:
        return
    lin = fastmvm._linear(lv, masks, layer, geo, cfg)
    plan = fastmvm._Plan(np.where(masks, 0, lv).astype(np.int64), layer, geo, cfg)
    assert (lin is not None) == plan.lossless
    if lin is not None:
        W, bound = lin
        assert bound >= plan.lin_bound
        assert W.dtype == (np.float32 if bound < kernels.F32_EXACT else np.float64)
        x = kernels.input_values(raw, layer.abits, layer.asigned)
        assert np.abs(x @ decode_weights(cfg, lv, masks, layer.wbits, layer.wsigned)).max(initial=0) <= bound
        np.testing.assert_array_equal(W, decode_weights(cfg, lv, masks, layer.wbits, layer.wsigned))


# -- the integer path (int8 GEMMs, sim.fastmvm._mvm_int) ------------------------------------------------------

needs_i8mm = pytest.mark.skipif(fastmvm._i8mm_probe() is None, reason="this PyTorch has no int8 GEMM")


@pytest.fixture
def int_forced(monkeypatch):
    """The integer path on every MVM size, chunks of a few vectors (several chunks per MVM)."""
    monkeypatch.setattr(fastmvm, "INT_GEMM", True)
    monkeypatch.setattr(fastmvm, "INT_MIN_MACS", 0)
    monkeypatch.setattr(fastmvm, "INT_CHUNK", 7)


@needs_i8mm
@pytest.mark.parametrize("name, kw, lossless", [
    ("lossless 8-bit unsigned inputs", _case(adc_bits=8, levels="encoded"), True),
    ("lossless signed inputs", _case(adc_bits=8, levels="encoded", asigned=True), True),
    ("lossless 5-bit inputs", _case(adc_bits=8, levels="encoded", abits=5), True),
    ("clipping", _case(levels="high", inputs="high"), False),
    ("clipping relu inputs", _case(adc_bits=4, nr=24, rows_per_conv=24, levels="mixed", inputs="relu"), False),
    ("shift", _case(adc_shift=2), False),
    ("analog", _case(encoding="differential-analog", adc_bits=3, mask_p=0.2), False),
    ("analog shift signed", _case(encoding="differential-analog", adc_shift=3, asigned=True), False),
    ("unsigned weights", _case(wsigned=False, wbits=5, levels="high"), False),
    ("2-bit DAC signed 6-bit inputs", _case(dac_bits=2, abits=6, asigned=True, levels="high"), False),
    ("4-bit DAC", _case(dac_bits=4, cell_bits=4, adc_bits=6, levels="high"), False),
    ("masked", _case(mask_p=0.5, inputs="high", levels="high"), False),
    ("masked lossless", _case(mask_p=0.3, adc_bits=8, levels="encoded"), True),
    ("many groups", _case(nr=37, rows_per_conv=5, levels="high", adc_bits=3), False),
    ("many groups relu", _case(nr=37, rows_per_conv=5, levels="mixed", inputs="relu", adc_bits=3), False),
])
def test_int_path_taken_and_exact(name, kw, lossless, int_forced):
    """The integer path runs (not the float fallback) and equals ``mvm_sliced`` integer for integer, on every
    kind of window: lossless, clipping, ADC shift, analog pairs, masks, several DACs, row groups."""
    for seed in range(3):
        raw, lv, masks, layer, geo, cfg = _setup(seed, **{**kw, "m": 30})
        r = fastmvm._mvm_int(raw, lv, masks, layer, geo, cfg)
        assert r is not None, f"{name}: the integer path was not taken"
        y, bound = r
        want = kernels.mvm_sliced(raw, lv, masks, layer, geo, cfg)
        np.testing.assert_array_equal(y.astype(np.int64), want, err_msg=name)
        assert np.abs(want).max(initial=0) <= bound
        assert fastmvm._plan(lv, masks, layer, geo, cfg).lossless == lossless


@needs_i8mm
@settings(deadline=None, max_examples=80)
@given(kw=mvm_cases(), seed=st.integers(0, 2**32 - 1), acc_bits=st.sampled_from([16, 24, 32, 40]),
       accumulate=st.booleans())
def test_mvm_acc_int_equals_float(kw, seed, acc_bits, accumulate):
    """What MVM stores is the same through the integer and the float path (wrap, accumulate, dtype aside)."""
    raw, lv, masks, layer, geo, cfg = _setup(seed, **kw)
    cfg = cfg.replace(acc_bits=acc_bits)
    half = 1 << (acc_bits - 1)
    prev = np.random.default_rng(seed).integers(-half, half, (raw.shape[0], geo.n_out)) if accumulate else None
    saved = fastmvm.INT_GEMM, fastmvm.INT_MIN_MACS, fastmvm.INT_CHUNK
    try:
        fastmvm.INT_GEMM = False
        want = fastmvm.mvm_acc(raw, lv, masks, layer, geo, cfg, prev).astype(np.int64)
        fastmvm.INT_GEMM, fastmvm.INT_MIN_MACS, fastmvm.INT_CHUNK = True, 0, 5
        got = fastmvm.mvm_acc(raw, lv, masks, layer, geo, cfg, prev)
    finally:
        fastmvm.INT_GEMM, fastmvm.INT_MIN_MACS, fastmvm.INT_CHUNK = saved
    np.testing.assert_array_equal(got.astype(np.int64), want)


@needs_i8mm
@pytest.mark.parametrize("preset", ["tiny", "isaac", "cimaq"])
@pytest.mark.parametrize("adc_shift", [0, 2])
def test_tile_int_path_equals_float_path(preset, adc_shift):
    """A Tile on a preset (8-bit signed weights from the one encoder, ReLU-like and full-range inputs, a partly
    masked window) stores the same accumulators and counts the same cycles with the int8 GEMMs as without."""
    from cimtile.hw.encoding import encode_weights
    from cimtile.hw.isa import Opcode, encode
    from cimtile.hw.params import PRESETS
    from cimtile.sim.tile import Tile

    base = PRESETS[preset]
    rng = np.random.default_rng(adc_shift)
    n_out = max(1, base.cols // 4)
    w = rng.integers(-127, 128, (base.rows, n_out))
    lv = encode_weights(base, w, 8, True)
    cfg = base.replace(cols=max(base.cols, lv.shape[1]), in_depth=2, acc_depth=2, out_depth=1)
    nc = lv.shape[1]
    x = np.stack([np.where(rng.random((300, base.rows)) < 0.5, 0, rng.integers(0, 256, (300, base.rows))),
                  rng.integers(0, 256, (300, base.rows))], axis=1)
    masks = (rng.random((cfg.rows, nc)) < 0.05).astype(np.int64)
    prog = [encode(Opcode.CFG, wbits=8, abits=8, wsigned=1, asigned=0, adc_shift=adc_shift),
            encode(Opcode.WIN, row_start=0, row_count=base.rows, col_start=0, col_count=nc),
            encode(Opcode.LDW, start=0, count=nc), encode(Opcode.LDM, start=0, count=nc),
            encode(Opcode.LDIN, start=0, count=2),
            encode(Opcode.MVM, in_addr=0, acc_addr=0, accumulate=0),
            encode(Opcode.MVM, in_addr=1, acc_addr=1, accumulate=0),
            encode(Opcode.MVM, in_addr=0, acc_addr=1, accumulate=1),
            encode(Opcode.RDACC, start=0, count=2), encode(Opcode.HALT)]
    runs = []
    saved = fastmvm.INT_GEMM, fastmvm.INT_MIN_MACS
    try:
        for on in (False, True):
            fastmvm.INT_GEMM, fastmvm.INT_MIN_MACS = on, 0
            t = Tile(cfg, batch=300)
            r = t.run(prog, [lv, masks, x]).check()
            runs.append((r.cycles, r.outputs[0]))
    finally:
        fastmvm.INT_GEMM, fastmvm.INT_MIN_MACS = saved
    assert runs[0][0] == runs[1][0]
    np.testing.assert_array_equal(runs[0][1], runs[1][1])


@needs_i8mm
@pytest.mark.parametrize("kw, form", [
    (_case(levels="high", inputs="high"), "_correct_int_min"),  # codes min(S, hi): the two-pass form
    (_case(levels="high", asigned=True, abits=6, dac_bits=2), "_correct_int_min"),  # a negative sign slice
    (_case(cell_bits=4, levels="high", nr=40, rows_per_conv=40, dac_bits=1), "_correct_int_min"),  # 2 segments
    (_case(adc_shift=1), "_correct_int"),
    (_case(encoding="differential-analog", adc_bits=3), "_correct_int"),
])
def test_int_correction_forms(kw, form, int_forced, monkeypatch):
    """Both correction forms of the integer path run where meant to, and stay exact."""
    calls = []
    orig = getattr(fastmvm._Plan, form)

    def spy(self, *a):
        calls.append(form)
        return orig(self, *a)

    monkeypatch.setattr(fastmvm._Plan, form, spy)
    for seed in range(3):
        raw, lv, masks, layer, geo, cfg = _setup(seed, **kw)
        y, _ = fastmvm._mvm_int(raw, lv, masks, layer, geo, cfg)
        np.testing.assert_array_equal(y.astype(np.int64), kernels.mvm_sliced(raw, lv, masks, layer, geo, cfg))
    assert calls
