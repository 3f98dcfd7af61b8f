"""Each study page glosses its shorthand (KL, ECE, IoU, resid, affine) in one line near its top."""
import pytest


@pytest.mark.parametrize("page, words", [
    ("3_Refusal.py", ["KL = Kullback–Leibler", "affine ablation ="]),
    ("5_Confidence.py", ["ECE = expected calibration error", "IoU = intersection over union"]),
    ("4_Knowledge.py", ["resid = the residual stream", "above 1 overshoots"]),
])
def test_a_page_glosses_its_shorthand_before_using_it(open_page, page, words):
    at = open_page(page)
    assert not at.exception
    captions = " ".join(c.value for c in at.caption)
    assert all(w in captions for w in words), captions[:500]
