"""The ResNet-18 benchmark program is word-for-word what it was when the snapshot was recorded.

Refactors of the compiler, the encodings and the ISA's homes must not change a single microcode word,
cell level or cycle: the digests below are compared with tests/snapshots/resnet18_program.json.
"""

import hashlib
import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
SNAPSHOT = Path(__file__).parent / "snapshots" / "resnet18_program.json"


def _bench_model():
    spec = importlib.util.spec_from_file_location("bench_compiler", ROOT / "bench" / "compiler.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.resnet18_qdq()


def digests(bundle) -> dict:
    """SHA-256 of every program's (layer, length, words) in order and of every layer's cell levels."""
    h = hashlib.sha256()
    for p in bundle.programs:
        h.update(np.asarray([p.layer, len(p.words)], dtype="<i8").tobytes())
        h.update(np.asarray(p.words, dtype="<u8").tobytes())
    hl = hashlib.sha256()
    for lv in bundle.levels:
        hl.update(np.ascontiguousarray(lv, dtype=np.uint8).tobytes())
    return {"words_sha256": h.hexdigest(), "levels_sha256": hl.hexdigest(),
            "words": bundle.report["totals"]["words"], "cycles": bundle.report["totals"]["cycles"]}


@pytest.mark.slow
def test_resnet18_program_unchanged(monkeypatch):
    """The program, and (``loop_form``) the program compiled with the LOOP of single MVMs/REQs instead of the
    multi-vector MVM/REQ: the words and cycles of before ``count`` existed, so the multi-vector form is the only
    change the ISA's ``count`` made."""
    from cimtile.compiler import codegen

    from cimtile import compiler

    want = json.loads(SNAPSHOT.read_text())
    model = _bench_model()
    got = digests(compiler.compile_model(model, "isaac"))
    assert got == {k: want[k] for k in got}
    monkeypatch.setattr(codegen, "MULTI_VECTOR", False)
    got = digests(compiler.compile_model(model, "isaac"))
    assert got == {k: want["loop_form"][k] for k in got}
