"""Image input pipelines: random-access sources and a checkpointable grain loader.

Sources (anything with `__len__` and `__getitem__(i) -> {'image', 'label'}`):
  * `open_source(name, split, data_dir)`: a TFDS dataset prepared as ArrayRecord, read with
    `tfds.data_source` (no TensorFlow at run time; only the one-off `tfds build` needs it).
  * `ImageFolderSource(root, image_size)`: `root/<class_name>/*.{png,jpg,jpeg}`.
  * `cl_features.data.photos.PhotoCropsSource`: crops of the photographs shipped with scikit-image.

`make_loader(source, ...)` turns a source into a `grain.DataLoader` yielding
`{'image': uint8 [per_process_batch, H, W, 3], 'label': int32 [per_process_batch]}`.

Sharding: every process walks the same globally shuffled index stream and takes every
`process_count`-th element starting at `process_index`. Hence, with `worker_count=0`, row `j` of
process `p`'s batch `b` is row `j * process_count + p` of the single-process global batch `b`: the
data a step sees does not depend on how many processes share it.

Checkpointing the iterator (grain 0.2.x):
    it = iter(loader)
    ...
    state: bytes = it.get_state()   # JSON; store it next to the model checkpoint
    it = iter(loader)               # a loader built with the same arguments
    it.set_state(state)             # continues with exactly the batches that would have followed
With orbax (`import grain.python`), save `grain.python.PyGrainCheckpointSave(it)` / restore
`grain.python.PyGrainCheckpointRestore(it)` as one item of `ocp.args.Composite`.
"""

from __future__ import annotations

import dataclasses
import io
import os
import pathlib
from collections.abc import Mapping
from typing import Any, Protocol

import grain
import numpy as np
from absl import flags
from PIL import Image, ImageOps

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg")


class RandomAccessSource(Protocol):
    """What `make_loader` reads: `len(source)` records, `source[i] -> {'image', 'label', ...}`."""

    def __len__(self) -> int: ...

    def __getitem__(self, index: int) -> Mapping[str, Any]: ...


# --------------------------------------------------------------------------------------------
# Images


