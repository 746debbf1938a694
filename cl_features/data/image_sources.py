"""Image sources: random-access datasets of {'image', 'label'} records, one per split.

Sources (anything with `__len__` and `__getitem__(i) -> {'image', 'label'}`):
  * `open_source(name, split, data_dir)`: a TFDS dataset prepared as ArrayRecord, read with
    `tfds.data_source` (no TensorFlow at run time; only the one-off `tfds build` needs it).
  * `ImageFolderSource(root, image_size)`: `root/<class_name>/*.{png,jpg,jpeg}`.
  * `cl_features.data.photos.PhotoCropsSource`: crops of the photographs shipped with scikit-image.
`cl_features.data.loader.make_loader` batches any of them.
"""

from __future__ import annotations

import io
import os
import pathlib
from typing import Any

import numpy as np
from PIL import Image, ImageOps

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg")


def to_rgb(image: Any) -> np.ndarray:
    """Encoded PNG/JPEG bytes or uint8 [H, W], [H, W, 1|3|4] -> uint8 [H, W, 3] (grey repeated, alpha dropped)."""
    if isinstance(image, (bytes, np.bytes_)):
        with Image.open(io.BytesIO(bytes(image))) as pil:
            return np.asarray(pil.convert("RGB"))
    image = np.asarray(image)
    if image.dtype != np.uint8:
        raise ValueError(f"image dtype must be uint8, got {image.dtype}")
    if image.ndim == 2:
        image = image[:, :, None]
    if image.ndim != 3 or image.shape[-1] not in (1, 3, 4):
        raise ValueError(f"image shape must be [H, W], [H, W, 1|3|4], got {image.shape}")
    if image.shape[-1] == 1:
        return np.repeat(image, 3, axis=-1)
    return image[:, :, :3]


def fit_image(image: Any, size: int | None) -> np.ndarray:
    """Image -> uint8 [size, size, 3]: the largest centred square, resized bilinearly (None: `to_rgb` only)."""
    rgb = to_rgb(image)
    if size is None or rgb.shape[:2] == (size, size):
        return rgb
    pil = Image.fromarray(np.ascontiguousarray(rgb))
    return np.asarray(ImageOps.fit(pil, (size, size), method=Image.Resampling.BILINEAR))


def resolve_data_dir(data_dir: str | os.PathLike | None) -> str:
    """`data_dir`, else `$TFDS_DATA_DIR`, else TFDS's default `~/tensorflow_datasets`."""
    if data_dir is None:
        data_dir = os.environ.get("TFDS_DATA_DIR") or os.path.join("~", "tensorflow_datasets")
    return os.path.expanduser(os.fspath(data_dir))


def build_command(name: str, data_dir: str) -> str:
    """The shell command that prepares `name` for `open_source` (needs tensorflow installed)."""
    return f"tfds build {name} --data_dir={data_dir} --file_format=array_record"


def _not_prepared_error(name: str, data_dir: str, found: str = "") -> FileNotFoundError:
    found = f" ({found})" if found else ""
    return FileNotFoundError(
        f"TFDS dataset {name!r} is not prepared as array_record in data_dir={data_dir}{found}; "
        f"prepare it once with `{build_command(name, data_dir)}` "
        "(the build needs tensorflow, reading does not)"
    )


def _builder(name: str, data_dir: str):
    import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top

    try:
        return tfds.builder(name, data_dir=data_dir)
    except tfds.core.registered.DatasetNotFoundError:
        raise ValueError(f"name={name!r} is not a registered TFDS dataset (see tfds.list_builders())") from None


def open_source(name: str, split: str, data_dir: str | os.PathLike | None = None):
    """TFDS dataset `name` -> random-access source of `split` (ArrayRecord records of NumPy values).

    Nothing is downloaded: an unprepared dataset raises FileNotFoundError naming the directory and `tfds build`.
    """
    import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top

    data_dir = resolve_data_dir(data_dir)
    try:
        return tfds.data_source(name, split=split, data_dir=data_dir, download=False)
    except Exception:
        builder = _builder(name, data_dir)  # an unregistered name: ValueError
        if not builder.is_prepared():
            raise _not_prepared_error(name, data_dir) from None
        formats = {f.value for f in builder.info.available_file_formats()}
        if "array_record" not in formats:
            raise _not_prepared_error(name, data_dir, f"found only {sorted(formats)} at {builder.data_dir}") from None
        raise


def dataset_info(name: str, data_dir: str | os.PathLike | None = None):
    """`tfds.core.DatasetInfo` (features, splits) of prepared dataset `name`; no records are read."""
    data_dir = resolve_data_dir(data_dir)
    builder = _builder(name, data_dir)
    if not builder.is_prepared():
        raise _not_prepared_error(name, data_dir)
    return builder.info


class ImageFolderSource:
    """`root/<class_name>/*.{png,jpg,jpeg}` -> {'image': uint8 [image_size, image_size, 3], 'label': int}.

    Labels are positions in the sorted class directory names; files are sorted within a class.
    """

    def __init__(self, root: str | os.PathLike, image_size: int):
        self.root = pathlib.Path(root)
        if isinstance(image_size, bool) or not isinstance(image_size, int | np.integer) or image_size < 1:
            raise ValueError(f"image_size must be a positive int, got {image_size!r}")
        self.image_size = int(image_size)
        if not self.root.is_dir():
            raise FileNotFoundError(f"root={str(self.root)!r} is not a directory")
        class_dirs = sorted(p for p in self.root.iterdir() if p.is_dir())
        if not class_dirs:
            raise ValueError(f"root={str(self.root)!r} has no class sub-directories")
        self.class_names = [p.name for p in class_dirs]
        self._paths: list[pathlib.Path] = []
        self._labels: list[int] = []
        for label, class_dir in enumerate(class_dirs):
            files = sorted(p for p in class_dir.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
            if not files:
                raise ValueError(f"class directory {str(class_dir)!r} has no {'/'.join(IMAGE_EXTENSIONS)} files")
            self._paths += files
            self._labels += [label] * len(files)

    def __len__(self) -> int:
        return len(self._paths)

    def __getitem__(self, index: int) -> dict[str, Any]:
        with Image.open(self._paths[index]) as pil:
            image = np.asarray(pil.convert("RGB"))
        return {"image": fit_image(image, self.image_size), "label": self._labels[index]}

    def __repr__(self) -> str:  # grain checks it when restoring an iterator state
        return f"ImageFolderSource(root={str(self.root)!r}, image_size={self.image_size}, num_records={len(self)})"
