"""Tests for cl_features.data.image_sources (TFDS/ArrayRecord and folder sources) and data.loader (grain)."""

import io
import json
import sys

import numpy as np
import pytest
import tensorflow_datasets as tfds
from PIL import Image

from cl_features.data import image_sources, loader

# --------------------------------------------------------------------------------------------
# Fixtures


@pytest.fixture
def mock_cifar10():
    """A mocked cifar10 `train` source of 24 random records (AUTO policy: no TF, no metadata)."""
    with tfds.testing.mock_data(num_examples=24):
        yield image_sources.open_source("cifar10", "train", "/nonexistent/ignored/by/mock")


class ClFeaturesTinyGrey(tfds.core.GeneratorBasedBuilder):
    """A real ArrayRecord TFDS dataset written without TensorFlow (raw uint8 tensors)."""

    VERSION = tfds.core.Version("1.0.0")

    def _info(self):
        return tfds.core.DatasetInfo(
            builder=self,
            features=tfds.features.FeaturesDict(
                {
                    "image": tfds.features.Tensor(shape=(8, 8, 1), dtype=np.uint8),
                    "label": tfds.features.ClassLabel(num_classes=3),
                }
            ),
        )

    def _split_generators(self, dl_manager):
        del dl_manager
        return {"train": self._generate_examples(10), "test": self._generate_examples(4)}

    def _generate_examples(self, n):
        rng = np.random.default_rng(n)
        for i in range(n):
            yield i, {"image": rng.integers(0, 256, (8, 8, 1), dtype=np.uint8), "label": i % 3}


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("tfds")
    ClFeaturesTinyGrey(data_dir=str(data_dir), file_format="array_record").download_and_prepare()
    return str(data_dir)


def _images(dl, n):
    it = iter(dl)
    return [next(it) for _ in range(n)]


def _row_ids(batch_images, source):
    """Index in `source` of each image row (records are told apart by their random pixels)."""
    table = {source[i]["image"].tobytes(): i for i in range(len(source))}
    assert len(table) == len(source)
    return [table[row.tobytes()] for row in batch_images]


# --------------------------------------------------------------------------------------------
# Images


def test_fit_image_takes_the_centred_square():
    # [32, 80]: centre square is columns 24..56; green spans 16..64, so even the bilinear
    # filter's support (2 source pixels per side at scale 2) stays green.
    image = np.zeros((32, 80, 3), np.uint8)
    image[:] = (255, 0, 0)
    image[:, 16:64] = (0, 255, 0)
    out = image_sources.fit_image(image, 16)
    assert out.shape == (16, 16, 3) and out.dtype == np.uint8
    np.testing.assert_array_equal(out, np.broadcast_to(np.uint8([0, 255, 0]), (16, 16, 3)))


def test_fit_image_keeps_a_right_sized_image_and_fixes_channels():
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
    np.testing.assert_array_equal(image_sources.fit_image(rgb, 8), rgb)
    grey = rng.integers(0, 256, (8, 8, 1), dtype=np.uint8)
    for g in (grey, grey[:, :, 0]):
        np.testing.assert_array_equal(image_sources.fit_image(g, None), np.repeat(grey, 3, axis=-1))
    rgba = np.concatenate([rgb, np.full((8, 8, 1), 7, np.uint8)], -1)
    np.testing.assert_array_equal(image_sources.to_rgb(rgba), rgb)
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, format="PNG")
    np.testing.assert_array_equal(image_sources.to_rgb(buffer.getvalue()), rgb)
    with pytest.raises(ValueError, match="dtype"):
        image_sources.to_rgb(rgb.astype(np.float32))
    with pytest.raises(ValueError, match="shape"):
        image_sources.to_rgb(np.zeros((4, 4, 2), np.uint8))


# --------------------------------------------------------------------------------------------
# TFDS sources


def test_missing_dataset_names_directory_and_build_command(tmp_path):
    with pytest.raises(FileNotFoundError) as error:
        image_sources.open_source("cifar10", "train", tmp_path)
    message = str(error.value)
    assert "\n" not in message
    assert f"data_dir={tmp_path}" in message
    assert f"`tfds build cifar10 --data_dir={tmp_path} --file_format=array_record`" in message
    with pytest.raises(FileNotFoundError, match="tfds build cifar10"):
        image_sources.dataset_info("cifar10", tmp_path)


def test_missing_dataset_falls_back_to_tfds_data_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("TFDS_DATA_DIR", str(tmp_path))
    assert image_sources.resolve_data_dir(None) == str(tmp_path)
    with pytest.raises(FileNotFoundError, match=f"--data_dir={tmp_path} "):
        image_sources.open_source("cifar10", "test", None)


def test_unknown_dataset_is_a_value_error(tmp_path):
    with pytest.raises(ValueError, match="name='no_such_dataset_xyz'"):
        image_sources.open_source("no_such_dataset_xyz", "train", tmp_path)


