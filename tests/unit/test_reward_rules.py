import pytest

from cat_reward.engine.reward_rules import binary_reward, rubric_reward
from cat_reward.engine.types import Criterion, Verdict


def crit(n, weights=None):
    weights = weights or [1.0] * n
    return [Criterion(id=f"c{i}", text=f"criterion {i}", weight=w) for i, w in enumerate(weights)]


def verdicts(mets):
    return [Verdict(criterion_id=f"c{i}", met=m) for i, m in enumerate(mets)]


def test_fraction_met_four_of_five():
    assert rubric_reward(crit(5), verdicts([True, True, True, True, False])) == pytest.approx(0.8)


def test_all_and_none():
    assert rubric_reward(crit(5), verdicts([True] * 5)) == 1.0
    assert rubric_reward(crit(5), verdicts([False] * 5)) == 0.0


def test_missing_verdict_makes_reward_uncomputable_not_zero():
    assert rubric_reward(crit(5), verdicts([True, None, True, True, True])) is None


def test_weights_and_negative_criteria_as_healthbench():
    # points 5, 3, 2 positive (sum 10) and one -4 criterion whose bad behaviour happened.
    criteria = crit(4, [5, 3, 2, -4])
    assert rubric_reward(criteria, verdicts([True, True, False, True])) == pytest.approx((5 + 3 - 4) / 10)
    # Clipped to [0, 1].
    assert rubric_reward(criteria, verdicts([False, False, False, True])) == 0.0


def test_verdicts_must_cover_every_criterion():
    with pytest.raises(ValueError):
        rubric_reward(crit(3), verdicts([True, True]))


def test_binary():
    assert binary_reward(True) == 1.0
    assert binary_reward(False) == 0.0
    assert binary_reward(None) is None
