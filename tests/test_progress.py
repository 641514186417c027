"""Progress a person can trust: the time left starts from the GPU estimate and follows the measured pace;
a pack names its style N of M."""

from __future__ import annotations

import pytest

from headshot import progress


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_eta_starts_from_the_estimate_and_moves_to_the_measured_pace():
    clock = Clock()
    eta = progress.Eta(60.0, clock=clock)
    assert eta.left(0.0) == 60.0
    clock.now += 2.0
    assert eta.left(0.01) == 58.0  # too little done to measure a pace: the estimate, counting down
    # This machine is 4x slower than the estimate: 40 s for the first half.
    clock.now = 140.0
    assert eta.left(0.5) == pytest.approx(40.0)  # past PACE_ONLY_FROM_FRACTION: the pace alone
    assert eta.left(1.0) == 0.0


def test_eta_blends_in_between_and_knows_nothing_without_an_estimate():
    clock = Clock()
    eta = progress.Eta(100.0, clock=clock)
    clock.now += 20.0
    # 17.5% done in 20 s: the pace says ~94 s, the estimate 80 s; halfway through the blend.
    left = eta.left(0.175)
    assert 80.0 < left < 20.0 / 0.175 * 0.825
    unknown = progress.Eta(None, clock=clock)
    assert unknown.left(0.0) is None and progress.eta_text(unknown.left(0.0)) == ""
    clock.now += 10.0
    assert unknown.left(0.5) == pytest.approx(10.0)


def test_a_resumed_run_measures_only_its_own_pace():
    clock = Clock()
    eta = progress.Eta(None, start=0.5, clock=clock)  # half the steps were done in an earlier call
    clock.now += 10.0
    assert eta.left(0.75) == pytest.approx(10.0)  # 10 s for a quarter: 10 s for the last quarter


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(None, ""), (1.0, "almost done"), (12.0, "about 10 s left"), (47.0, "about 45 s left"),
     (200.0, "about 3 min left")],
)  # fmt: skip
def test_eta_text(seconds, text):
    assert progress.eta_text(seconds) == text


def test_pack_label_names_the_style_and_the_image():
    label = progress.pack_label(["Corporate grey", "Executive office", "Outdoor"], 2)
    assert label(0.0) == "Style 1 of 3, Corporate grey: image 1 of 2"
    assert label(0.4) == "Style 2 of 3, Executive office: image 1 of 2"
    assert label(0.99) == "Style 3 of 3, Outdoor: image 2 of 2"
    assert label(1.0) == "Style 3 of 3, Outdoor: image 2 of 2"
    single = progress.pack_label(["Corporate grey"], 4, "candidate")
    assert single(0.3) == "Candidate 2 of 4"


def test_tracked_adds_the_label_and_the_time_left():
    clock = Clock()
    seen: list[tuple[float, str]] = []
    report = progress.tracked(lambda f, d: seen.append((f, d)), progress.Eta(30.0, clock=clock),
                              progress.pack_label(["A", "B"], 1))
    report(0.0, "Image 1 of 2")
    clock.now += 20.0
    report(0.5, "Image 2 of 2")
    assert seen[0] == (0.0, "Style 1 of 2, A: image 1 of 1 · about 30 s left")
    assert seen[1] == (0.5, "Style 2 of 2, B: image 1 of 1 · about 20 s left")
    assert progress.tracked(None, progress.Eta()) is None


def test_words_for_durations():
    assert [progress.words_for(s) for s in (0.2, 45, 600, 3600, 12_000)] == [
        "1 s", "45 s", "about 10 min", "about 1 h", "about 3 h 20 min"
    ]
