"""Assertions for tests that compare results across backends, thread counts or machines.

Two backends (PyTorch and ONNX Runtime, fp32 and int8) or two machines compute the same floats
to a tolerance, not bit for bit: ids, texts and span offsets must match exactly, scores and span
weights within a tolerance.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from cera_rag.spans import SPANS_KEY

#: Metadata keys that hold span JSON (compared span by span, weights with the tolerance).
SPAN_KEYS = (SPANS_KEY, "cera_evidence_spans")


def _close(a: float, b: float, rel: float, abs_tol: float) -> bool:
    return math.isclose(a, b, rel_tol=rel, abs_tol=abs_tol)


def assert_metadata_close(
    got: Mapping[str, Any], want: Mapping[str, Any], rel: float = 1e-5, abs_tol: float = 1e-6
) -> None:
    """``got == want`` with floats (scores, span weights) compared within ``rel`` / ``abs_tol``.

    Raises:
        AssertionError: naming the first key that differs.
    """
    from cera_rag.spans import parse_spans

    assert set(got) == set(want), f"metadata keys differ: {sorted(set(got) ^ set(want))}"
    for key, w in want.items():
        g = got[key]
        if key in SPAN_KEYS:
            gs, ws = parse_spans(g), parse_spans(w)
            assert [(s["start"], s["end"], s["text"]) for s in gs] == [(s["start"], s["end"], s["text"]) for s in ws], (
                f"{key}: span offsets differ"
            )
            for a, b in zip(gs, ws, strict=True):
                assert _close(a["weight"], b["weight"], rel, abs_tol), f"{key}: weight {a['weight']} != {b['weight']}"
        elif isinstance(w, float) and not isinstance(w, bool):
            assert isinstance(g, (int, float)) and _close(float(g), w, rel, abs_tol), f"{key}: {g} != {w} (tolerance)"
        else:
            assert g == w, f"{key}: {g!r} != {w!r}"
