"""Training: it learns, the run folder is complete, a killed run resumes, bad input and
existing folders are refused before anything trains."""

from __future__ import annotations

import builtins
import importlib
import json
import os
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pandas as pd
import pytest

pytestmark = pytest.mark.tf

tf = pytest.importorskip("tensorflow")
keras = pytest.importorskip("keras")

import dsxsd  # noqa: E402
from dsxsd.errors import MissingImageError, OutputExistsError  # noqa: E402
from dsxsd.train import build_model, fit, load_images, load_model, read_run_config  # noqa: E402
from dsxsd.train.fit import UsageError  # noqa: E402
from disk_support import FullDisk  # noqa: E402
from train_support import IMAGE_SIZE, WIDTH, interrupt_at, make_shapes_manifest  # noqa: E402

SMALL = dict(width=WIDTH, image_size=IMAGE_SIZE, verbose=0)
# Seeds 0-5 all end at 0.81 or more after 7 epochs; 9 leaves a margin (0.95+ for 0, 1, 4).
EPOCHS = 9


@pytest.fixture(scope="module")
def learned(tmp_path_factory):
    """Three shape classes, random sizes, positions and colours; 432 training pairs."""
    root = tmp_path_factory.mktemp("learn")
    manifest = make_shapes_manifest(root, per_class=30, positives=4)
    summary = fit(manifest, root / "run", epochs=EPOCHS, batch_size=16, lr=1e-3, seed=0, **SMALL)
    return manifest, root / "run", summary


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny")
    return make_shapes_manifest(root, per_class=8, positives=1)


def val_pairs(manifest):
    rows = pd.read_csv(manifest).query("split == 'val'")
    root = manifest.parent
    left = load_images([root / p for p in rows.left], IMAGE_SIZE)
    right = load_images([root / p for p in rows.right], IMAGE_SIZE)
    return left, right, rows.label.to_numpy()


def test_it_learns_to_tell_shapes_apart(learned):
    _, run, summary = learned
    assert summary["epochs"] == EPOCHS
    assert summary["val_accuracy"] >= 0.8, summary  # chance is 0.5
    history = pd.read_csv(run / "history.csv")
    assert history.val_accuracy.iloc[0] < 0.8 <= history.val_accuracy.iloc[-1]  # it was learned
    assert history.loss.iloc[-1] < history.loss.iloc[0]


