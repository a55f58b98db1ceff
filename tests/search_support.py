"""A model without TensorFlow or onnxruntime for the search tests: a :class:`Scorer`
whose tower looks features up by file name and whose head is a small numpy network
shaped like a trained Siamese head (L1 distance, a ReLU layer, a sigmoid), and entries
clustered as tower features are (non-negative, in classes)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from dsxsd.inference import Scorer


class TableScorer(Scorer):
    """``embed_batch`` returns the row of ``table`` named by each file's stem
    (``q17.png`` -> ``table[17]``); the head decreases with every feature's distance,
    at its own rate per feature, as a trained one does: no metric."""

    threshold = None
    resize = "stretch"
    image_size = 32

    def __init__(self, table: np.ndarray, path: Path, seed: int = 0, hidden: int = 32) -> None:
        rng = np.random.default_rng(seed)
        self.table = np.asarray(table, dtype=np.float32)
        self.feature_dim = self.table.shape[1]
        self.path = Path(path)
        self.kernel = rng.uniform(0.0, 2.0, (self.feature_dim, hidden)).astype(np.float32) / self.feature_dim
        self.bias = rng.uniform(0.5, 1.5, hidden).astype(np.float32)
        self.out = rng.uniform(0.5, 1.5, hidden).astype(np.float32)
        self.calls = 0  # head calls, to tell a re-ranking from a full scan

    def embed_batch(self, paths: list[str]) -> np.ndarray:
        return self.table[[int(Path(p).stem[1:]) for p in paths]]

    def score_batch(self, left: np.ndarray, right: np.ndarray) -> np.ndarray:
        self.calls += len(left)
        hidden = np.maximum(self.bias - np.abs(left - right) @ self.kernel, 0.0)
        return 1.0 / (1.0 + np.exp(-(hidden @ self.out - self.out.sum() / 2)))


def clustered(count: int, dim: int, classes: int, seed: int = 0, spread: float = 0.35):
    """``count`` non-negative feature vectors in ``classes`` clusters, and their classes."""
    rng = np.random.default_rng(seed)
    centres = np.maximum(rng.normal(0.3, 1.0, (classes, dim)), 0.0)
    labels = rng.integers(0, classes, count)
    features = np.maximum(centres[labels] + rng.normal(0.0, spread, (count, dim)), 0.0)
    return features.astype(np.float32), [f"c{label}" for label in labels]


def query_files(folder: Path, count: int, ext: str = ".png") -> list[Path]:
    """Empty files ``q0.png`` ... named for :class:`TableScorer` (which never opens them)."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / f"q{i}{ext}" for i in range(count)]
    for path in paths:
        path.write_bytes(b"")
    return paths
