"""A tiny real-photo dataset: random crops of the colour photographs shipped in scikit-image's wheel.

Each photo is one class; train crops come from its left half, test crops from its right half.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import numpy as np
import skimage.data
from PIL import Image

# name -> loader of uint8 [H, W, 3]; the class label is the position in this dict.
_LOADERS: dict[str, Callable[[], np.ndarray]] = {
    "astronaut": skimage.data.astronaut,
    "chelsea": skimage.data.chelsea,
    "coffee": skimage.data.coffee,
    "rocket": skimage.data.rocket,
    "hubble_deep_field": skimage.data.hubble_deep_field,
    "retina": skimage.data.retina,
    "motorcycle_left": lambda: skimage.data.stereo_motorcycle()[0],
    "immunohistochemistry": skimage.data.immunohistochemistry,
}
PHOTO_NAMES: tuple[str, ...] = tuple(_LOADERS)
SPLITS = ("train", "test")


@functools.cache
def load_photo(name: str) -> np.ndarray:
    """Photo `name` (one of PHOTO_NAMES) -> read-only uint8 [H, W, 3]."""
    if name not in _LOADERS:
        raise ValueError(f"name must be one of {PHOTO_NAMES}, got {name!r}")
    photo = np.ascontiguousarray(_LOADERS[name]())
    assert photo.dtype == np.uint8 and photo.ndim == 3 and photo.shape[-1] == 3, photo.shape
    photo.setflags(write=False)
    return photo


def photo_crop_boxes(
    *, size: int = 32, crops_per_image: int = 64, split: str = "train", seed: int = 0, max_zoom: float = 4.0
) -> dict[str, np.ndarray]:
    """Photo name -> crop boxes int64 [crops_per_image, 3] (top, left, side), drawn from
    `default_rng((seed, k, split index))`: sides uniform in [size, min(max_zoom * size, half)], uniform positions."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    boxes = {}
    for k, name in enumerate(PHOTO_NAMES):
        height, width = load_photo(name).shape[:2]
        start, stop = (0, width // 2) if split == "train" else (width // 2, width)  # left / right half
        max_side = min(int(max_zoom * size), height, stop - start)
        if max_side < size:
            raise ValueError(
                f"size={size} does not fit in the {split} half of {name!r} ({height} x {stop - start} pixels)"
            )
        rng = np.random.default_rng((seed, k, SPLITS.index(split)))
        side = rng.integers(size, max_side + 1, size=crops_per_image)
        top = rng.integers(0, height - side + 1)
        left = start + rng.integers(0, stop - start - side + 1)
        boxes[name] = np.stack([top, left, side], axis=1).astype(np.int64)
    return boxes


def _crop_and_resize(photo: np.ndarray, box: np.ndarray, size: int) -> np.ndarray:
    """uint8 [H, W, 3], box (top, left, side) -> uint8 [size, size, 3] (bilinear, antialiased)."""
    top, left, side = (int(v) for v in box)
    crop = Image.fromarray(np.ascontiguousarray(photo[top : top + side, left : left + side]))
    return np.asarray(crop.resize((size, size), Image.Resampling.BILINEAR))


def load_photo_crops(
    *, size: int = 32, crops_per_image: int = 64, split: str = "train", seed: int = 0, max_zoom: float = 4.0
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Crops of every photo -> (images uint8 [N, size, size, 3], labels int32 [N], names), grouped by class."""
    boxes = photo_crop_boxes(size=size, crops_per_image=crops_per_image, split=split, seed=seed, max_zoom=max_zoom)
    images = np.stack([_crop_and_resize(load_photo(name), box, size) for name in PHOTO_NAMES for box in boxes[name]])
    labels = np.repeat(np.arange(len(PHOTO_NAMES), dtype=np.int32), crops_per_image)
    return images, labels, list(PHOTO_NAMES)


class PhotoCropsSource:
    """`load_photo_crops` as a random-access source: source[i] -> {'image', 'label'}."""

    def __init__(
        self, split: str = "train", *, size: int = 32, crops_per_image: int = 64, seed: int = 0, max_zoom: float = 4.0
    ):
        self._args = dict(split=split, size=size, crops_per_image=crops_per_image, seed=seed, max_zoom=max_zoom)
        self.images, self.labels, self.class_names = load_photo_crops(**self._args)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return {"image": self.images[index], "label": self.labels[index]}

    def __repr__(self) -> str:  # grain checks it when restoring an iterator state
        args = ", ".join(f"{k}={v!r}" for k, v in self._args.items())
        return f"PhotoCropsSource({args})"
