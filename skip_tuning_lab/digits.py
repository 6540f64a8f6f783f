"""scikit-learn's bundled 8x8 digits (no download) as 16x16 images, split into train and held-out sets."""
import numpy as np
import torch
import torch.nn.functional as F

SIZE = 16
HELD_OUT = 500  # the last digits, never trained on: the reference set of the quality metric
SPLIT_SEED = 0


def load_digits_16(split: str) -> tuple:
    """(images in [-1, 1] of shape [N, 1, 16, 16], labels [N]) of the 'train' or 'held_out' split."""
    from sklearn.datasets import load_digits

    data = load_digits()
    order = np.random.default_rng(SPLIT_SEED).permutation(len(data.target))
    index = {"train": order[:-HELD_OUT], "held_out": order[-HELD_OUT:]}[split]
    images = torch.tensor(data.images[index], dtype=torch.float32)[:, None] / 16.0
    images = F.interpolate(images, size=(SIZE, SIZE), mode="bilinear", align_corners=False)
    return images * 2.0 - 1.0, torch.tensor(data.target[index], dtype=torch.long)