def test_prepared_array_record_dataset_reads_without_tensorflow(tiny_dir):
    info = image_sources.dataset_info("cl_features_tiny_grey", tiny_dir)
    assert info.features["label"].num_classes == 3
    assert info.features["image"].shape == (8, 8, 1)
    assert {k: v.num_examples for k, v in info.splits.items()} == {"train": 10, "test": 4}
    source = image_sources.open_source("cl_features_tiny_grey", "test", tiny_dir)
    assert len(source) == 4
    assert len(image_sources.open_source("cl_features_tiny_grey", "train[:50%]", tiny_dir)) == 5
    with pytest.raises(ValueError, match="Unknown split 'validation'"):  # tfds's own error
        image_sources.open_source("cl_features_tiny_grey", "validation", tiny_dir)
    dl = loader.make_loader(
        source, global_batch_size=4, seed=0, shuffle=False, num_epochs=1, image_size=4, process_index=0, process_count=1
    )
    (batch,) = list(dl)
    assert batch["image"].shape == (4, 4, 4, 3) and batch["image"].dtype == np.uint8
    for row in range(4):  # grey -> 3 channels, resized like fit_image
        np.testing.assert_array_equal(batch["image"][row], image_sources.fit_image(source[row]["image"], 4))
    np.testing.assert_array_equal(batch["label"], [int(source[i]["label"]) for i in range(4)])
    assert "tensorflow" not in sys.modules


# --------------------------------------------------------------------------------------------
# Loader on mocked cifar10


def test_loader_shapes_dtypes_and_epochs_are_permutations(mock_cifar10):
    dl = loader.make_loader(mock_cifar10, global_batch_size=8, seed=0, process_index=0, process_count=1)
    batches = _images(dl, 6)  # two epochs of 24
    for b in batches:
        assert b["image"].shape == (8, 32, 32, 3) and b["image"].dtype == np.uint8
        assert b["label"].shape == (8,) and b["label"].dtype == np.int32
    ids = [i for b in batches for i in _row_ids(b["image"], mock_cifar10)]
    epoch0, epoch1 = ids[:24], ids[24:]
    assert sorted(epoch0) == sorted(epoch1) == list(range(24))
    assert epoch0 != epoch1 and epoch0 != list(range(24))
    labels = np.concatenate([b["label"] for b in batches])
    np.testing.assert_array_equal(labels, [int(mock_cifar10[i]["label"]) for i in ids])
    assert "tensorflow" not in sys.modules


def test_loader_is_deterministic_per_seed(mock_cifar10):
    def ids(seed):
        dl = loader.make_loader(mock_cifar10, global_batch_size=8, seed=seed, process_index=0, process_count=1)
        return [i for b in _images(dl, 3) for i in _row_ids(b["image"], mock_cifar10)]

    assert ids(0) == ids(0)
    assert ids(1) != ids(0)
    assert loader.shuffle_seed(1) != loader.shuffle_seed(0) + 1


def test_loader_in_order_resizes_and_respects_epochs(mock_cifar10):
    dl = loader.make_loader(
        mock_cifar10,
        global_batch_size=10,
        seed=0,
        shuffle=False,
        num_epochs=1,
        image_size=16,
        process_index=0,
        process_count=1,
    )
    batches = list(dl)
    assert len(batches) == 2  # 24 // 10, remainder dropped
    for k, b in enumerate(batches):
        assert b["image"].shape == (10, 16, 16, 3)
        for row in range(10):
            expected = image_sources.fit_image(mock_cifar10[10 * k + row]["image"], 16)
            np.testing.assert_array_equal(b["image"][row], expected)
    kept = list(
        loader.make_loader(
            mock_cifar10,
            global_batch_size=10,
            seed=0,
            shuffle=False,
            num_epochs=1,
            process_index=0,
            process_count=1,
            drop_remainder=False,
        )
    )
    assert [len(b["label"]) for b in kept] == [10, 10, 4]


def test_process_shards_are_disjoint_and_make_the_global_batch(mock_cifar10):
    def make_dl(index, count):
        return loader.make_loader(mock_cifar10, global_batch_size=8, seed=3, process_index=index, process_count=count)

    whole = _images(make_dl(0, 1), 5)  # crosses the epoch boundary at 24
    parts = [_images(make_dl(p, 2), 5) for p in range(2)]
    for b in range(5):
        a, c = parts[0][b], parts[1][b]
        assert a["image"].shape == (4, 32, 32, 3) and a["label"].shape == (4,)
        ids_a = _row_ids(a["image"], mock_cifar10)
        ids_c = _row_ids(c["image"], mock_cifar10)
        assert not set(ids_a) & set(ids_c)
        for key in ("image", "label"):  # row j of process p = row 2 j + p of the global batch
            interleaved = np.stack([a[key], c[key]], axis=1).reshape(whole[b][key].shape)
            np.testing.assert_array_equal(interleaved, whole[b][key])


