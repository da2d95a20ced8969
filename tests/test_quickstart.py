"""The quickstart as a user runs it: the tumour grows more than tenfold and the
functional fraction of the breast falls as the tumour displaces it."""
import json
import subprocess
import sys

import h5py
import numpy as np


def test_quickstart_grows_tumour_and_displaces_functional_tissue(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "engine", "run", "quickstart", "--out", "q.h5",
                           "--summary", "q.json"], cwd=tmp_path, capture_output=True, text=True,
                          timeout=900)
    assert proc.returncode == 0, proc.stderr
    summary = json.loads((tmp_path / "q.json").read_text())
    assert summary["steps"] == 240 and summary["time_h"] == 240.0
    assert summary["counts"]["tumor"] > 10 * summary["counts_initial"]["tumor"]
    assert summary["functional_fraction"] < 1.0
    with h5py.File(tmp_path / "q.h5", "r") as f:
        counts = f["counts"][...]
        assert f.attrs["status"] == "complete"
        assert f["lattices/primary/kind"].shape[0] == 11        # daily snapshots + step 0
    # growth and loss are steady, not noise: monotone over each day
    daily = counts[::24]
    assert (np.diff(daily["tumor"]) > 0).all()
    assert (np.diff(daily["functional_breast"]) < 0).all()
    assert counts["compression_functional"].sum() > 0