def _check_positive_int(value: Any, field: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{field} must be a positive int, got {value!r}")
    return int(value)


def to_rgb(image: Any) -> np.ndarray:
    """Image in any common layout -> uint8 [H, W, 3].

    Accepts encoded bytes (PNG/JPEG), uint8 [H, W], [H, W, 1] (grey, repeated to 3 channels),
    [H, W, 3], or [H, W, 4] (alpha dropped).
    """
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
    """Image -> uint8 [size, size, 3]: the largest centred square, resized (bilinear, antialiased).

    `size=None` only fixes the channels (`to_rgb`). An image already [size, size] is returned
    unresampled.
    """
    rgb = to_rgb(image)
    if size is None or rgb.shape[:2] == (size, size):
        return rgb
    pil = Image.fromarray(np.ascontiguousarray(rgb))
    return np.asarray(ImageOps.fit(pil, (size, size), method=Image.Resampling.BILINEAR))


# --------------------------------------------------------------------------------------------
# TFDS sources


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
    """TFDS dataset `name` -> random-access source of its `split` (ArrayRecord, no TensorFlow).

    Records are dicts of NumPy values (for image datasets: 'image' uint8 [H, W, C], 'label').
    Nothing is downloaded: a dataset that is not prepared raises FileNotFoundError naming the
    directory searched and the `tfds build` command that prepares it.
    """
    import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top

    data_dir = resolve_data_dir(data_dir)
    try:
        return tfds.data_source(name, split=split, data_dir=data_dir, download=False)
    except tfds.core.registered.DatasetNotFoundError:
        raise ValueError(f"name={name!r} is not a registered TFDS dataset (see tfds.list_builders())") from None
    except Exception:
        builder = _builder(name, data_dir)
        if not builder.is_prepared():
            raise _not_prepared_error(name, data_dir) from None
        formats = {f.value for f in builder.info.available_file_formats()}
        if "array_record" not in formats:
            raise _not_prepared_error(name, data_dir, f"found only {sorted(formats)} at {builder.data_dir}") from None
        raise


@dataclasses.dataclass(frozen=True)
class ImageDatasetInfo:
    """Metadata of a prepared TFDS image dataset (read from its dataset_info.json)."""

    name: str
    num_classes: int
    image_shape: tuple[int | None, ...]  # [H, W, C]; None where sizes vary
    split_sizes: dict[str, int]


def dataset_info(name: str, data_dir: str | os.PathLike | None = None) -> ImageDatasetInfo:
    """Classes, image shape and split sizes of prepared dataset `name` (no records are read)."""
    data_dir = resolve_data_dir(data_dir)
    builder = _builder(name, data_dir)
    if not builder.is_prepared():
        raise _not_prepared_error(name, data_dir)
    info = builder.info
    return ImageDatasetInfo(
        name=name,
        num_classes=int(info.features["label"].num_classes),
        image_shape=tuple(info.features["image"].shape),
        split_sizes={k: int(v.num_examples) for k, v in info.splits.items()},
    )


# --------------------------------------------------------------------------------------------
# Image folders


class ImageFolderSource:
    """`root/<class_name>/*.{png,jpg,jpeg}` -> records {'image': uint8 [S, S, 3], 'label': int}.

    Classes are the sorted sub-directory names (label = position); files are sorted within a
    class. Every image is centre-cropped and resized to `image_size` so that batches stack.
    """

    def __init__(self, root: str | os.PathLike, image_size: int):
        self.root = pathlib.Path(root)
        self.image_size = _check_positive_int(image_size, "image_size")
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


# --------------------------------------------------------------------------------------------
# Loader


class _ImageLabel(grain.transforms.Map):
    """Record -> {'image': uint8 [S, S, 3], 'label': int32 []}; drops every other field."""

    def __init__(self, image_size: int | None):
        self.image_size = image_size

    def map(self, element: Mapping[str, Any]) -> dict[str, np.ndarray]:
        return {
            "image": fit_image(element["image"], self.image_size),
            "label": np.asarray(element["label"], dtype=np.int32),
        }


def shuffle_seed(seed: int) -> int:
    """User seed -> grain shuffle seed (uint32).

    grain shuffles epoch e with seed `s + e`, so raw seeds s and s+1 would share epochs; hashing
    the seed first keeps runs with neighbouring seeds unrelated.
    """
    return int(np.random.SeedSequence(seed).generate_state(1, dtype=np.uint32)[0])


def make_loader(
    source: RandomAccessSource,
    *,
    global_batch_size: int,
    seed: int,
    shuffle: bool = True,
    num_epochs: int | None = None,
    image_size: int | None = None,
    process_index: int | None = None,
    process_count: int | None = None,
    worker_count: int = 0,
    drop_remainder: bool = True,
) -> grain.DataLoader:
    """Source -> grain DataLoader of {'image': uint8 [B, S, S, 3], 'label': int32 [B]}.

    B = global_batch_size // process_count (must divide). `process_index`/`process_count` default
    to this JAX process (`grain.sharding.ShardByJaxProcess`); pass both to simulate others.
    Same seed -> same batches; each epoch is shuffled differently. `num_epochs=None` repeats
    forever. `image_size=None` keeps the records' size (they must all agree to batch).
    `worker_count > 0` decodes in that many child processes: still deterministic, but the batches
    are then built per worker, so they differ from `worker_count=0` ones (1 worker gives the same
    ones); the caller's main module needs an `if __name__ == '__main__':` guard (spawned workers).
    See the module docstring for sharding and iterator checkpoints.
    """
    global_batch_size = _check_positive_int(global_batch_size, "global_batch_size")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    if num_epochs is not None:
        num_epochs = _check_positive_int(num_epochs, "num_epochs")
    if image_size is not None:
        image_size = _check_positive_int(image_size, "image_size")
    if isinstance(worker_count, bool) or not isinstance(worker_count, int) or worker_count < 0:
        raise ValueError(f"worker_count must be an int >= 0, got {worker_count!r}")
    if (process_index is None) != (process_count is None):
        raise ValueError(
            "process_index and process_count must be given together (or both None for the "
            f"JAX process), got process_index={process_index!r}, process_count={process_count!r}"
        )
    if process_count is None:
        shard_options = grain.sharding.ShardByJaxProcess(drop_remainder=True)
    else:
        process_count = _check_positive_int(process_count, "process_count")
        if not isinstance(process_index, (int, np.integer)) or not 0 <= process_index < process_count:
            raise ValueError(f"process_index must be an int in [0, {process_count}), got {process_index!r}")
        shard_options = grain.sharding.ShardOptions(
            shard_index=int(process_index), shard_count=process_count, drop_remainder=True
        )
    process_count = shard_options.shard_count
    if global_batch_size % process_count:
        raise ValueError(f"global_batch_size={global_batch_size} must be divisible by process_count={process_count}")
    batch_size = global_batch_size // process_count
    if worker_count and not flags.FLAGS.is_parsed():
        # grain's worker processes read an absl flag; outside `app.run` nothing parsed them.
        flags.FLAGS.mark_as_parsed()
    num_records = len(source)
    if num_records < 1:
        raise ValueError("source is empty")
    if num_epochs is not None and drop_remainder:
        per_process = num_records * num_epochs // process_count
        if per_process < batch_size:
            raise ValueError(
                f"{num_records} records x num_epochs={num_epochs} give {per_process} per process, "
                f"fewer than one batch of {batch_size} (global_batch_size={global_batch_size}); "
                "lower global_batch_size, raise num_epochs or set drop_remainder=False"
            )
    # The sampler is not sharded: the loader takes every process_count-th global index.
    sampler = grain.samplers.IndexSampler(
        num_records=num_records,
        shard_options=grain.sharding.NoSharding(),
        shuffle=shuffle,
        num_epochs=num_epochs,
        seed=shuffle_seed(int(seed)),
    )
    return grain.DataLoader(
        data_source=source,
        sampler=sampler,
        operations=[
            _ImageLabel(image_size),
            grain.transforms.Batch(batch_size=batch_size, drop_remainder=drop_remainder),
        ],
        worker_count=worker_count,
        shard_options=shard_options,
    )
