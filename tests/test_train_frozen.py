"""``--freeze-backbone`` and ``--fine-tune-epochs``: the head trains on features the tower
computed once per image, as it would through the frozen tower; fine-tuning trains the top
block only, at a tenth of the rate; a run resumes in either stage as if never stopped."""

from __future__ import annotations

import importlib
import json
import warnings

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

pytestmark = pytest.mark.tf

tf = pytest.importorskip("tensorflow")
keras = pytest.importorskip("keras")

from dsxsd.cli import main  # noqa: E402
from dsxsd.errors import OutputExistsError, UsageError  # noqa: E402
from dsxsd.train import build_model, data, fit, load_images, load_model, read_run_config, split_model  # noqa: E402
from dsxsd.train.run import RESUME_DEFAULTS, config_differences  # noqa: E402
from train_support import IMAGE_SIZE, WIDTH, count_reads, interrupt_at, make_shapes_manifest  # noqa: E402,F401

fit_module = importlib.import_module("dsxsd.train.fit")  # dsxsd.train.fit is also the function
SMALL = dict(width=WIDTH, image_size=IMAGE_SIZE, verbose=0)
TOP = [f"block5_conv{i}" for i in (1, 2, 3)]
HEAD = ["head_dense", "score"]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """28 training pairs over 15 images, 10 validation pairs over 5 more."""
    root = tmp_path_factory.mktemp("tiny")
    return make_shapes_manifest(root, per_class=8, positives=1)


def splits(manifest):
    table = data.read_manifest(manifest)
    return data.pair_table(table, "train", manifest), data.pair_table(table, "val", manifest)


def initial_model(seed=0):
    """The model fit starts from: it seeds, then builds."""
    keras.utils.set_random_seed(seed)
    return build_model(IMAGE_SIZE, WIDTH)


def layer_weights(model):
    """Layer name -> its weights, the tower's layers and the head's."""
    tower = model.get_layer("tower")
    named = {layer.name: layer.get_weights() for layer in tower.layers if layer.weights}
    named.update({name: model.get_layer(name).get_weights() for name in HEAD})
    return named


def same(a, b):
    return all(np.array_equal(x, y) for x, y in zip(a, b))


def test_head_gradients_on_features_equal_those_through_the_frozen_tower(tiny):
    train, _ = splits(tiny)
    model = initial_model(3)
    model.get_layer("tower").trainable = False
    tower, head = split_model(model)
    features = fit_module.tower_features(tower, train, {"image_size": IMAGE_SIZE, "resize": "stretch"}, "memory", "t")
    assert features.shape == (len(train.paths), tower.output.shape[-1])
    # A batch from the middle of the stream, partners resampled: the same pairs both ways.
    settings = dict(batch_size=8, shuffle=True, seed=7, repeat=True, start=5, resample_negatives=True,
                    resample_positives=True)
    (left, right), labels = next(iter(data.pairs_dataset(train, image_size=IMAGE_SIZE, **settings)))
    (left_f, right_f), labels_f = next(iter(data.features_dataset(train, features, **settings)))
    np.testing.assert_array_equal(labels_f, labels)
    loss = keras.losses.BinaryCrossentropy()
    with tf.GradientTape() as tape:
        slow = loss(labels[:, None], model([left, right], training=True))
    slow_grads = tape.gradient(slow, model.trainable_variables)
    with tf.GradientTape() as tape:
        fast = loss(labels[:, None], head([left_f, right_f], training=True))
    fast_grads = tape.gradient(fast, head.trainable_variables)
    assert len(model.trainable_variables) == 4  # the head's two kernels and biases
    assert [id(v) for v in head.trainable_variables] == [id(v) for v in model.trainable_variables]
    assert float(fast) == pytest.approx(float(slow), abs=1e-6)
    for got, want in zip(fast_grads, slow_grads):
        assert np.abs(want.numpy()).max() > 0
        np.testing.assert_allclose(got.numpy(), want.numpy(), atol=1e-5)


