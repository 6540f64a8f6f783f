"""The host-free math: the paper's ramp, the parsers, range resolution at sampling time, chained factors."""
import math

import pytest

from skip_tuning_core import (SkipPlan, SkipRange, SkipTuningError, make_ranges, parse_numbers, parse_ranges,
                              parse_rho_list, rho_per_block)
from skip_tuning_core.patcher import SkipTuner, block_factors


def test_ramp_matches_the_formula_for_sd1_and_sdxl():
    for n in (12, 9):
        rhos = rho_per_block(n, 1.0, 0.7)
        assert rhos[0] == 0.7 and rhos[-1] == 1.0
        for j, rho in enumerate(rhos):
            assert math.isclose(rho, 0.7 + 0.3 * j / (n - 1))
    assert rho_per_block(1, 1.0, 0.6) == [0.6]
    assert rho_per_block(3, 1.2, 1.5) == pytest.approx([1.5, 1.35, 1.2])


def test_rho_list_is_deepest_first_and_length_checked():
    assert parse_rho_list("0.5, 0.6 0.7", 3) == [0.5, 0.6, 0.7]
    with pytest.raises(SkipTuningError, match="has 2 values but this U-Net has 3"):
        parse_rho_list("0.5, 0.6", 3)


def test_range_lines_bare_ramp_and_list():
    ranges = parse_ranges("0-0.3  # early\n\n0.3-0.6: 1.0, 0.5\n0.6-1: 0.9 0.8 0.7", 3, [0.1, 0.2, 0.3])
    assert ranges == [SkipRange((0.1, 0.2, 0.3), 0.0, 0.3), SkipRange((0.5, 0.75, 1.0), 0.3, 0.6),
                      SkipRange((0.9, 0.8, 0.7), 0.6, 1.0)]


def test_plan_first_listed_range_wins_and_outside_is_unscaled():
    plan = SkipPlan([SkipRange((0.5, 0.5), 0.0, 0.5), SkipRange((0.8, 0.8), 0.25, 1.0)], 2,
                    lambda p: 10.0 * (1 - p))
    assert plan.rhos_at(10.0) == (0.5, 0.5)
    assert plan.rhos_at(6.0) == (0.5, 0.5)  # in both: the first wins
    assert plan.rhos_at(4.0) == (0.8, 0.8)
    assert SkipPlan([SkipRange((0.5, 0.5), 0.2, 0.4)], 2, lambda p: 10.0 * (1 - p)).rhos_at(9.0) is None


def test_range_bounds_have_a_relative_tolerance():
    plan = SkipPlan([SkipRange((0.5,), 0.5, 0.5)], 1, lambda p: 5.0)
    assert plan.rhos_at(5.0 * (1 + 5e-5)) == (0.5,)
    assert plan.rhos_at(5.0 * (1 + 5e-4)) is None


def test_identity_plan_and_all_ones_range_claims_its_steps():
    assert SkipPlan(make_ranges(4, 1.0, 1.0), 4, lambda p: 1 - p).is_identity
    plan = SkipPlan([SkipRange((1.0, 1.0), 0.0, 0.5), SkipRange((0.5, 0.5), 0.0, 1.0)], 2, lambda p: 1 - p)
    assert plan.rhos_at(0.9) is None and plan.rhos_at(0.2) == (0.5, 0.5)


class Schedule:
    """A noise schedule with `percent_to_sigma`, counting how often it is asked."""

    def __init__(self, top):
        self.top, self.asked = top, 0

    def percent_to_sigma(self, percent):
        self.asked += 1
        return self.top * (1 - percent)


def test_tuner_resolves_ranges_on_the_schedule_it_is_sampled_with():
    """Percents become sigmas of the schedule handed in at sampling time, once per schedule."""
    tuner = SkipTuner(make_ranges(3, 1.0, 0.5, 0.0, 0.5), 3)
    small, large = Schedule(10.0), Schedule(100.0)
    assert tuner.rhos_at(small, 6.0) == (0.5, 0.75, 1.0)
    assert tuner.rhos_at(small, 4.0) is None
    assert small.asked == 2  # start and end, resolved once for both calls
    assert tuner.rhos_at(large, 60.0) == (0.5, 0.75, 1.0)
    assert tuner.rhos_at(large, 6.0) is None


def test_chained_tuners_multiply():
    schedule = Schedule(10.0)
    tuners = (SkipTuner(make_ranges(2, 1.0, 0.5), 2), SkipTuner(make_ranges(2, 0.5, 0.5, 0.0, 0.5), 2))
    assert block_factors(tuners, schedule, 8.0) == (0.25, 0.5)
    assert block_factors(tuners, schedule, 2.0) == (0.5, 1.0)
    assert block_factors(tuners[1:], schedule, 2.0) is None


@pytest.mark.parametrize("call,match", [
    (lambda: rho_per_block(0, 1.0, 0.8), "num_blocks"),
    (lambda: rho_per_block(3, True, 0.8), "rho_top"),
    (lambda: make_ranges(3, start_percent=0.6, end_percent=0.4), "start_percent"),
    (lambda: parse_ranges("0.2-0.1", 3, [1, 1, 1]), "ranges line 1"),
    (lambda: parse_ranges(5, 3, [1, 1, 1]), "ranges must be text"),
])
def test_bad_core_input_names_the_field(call, match):
    with pytest.raises(SkipTuningError, match=match):
        call()


@pytest.mark.parametrize("text,numbers", [("1.0,0.9, 0.8", [1.0, 0.9, 0.8]), ("1,1,1, 0.8", [1.0, 1.0, 1.0, 0.8]),
                                          ("0.8 0.9", [0.8, 0.9])])
def test_lists_with_commas_between_numbers_still_parse(text, numbers):
    assert parse_numbers(text, "values") == numbers


@pytest.mark.parametrize("text", ["1,0 0,8", "1,0, 0,9, 0,8", "0,5 1"])
def test_a_decimal_comma_is_refused_with_the_fix(text):
    with pytest.raises(SkipTuningError, match=r"values: .* write decimals with a point \(0.2, not 0,2\)"):
        parse_numbers(text, "values")
