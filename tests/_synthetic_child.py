"""experiments.synthetic's main with an injected fault, for the resume tests (not a test module).

    CLF_FAULT=kill:N python tests/_synthetic_child.py --workdir=... --config.x=...   # SIGKILL itself
    CLF_FAULT=term:N python tests/_synthetic_child.py ...                             # SIGTERM itself

N counts step boundaries (calls of Checkpointer.maybe_save) over all arms of the run, from 1. The signal is
sent right after the N-th boundary's maybe_save returned, so a save started there is still being written.
"""

import os
import pathlib
import signal
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from absl import app  # noqa: E402

from cl_features.train import checkpoint  # noqa: E402
from experiments import synthetic as experiment  # noqa: E402

SIGNALS = {"kill": signal.SIGKILL, "term": signal.SIGTERM}


def _inject(fault: str) -> None:
    kind, _, n = fault.partition(":")
    sig, at = SIGNALS[kind], int(n)
    original = checkpoint.Checkpointer.maybe_save
    count = [0]

    def maybe_save(self, step, state, **kwargs):
        saved = original(self, step, state, **kwargs)
        count[0] += 1
        if count[0] == at:
            print(f"FAULT {kind} after step {step} (boundary {at})", flush=True)
            os.kill(os.getpid(), sig)
        return saved

    checkpoint.Checkpointer.maybe_save = maybe_save


if __name__ == "__main__":
    if os.environ.get("CLF_FAULT"):
        _inject(os.environ["CLF_FAULT"])
    app.run(experiment.main)
