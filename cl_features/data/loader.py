"""A checkpointable grain loader over any image source (`cl_features.data.image_sources`).

Every process walks the same globally shuffled index stream and takes every `process_count`-th element, so with
`worker_count=0` row j of process p's batch is row `j * process_count + p` of the single-process global batch.
The iterator's `get_state()` / `set_state()` are checkpointed next to the model (`cl_features.train.checkpoint`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import grain
import numpy as np
from absl import flags

from cl_features.data.image_sources import fit_image


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

    grain shuffles epoch e with seed `s + e`, so raw seeds s and s+1 would share epochs; hashing the seed first
    keeps runs with neighbouring seeds unrelated.
    """
    return int(np.random.SeedSequence(seed).generate_state(1, dtype=np.uint32)[0])


def make_loader(
    source,
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

    B = global_batch_size // process_count (must divide). `process_index`/`process_count` default to this JAX
    process (`grain.sharding.ShardByJaxProcess`); pass both to simulate others. Same seed -> same batches; each
    epoch is shuffled differently. `num_epochs=None` repeats forever. `image_size=None` keeps the records' size
    (they must all agree to batch). `worker_count > 0` decodes in that many child processes: still
    deterministic, but the batches are then built per worker, so they differ from `worker_count=0` ones (1
    worker gives the same ones); the caller's main module needs an `if __name__ == '__main__':` guard.
    """
    if (process_index is None) != (process_count is None):
        raise ValueError(
            "process_index and process_count must be given together (or both None for the JAX process), got "
            f"process_index={process_index!r}, process_count={process_count!r}"
        )
    if process_count is None:
        shard_options = grain.sharding.ShardByJaxProcess(drop_remainder=True)
    else:
        if not 0 <= process_index < process_count:
            raise ValueError(f"process_index must be an int in [0, {process_count}), got {process_index!r}")
        shard_options = grain.sharding.ShardOptions(
            shard_index=int(process_index), shard_count=int(process_count), drop_remainder=True
        )
    count = shard_options.shard_count
    if global_batch_size < 1 or global_batch_size % count:
        raise ValueError(f"global_batch_size={global_batch_size} must be a positive multiple of process_count={count}")
    batch_size = global_batch_size // count
    if worker_count and not flags.FLAGS.is_parsed():
        # grain's worker processes read an absl flag; outside `app.run` nothing parsed them.
        flags.FLAGS.mark_as_parsed()
    num_records = len(source)
    if num_epochs is not None and drop_remainder and num_records * num_epochs // count < batch_size:
        raise ValueError(
            f"{num_records} records x num_epochs={num_epochs} give {num_records * num_epochs // count} per process, "
            f"fewer than one batch of {batch_size} (global_batch_size={global_batch_size}); lower "
            "global_batch_size, raise num_epochs or set drop_remainder=False"
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
