"""The "Classify anyway" state of the current image (xray_gui/override_state.py), without Qt."""

from __future__ import annotations

from training.inference.result import GATE_CODE
from xray_gui.delegate import to_part, to_parts
from xray_gui.override_state import GATE_TIP, HEADER_TIP, OverrideState, Reason


def test_header_then_gate_one_at_a_time():
    s = OverrideState()
    assert s.may_classify() and s.key() == (False, False)
    s.refusal = Reason("CT, not a radiograph", "modality")
    assert not s.gate_refused and not s.may_classify() and s.tip("modality") == HEADER_TIP
    assert s.override() is False and s.refusal is None and s.key() == (True, False)
    s.refusal = Reason("not a chest film", GATE_CODE)  # the gate still applies after a header override
    assert s.gate_refused and s.may_classify() and s.tip(GATE_CODE) == GATE_TIP
    assert s.override() is True and s.key() == (True, True)
    s.reset()
    assert (s.refusal, s.key()) == (None, (False, False))
    s.reset(header_overridden=True)
    assert s.key() == (True, False)


def test_reason_shaped_like_image_refused():
    r = Reason("", None)
    assert (r.reason, r.code) == ("not classified", "")


def test_to_part_reads_and_sets_on_the_part():
    class Part:
        def __init__(self):
            self.value = 1

        def twice(self):
            return 2 * self.value

    class Owner:
        number = to_part("part", "value")
        twice, = to_parts("part", "twice")

        def __init__(self):
            self.part = Part()

    o = Owner()
    o.number = 5
    assert o.part.value == 5 and o.number == 5 and o.twice() == 10
