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


def open_data(c: ml_collections.ConfigDict) -> ImageData:
    """The train and test sources named by `config.data` (missing TFDS data: one-line FileNotFoundError)."""
    d = c.data
    if d.source == "tfds":
        train = image_sources.open_source(d.name, d.train_split, d.data_dir)
        test = image_sources.open_source(d.name, d.test_split, d.data_dir)
        num_classes = d.num_classes
        if num_classes is None:
            try:
                num_classes = int(train.dataset_info.features["label"].num_classes)
            except (AttributeError, KeyError) as e:
                raise ValueError(
                    f"config.data.num_classes must be set: {d.name!r} has no label classes ({type(e).__name__})"
                ) from None
    elif d.source == "folder":
        train = image_sources.ImageFolderSource(d.folder_train, d.image_size)
        test = image_sources.ImageFolderSource(d.folder_test, d.image_size)
        if test.class_names != train.class_names:
            raise ValueError(
                f"config.data.folder_test must have the class directories of data.folder_train "
                f"{train.class_names}, got {test.class_names}"
            )
        num_classes = d.num_classes or len(train.class_names)
    else:
        kw = dict(
            size=d.image_size, crops_per_image=d.photos_crops_per_image, seed=c.seed, max_zoom=float(d.photos_max_zoom)
        )
        train, test = photos.PhotoCropsSource("train", **kw), photos.PhotoCropsSource("test", **kw)
        num_classes = d.num_classes or len(photos.PHOTO_NAMES)
    if len(train) < c.train.batch_size:
        raise ValueError(f"config.train.batch_size={c.train.batch_size} exceeds the {len(train)} train examples")
    return ImageData(train, test, int(num_classes))
