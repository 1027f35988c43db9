import numpy as np
import pytest

from ml.selftrain import SelfTrainSettings, pseudo_labels


def test_only_confident_scores_most_confident_first():
    p = np.array([0.995, 0.5, 0.001, 0.999, 0.02, 0.0001])
    positions, labels = pseudo_labels(p, SelfTrainSettings(confidence=0.99), spam_share=0.5)
    assert dict(zip(positions.tolist(), labels.tolist())) == {3: 1, 0: 1, 5: 0, 2: 0}
    assert positions.tolist()[:2] == [3, 0]


def test_the_labeled_spam_share_is_kept():
    p = np.array([0.999] * 90 + [0.001] * 10)  # the model calls nearly everything spam
    _, labels = pseudo_labels(p, SelfTrainSettings(), spam_share=0.3)
    assert labels.sum() / len(labels) == pytest.approx(0.3, abs=0.05)
    assert (labels == 0).sum() == 10


def test_a_cap_per_class_and_nothing_when_one_class_is_missing():
    p = np.array([0.999] * 50 + [0.001] * 50)
    _, labels = pseudo_labels(p, SelfTrainSettings(max_per_class=5), spam_share=0.5)
    assert (labels == 1).sum() == 5 and (labels == 0).sum() == 5
    positions, _ = pseudo_labels(np.array([0.999] * 10), SelfTrainSettings(), 0.5)
    assert len(positions) == 0


@pytest.mark.parametrize("bad", [{"rounds": 0}, {"confidence": 0.5}, {"max_per_class": 0}])
def test_settings_are_checked(bad):
    with pytest.raises(ValueError):
        SelfTrainSettings(**bad)


def test_rounds_go_on_while_the_holdout_improves():
    """Models are numbers here: each fit adds one, the holdout F1 peaks at model 2."""
    from ml.selftrain import self_train

    p = np.array([0.999, 0.001, 0.5])
    f1 = {0: 0.80, 1: 0.85, 2: 0.90, 3: 0.88}
    fits = []

    def fit(positions, labels, number):
        fits.append((positions.tolist(), labels.tolist(), number))
        return number

    best, rounds = self_train(0, lambda model: p, fit, f1.__getitem__, 0.5,
                              SelfTrainSettings(rounds=5))
    assert best == 2 and [r["round"] for r in rounds] == [0, 1, 2, 3]
    assert rounds[-1]["stopped"] == "worse on the holdout set"
    assert fits[0] == ([0, 1], [1, 0], 1)


def test_a_round_no_worse_is_kept_and_ends_the_run():
    """A holdout set every model gets right cannot reward reading the new mail: the first
    round's model is kept (no worse), and the run ends there."""
    from ml.selftrain import self_train

    best, rounds = self_train(0, lambda model: np.array([0.999, 0.001]),
                              lambda positions, labels, number: number, lambda model: 1.0,
                              0.5, SelfTrainSettings(rounds=5))
    assert best == 1 and len(rounds) == 2
    assert rounds[-1]["stopped"] == "no better on the holdout set"


def test_the_spam_share_comes_from_the_unlabeled_mail_unless_asked_for_the_labels():
    """Labeled mail 10 % spam, the deployment's half spam: by default the pseudo-labels
    keep the share the starting model's scores estimate there."""
    from ml.selftrain import self_train

    p = np.array([0.999] * 50 + [0.001] * 50)
    for share_from, spam in (("unlabeled", 50), ("labels", 5)):
        best, rounds = self_train(0, lambda model: p, lambda positions, labels, number: number,
                                  lambda model: 1.0, 0.1,
                                  SelfTrainSettings(rounds=1, share_from=share_from))
        assert rounds[1]["pseudo_spam"] == spam, share_from
    assert rounds[0]["spam_share"] == 0.1
    with pytest.raises(ValueError):
        SelfTrainSettings(share_from="guess")
