"""The train and test splits of an image experiment (config.data), as random-access sources."""

from __future__ import annotations

import dataclasses
from typing import Any

import ml_collections

from cl_features.config_checks import at_least, check, is_num, one_of
from cl_features.data import image_sources, photos

SOURCES = ("tfds", "folder", "photos")
# The fields each source needs besides data.image_size, and what they hold.
_SOURCE_FIELDS = {
    "tfds": {"name": "a TFDS dataset name", "train_split": "a split name", "test_split": "a split name"},
    "folder": {"folder_train": "a directory of class sub-directories", "folder_test": "the test directory"},
    "photos": {},
}


def check_fields(c: ml_collections.ConfigDict) -> None:
    d = c.data
    one_of(c, "data.source", SOURCES)
    for field, allowed in _SOURCE_FIELDS[d.source].items():
        check(c, f"data.{field}", lambda v: isinstance(v, str) and bool(v), allowed)
    if d.source == "photos":
        at_least(c, 1, "data.photos_crops_per_image", "data.photos_max_zoom")
    at_least(c, 1, "data.image_size")
    at_least(c, 0, "data.worker_count")
    check(c, "data.num_classes", lambda v: v is None or v >= 2, "None (from the dataset) or an int >= 2")
    three = lambda v: v is None or (len(v) == 3 and all(is_num(x) for x in v))  # noqa: E731
    check(c, "data.mean", three, "None or 3 numbers (per-channel mean of [0, 1] pixels)")
    check(c, "data.std", lambda v: three(v) and (v is None or min(v) > 0), "None or 3 numbers > 0")
    check(c, "data.std", lambda v: (v is None) == (d.mean is None), "set together with data.mean")


@dataclasses.dataclass
class ImageData:
    train: Any  # random-access source of the train split
    test: Any
    num_classes: int


def open_split(d: ml_collections.ConfigDict, split: str, seed: int, *, photos_crops_per_image: int | None = None):
    """One split of the images `config.data` names, as a random-access source of {'image', 'label'} records.

    split: a TFDS split name (source tfds), or 'train' / 'test' (folder: data.folder_train / data.folder_test;
    photos: crops of the photos' left / right halves). Missing data: one-line FileNotFoundError.
    """
    if d.source == "tfds":
        return image_sources.open_source(d.name, split, d.data_dir)
    if d.source == "folder":
        return image_sources.ImageFolderSource(d.folder_train if split == "train" else d.folder_test, d.image_size)
    per = photos_crops_per_image or d.photos_crops_per_image
    return photos.PhotoCropsSource(
        split, size=d.image_size, crops_per_image=per, seed=seed, max_zoom=float(d.photos_max_zoom)
    )


def class_names(d: ml_collections.ConfigDict, source) -> list[str]:
    """The class names of a split opened by `open_split` (TFDS: the label feature's names)."""
    if hasattr(source, "class_names"):
        return list(source.class_names)
    return [str(n) for n in image_sources.dataset_info(d.name, d.data_dir).features["label"].names]


def open_data(c: ml_collections.ConfigDict) -> ImageData:
    """The train and test sources named by `config.data` (missing TFDS data: one-line FileNotFoundError)."""
    d = c.data
    tfds = d.source == "tfds"
    train = open_split(d, d.train_split if tfds else "train", c.seed)
    test = open_split(d, d.test_split if tfds else "test", c.seed)
    num_classes = d.num_classes
    if tfds and num_classes is None:
        try:
            num_classes = int(train.dataset_info.features["label"].num_classes)
        except (AttributeError, KeyError) as e:
            raise ValueError(
                f"config.data.num_classes must be set: {d.name!r} has no label classes ({type(e).__name__})"
            ) from None
    elif d.source == "folder" and test.class_names != train.class_names:
        raise ValueError(
            f"config.data.folder_test must have the class directories of data.folder_train "
            f"{train.class_names}, got {test.class_names}"
        )
    num_classes = num_classes or len(train.class_names)
    if len(train) < c.train.batch_size:
        raise ValueError(f"config.train.batch_size={c.train.batch_size} exceeds the {len(train)} train examples")
    return ImageData(train, test, int(num_classes))
