"""compiler.backends: the declared Backend interface, what persists between calls, and error types."""

import numpy as np
import pytest
from cimtile.compiler import backends
from cimtile.compiler.errors import CompileError
from cimtile.hw.isa import Opcode, encode
from cimtile.hw.params import PRESETS
from cimtile.sim.tile import ProgramError
from cimtile.tb.backend import BackendError

CFG = PRESETS["tiny"]
HALT = encode(Opcode.HALT)


def test_golden_backend_keeps_state_between_calls():
    b = backends.get_backend("golden", CFG)
    assert isinstance(b, backends.Backend) and b.persistent
    levels = np.random.default_rng(0).integers(0, CFG.max_level + 1, (CFG.rows, CFG.cols))
    b.run([encode(Opcode.LDW, start=0, count=CFG.cols), HALT], [levels], 1)
    res = b.run([encode(Opcode.RDW, start=0, count=CFG.cols), HALT], [], 1)
    np.testing.assert_array_equal(res.outputs[0], levels)  # the levels of the first call are still there
    b.close()


def test_rtl_backend_declares_power_on_per_call():
    assert backends.BACKENDS["rtl"].persistent is False


def test_unknown_backend_names_the_known_ones():
    with pytest.raises(CompileError, match=r"unknown backend 'nope' \(known: golden, rtl"):
        backends.get_backend("nope", CFG)


def test_register_backend():
    class Echo(backends.Backend):
        name = "echo"

        def run(self, words, feed, batch):
            return words

    backends.register_backend("echo", Echo)
    try:
        assert backends.get_backend("echo", CFG).run([HALT], [], 1) == [HALT]
    finally:
        del backends.BACKENDS["echo"]


def test_rtl_backend_errors_keep_their_type(monkeypatch):
    b = backends.get_backend("rtl", CFG)
    # the same check and error type as the golden model, before any simulator starts
    with pytest.raises(ProgramError, match="exceeds prog_depth = 256"):
        b.run([HALT] * (CFG.prog_depth + 1), [], 1)

    def broken(*a, **k):
        raise RuntimeError("simulator vanished\nmore lines")

    monkeypatch.setattr(b._tb, "run", broken)
    with pytest.raises(BackendError, match="RuntimeError: simulator vanished$"):
        b.run([HALT], [], 1)
