"""The lab page on a pair that keeps no checkpoints says what it needs (the demo pair's page: test_lab_shipped.py)."""


def test_the_lab_page_on_a_pair_without_checkpoints_says_what_it_needs(open_page):
    at = open_page("7_Lab.py")
    assert not at.exception and not at.error
    assert any("keeps its training checkpoints" in i.value for i in at.info)