def test_run_folder_holds_everything(learned):
    manifest, run, summary = learned
    assert {p.name for p in run.iterdir()} == {
        "model.keras", "best.keras", "config.json", "history.csv", "logs", "curves.png", "checkpoints"
    }
    history = pd.read_csv(run / "history.csv")
    assert list(history.columns) == ["epoch", "loss", "accuracy", "val_loss", "val_accuracy", "lr"]
    assert history.epoch.tolist() == list(range(1, EPOCHS + 1))
    np.testing.assert_allclose(history.lr, 1e-3)
    assert summary["best_epoch"] == int(history.epoch[history.val_loss.idxmin()])
    config = read_run_config(run)
    assert config["manifest"] == str(manifest.resolve())
    import hashlib

    assert config["manifest_sha256"] == hashlib.sha256(manifest.read_bytes()).hexdigest()
    for key, value in {"epochs": EPOCHS, "batch_size": 16, "lr": 1e-3, "optimizer": "adam", "seed": 0,
                       "width": WIDTH, "image_size": IMAGE_SIZE, "resize": "stretch", "augment": "none",
                       "augment_flips": False, "weight_decay": 0.0, "lr_schedule": "constant",
                       "backbone_weights": None, "strategy": "default", "precision": "float32",
                       "early_stopping": None, "steps_per_epoch": None, "cache": "auto"}.items():
        assert config[key] == value, key
    from dsxsd._preflight import default_cache_limit

    assert config["cache_limit"] == default_cache_limit()  # half the machine's memory: the images fit
    assert set(config["versions"]) == {"dsxsd", "tensorflow", "keras"}
    assert config["versions"]["tensorflow"] == tf.__version__
    assert (run / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # TensorBoard: one epoch_loss per epoch for train and validation
    for folder in ("train", "validation"):
        steps = []
        for events in (run / "logs" / folder).iterdir():
            for record in tf.data.TFRecordDataset(str(events)):
                event = tf.compat.v1.Event.FromString(record.numpy())
                steps += [event.step for v in event.summary.value if v.tag == "epoch_loss"]
        assert sorted(steps) == list(range(EPOCHS)), folder


def test_saved_model_reproduces_the_validation_accuracy(learned, tmp_path):
    manifest, run, summary = learned
    left, right, labels = val_pairs(manifest)
    model = keras.models.load_model(run / "model.keras")  # plain Keras, no custom objects
    scores = model.predict([left, right], verbose=0).ravel()
    # load_images decodes as training did, so the final epoch's val_accuracy comes back
    assert np.mean((scores > 0.5) == labels) == pytest.approx(summary["val_accuracy"], abs=1e-6)
    model.save(tmp_path / "again.keras")
    np.testing.assert_allclose(load_model(tmp_path / "again.keras").predict([left, right], verbose=0).ravel(), scores, rtol=1e-6)
    best = load_model(run / "best.keras").predict([left, right], verbose=0).ravel()
    best_loss = keras.ops.convert_to_numpy(keras.losses.binary_crossentropy(labels[:, None].astype("float32"), best[:, None]))
    history = pd.read_csv(run / "history.csv")
    assert float(np.mean(best_loss)) == pytest.approx(history.val_loss.min(), rel=1e-4)


KILLER = textwrap.dedent(
    """
    import os, signal, sys
    import keras
    from dsxsd.train import fit

    class KillAfterSecondEpoch(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if epoch == 1:
                os.kill(os.getpid(), signal.SIGKILL)

    fit(sys.argv[1], sys.argv[2], epochs=4, batch_size=8, lr=1e-3, width=0.125, image_size=32,
        verbose=0, callbacks=[KillAfterSecondEpoch()])
    """
)


def test_a_killed_run_resumes_from_its_last_epoch(tiny, tmp_path):
    run = tmp_path / "run"
    script = tmp_path / "killer.py"
    script.write_text(KILLER)
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    killed = subprocess.run([sys.executable, str(script), str(tiny), str(run)], env=env,
                            capture_output=True, text=True, timeout=300)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    assert not (run / "model.keras").exists()
    before = pd.read_csv(run / "history.csv")
    assert before.epoch.tolist() == [1, 2]
    state = json.loads((run / "checkpoints" / "state.json").read_text())
    assert state["epoch"] == 2

    # what the checkpoint holds: the weights and the optimizer's step count after epoch 2
    expected = build_model(IMAGE_SIZE, WIDTH)
    expected.compile(optimizer=keras.optimizers.Adam(1e-3), loss="binary_crossentropy")
    expected.optimizer.build(expected.trainable_variables)
    expected.load_weights(run / "checkpoints" / state["weights"])
    seen = {}

    class Peek(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            seen["weights"] = self.model.get_weights()
            seen["iterations"] = int(self.model.optimizer.iterations.numpy())

    summary = fit(tiny, run, epochs=4, batch_size=8, lr=1e-3, callbacks=[Peek()], **SMALL)
    assert summary["resumed"] and summary["initial_epoch"] == 2 and summary["epochs"] == 4
    steps = -(-int((pd.read_csv(tiny).split == "train").sum()) // 8)
    assert seen["iterations"] == 2 * steps == int(expected.optimizer.iterations.numpy())
    for got, want in zip(seen["weights"], expected.get_weights()):
        np.testing.assert_array_equal(got, want)
    after = pd.read_csv(run / "history.csv")
    assert after.epoch.tolist() == [1, 2, 3, 4]  # each epoch once
    pd.testing.assert_frame_equal(after.iloc[:2], before)
    assert (run / "model.keras").exists()
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["epoch-0004.keras", "state.json"]

    # the same command once more: nothing left to train, nothing changes
    written = {p: p.stat().st_mtime_ns for p in run.iterdir() if p.is_file()}
    again = fit(tiny, run, epochs=4, batch_size=8, lr=1e-3, **SMALL)
    assert again["epochs"] == 4 and again["initial_epoch"] == 4
    assert {p: p.stat().st_mtime_ns for p in written} == written
    # raising --epochs continues the finished run
    more = fit(tiny, run, epochs=5, batch_size=8, lr=1e-3, **SMALL)
    assert more["initial_epoch"] == 4 and pd.read_csv(run / "history.csv").epoch.tolist() == [1, 2, 3, 4, 5]


def test_missing_files_are_refused_before_training(tiny, tmp_path):
    manifest = make_shapes_manifest(tmp_path / "data", per_class=8, positives=1)
    rows = pd.read_csv(manifest)
    gone = rows.query("split == 'test'").left.iloc[0]  # even a test image: every file is checked
    (manifest.parent / gone).unlink()
    with pytest.raises(MissingImageError) as info:
        fit(manifest, tmp_path / "run", epochs=1, **SMALL)
    assert "1 image missing: " in str(info.value) and gone in str(info.value)
    assert str(manifest.resolve()) in str(info.value)
    assert not (tmp_path / "run").exists()  # nothing was written, nothing trained


def test_existing_folders_are_guarded(tiny, tmp_path):
    run = tmp_path / "run"
    fit(tiny, run, epochs=1, batch_size=8, **SMALL)
    with pytest.raises(OutputExistsError, match=r"other settings \(lr: 0.0001 -> 0.01"):
        fit(tiny, run, epochs=1, batch_size=8, lr=1e-2, **SMALL)
    summary = fit(tiny, run, epochs=1, batch_size=8, lr=1e-2, overwrite=True, **SMALL)
    assert not summary["resumed"] and read_run_config(run)["lr"] == 1e-2
    assert pd.read_csv(run / "history.csv").epoch.tolist() == [1]
    # a folder that is not a run folder is never replaced, not even with overwrite
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "thesis.tex").write_text("years of work")
    (precious / ".lock").write_text("someone else's")  # the name dsxsd locks a run folder with
    with pytest.raises(OutputExistsError, match="not a dsxsd run folder"):
        fit(tiny, precious, epochs=1, overwrite=True, **SMALL)
    assert (precious / "thesis.tex").read_text() == "years of work"
    assert (precious / ".lock").read_text() == "someone else's"
    (precious / "thesis.tex").unlink()  # its own .lock alone: still not a run folder
    with pytest.raises(OutputExistsError, match="not a dsxsd run folder"):
        fit(tiny, precious, epochs=1, **SMALL)
    assert (precious / ".lock").read_text() == "someone else's"


def test_early_stopping_and_steps_per_epoch(tiny, tmp_path):
    # a learning rate too small to move the validation loss: patience 1 stops at epoch 2
    summary = fit(tiny, tmp_path / "run", epochs=6, batch_size=8, lr=1e-12, early_stopping=1,
                  steps_per_epoch=2, **SMALL)
    history = pd.read_csv(tmp_path / "run" / "history.csv")
    assert summary["stopped_early"]
    assert history.epoch.tolist() == [1, 2]
    assert json.loads((tmp_path / "run" / "checkpoints" / "state.json").read_text())["stopped"]
    iterations = load_model(tmp_path / "run" / "model.keras").optimizer.iterations.numpy()
    assert iterations == 2 * len(history)  # steps_per_epoch batches an epoch


def test_settings_are_checked(tiny, tmp_path):
    with pytest.raises(UsageError, match="TF_CONFIG"):
        fit(tiny, tmp_path / "run", strategy="multiworker", **SMALL)
    with pytest.raises(UsageError, match="optimizer"):
        fit(tiny, tmp_path / "run", optimizer="rmsprop", **SMALL)
    assert not (tmp_path / "run").exists()


def weights(run):
    return load_model(run / "model.keras").get_weights()


# 28 training pairs, batch 4: 7 batches a pass; with 3 steps an epoch, epochs straddle passes
RESUMABLE = {
    "epochs": dict(epochs=3, batch_size=4, lr=1e-3, seed=5, **SMALL),
    "steps": dict(epochs=3, batch_size=4, lr=1e-3, seed=5, steps_per_epoch=3, augment=True, **SMALL),
    "resampled": dict(epochs=3, batch_size=4, lr=1e-3, seed=5, steps_per_epoch=3, resample_negatives=True,
                      resample_positives=True, **SMALL),
    # crops and a cosine over the run: each epoch's images and rate depend on the epoch alone
    "cosine": dict(epochs=3, batch_size=4, lr=1e-3, seed=5, steps_per_epoch=3, augment="crops",
                   lr_schedule="cosine", weight_decay=0.1, **SMALL),
    # a rate high enough that the validation loss stalls, and the rate drops mid-run
    "plateau": dict(epochs=3, batch_size=4, lr=0.05, seed=5, steps_per_epoch=3, lr_schedule="plateau", **SMALL),
}


@pytest.fixture(scope="module")
def uninterrupted(tiny, tmp_path_factory):
    """Runs of RESUMABLE's settings that nothing interrupted: name -> (summary, run folder)."""
    runs = {}

    def run(name):
        if name not in runs:
            out = tmp_path_factory.mktemp("whole") / "run"
            runs[name] = fit(tiny, out, **RESUMABLE[name]), out
        return runs[name]

    return run


@pytest.mark.parametrize("name", sorted(RESUMABLE))
def test_an_interrupted_run_resumed_equals_an_uninterrupted_one(tiny, tmp_path, uninterrupted, name):
    whole, whole_run = uninterrupted(name)
    run = tmp_path / "cut"
    with pytest.raises(KeyboardInterrupt) as info:
        fit(tiny, run, **RESUMABLE[name], callbacks=[interrupt_at(3)])
    assert str(info.value) == f"{run}: epoch 2 of 3 saved; run the same command to resume"
    assert pd.read_csv(run / "history.csv").epoch.tolist() == [1, 2]
    resumed = fit(tiny, run, **RESUMABLE[name])  # the same command again
    assert resumed["initial_epoch"] == 2
    config = read_run_config(run)
    for key in ("resample_negatives", "resample_positives"):
        assert config[key] is RESUMABLE[name].get(key, False)
    assert (run / "history.csv").read_text() == (whole_run / "history.csv").read_text()
    assert resumed["loss"] == whole["loss"] and resumed["val_loss"] == whole["val_loss"]
    for got, want in zip(weights(run), weights(whole_run)):
        np.testing.assert_array_equal(got, want)


def test_resampling_draws_training_partners_and_leaves_validation_as_the_manifest_says(tiny, tmp_path, monkeypatch):
    from dsxsd.train import data

    pipeline, built = data.pairs_dataset, {}

    def keep(pairs, **kwargs):  # the datasets fit trains and validates on
        built[kwargs["cache_key"]] = pairs, pipeline(pairs, **kwargs)
        return built[kwargs["cache_key"]][1]

    monkeypatch.setattr(data, "pairs_dataset", keep)
    fit(tiny, tmp_path / "run", epochs=1, batch_size=4, steps_per_epoch=1, resample_negatives=True,
        resample_positives=True, **SMALL)

    def right_side(split, batches):
        pairs, ds = built[split]
        images = np.concatenate([b.numpy() for (_, b), _ in ds.take(batches)])
        return [image.tobytes() for image in images], pairs

    def as_batches(paths):  # load_images gives float32, the pipeline uint8
        return [image.astype(np.uint8).tobytes() for image in load_images(paths, IMAGE_SIZE)]

    got, pairs = right_side("val", 100)
    assert got == as_batches([pairs.paths[i] for i in pairs.right])
    got, pairs = right_side("train", len(pairs) // 4)  # 28 pairs, batch 4: the first pass
    train_images = as_batches(pairs.paths)
    manifest_rights = [train_images[i] for i in pairs.right]
    assert set(got) <= set(train_images)  # partners from the split's own images
    assert sorted(got) != sorted(manifest_rights)  # but not the manifest's


def test_a_run_from_before_resampling_resumes_and_refuses_other_settings(tiny, tmp_path, uninterrupted):
    import shutil

    run = tmp_path / "old"
    shutil.copytree(uninterrupted("epochs")[1], run)
    config = json.loads((run / "config.json").read_text())
    del config["resample_negatives"], config["resample_positives"]  # what older versions wrote
    (run / "config.json").write_text(json.dumps(config))
    with pytest.raises(OutputExistsError, match="resample_negatives: False -> True"):
        fit(tiny, run, **{**RESUMABLE["epochs"], "epochs": 4, "resample_negatives": True})
    resumed = fit(tiny, run, **{**RESUMABLE["epochs"], "epochs": 4})
    assert resumed["initial_epoch"] == 3 and resumed["epochs"] == 4


def test_a_full_disk_while_checkpointing_is_one_error_and_the_rerun_resumes(tiny, tmp_path, monkeypatch, uninterrupted):
    same = RESUMABLE["epochs"]
    real_open = builtins.open

    def disk_fills_at_epoch_2(file, mode="r", *args, **kwargs):
        opened = real_open(file, mode, *args, **kwargs)
        if isinstance(file, (str, os.PathLike)) and "epoch-0002" in os.fspath(file) and "w" in mode:
            return FullDisk(opened, room=4096)
        return opened

    run = tmp_path / "run"
    with monkeypatch.context() as patch:
        patch.setattr(builtins, "open", disk_fills_at_epoch_2)
        with pytest.raises(dsxsd.RunSaveError) as info:
            fit(tiny, run, **same)
    assert info.value.exit_code == 1
    assert str(info.value) == f"{run}: could not save the checkpoint of epoch 2: No space left on device"
    assert not [p for p in run.rglob("*") if p.name.endswith(".tmp") or p.name.startswith(".")]
    assert json.loads((run / "checkpoints" / "state.json").read_text())["epoch"] == 1
    assert [p.name for p in (run / "checkpoints").iterdir() if p.name.startswith("epoch-")] == ["epoch-0001.keras"]
    # What a run killed (not stopped by an error) while saving would have left: its
    # temporaries, Keras' staging file among them, removed by the rerun.
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    left = [run / "checkpoints" / f".epoch-0002.keras.{dead.pid}.abcd1234.tmp",
            run / "checkpoints" / f".epoch-0002.keras.{dead.pid}.abcd1234.tmp.keras",
            run / f".history.csv.{dead.pid}.efgh5678.tmp"]
    for path in left:
        path.write_bytes(b"half")
    resumed = fit(tiny, run, **same)  # space freed: the rerun goes on from epoch 1
    assert not [path for path in left if path.exists()]
    assert resumed["initial_epoch"] == 1
    assert (run / "history.csv").read_text() == (uninterrupted("epochs")[1] / "history.csv").read_text()


class CountCalls(keras.callbacks.Callback):
    """How often Keras called the train function: once per execution of its steps."""

    calls = 0

    def on_train_batch_end(self, batch, logs=None):
        self.calls += 1


def test_several_steps_per_execution_train_as_one_step_per_call_and_resume(tiny, tmp_path, uninterrupted):
    whole, whole_run = uninterrupted("steps")  # 3 steps an epoch, one per call: the CPU's choice
    settings = dict(RESUMABLE["steps"], steps_per_execution=3)
    run = tmp_path / "cut"
    with pytest.raises(KeyboardInterrupt):
        fit(tiny, run, **settings, callbacks=[interrupt_at(3)])
    calls = CountCalls()
    resumed = fit(tiny, run, **settings, callbacks=[calls])
    assert resumed["initial_epoch"] == 2 and calls.calls == 1  # epoch 3's three steps in one call
    assert read_run_config(run)["steps_per_execution"] == 3
    got, want = pd.read_csv(run / "history.csv"), pd.read_csv(whole_run / "history.csv")
    assert got.epoch.tolist() == want.epoch.tolist() == [1, 2, 3]
    np.testing.assert_allclose(got.to_numpy(), want.to_numpy(), rtol=1e-5, atol=1e-7)
    model = load_model(run / "model.keras")
    assert int(model.optimizer.iterations.numpy()) == 9  # never a step past an epoch's end
    for got_w, want_w in zip(model.get_weights(), weights(whole_run)):
        np.testing.assert_allclose(got_w, want_w, rtol=1e-4, atol=1e-6)


def test_steps_per_execution_always_divides_an_epoch(tiny, tmp_path):
    from dsxsd.train.fit import GPU_STEPS_PER_EXECUTION, resolve_steps_per_execution

    assert GPU_STEPS_PER_EXECUTION == 16
    chosen = {steps: resolve_steps_per_execution(None, steps, gpu=True) for steps in (1, 3, 7, 17, 96, 100, 1000)}
    assert chosen == {1: 1, 3: 3, 7: 7, 17: 1, 96: 16, 100: 10, 1000: 10}
    assert resolve_steps_per_execution(None, 96, gpu=False) == 1  # a CPU step outweighs the call
    assert resolve_steps_per_execution(None, 96, gpu=True, strategy="multiworker") == 1  # its own loop
    assert resolve_steps_per_execution(4, 96, gpu=False) == 4
    # Keras would run 4 steps in an epoch of 3 at 2 per call: refused before anything is written
    with pytest.raises(UsageError, match="steps per execution must divide the 3 steps of an epoch, got 2"):
        fit(tiny, tmp_path / "run", steps_per_epoch=3, steps_per_execution=2, **SMALL)
    with pytest.raises(UsageError, match="got 0"):
        fit(tiny, tmp_path / "run", steps_per_execution=0, **SMALL)
    assert not (tmp_path / "run").exists()


def test_batches_prefetched_onto_a_device_train_the_same(tiny, tmp_path, monkeypatch, uninterrupted):
    fit_module = importlib.import_module("dsxsd.train.fit")  # dsxsd.train.fit is also the function

    # On this CPU nothing is prefetched; a GPU alone, without a strategy of its own, is.
    assert fit_module.train_input_device("default") is None
    assert fit_module.train_input_device("mirrored") is None
    asked = []
    monkeypatch.setattr(fit_module, "train_input_device", lambda strategy: asked.append(strategy) or "/cpu:0")
    summary = fit(tiny, tmp_path / "run", **RESUMABLE["steps"])
    assert asked == ["default"]
    whole, whole_run = uninterrupted("steps")
    assert (tmp_path / "run" / "history.csv").read_text() == (whole_run / "history.csv").read_text()
    assert summary["loss"] == whole["loss"]


def test_cosine_schedule_decays_the_rate_over_the_run_and_fixes_its_length(tiny, tmp_path):
    import math

    run = tmp_path / "run"
    fit(tiny, run, epochs=4, batch_size=8, lr=1e-3, lr_schedule="cosine", augment="crops", weight_decay=0.05, **SMALL)
    config = read_run_config(run)
    assert (config["lr_schedule"], config["augment"], config["augment_flips"], config["weight_decay"]) == (
        "cosine", "crops", False, 0.05)
    # history.csv's rate is the optimizer's at the end of each epoch: the cosine, step by step
    want = [1e-3 * 0.5 * (1 + math.cos(math.pi * epoch / 4)) for epoch in range(1, 5)]
    np.testing.assert_allclose(pd.read_csv(run / "history.csv").lr, want, rtol=1e-4, atol=1e-9)
    # The rate of every epoch depends on how many there are: --epochs cannot grow.
    with pytest.raises(OutputExistsError, match="epochs: 4 -> 6"):
        fit(tiny, run, epochs=6, batch_size=8, lr=1e-3, lr_schedule="cosine", augment="crops", weight_decay=0.05,
            **SMALL)


def test_plateau_schedule_lowers_the_rate_after_epochs_without_a_better_val_loss(tiny, tmp_path):
    from dsxsd.train.fit import PLATEAU_FACTOR, PLATEAU_PATIENCE, plateau_lr

    assert plateau_lr(1.0, [0.5, 0.6, 0.6, 0.4, 0.7, 0.8]) == pytest.approx(PLATEAU_FACTOR**2)
    assert plateau_lr(1.0, [0.5, 0.4, 0.3]) == 1.0 and PLATEAU_PATIENCE == 2
    run = tmp_path / "run"
    fit(tiny, run, epochs=6, batch_size=4, lr=0.05, lr_schedule="plateau", **SMALL)
    history = pd.read_csv(run / "history.csv")
    # each epoch's rate follows from the validation losses before it
    want = [plateau_lr(0.05, history.val_loss[:i].tolist()) for i in range(len(history))]
    np.testing.assert_allclose(history.lr, want, rtol=1e-6)
    assert history.lr.iloc[-1] < 0.05  # at this rate the validation loss stalls: the rate came down


def test_recipe_settings_are_refused_before_anything_is_written(tiny, tmp_path):
    run = tmp_path / "run"
    cases = {
        "unknown augmentation 'rotate'; expected one of none, basic, crops": dict(augment="rotate"),
        "weight decay must be a number of at least 0, got -0.1": dict(weight_decay=-0.1),
        "unknown learning-rate schedule 'step'; expected one of constant, cosine, plateau": dict(lr_schedule="step"),
        "--augment-flips needs --augment basic or --augment crops": dict(augment_flips=True),
        "--augment cannot be combined with --freeze-backbone": dict(augment="crops", freeze_backbone=True),
    }
    for message, settings in cases.items():
        with pytest.raises(UsageError, match=message):
            fit(tiny, run, epochs=1, **SMALL, **settings)
    assert not run.exists()


def test_a_run_written_before_augmentation_policies_resumes(tiny, tmp_path):
    from dsxsd.train.run import RESUME_DEFAULTS, config_differences

    old = {"augment": True, "lr": 1e-3}  # config.json of an earlier version: no policy, flips, decay, schedule
    new = {**RESUME_DEFAULTS, "augment": "basic", "augment_flips": True, "lr": 1e-3}
    assert config_differences(old, new) == []
    assert config_differences({"augment": False, "lr": 1e-3}, {**new, "augment": "none", "augment_flips": False}) == []
    assert config_differences(old, {**new, "augment": "crops"}) == ["augment: 'basic' -> 'crops'"]
