"""`p.sample` wrapped so that hooks exist only while it runs: they come off when it returns, raises or is
interrupted, and nothing is stored outside `p` (A1111's U-Net hooks, Residual Tuning on Forge)."""

WRAPS, KEY, RUN = "skip_tuning_wraps", "skip_tuning_key", "skip_tuning_run"


def layer(key: str, run, sample):
    def sample_with(*args, **kwargs):
        return run(sample, *args, **kwargs)
    setattr(sample_with, WRAPS, sample)
    setattr(sample_with, KEY, key)
    setattr(sample_with, RUN, run)
    return sample_with


def wrap_sample(p, key: str, run) -> None:
    """`p.sample(...)` becomes `run(sample, ...)`. Loopback, SD upscale and the outpainting scripts run
    process_images on the same `p` again: this key's wrapper from the earlier run is dropped, never wrapped
    again (each run would compound rho); another script's stays."""
    kept, sample = [], p.sample
    while hasattr(sample, WRAPS):
        if getattr(sample, KEY) != key:
            kept.append(sample)
        sample = getattr(sample, WRAPS)
    for outer in reversed(kept):
        sample = layer(getattr(outer, KEY), getattr(outer, RUN), sample)
    p.sample = layer(key, run, sample)
