"""A small digit classifier whose penultimate features give the lab's Fréchet distance (like FID's Inception).

    .venv/bin/python -m skip_tuning_lab.classifier   # trains it and writes skip_tuning_lab/digits_classifier.safetensors
"""
import argparse
import json
from pathlib import Path

import torch
from torch import nn

from .digits import load_digits_16

REPO = Path(__file__).resolve().parents[1]
WEIGHTS = Path(__file__).resolve().parent / "digits_classifier.safetensors"
FEATURES = 64


class DigitClassifier(nn.Module):
    """Two conv stages and a 64-wide feature layer over 16x16 grayscale digits in [-1, 1]."""

    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(1, 32, 3, padding=1), nn.SiLU(), nn.Conv2d(32, 32, 3, padding=1), nn.SiLU(), nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, padding=1), nn.SiLU(), nn.MaxPool2d(2), nn.Flatten(),
            nn.Linear(64 * 16, FEATURES), nn.SiLU(),
        )
        self.head = nn.Linear(FEATURES, 10)

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """[N, 1 or 3, 16, 16] images in [-1, 1] -> [N, 64] features (RGB is averaged to gray)."""
        return self.body(images.mean(dim=1, keepdim=True))

    def forward(self, images):
        return self.head(self.features(images))


def load_classifier() -> DigitClassifier:
    """The committed classifier, in eval mode."""
    from safetensors.torch import load_file

    model = DigitClassifier()
    model.load_state_dict(load_file(str(WEIGHTS)))
    return model.eval()


def train(epochs: int, seed: int) -> dict:
    """Train on the train split with small random shifts; report held-out accuracy."""
    from safetensors.torch import save_file

    torch.manual_seed(seed)
    images, labels = load_digits_16("train")
    test_images, test_labels = load_digits_16("held_out")
    model = DigitClassifier()
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-3)
    generator = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        for index in torch.randperm(len(images), generator=generator).split(64):
            shift = tuple(torch.randint(-1, 2, (2,), generator=generator).tolist())
            batch = torch.roll(images[index], shifts=shift, dims=(2, 3))
            loss = nn.functional.cross_entropy(model(batch), labels[index])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    model.eval()
    with torch.no_grad():
        accuracy = (model(test_images).argmax(1) == test_labels).float().mean().item()
    WEIGHTS.parent.mkdir(parents=True, exist_ok=True)
    save_file(model.state_dict(), str(WEIGHTS), metadata={"epochs": str(epochs), "seed": str(seed),
                                                          "held_out_accuracy": f"{accuracy:.4f}"})
    return {"held_out_accuracy": round(accuracy, 4), "epochs": epochs, "out": str(WEIGHTS)}


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(1)
    print(json.dumps(train(args.epochs, args.seed)))


if __name__ == "__main__":
    main()