def test_the_frozen_stage_trains_the_head_alone_on_features_computed_once_per_image(
    tiny, tmp_path, monkeypatch, count_reads
):
    embedded = []
    real = fit_module.tower_features

    def counting(tower, pairs, config, cache, key):
        embedded.append((key, len(pairs.paths)))
        return real(tower, pairs, config, cache, key)

    monkeypatch.setattr(fit_module, "tower_features", counting)
    run = tmp_path / "run"
    summary = fit(tiny, run, epochs=3, batch_size=4, lr=1e-2, freeze_backbone=True, **SMALL)
    train, val = splits(tiny)
    assert embedded == [("train", len(train.paths)), ("val", len(val.paths))]
    # Each image decoded once, in the pass that checks it (test images too) and caches it
    # for the tower: the head's three epochs read no file.
    test = data.pair_table(data.read_manifest(tiny), "test", tiny)
    assert count_reads == {path: 1 for path in train.paths + val.paths + test.paths}
    start, trained = layer_weights(initial_model()), layer_weights(load_model(run / "model.keras"))
    for name in start:
        assert same(trained[name], start[name]) is (name not in HEAD), name
    history = pd.read_csv(run / "history.csv")
    assert history.epoch.tolist() == [1, 2, 3] and summary["epochs"] == 3
    np.testing.assert_allclose(history.lr, 1e-2)
    # model.keras is the whole Siamese model: on the validation images it gives the
    # validation loss its head had on their features.
    rows = pd.read_csv(tiny).query("split == 'val'")
    images = [load_images([tiny.parent / p for p in rows[side]], IMAGE_SIZE) for side in ("left", "right")]
    scores = load_model(run / "model.keras").predict(images, verbose=0)
    val_loss = keras.losses.binary_crossentropy(rows.label.to_numpy("float32")[:, None], scores)
    assert float(np.mean(val_loss)) == pytest.approx(history.val_loss.iloc[-1], rel=1e-4)
    assert read_run_config(run)["freeze_backbone"] is True


class Snapshot(keras.callbacks.Callback):
    """The model's weights as the epoch ``epoch`` (1-based) begins, and its learning rate."""

    def __init__(self, epoch):
        super().__init__()
        self.epoch = epoch
        self.weights = None

    def on_epoch_begin(self, epoch, logs=None):
        if epoch + 1 == self.epoch:
            self.weights = layer_weights(self.model)


def test_fine_tuning_trains_the_top_block_and_the_head_at_a_tenth_of_the_rate(tiny, tmp_path):
    run = tmp_path / "run"
    snapshot = Snapshot(3)  # the first fine-tuning epoch
    summary = fit(tiny, run, epochs=2, fine_tune_epochs=2, batch_size=4, lr=1e-3, freeze_backbone=True,
                  callbacks=[snapshot], **SMALL)
    assert summary["epochs"] == 4
    assert fit_module.FINE_TUNE_BLOCKS == ("block5",) and fit_module.FINE_TUNE_LR_FACTOR == 0.1
    start, frozen, tuned = layer_weights(initial_model()), snapshot.weights, layer_weights(load_model(run / "model.keras"))
    for name in start:
        assert same(frozen[name], start[name]) is (name not in HEAD), name  # stage 1: the head alone
        assert same(tuned[name], frozen[name]) is (name not in TOP + HEAD), name  # stage 2: block5 and the head
    history = pd.read_csv(run / "history.csv")
    assert history.epoch.tolist() == [1, 2, 3, 4]
    np.testing.assert_allclose(history.lr, [1e-3, 1e-3, 1e-4, 1e-4])
    config = read_run_config(run)
    assert (config["epochs"], config["fine_tune_epochs"], config["freeze_backbone"]) == (2, 2, True)
    # Each model file loads whole, its optimizer's state too (Keras warns of any it skips).
    for name in ("model.keras", "best.keras"):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            assert load_model(run / name).optimizer.iterations.numpy() > 0
        assert not [w for w in caught if "Skipping" in str(w.message)], name
    # The stages cannot change once trained.
    with pytest.raises(OutputExistsError, match="fine_tune_epochs: 2 -> 3"):
        fit(tiny, run, epochs=2, fine_tune_epochs=3, batch_size=4, lr=1e-3, freeze_backbone=True, **SMALL)
    with pytest.raises(OutputExistsError, match="epochs: 2 -> 3"):
        fit(tiny, run, epochs=3, fine_tune_epochs=2, batch_size=4, lr=1e-3, freeze_backbone=True, **SMALL)


def test_the_plateau_schedule_starts_fine_tuning_afresh_at_a_tenth_of_the_rate(tiny, tmp_path):
    from dsxsd.train.fit import plateau_lr

    run = tmp_path / "run"
    fit(tiny, run, epochs=3, fine_tune_epochs=3, batch_size=4, lr=0.05, freeze_backbone=True,
        lr_schedule="plateau", **SMALL)
    history = pd.read_csv(run / "history.csv")
    losses = history.val_loss.tolist()
    # each stage's rate follows from its own validation losses, from its own base rate
    want = [plateau_lr(0.05, losses[:i]) for i in range(3)] + [plateau_lr(0.005, losses[3:i]) for i in range(3, 6)]
    np.testing.assert_allclose(history.lr, want, rtol=1e-6)
    assert history.lr[3] == pytest.approx(0.005)


