"""experiments.synthetic's main with an injected fault, for the resume tests (not a test module).

    CLF_FAULT=kill:N python tests/_synthetic_child.py --workdir=... --config.x=...   # SIGKILL itself
    CLF_FAULT=term:N[:S] python tests/_synthetic_child.py ...                         # SIGTERM itself

N counts step boundaries (calls of Checkpointer.maybe_save) over all arms of the run, from 1. The signal is
sent right after the N-th boundary's maybe_save returned, so a save started there is still being written.
S: seconds to wait after the signal (the other processes of a multi-process run wait at their next collective).
"""

import os
import pathlib
import signal
import sys
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from absl import app  # noqa: E402

from cl_features.train import checkpoint  # noqa: E402
from experiments import synthetic as experiment  # noqa: E402

SIGNALS = {"kill": signal.SIGKILL, "term": signal.SIGTERM}


def _inject(fault: str) -> None:
    kind, n, *pause = fault.split(":")
    sig, at, pause = SIGNALS[kind], int(n), float(pause[0]) if pause else 0.0
    original = checkpoint.Checkpointer.maybe_save
    count = [0]

    def maybe_save(self, step, state, **kwargs):
        saved = original(self, step, state, **kwargs)
        count[0] += 1
        if count[0] == at:
            print(f"FAULT {kind} after step {step} (boundary {at})", flush=True)
            os.kill(os.getpid(), sig)
            time.sleep(pause)
        return saved

    checkpoint.Checkpointer.maybe_save = maybe_save


if __name__ == "__main__":
    if os.environ.get("CLF_FAULT"):
        _inject(os.environ["CLF_FAULT"])
    app.run(experiment.main)
