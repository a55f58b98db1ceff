"""dsxsd.metrics against values worked out by hand, and against brute-force definitions."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dsxsd import metrics

# A small case worked by hand (scores already in decreasing order):
#   score  0.9 0.8 0.7 0.6 0.55 0.1
#   label   1   1   0   1   0    0
LABELS = [1, 1, 0, 1, 0, 0]
SCORES = [0.9, 0.8, 0.7, 0.6, 0.55, 0.1]


def test_roc_curve_hand_computed():
    fpr, tpr, thresholds = metrics.roc_curve(LABELS, SCORES)
    np.testing.assert_allclose(fpr, [0, 0, 0, 1 / 3, 1 / 3, 2 / 3, 1])
    np.testing.assert_allclose(tpr, [0, 1 / 3, 2 / 3, 2 / 3, 1, 1, 1])
    assert thresholds[0] == np.inf
    np.testing.assert_allclose(thresholds[1:], SCORES)


def test_roc_curve_input_order_does_not_matter():
    order = [3, 0, 5, 1, 4, 2]
    shuffled = metrics.roc_curve(np.array(LABELS)[order], np.array(SCORES)[order])
    for got, want in zip(shuffled, metrics.roc_curve(LABELS, SCORES)):
        np.testing.assert_array_equal(got, want)


def test_roc_curve_ties_make_one_point():
    fpr, tpr, thresholds = metrics.roc_curve([1, 0, 1, 0], [0.5, 0.5, 0.8, 0.2])
    np.testing.assert_allclose(thresholds, [np.inf, 0.8, 0.5, 0.2])
    np.testing.assert_allclose(tpr, [0, 0.5, 1, 1])
    np.testing.assert_allclose(fpr, [0, 0, 0.5, 1])


def test_constant_scorer_is_the_diagonal():
    fpr, tpr, _ = metrics.roc_curve([1, 0, 1, 0, 0], [0.3] * 5)
    np.testing.assert_allclose(fpr, [0, 1])
    np.testing.assert_allclose(tpr, [0, 1])
    assert metrics.roc_auc([1, 0, 1, 0, 0], [0.3] * 5) == 0.5


def test_auc_hand_computed():
    # Positives .9 .8 .6 against negatives .7 .55 .1: 3 + 3 + 2 wins out of 9.
    assert metrics.roc_auc(LABELS, SCORES) == pytest.approx(8 / 9)


def test_auc_counts_a_tie_as_half():
    # .5 vs .5 is a tie (1/2), .5 > .2 (1), .8 beats both (2): 3.5 of 4.
    assert metrics.roc_auc([1, 0, 1, 0], [0.5, 0.5, 0.8, 0.2]) == pytest.approx(0.875)


def test_auc_extremes():
    assert metrics.roc_auc([0, 0, 1, 1], [0.1, 0.2, 0.3, 0.4]) == 1.0
    assert metrics.roc_auc([1, 1, 0, 0], [0.1, 0.2, 0.3, 0.4]) == 0.0


def test_eer_at_an_exact_crossing():
    # fnr 1 2/3 1/3 1/3 ..., fpr 0 0 0 1/3 ...: equal at 1/3, threshold 0.7.
    eer, threshold = metrics.equal_error_rate(LABELS, SCORES)
    assert eer == pytest.approx(1 / 3)
    assert threshold == 0.7


def test_eer_interpolates_between_points():
    # Sorted: .9(1) .7(0) .6(1) .2(0) .1(0).
    # fnr: 1 .5 .5 0 ..., fpr: 0 0 1/3 1/3 ...; the gap goes 1/6 -> -1/3 between
    # thresholds .7 and .6, a third of the way: fpr 1/3, fnr .5 - .5/3 = 1/3.
    eer, threshold = metrics.equal_error_rate([1, 1, 0, 0, 0], [0.9, 0.6, 0.7, 0.2, 0.1])
    assert eer == pytest.approx(1 / 3)
    assert threshold == 0.6


def test_eer_of_a_perfect_and_a_constant_scorer():
    assert metrics.equal_error_rate([0, 0, 1, 1], [0.1, 0.2, 0.8, 0.9])[0] == 0.0
    assert metrics.equal_error_rate([0, 1, 0, 1], [0.5] * 4)[0] == pytest.approx(0.5)


def test_best_threshold_hand_computed():
    # Accuracy calling the top k distinct scores "same", k = 0..6: 3 4 5 4 5 4 3 (of 6).
    # The first maximum is k = 2: between 0.8 and 0.7.
    threshold, accuracy = metrics.best_threshold(LABELS, SCORES)
    assert threshold == pytest.approx(0.75)
    assert accuracy == pytest.approx(5 / 6)
    assert metrics.binary_metrics(LABELS, SCORES, threshold).accuracy == pytest.approx(5 / 6)


def test_best_threshold_at_the_edges():
    # Every pair is "same": the best is to accept all, threshold = the lowest score.
    assert metrics.best_threshold([1, 1, 1], [0.2, 0.4, 0.9]) == (0.2, 1.0)
    # Every pair is "different": reject all, threshold just above the highest score.
    threshold, accuracy = metrics.best_threshold([0, 0, 0], [0.2, 0.4, 0.9])
    assert threshold > 0.9 and threshold == pytest.approx(0.9)
    assert accuracy == 1.0
    assert metrics.binary_metrics([0, 0, 0], [0.2, 0.4, 0.9], threshold).fp == 0


def test_best_threshold_between_neighbouring_floats_keeps_its_predictions():
    high = 0.5
    low = float(np.nextafter(high, 0.0))  # no float lies between these two
    threshold, accuracy = metrics.best_threshold([1, 0], [high, low])
    assert accuracy == 1.0
    assert metrics.binary_metrics([1, 0], [high, low], threshold).accuracy == 1.0


def test_binary_metrics_hand_computed():
    m = metrics.binary_metrics(LABELS, SCORES, 0.5)
    assert (m.tp, m.fp, m.tn, m.fn) == (3, 2, 1, 0)
    assert m.accuracy == pytest.approx(4 / 6)
    assert m.precision == pytest.approx(3 / 5)
    assert m.recall == 1.0
    assert m.f1 == pytest.approx(0.75)
    assert m.as_dict()["threshold"] == 0.5


def test_binary_metrics_threshold_is_inclusive():
    m = metrics.binary_metrics([1, 0], [0.5, 0.4], 0.5)
    assert (m.tp, m.fp, m.tn, m.fn) == (1, 0, 1, 0)


def test_binary_metrics_zero_division_gives_zero():
    m = metrics.binary_metrics([1, 0, 1], [0.1, 0.2, 0.3], 0.9)
    assert (m.precision, m.recall, m.f1) == (0.0, 0.0, 0.0)
    assert m.accuracy == pytest.approx(1 / 3)


@pytest.mark.parametrize(
    "labels, scores, message",
    [
        ([1, 1], [0.1, 0.2], "need both labels"),
        ([0, 0], [0.1, 0.2], "need both labels"),
        ([1, 0], [0.1], "differ in length"),
        ([], [], "no pairs"),
        ([1, 2], [0.1, 0.2], "0 (different) or 1 (same)"),
        ([1, 0], [0.1, float("nan")], "finite"),
    ],
)
def test_bad_input_is_a_clear_value_error(labels, scores, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        metrics.roc_auc(labels, scores)


pair_sets = st.integers(min_value=2, max_value=40).flatmap(
    lambda n: st.tuples(
        st.lists(st.integers(0, 1), min_size=n, max_size=n).filter(lambda y: 0 < sum(y) < n),
        # Few distinct values, so that ties are common.
        st.lists(st.sampled_from([0.0, 0.1, 0.25, 0.5, 0.5001, 0.75, 1.0]), min_size=n, max_size=n),
    )
)


@settings(max_examples=150, deadline=None)
@given(pair_sets)
def test_auc_matches_its_definitions(case):
    labels, scores = map(np.asarray, case)
    pos, neg = scores[labels == 1], scores[labels == 0]
    wins = (pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()
    auc = metrics.roc_auc(labels, scores)
    assert auc == pytest.approx(wins / (pos.size * neg.size))
    fpr, tpr, _ = metrics.roc_curve(labels, scores)
    trapezoid = float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2))
    assert auc == pytest.approx(trapezoid)


@settings(max_examples=150, deadline=None)
@given(pair_sets)
def test_best_threshold_beats_every_other_threshold(case):
    labels, scores = map(np.asarray, case)
    threshold, accuracy = metrics.best_threshold(labels, scores)
    assert metrics.binary_metrics(labels, scores, threshold).accuracy == pytest.approx(accuracy)
    for t in list(scores) + [np.inf]:
        assert metrics.binary_metrics(labels, scores, t).accuracy <= accuracy + 1e-12


@settings(max_examples=150, deadline=None)
@given(pair_sets)
def test_eer_is_where_the_error_rates_meet(case):
    labels, scores = map(np.asarray, case)
    eer, threshold = metrics.equal_error_rate(labels, scores)
    assert 0.0 <= eer <= 1.0
    # At the returned threshold false accepts have caught up with false rejects, and just
    # above it they had not.
    m = metrics.binary_metrics(labels, scores, threshold)
    fpr, fnr = m.fp / (m.fp + m.tn), m.fn / (m.fn + m.tp)
    assert fpr >= fnr
    assert min(fpr, fnr) - 1e-12 <= eer <= max(fpr, fnr) + 1e-12


# --- N-way one-shot ---------------------------------------------------------------------

CLASSES = np.repeat(["a", "b", "c", "d", "e", "f"], 4)  # 6 classes x 4 images
CLASSES = np.r_[CLASSES, ["g"]]  # one class with a single image: a support, never a query


def test_trials_follow_the_protocol():
    draw = metrics.one_shot_trials(CLASSES, n_way=5, trials=300, seed=3)
    assert draw.supports.shape == (300, 5)
    for query, row, answer in zip(draw.queries, draw.supports, draw.answers):
        row_classes = CLASSES[row]
        assert len(set(row_classes)) == 5  # one support per class
        assert row_classes[answer] == CLASSES[query]  # the answer is the query's class
        assert row[answer] != query  # and a different image of it
        assert CLASSES[query] != "g"  # a one-image class cannot be the query
    assert set(np.unique(draw.answers)) == set(range(5))  # the answer moves around
    assert "g" in set(CLASSES[draw.supports.ravel()])


def test_trials_are_reproducible():
    a = metrics.one_shot_trials(CLASSES, 4, 50, seed=7)
    b = metrics.one_shot_trials(CLASSES, 4, 50, seed=7)
    c = metrics.one_shot_trials(CLASSES, 4, 50, seed=8)
    np.testing.assert_array_equal(a.supports, b.supports)
    np.testing.assert_array_equal(a.queries, b.queries)
    assert not np.array_equal(a.supports, c.supports)


def test_a_perfect_similarity_scores_one():
    calls = []

    def same_class(queries, supports):
        calls.append(supports.shape)
        return (CLASSES[supports] == CLASSES[queries][:, None]).astype(float)

    result = metrics.n_way_one_shot(CLASSES, same_class, n_way=6, trials=100, seed=0)
    assert (result.correct, result.accuracy, result.chance) == (100, 1.0, pytest.approx(1 / 6))
    assert calls == [(100, 6)]  # one vectorised call for all trials


def test_an_inverted_similarity_scores_zero():
    def anti(queries, supports):
        return (CLASSES[supports] != CLASSES[queries][:, None]).astype(float)

    assert metrics.n_way_one_shot(CLASSES, anti, n_way=3, trials=50).correct == 0


def test_a_blind_similarity_scores_chance():
    result = metrics.n_way_one_shot(
        CLASSES, lambda q, s: np.zeros(s.shape), n_way=5, trials=4000, seed=1
    )
    assert 0.17 < result.accuracy < 0.23  # 1/5 +- about 5 standard errors
    assert result.as_dict()["trials"] == 4000


@pytest.mark.parametrize(
    "classes, n_way, trials, message",
    [
        (CLASSES, 8, 10, "8-way needs 8 classes, found 7"),
        (CLASSES, 1, 10, "N >= 2"),
        (CLASSES, 3, 0, "trials must be >= 1"),
        (["a", "b", "c"], 2, 10, "at least two images"),
    ],
)
def test_one_shot_bad_settings(classes, n_way, trials, message):
    with pytest.raises(ValueError, match=message):
        metrics.one_shot_trials(classes, n_way, trials)


def test_similarity_of_the_wrong_shape_is_refused():
    with pytest.raises(ValueError, match="expected"):
        metrics.n_way_one_shot(CLASSES, lambda q, s: np.zeros(len(q)), n_way=3, trials=5)