# 28 training pairs, batch 4: 7 batches a pass; 3 steps an epoch straddle the passes, and
# the image stream of fine-tuning starts where the features' stream ended.
TWO_STAGES = dict(epochs=2, fine_tune_epochs=2, freeze_backbone=True, batch_size=4, lr=1e-3, seed=5,
                  steps_per_epoch=3, resample_negatives=True, **SMALL)


@pytest.fixture(scope="module")
def uninterrupted(tiny, tmp_path_factory):
    out = tmp_path_factory.mktemp("whole") / "run"
    return fit(tiny, out, **TWO_STAGES), out


@pytest.mark.parametrize("cut", [2, 3, 4], ids=["in the frozen stage", "between the stages", "fine-tuning"])
def test_a_two_stage_run_resumed_in_either_stage_equals_an_uninterrupted_one(tiny, tmp_path, uninterrupted, cut):
    whole, whole_run = uninterrupted
    run = tmp_path / "cut"
    with pytest.raises(KeyboardInterrupt) as info:
        fit(tiny, run, **TWO_STAGES, callbacks=[interrupt_at(cut)])
    assert str(info.value) == f"{run}: epoch {cut - 1} of 4 saved; run the same command to resume"
    resumed = fit(tiny, run, **TWO_STAGES)
    assert resumed["initial_epoch"] == cut - 1 and resumed["epochs"] == 4
    assert (run / "history.csv").read_text() == (whole_run / "history.csv").read_text()
    assert resumed["loss"] == whole["loss"] and resumed["val_loss"] == whole["val_loss"]
    for name in ("model.keras", "best.keras"):
        for got, want in zip(load_model(run / name).get_weights(), load_model(whole_run / name).get_weights()):
            np.testing.assert_array_equal(got, want)
    assert json.loads((run / "checkpoints" / "state.json").read_text())["epoch"] == 4


def test_augment_and_a_frozen_tower_are_refused_and_fine_tuning_needs_one(tiny, tmp_path):
    with pytest.raises(UsageError, match="--augment cannot be combined with --freeze-backbone"):
        fit(tiny, tmp_path / "run", epochs=1, freeze_backbone=True, augment=True, **SMALL)
    with pytest.raises(UsageError, match="--fine-tune-epochs needs --freeze-backbone"):
        fit(tiny, tmp_path / "run", epochs=1, fine_tune_epochs=1, **SMALL)
    assert not (tmp_path / "run").exists()


def test_cli_flags_reach_config_json_and_augment_is_a_usage_error(tiny, tmp_path):
    run = tmp_path / "run"
    args = ["train", str(tiny), "--out", str(run), "--width", "0.125", "--image-size", "32", "--epochs", "1",
            "--batch-size", "8"]
    result = CliRunner().invoke(main, [*args, "--freeze-backbone", "--fine-tune-epochs", "1", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["epochs"] == 2
    config = read_run_config(run)
    assert (config["freeze_backbone"], config["fine_tune_epochs"]) == (True, 1)
    again = CliRunner().invoke(main, [*args, "--freeze-backbone", "--fine-tune-epochs", "1"])
    assert again.exit_code == 0, again.output
    assert "already complete (2 epochs, 1 of them fine-tuning); pass --overwrite" in again.output

    refused = CliRunner().invoke(main, [*args[:3], str(tmp_path / "other"), *args[4:], "--freeze-backbone", "--augment"])
    assert refused.exit_code == 2
    assert "--augment cannot be combined with --freeze-backbone" in refused.output
    assert "Traceback" not in refused.output and not (tmp_path / "other").exists()
    refused = CliRunner().invoke(main, [*args[:3], str(tmp_path / "other"), *args[4:], "--fine-tune-epochs", "2"])
    assert refused.exit_code == 2 and "--fine-tune-epochs needs --freeze-backbone" in refused.output


def test_a_run_from_before_frozen_backbones_still_resumes():
    old = {"epochs": 3, "lr": 1e-3}  # config.json of an earlier version: neither key
    new = {**RESUME_DEFAULTS, "epochs": 4, "lr": 1e-3}
    assert (new["freeze_backbone"], new["fine_tune_epochs"]) == (False, 0)
    assert config_differences(old, new) == []  # and --epochs may still grow
    assert config_differences(old, {**new, "freeze_backbone": True}) == ["freeze_backbone: False -> True"]
