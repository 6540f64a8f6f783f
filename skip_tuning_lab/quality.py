"""Sample quality on the digits: Fréchet distance of classifier features (FID's recipe) and confidence."""
import numpy as np
import torch
from scipy import linalg

from .classifier import load_classifier
from .digits import load_digits_16


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """||mu_a - mu_b||^2 + Tr(C_a + C_b - 2 (C_a C_b)^1/2) between two feature sets (Heusel et al., 2017)."""
    mu_a, mu_b = a.mean(0), b.mean(0)
    cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    root, _ = linalg.sqrtm(cov_a @ cov_b, disp=False)
    return float(((mu_a - mu_b) ** 2).sum() + np.trace(cov_a + cov_b - 2.0 * root.real))


class DigitsQuality:
    """Scores generated digits against the held-out split with the committed classifier."""

    def __init__(self):
        self.classifier = load_classifier()
        held_out, _ = load_digits_16("held_out")
        self.reference = self.features(held_out)

    @torch.no_grad()
    def features(self, images: torch.Tensor) -> np.ndarray:
        return self.classifier.features(images.clamp(-1, 1)).double().numpy()

    @torch.no_grad()
    def score(self, images: torch.Tensor) -> dict:
        """images: [N, C, 16, 16] in [-1, 1]. Returns the Fréchet distance and mean top-class confidence."""
        confidence = torch.softmax(self.classifier(images.clamp(-1, 1)), dim=1).max(dim=1).values.mean()
        return {"fd": frechet_distance(self.features(images), self.reference), "confidence": float(confidence)}

    def real_digits(self, count: int, seed: int) -> dict:
        """The score of `count` real training digits drawn with `seed`: the floor a perfect model reaches
        at that sample size."""
        train, _ = load_digits_16("train")
        index = torch.randperm(len(train), generator=torch.Generator().manual_seed(seed))[:count]
        return self.score(train[index])
