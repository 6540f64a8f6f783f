"""The cost benchmark's bookkeeping: fair interleaving, paired ratios and honest verdicts (nothing is timed here)."""
import torch

from bench import cost


def test_interleaved_rounds_rotate_so_every_variant_runs_in_every_place():
    order = []
    calls = {name: (lambda name=name: order.append(name)) for name in "abc"}
    times = cost.interleaved_times(calls, repeats=3, device=torch.device("cpu"))
    assert [order[i:i + 3] for i in range(0, 12, 3)] == [list("abc"), list("bca"), list("cab"), list("abc")]
    assert {name: len(values) for name, values in times.items()} == {"a": 3, "b": 3, "c": 3}  # warm-up dropped


def test_ratios_are_paired_per_round_so_a_slow_round_slows_both_alike():
    times = {"unpatched": [1.0, 3.0, 1.0, 1.0, 1.0], "patched": [1.01, 3.03, 1.01, 1.01, 1.01]}
    summary = cost.summarize(times)["patched"]
    assert abs(summary["ratio"] - 1.01) < 1e-12
    assert all(abs(bound - 1.01) < 1e-12 for bound in summary["ratio_iqr"])


def test_a_time_ratio_holds_only_when_its_whole_spread_is_within_the_target():
    assert cost.verdict({"ratio": 1.001, "ratio_iqr": [0.999, 1.004]}, "ratio", 1.005) == "holds"
    assert cost.verdict({"ratio": 1.001, "ratio_iqr": [0.99, 1.02]}, "ratio", 1.005) == "not shown (noise)"


def test_direct_figures_over_their_limit_are_missed():
    assert cost.verdict({"in_patch_share": 0.006}, "in_patch_share", 0.005) == "missed"
    assert cost.verdict({"peak_delta_skips": 1.0}, "peak_delta_skips", 1.0) == "holds"
    assert cost.verdict({"python_us_per_block": 25.0}, "python_us_per_block", 20.0) == "missed"


def test_the_target_table_lists_every_target_of_the_variants_a_run_has():
    figures = {"ratio": 1.0, "ratio_iqr": [0.99, 1.01], "in_patch_share": 0.001, "peak_delta_skips": 0.0,
               "python_us_per_block": 2.0}
    run = {"model": "SD1.5", "host": "ComfyUI", "variants": {"skip active": figures, "skip outside range": figures}}
    rows = cost.target_table(cost.target_rows([run])).splitlines()[2:]
    expected = [t for t in cost.TARGETS if t[0] in run["variants"]]
    assert len(rows) == len(expected) == 6
    assert [row.split(" | ")[1] for row in rows] == [name for name, _, _ in expected]
