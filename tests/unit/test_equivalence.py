"""math-verify through the worker pool: real parsing and verification, real processes."""

import pytest

from cat_reward.backends.math_verify_pool import MathVerifyPool
from cat_reward.engine.answer_extraction import extract_answer

pytestmark = pytest.mark.anyio

SLOW = "2^{2^{2^{2^{2^{2}}}}}"  # sympy tries to evaluate this tower and never finishes


@pytest.fixture
async def pool():
    p = MathVerifyPool(workers=2, timeout_s=2)
    yield p
    await p.close()


@pytest.mark.parametrize(
    ("reference", "candidate", "expected"),
    [
        ("\\frac{1}{2}", "0.5", True),
        ("2", "2.0", True),
        ("x+1", "1+x", True),
        ("\\{1,2\\}", "\\{2,1\\}", True),
        ("\\frac{1}{2}", "0.6", False),
        ("5", "6", False),
    ],
)
async def test_equivalence(pool, reference, candidate, expected):
    result = await pool.check(reference, candidate)
    assert result.error is None
    assert result.equivalent is expected


async def test_boxed_two_equals_two_point_zero(pool):
    reference, _ = extract_answer("so the result is \\boxed{2}")
    candidate, _ = extract_answer("which gives \\boxed{2.0}")
    assert (await pool.check(reference, candidate)).equivalent is True


async def test_unparseable_reference_is_an_error_not_a_mismatch(pool):
    result = await pool.check("", "5")
    assert result.equivalent is None
    assert result.error == "unparseable_reference"


async def test_slow_check_times_out_explicitly(pool):
    # math-verify alone would return False here after its timeout: silently wrong.
    result = await pool.check(SLOW, "3")
    assert result.equivalent is None
    assert result.error == "timeout"
    assert (await pool.check("\\frac{1}{2}", "0.5")).equivalent is True


async def test_overrunning_worker_is_killed_and_replaced():
    pool = MathVerifyPool(workers=1, timeout_s=30, deadline_s=1.0)
    try:
        result = await pool.check(SLOW, "3")
        assert (result.equivalent, result.error) == (None, "timeout")
        assert pool.timeouts == 1
        # The replacement worker answers the next check.
        assert (await pool.check("2", "2.0")).equivalent is True
    finally:
        await pool.close()
