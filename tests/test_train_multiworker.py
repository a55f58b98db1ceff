"""Multi-worker training: two local workers on loopback, one short epoch on CPU."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap

import pandas as pd
import pytest

pytestmark = [pytest.mark.tf, pytest.mark.slow]

pytest.importorskip("tensorflow")

from train_support import make_shapes_manifest  # noqa: E402

WORKER = textwrap.dedent(
    """
    import json, os, sys
    index, ports, manifest, out = int(sys.argv[1]), sys.argv[2].split(","), sys.argv[3], sys.argv[4]
    os.environ["TF_CONFIG"] = json.dumps({
        "cluster": {"worker": [f"127.0.0.1:{p}" for p in ports]},
        "task": {"type": "worker", "index": index},
    })
    from dsxsd.train import fit
    summary = fit(manifest, out, epochs=1, batch_size=8, width=0.125, image_size=32,
                  strategy="multiworker", verbose=0)
    print("SUMMARY " + json.dumps(summary))
    """
)


def free_ports(n: int) -> list[int]:
    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def test_two_workers_train_one_epoch_together(tmp_path):
    manifest = make_shapes_manifest(tmp_path / "data", per_class=8, positives=1)
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    ports = ",".join(map(str, free_ports(2)))
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    env.pop("TF_CONFIG", None)
    logs = [open(tmp_path / f"worker{i}.log", "w+") for i in range(2)]
    workers = [
        subprocess.Popen([sys.executable, str(script), str(i), ports, str(manifest), str(tmp_path / "run")],
                         stdout=logs[i], stderr=subprocess.STDOUT, env=env)
        for i in range(2)
    ]
    try:
        codes = [w.wait(timeout=300) for w in workers]
    finally:
        for w in workers:
            if w.poll() is None:
                w.kill()
                w.wait()
    outputs = [(tmp_path / f"worker{i}.log").read_text() for i in range(2)]
    assert codes == [0, 0], "\n---\n".join(o[-3000:] for o in outputs)
    summaries = [json.loads(o.split("SUMMARY ", 1)[1].splitlines()[0]) for o in outputs]
    assert [s["replicas"] for s in summaries] == [2, 2]
    assert {s["strategy"] for s in summaries} == {"multiworker"}
    # both workers saw the same globally reduced metrics: one model trained in lockstep
    assert summaries[0]["loss"] == summaries[1]["loss"]
    assert summaries[0]["val_accuracy"] == summaries[1]["val_accuracy"]
    # the chief (worker 0) wrote the run folder; its accuracy counts each pair once
    history = pd.read_csv(tmp_path / "run" / "history.csv")
    assert history.epoch.tolist() == [1]
    counts = pd.read_csv(manifest).split.value_counts()
    for metric, split in (("accuracy", "train"), ("val_accuracy", "val")):
        correct = history[metric][0] * counts[split]  # a whole number of the split's pairs
        assert correct == pytest.approx(round(correct), abs=1e-3), (metric, correct)
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["strategy"] == "multiworker" and config["replicas"] == 2
    assert (tmp_path / "run" / "model.keras").is_file()