def test_iterator_state_round_trip_mid_epoch(mock_cifar10):
    def make_dl():
        return loader.make_loader(mock_cifar10, global_batch_size=6, seed=7, process_index=1, process_count=2)

    it = iter(make_dl())
    for _ in range(5):  # 5 x 6 = 30 global positions: 6 into the second epoch of 24
        next(it)
    state = it.get_state()
    assert isinstance(state, bytes) and json.loads(state)["worker_count"] == 0
    expected = [next(it) for _ in range(6)]  # runs past the epoch end
    restored = iter(make_dl())
    restored.set_state(state)
    for want in expected:
        got = next(restored)
        np.testing.assert_array_equal(got["image"], want["image"])
        np.testing.assert_array_equal(got["label"], want["label"])


def test_iterator_state_saves_with_orbax(mock_cifar10, tmp_path):
    import grain.python as grain_python  # pylint: disable=g-import-not-at-top
    import orbax.checkpoint as ocp  # pylint: disable=g-import-not-at-top

    def make_dl():
        return loader.make_loader(mock_cifar10, global_batch_size=8, seed=1, process_index=0, process_count=1)

    it = iter(make_dl())
    next(it)
    with ocp.CheckpointManager(tmp_path, item_names=("data",)) as manager:
        manager.save(1, args=ocp.args.Composite(data=grain_python.PyGrainCheckpointSave(it)))
        manager.wait_until_finished()
        expected = [next(it) for _ in range(3)]
        restored = iter(make_dl())
        manager.restore(1, args=ocp.args.Composite(data=grain_python.PyGrainCheckpointRestore(restored)))
    for want in expected:
        np.testing.assert_array_equal(next(restored)["image"], want["image"])


def test_one_worker_process_gives_the_in_process_batches(mock_cifar10):
    def batches(worker_count):
        dl = loader.make_loader(
            mock_cifar10, global_batch_size=8, seed=0, process_index=0, process_count=1, worker_count=worker_count
        )
        return _images(dl, 4)

    for got, want in zip(batches(1), batches(0)):
        np.testing.assert_array_equal(got["image"], want["image"])
        np.testing.assert_array_equal(got["label"], want["label"])


def test_loader_rejects_bad_arguments(mock_cifar10):
    def make(**kwargs):
        args = dict(global_batch_size=8, seed=0, process_index=0, process_count=1) | kwargs
        return loader.make_loader(mock_cifar10, **args)

    with pytest.raises(ValueError, match="global_batch_size=9 must be a positive multiple of process_count=2"):
        make(global_batch_size=9, process_index=0, process_count=2)
    with pytest.raises(ValueError, match="process_index and process_count"):
        make(process_count=None)
    with pytest.raises(ValueError, match=r"process_index must be an int in \[0, 2\)"):
        make(process_index=2, process_count=2)
    with pytest.raises(ValueError, match="global_batch_size=0 must be a positive multiple"):
        make(global_batch_size=0)
    with pytest.raises(ValueError, match="fewer than one batch"):
        make(global_batch_size=32, num_epochs=1)


# --------------------------------------------------------------------------------------------
# Image folders


def _write_folder(root):
    rng = np.random.default_rng(0)
    arrays = {}
    for cls, shapes in (("b_dog", [(12, 20), (16, 16)]), ("a_cat", [(20, 12)])):
        (root / cls).mkdir(parents=True)
        for k, shape in enumerate(shapes):
            array = rng.integers(0, 256, (*shape, 3), dtype=np.uint8)
            Image.fromarray(array).save(root / cls / f"{k}.png")
            arrays[(cls, k)] = array
    Image.fromarray(arrays[("a_cat", 0)]).save(root / "a_cat" / "z.JPG")
    (root / "a_cat" / "notes.txt").write_text("not an image")
    return arrays


def test_image_folder_source_records(tmp_path):
    arrays = _write_folder(tmp_path)
    source = image_sources.ImageFolderSource(tmp_path, image_size=8)
    assert source.class_names == ["a_cat", "b_dog"]
    assert len(source) == 4  # a_cat/0.png, a_cat/z.JPG, b_dog/0.png, b_dog/1.png
    assert [source[i]["label"] for i in range(4)] == [0, 0, 1, 1]
    for i, key in ((0, ("a_cat", 0)), (2, ("b_dog", 0)), (3, ("b_dog", 1))):
        record = source[i]
        assert record["image"].shape == (8, 8, 3) and record["image"].dtype == np.uint8
        np.testing.assert_array_equal(record["image"], image_sources.fit_image(arrays[key], 8))
    dl = loader.make_loader(
        source, global_batch_size=4, seed=0, shuffle=False, num_epochs=1, process_index=0, process_count=1
    )
    (batch,) = list(dl)
    assert batch["image"].shape == (4, 8, 8, 3)
    np.testing.assert_array_equal(batch["label"], [0, 0, 1, 1])


def test_image_folder_source_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="is not a directory"):
        image_sources.ImageFolderSource(tmp_path / "missing", image_size=8)
    with pytest.raises(ValueError, match="no class sub-directories"):
        image_sources.ImageFolderSource(tmp_path, image_size=8)
    (tmp_path / "empty_class").mkdir()
    with pytest.raises(ValueError, match="empty_class.*has no"):
        image_sources.ImageFolderSource(tmp_path, image_size=8)
    with pytest.raises(ValueError, match="image_size"):
        image_sources.ImageFolderSource(tmp_path, image_size=0)
