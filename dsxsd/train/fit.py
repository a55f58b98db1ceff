"""``fit``: train the Siamese network on a pairs manifest and write the run folder.

Resuming is the rerun of the same command: the run folder's ``checkpoints/`` hold the
weights and optimizer state after the last finished epoch, and a rerun whose settings
match (:data:`dsxsd.train.run.RESUME_KEYS`; ``--epochs`` may grow) continues from there.
History, best model and early stopping are all derived from ``history.csv``, so an
interrupted run continues exactly as an uninterrupted one would have, and each epoch
appears once.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sys
import time
import types
import warnings
from pathlib import Path
from typing import Any, Sequence

import keras
import numpy as np
import tensorflow as tf

from .. import _preflight, environment, presets
from .._io import write_text
from ..environment import PRECISIONS, STRATEGIES, TrainingPlan
from ..errors import OutputExistsError, SettingError, SettingWarning, UsageError, require_path
from . import data, loop, network, run, store

OPTIMIZERS = ("adam", "sgd")
DEFAULT_LR = {"adam": 1e-4, "sgd": 1e-2}
SGD_MOMENTUM = 0.9


def fit(
    manifest: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    preset: str | None = None,
    epochs: int | None = None,
    batch_size: int | None = None,
    lr: float | None = None,
    optimizer: str = "adam",
    seed: int = 0,
    early_stopping: int | None = None,
    steps_per_epoch: int | None = None,
    width: float | None = None,
    image_size: int | None = None,
    resize: str = "stretch",
    augment: bool | str | None = None,
    augment_flips: bool | None = None,
    weight_decay: float | None = None,
    lr_schedule: str | None = None,
    resample_negatives: bool | None = None,
    resample_positives: bool | None = None,
    cache: str | os.PathLike[str] = "auto",
    cache_limit: int | str | None = None,
    backbone_weights: str | os.PathLike[str] | None = None,
    freeze_backbone: bool = False,
    fine_tune_epochs: int = 0,
    strategy: str = "auto",
    precision: str = "auto",
    jit: str | bool = "auto",
    steps_per_execution: int | None = None,
    overwrite: bool = False,
    verbose: int | str = "auto",
    callbacks: Sequence[keras.callbacks.Callback] = (),
) -> dict[str, Any]:
    """Train on ``manifest``'s ``train`` split, validate on ``val``, write ``out``.

    ``preset`` (:mod:`dsxsd.presets`: ``reference``, the default, or ``cpu``) fills in
    each of ``epochs``, ``batch_size``, ``lr``, ``width``, ``image_size``, ``augment``,
    ``weight_decay``, ``lr_schedule`` and ``resample_negatives``/``resample_positives``
    left ``None``; the reference recipe is 20 epochs of batch 32 at width 1.0 and 105 px
    at a constant rate, nothing resampled, augmented or decayed.

    ``augment`` (:mod:`dsxsd.train.augment`): ``"basic"`` (``True``: flips, brightness,
    contrast) or ``"crops"`` (a random resized crop, a small rotation, colour jitter);
    ``augment_flips`` adds or removes the flips (``None``: on with basic, off with crops).
    ``weight_decay``: decoupled, as AdamW's (:func:`_optimizer`). ``lr_schedule``:
    ``"constant"``, ``"cosine"`` (Keras' ``CosineDecay`` to 0 over the stage's steps; the
    run's ``epochs`` is then fixed) or ``"plateau"`` (the rate times
    :data:`PLATEAU_FACTOR` after :data:`PLATEAU_PATIENCE` epochs without a lower
    validation loss). history.csv's ``lr`` is the rate at the end of each epoch.

    Under Keras' TensorFlow backend ``strategy`` picks the devices; under its JAX
    backend (``KERAS_BACKEND=jax``) the model trains on one device, fed by the same
    tf.data pipeline, and the run folder is the same.

    ``batch_size`` is the global batch (split across replicas). ``lr`` defaults to 1e-4
    for adam, 1e-2 for sgd (momentum 0.9). ``early_stopping=N`` stops after N epochs
    without a lower validation loss. ``out``: created if absent; if it holds a run with
    the same settings, training resumes from its last finished epoch; a run with other
    settings is replaced only with ``overwrite``; a folder that is not a dsxsd run is
    never touched. ``verbose``: "auto" is Keras' progress bar on a terminal and one line
    per epoch otherwise. ``steps_per_execution``: train steps per call of Keras' compiled
    train function (:func:`resolve_steps_per_execution`; ``None`` chooses), so a
    callback's ``on_train_batch_*`` runs once per execution. ``backbone_weights``:
    ``"imagenet"`` (Keras' VGG16 ImageNet weights, at width 1.0 only, downloaded into
    Keras' cache the first time) or a local VGG16 no-top weights file; config.json keeps
    the file's sha256, and a run resumes only with the same weights. Returns a summary (epochs
    run, final and best metrics; ``already_complete`` when the run had nothing left to
    train).

    ``resample_negatives`` gives every different-class training pair a fresh right-hand
    image of another class each pass over the pairs, ``resample_positives`` every
    same-class pair a fresh other image of its class: drawn from the ``train`` split's own
    images, as a function of ``seed`` and the pass, so a resumed run still sees what an
    uninterrupted one would. Validation keeps the manifest's pairs, so its loss compares
    across epochs.

    ``cache`` keeps the train and val splits' decoded images for the run: ``"auto"`` in
    memory while they fit ``cache_limit`` (bytes, or a size such as ``"8GB"``; default half
    the machine's memory) and in a store on disk under ``out/cache/`` past it, ``"memory"``,
    ``"disk"``, a folder for the store, or ``"none"`` (decoded every epoch). Every image is
    checked (missing, hostile, undecodable: one error lists them) in the same pass that
    decodes it into the cache; a resumed run reuses a finished store, decoding nothing
    again (``docs/run-folder.md``). The summary's ``images_decoded`` counts that pass.

    ``freeze_backbone`` trains the head alone for ``epochs`` epochs, the tower fixed (as
    ``backbone_weights`` or the seed made it): the tower runs once per distinct train and
    val image, and the head trains on its features (:func:`train_head_on_features`), so
    an epoch costs the head's few layers only. ``fine_tune_epochs`` then trains
    :data:`FINE_TUNE_BLOCKS` of the tower and the head that many epochs more, on images,
    at :data:`FINE_TUNE_LR_FACTOR` times ``lr``. A run resumes in either stage; the run
    folder's models are the whole Siamese model in both; ``early_stopping`` counts across
    both and stopping ends the run, fine-tuning included. Augmentation cannot be combined
    with a frozen tower (:func:`dsxsd._preflight.check_frozen_backbone`).

    ``strategy``, ``precision`` and ``jit`` (XLA compilation of the train step: "auto",
    "on", "off" or a bool) are resolved by :func:`dsxsd.environment.plan_training`,
    which ``dsxsd info`` shows; a setting that cannot work here (mirrored without two
    GPUs, mixed_float16 on a CPU, jit where XLA is missing) is replaced by what can, and
    a :class:`dsxsd.SettingWarning` says so, as it says when the install is broken
    (several TensorFlow distributions, a GPU TensorFlow does not see).

    While it trains, ``out/.lock`` keeps a second run out of the folder
    (:class:`dsxsd.RunInUseError`). Ctrl-C raises :class:`TrainingInterrupted`
    (a KeyboardInterrupt) saying which epoch was saved; a file that cannot be written
    (a full disk) raises :class:`dsxsd.RunSaveError`, and the rerun resumes
    from the last complete checkpoint.
    """
    recipe = presets.resolve(preset, dict(
        epochs=epochs, batch_size=batch_size, lr=lr, width=width, image_size=image_size, augment=augment,
        weight_decay=weight_decay, lr_schedule=lr_schedule,
        resample_negatives=resample_negatives, resample_positives=resample_positives,
    ))
    epochs, batch_size, lr, width, image_size = (recipe[k] for k in ("epochs", "batch_size", "lr", "width", "image_size"))
    augment, weight_decay, lr_schedule, resample_negatives, resample_positives = (
        recipe[k] for k in ("augment", "weight_decay", "lr_schedule", "resample_negatives", "resample_positives")
    )
    _preflight.check_recipe(augment=augment, weight_decay=weight_decay, lr_schedule=lr_schedule, flips=augment_flips)
    augment = _preflight.augment_policy(augment)
    _validate(epochs, batch_size, optimizer, early_stopping, steps_per_epoch, resize, strategy, precision,
              width, image_size)
    cache_limit = _preflight.check_cache(cache, cache_limit)
    _preflight.check_backbone_weights(backbone_weights, width)
    _preflight.check_frozen_backbone(freeze_backbone, fine_tune_epochs, augment != "none")
    backend = environment.keras_backend()
    _preflight.check_train_backend(backend)  # the backend Keras runs, ~/.keras/keras.json too
    plan = environment.plan_training(strategy, precision, jit, backend=backend)
    for message in (*environment.problems(plan.backend), *plan.warnings):
        warnings.warn(message, SettingWarning, stacklevel=2)
    # A multi-worker strategy must exist before TensorFlow runs anything else.
    dist = make_strategy(plan)
    chief = dist.extended.should_checkpoint
    lr = DEFAULT_LR[optimizer] if lr is None else float(lr)
    manifest = require_path(manifest).resolve()  # a missing one named as the caller gave it
    out = Path(out)

    table = data.read_manifest(manifest)
    train_pairs = data.pair_table(table, "train", manifest)
    val_pairs = data.pair_table(table, "val", manifest)
    # Refused here, before the run folder is touched, like every other setting.
    per_execution = resolve_steps_per_execution(
        steps_per_execution, steps_per_epoch or train_pairs.batches(batch_size),
        gpu=any(device.kind == "GPU" for device in environment.devices(plan.backend)), strategy=plan.strategy,
    )
    rows = dict(zip(table["left"], table["row"]))
    rows.update({p: min(r, rows.get(p, r)) for p, r in zip(table["right"], table["row"])})
    # A look at each file here; they are read, checked and decoded into the cache in one
    # pass once the run folder is locked (_split_images).
    data.require_files(list(dict.fromkeys(list(table["left"]) + list(table["right"]))), manifest, rows)
    # The ImageNet weights download here, if they must, once everything else is known to work.
    weights_file = None if backbone_weights is None else network.backbone_weights_file(backbone_weights)

    config = _config(
        manifest, table, train_pairs, val_pairs, plan, dist, weights_file,
        preset=preset or "reference", epochs=epochs, batch_size=batch_size, lr=lr, optimizer=optimizer, seed=seed,
        early_stopping=early_stopping, steps_per_epoch=steps_per_epoch, steps_per_execution=per_execution,
        width=width, image_size=image_size, resize=resize, augment=augment,
        augment_flips=_preflight.augment_flips(augment, augment_flips), weight_decay=float(weight_decay),
        lr_schedule=lr_schedule, resample_negatives=bool(resample_negatives),
        resample_positives=bool(resample_positives), cache=str(cache), cache_limit=cache_limit,
        backbone_weights=_backbone_setting(backbone_weights, weights_file),
        freeze_backbone=bool(freeze_backbone), fine_tune_epochs=int(fine_tune_epochs),
    )
    if chief:
        _refuse_foreign(out)  # before the lock file is made in it
    created = not out.exists()
    try:
        # Non-chief workers of a multi-worker run train in lockstep but write nothing.
        with run.lock_run_folder(out) if chief else contextlib.nullcontext():
            state = _prepare_out(out, config, overwrite) if chief else _read_state(out, config)
            images = _split_images(out, config, dist, chief, table, train_pairs, val_pairs, rows, created)
            return _train(out, config, state, dist, chief, train_pairs, val_pairs, callbacks, verbose, images)
    except BaseException:
        if created and chief:
            with contextlib.suppress(OSError):
                out.rmdir()  # a run refused (or stopped) before it wrote anything leaves nothing
        raise


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C (or SIGINT) during :func:`fit`; says what the run folder kept.

    A KeyboardInterrupt still, so whatever handles Ctrl-C handles it.
    """

    def __init__(self, out: Path, saved_epoch: int, epochs: int):
        self.out = out
        self.saved_epoch = saved_epoch
        self.epochs = epochs
        if saved_epoch:
            kept = f"epoch {saved_epoch} of {epochs} saved; run the same command to resume"
        else:
            kept = "no epoch finished, nothing to resume; run the same command to start again"
        super().__init__(f"{out}: {kept}")


def _split_images(out: Path, config, dist, chief: bool, table, train_pairs, val_pairs, rows, created: bool):
    """The train and val splits' images, checked and decoded into their cache in one pass
    (:func:`dsxsd.train.data.prepare`); the test split's are decoded only to check them.

    A run folder that already holds this run (config.json, written after this pass once
    succeeded) had its images checked then: its test images are not decoded again, and
    its finished stores are reused.
    """
    splits = {"train": train_pairs.paths, "val": val_pairs.paths}
    if not run.is_run_folder(out):
        test = table[table["split"] == "test"]
        splits["test"] = list(dict.fromkeys([*test["left"], *test["right"]]))
    try:
        return data.prepare(
            splits,
            image_size=config["image_size"], resize=config["resize"], cache=_cache(config, dist, chief),
            cache_limit=config["cache_limit"], folder=_store_folder(out, dist, chief),
            source=config["manifest"], rows=rows, check_only=("test",),
        )
    except BaseException:
        if created and chief:
            shutil.rmtree(out / store.CACHE_FOLDER, ignore_errors=True)
        raise


def _train(out, config, state, dist, chief, train_pairs, val_pairs, callbacks, verbose, images) -> dict[str, Any]:
    epochs, steps_per_epoch = total_epochs(config), config["steps_per_epoch"]
    history = run.read_history(out)
    history = [r for r in history if r["epoch"] <= state["epoch"]] if state else []
    initial_epoch = state["epoch"] if state else 0
    finished = bool(state and state.get("stopped")) or initial_epoch >= epochs
    if chief and not finished:
        with run.saving(out, "config.json"):
            run.write_config(out, config)
    recorder = RunRecorder(out, history, config["early_stopping"], write=chief, saved_epoch=initial_epoch)
    recorder.stopped_early = bool(state and state.get("stopped"))
    try:
        # Built with the layers trainable that trained when the checkpoint was written:
        # they decide what optimizer state it holds.
        checkpoint = out / "checkpoints" / state["weights"] if state else None
        # Training reads one endless stream of batches; an epoch is a fixed number of
        # them, so a resumed run starts the stream where its finished epochs left it.
        steps = steps_per_epoch or train_pairs.batches(config["batch_size"])
        model = _compiled_model(config, dist, checkpoint, trainable_at(config, initial_epoch), steps)
        recorder.saved_model = model  # the whole Siamese model, whichever part of it trains
        all_callbacks: list[keras.callbacks.Callback] = [recorder]
        if config.get("lr_schedule") == "plateau":
            all_callbacks.append(PlateauSchedule(config, recorder))
        if chief:
            all_callbacks.append(EpochScalars(out / "logs"))
        all_callbacks += list(callbacks)
        schedule = dict(steps_per_epoch=steps, callbacks=all_callbacks, verbose=_verbosity(verbose) if chief else 0)
        started = time.monotonic()
        if not finished:
            frozen_epochs = config["epochs"] if config["freeze_backbone"] else 0
            # 1. --freeze-backbone: the head alone, on the tower's features.
            if initial_epoch < frozen_epochs:
                train_head_on_features(model, config, dist, chief, train_pairs, val_pairs, initial_epoch, schedule, images)
            # 2. --fine-tune-epochs: the top block and the head, on images, a fresh
            # optimizer at a tenth of the rate. The same step whether the frozen stage ran
            # just now or before a resume, so a resumed run fine-tunes as an uninterrupted one.
            if frozen_epochs and initial_epoch <= frozen_epochs < epochs and not recorder.stopped_early:
                with dist.scope():
                    _compile(model, config, "top", steps)
            # Training on images: the whole model, or the fine-tuning stage.
            first = max(initial_epoch, frozen_epochs)
            if first < epochs and not recorder.stopped_early:
                train_ds, val_ds = _datasets(config, train_pairs, val_pairs, images, start=first * steps)
                _fit(model, config, dist, train_ds, val_ds, initial_epoch=first, epochs=epochs, **schedule)
        seconds = time.monotonic() - started
        history = recorder.history
        # A finished run rerun writes nothing, unless a kill came between the last checkpoint
        # and the final model.
        if chief and (not finished or not (out / "model.keras").exists()):
            _save_final(out, model, history)
    except KeyboardInterrupt:
        raise TrainingInterrupted(out, recorder.saved_epoch, epochs) from None
    summary = _summary(out, history, initial_epoch, recorder, seconds, config)
    summary["already_complete"] = finished
    # What the one pass over the images decoded (0 for a split whose store was reused).
    summary["images_decoded"] = sum(rows.decoded for rows in images.values())
    summary["image_cache"] = {split: images[split].kind for split in ("train", "val")}
    return summary


def total_epochs(config: dict[str, Any]) -> int:
    """The epochs a run trains in all: ``epochs``, then ``fine_tune_epochs`` after a frozen stage."""
    return config["epochs"] + config.get("fine_tune_epochs", 0)


def _fit(model, config, dist, train_ds, val_ds, **schedule) -> None:
    if config["strategy"] == "multiworker":
        loop.train_loop(model, dist, train_ds, val_ds, **schedule)
    else:
        model.fit(train_ds, validation_data=val_ds, shuffle=False, **schedule)  # the dataset shuffles itself


def train_head_on_features(model, config, dist, chief, train_pairs, val_pairs, initial_epoch, schedule,
                           images=None) -> None:
    """The frozen stage of ``--freeze-backbone``: epochs ``initial_epoch + 1`` to
    ``epochs`` train the head alone, on the tower's features.

    Why not simply the model with its tower frozen: that runs the tower on both images of
    every pair of every epoch, to compute what cannot change while the tower does not.
    Here the tower runs once per distinct image of each split (:func:`tower_features`)
    and the head trains on batches gathered from those features by the pairs' indices
    (:func:`dsxsd.train.data.features_dataset`): the pairs, order and resampled partners
    the image stream gives at the same place in it, so a resumed run equals an
    uninterrupted one here too. The head (:func:`dsxsd.train.network.split_model`) is
    ``model``'s own layers and trains with ``model``'s optimizer, so ``model``, which the
    run folder saves, holds what the head learns and the optimizer state to resume it.
    """
    tower, head = network.split_model(model)
    with dist.scope():
        head.compile(
            optimizer=model.optimizer, loss=LOSS, metrics=_metrics(), jit_compile=config["jit"],
            steps_per_execution=config["steps_per_execution"],
        )
    images = images or {split: _cache(config, dist, chief) for split in ("train", "val")}
    train_features = tower_features(tower, train_pairs, config, images["train"], "train")
    val_features = tower_features(tower, val_pairs, config, images["val"], "val")
    train_ds = data.features_dataset(
        train_pairs, train_features, batch_size=config["batch_size"], shuffle=True, seed=config["seed"],
        repeat=True, start=initial_epoch * schedule["steps_per_epoch"],
        resample_negatives=config["resample_negatives"], resample_positives=config["resample_positives"],
    )
    train_ds = onto_device(train_ds, train_input_device(config["strategy"]))
    val_ds = data.features_dataset(val_pairs, val_features, batch_size=config["batch_size"])
    _fit(head, config, dist, train_ds, val_ds, initial_epoch=initial_epoch, epochs=config["epochs"], **schedule)


def tower_features(tower: keras.Model, pairs: data.PairTable, config: dict[str, Any], cache, cache_key: str):
    """The tower's features of each of ``pairs``' distinct images, [N, D] in the order of
    ``pairs.paths``, each image run through the tower once.

    ``cache``: the split's images (:class:`dsxsd.train.store.Rows`, as training reads
    them), or a ``--cache`` value to read them by (decoded here, kept as it says).
    """
    size, resize = config["image_size"], config["resize"]
    if isinstance(cache, store.Rows) and cache.kind != "none":
        batches = cache.batches(FEATURE_BATCH)
    elif isinstance(cache, store.Rows) or str(cache) in _preflight.CACHE_MODES:
        # Decoded for this once, a batch at a time: the features are what is kept.
        batches = (
            tf.data.Dataset.from_tensor_slices(pairs.paths)
            .map(lambda p: data.decode_and_resize(p, size, resize), num_parallel_calls=tf.data.AUTOTUNE)
            .batch(FEATURE_BATCH)
            .as_numpy_iterator()
        )
    else:  # a --cache folder: the store is kept for later runs
        batches = data.split_images(pairs, image_size=size, resize=resize, cache=cache, cache_key=cache_key,
                                    check=False).batches(FEATURE_BATCH)
    return np.concatenate([keras.ops.convert_to_numpy(tower(batch, training=False)) for batch in batches])


def _cache(config: dict[str, Any], dist, chief: bool):
    """``--cache``; a folder of a multi-worker run's other workers gets a subfolder each:
    each worker stores every image (docs/training.md says why)."""
    cache = config["cache"]
    if cache not in _preflight.CACHE_MODES and not chief:
        cache = Path(cache) / f"worker-{dist.cluster_resolver.task_id}"
    return cache


def _store_folder(out: Path, dist, chief: bool) -> Path:
    """Where ``--cache auto`` and ``disk`` keep the image stores: ``out/cache``."""
    folder = out / store.CACHE_FOLDER
    return folder if chief else folder / f"worker-{dist.cluster_resolver.task_id}"


def _datasets(config: dict[str, Any], train_pairs, val_pairs, images, start: int):
    common = dict(image_size=config["image_size"], batch_size=config["batch_size"], resize=config["resize"])
    train_ds = data.pairs_dataset(
        train_pairs, augment=config["augment"], augment_flips=config["augment_flips"], shuffle=True,
        seed=config["seed"], repeat=True, start=start,
        resample_negatives=config["resample_negatives"], resample_positives=config["resample_positives"],
        images=images["train"], cache_key="train", **common,
    )
    train_ds = onto_device(train_ds, train_input_device(config["strategy"]))
    return train_ds, data.pairs_dataset(val_pairs, images=images["val"], cache_key="val", **common)


def train_input_device(strategy: str) -> str | None:
    """The device training batches are prefetched onto (see :func:`onto_device`), or
    ``None`` to leave them on the host: the first GPU when one is used without a
    ``tf.distribute`` strategy of several replicas, under Keras' TensorFlow backend.

    A mirrored or multi-worker strategy distributes the dataset itself, prefetching each
    replica's share onto its device (and ``prefetch_to_device`` must be a pipeline's last
    step, which distributing would not be); Keras' JAX backend puts the next batch on the
    device itself; on a CPU the batches are where the model is already.
    """
    if strategy != "default" or keras.backend.backend() != "tensorflow":
        return None
    return "/gpu:0" if tf.config.list_physical_devices("GPU") else None


def onto_device(dataset: tf.data.Dataset, device: str | None) -> tf.data.Dataset:
    """``dataset``, its batches copied onto ``device`` ahead of the step that takes them.

    The plain version is ``dataset`` itself: each train step would then begin by copying
    its batch from the host to the GPU, the GPU idle meanwhile. Copied ahead, the copy of
    the next batch overlaps the current step's compute.
    """
    if device is None:
        return dataset
    return dataset.apply(tf.data.experimental.prefetch_to_device(device))


def _compiled_model(config: dict[str, Any], dist, checkpoint: Path | None, trainable: str = "all",
                    steps_per_epoch: int = 1) -> keras.Model:
    # Seeded the same on every rerun: what is random besides the data (the initial
    # weights) must not depend on where a run resumed. The data are seeded per pass.
    keras.utils.set_random_seed(config["seed"])
    previous_policy = keras.config.dtype_policy()
    keras.config.set_dtype_policy(config["precision"])
    try:
        with dist.scope():
            model = network.build_model(config["image_size"], config["width"], config["backbone_weights"])
            _compile(model, config, trainable, steps_per_epoch)
            if checkpoint is not None:
                _restore(model, checkpoint)
    finally:
        keras.config.set_dtype_policy(previous_policy)
    return model


LOSS = "binary_crossentropy"
# --fine-tune-epochs trains these of the tower's blocks (and the head): VGG16's last block
# holds its most specific features, and on a small dataset every block more unfrozen is
# millions more weights to memorise it with; the learning rate is this fraction of the
# frozen stage's, so what the ImageNet weights know is adjusted, not overwritten.
FINE_TUNE_BLOCKS = ("block5",)
FINE_TUNE_LR_FACTOR = 0.1
# Images per call of the tower while the frozen stage computes their features.
FEATURE_BATCH = 64


def trainable_at(config: dict[str, Any], epoch: int) -> str:
    """Which layers train in the epoch after ``epoch`` (or trained in ``epoch``, where it
    is the last): ``"all"``; with a frozen backbone ``"head"`` up to the end of the frozen
    stage, ``"top"`` (:data:`FINE_TUNE_BLOCKS` and the head) while fine-tuning."""
    if not config.get("freeze_backbone"):
        return "all"
    return "top" if config.get("fine_tune_epochs") and epoch > config["epochs"] else "head"


def _compile(model: keras.Model, config: dict[str, Any], trainable: str, steps_per_epoch: int = 1) -> None:
    """Compile ``model`` to train the layers ``trainable`` names (:func:`trainable_at`),
    with a fresh optimizer: fine-tuning starts its own, at its own learning rate (and,
    under ``--lr-schedule cosine``, its own cosine over its epochs)."""
    tower = model.get_layer("tower")
    tower.trainable = trainable != "head"
    if trainable == "top":
        for layer in tower.layers:
            layer.trainable = layer.name.startswith(FINE_TUNE_BLOCKS)
    lr = config["lr"] * (FINE_TUNE_LR_FACTOR if trainable == "top" else 1.0)
    if config.get("lr_schedule") == "cosine":
        stage_epochs = config["fine_tune_epochs"] if trainable == "top" else config["epochs"]
        lr = keras.optimizers.schedules.CosineDecay(lr, decay_steps=stage_epochs * steps_per_epoch)
    model.compile(
        optimizer=_optimizer(config["optimizer"], lr, config.get("weight_decay", 0.0)), loss=LOSS, metrics=_metrics(),
        jit_compile=config["jit"],
        steps_per_execution=config["steps_per_execution"],
    )
    # Built now, so that a checkpoint's optimizer state (Adam's moments, the step count)
    # is restored too, not silently skipped. The layers' trainable flags are saved with
    # the model, so a model file of either stage loads its optimizer state whole.
    model.optimizer.build(model.trainable_variables)


def _metrics() -> list[keras.metrics.Metric]:
    return [keras.metrics.BinaryAccuracy(name="accuracy")]


def _save_final(out: Path, model: keras.Model, history: list[dict[str, float]]) -> None:
    with run.saving(out, "model.keras"):
        run.save_model(model, out / "model.keras")
    if not (out / "best.keras").exists():
        with run.saving(out, "best.keras"):
            run.save_model(model, out / "best.keras")
    if history:
        with run.saving(out, "curves.png"):
            run.plot_curves(out, history)


class RunRecorder(keras.callbacks.Callback):
    """After each epoch: history.csv, best.keras, early stopping, then the checkpoint.

    The checkpoint is written last and names its epoch, so a kill between these steps
    at worst repeats that one epoch after resuming, and history is cut back to the
    checkpoint's epoch then: each epoch is in history.csv once.
    """

    def __init__(self, out: Path, history: list[dict[str, float]], patience: int | None, write: bool = True,
                 saved_epoch: int = 0):
        super().__init__()
        self.out = out
        self.history = list(history)
        self.patience = patience
        self.write = write
        self.stopped_early = False
        self.saved_epoch = saved_epoch  # the epoch the checkpoint holds
        # What the files hold, when it is not the model training (the Siamese model,
        # while its head trains alone).
        self.saved_model: keras.Model | None = None

    @property
    def best(self) -> dict[str, float] | None:
        scored = [r for r in self.history if "val_loss" in r]
        return min(scored, key=lambda r: r["val_loss"]) if scored else None

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        logs = dict(logs or {})
        previous_best = self.best
        row = {"epoch": epoch + 1, **{k: float(v) for k, v in logs.items() if k in run.HISTORY_COLUMNS}}
        row["lr"] = float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))
        self.history = [r for r in self.history if r["epoch"] < row["epoch"]] + [row]
        improved = "val_loss" in row and (previous_best is None or row["val_loss"] < previous_best["val_loss"])
        if self.patience is not None and self.best is not None and row["epoch"] - self.best["epoch"] >= self.patience:
            self.model.stop_training = True
            self.stopped_early = True
        if not self.write:
            self.saved_epoch = row["epoch"]  # the chief saved it
            return
        with run.saving(self.out, "history.csv"):
            run.write_history(self.out, self.history)
        if improved:
            with run.saving(self.out, "best.keras"):
                run.save_model(self.saved_model or self.model, self.out / "best.keras")
        with run.saving(self.out, f"the checkpoint of epoch {row['epoch']}"):
            self._checkpoint(row["epoch"])
        self.saved_epoch = row["epoch"]

    def _checkpoint(self, epoch: int) -> None:
        # The model and the optimizer's state, as a whole .keras file: state.json names
        # it only once it is complete, so a resume never reads a half-written one.
        folder = self.out / "checkpoints"
        folder.mkdir(parents=True, exist_ok=True)
        name = f"epoch-{epoch:04d}.keras"
        run.save_model(self.saved_model or self.model, folder / name)
        state = {"epoch": epoch, "weights": name, "stopped": self.stopped_early}
        write_text(folder / "state.json", json.dumps(state) + "\n", overwrite=True)
        # Earlier dsxsd versions wrote .weights.h5 checkpoints; either is replaced.
        for old in [*folder.glob("epoch-*.keras"), *folder.glob("epoch-*.weights.h5")]:
            if old.name != name:
                old.unlink(missing_ok=True)


# --lr-schedule plateau: the rate is multiplied by this after this many epochs in a row
# without a lower validation loss (Keras' ReduceLROnPlateau, sized for runs of 10-20 epochs).
PLATEAU_FACTOR = 0.2
PLATEAU_PATIENCE = 2


def plateau_lr(base_lr: float, val_losses: Sequence[float]) -> float:
    """The rate after epochs of ``val_losses`` under ``--lr-schedule plateau``: what
    Keras' ``ReduceLROnPlateau(factor=PLATEAU_FACTOR, patience=PLATEAU_PATIENCE,
    min_delta=0)`` would have set, from ``base_lr``."""
    lr, best, wait = base_lr, float("inf"), 0
    for loss in val_losses:
        if loss < best:
            best, wait = loss, 0
        else:
            wait += 1
        if wait >= PLATEAU_PATIENCE:
            lr, wait = lr * PLATEAU_FACTOR, 0
    return lr


class PlateauSchedule(keras.callbacks.Callback):
    """``--lr-schedule plateau``: before each epoch, the rate :func:`plateau_lr` gives
    for the validation losses of the stage so far.

    Why not Keras' ReduceLROnPlateau itself: it counts epochs without improvement in
    memory, so a resumed run would start counting afresh and lower the rate later than
    an uninterrupted one. Derived from history.csv (as early stopping is), it does not.
    """

    def __init__(self, config: dict[str, Any], recorder: RunRecorder):
        super().__init__()
        self.config = config
        self.recorder = recorder

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        # Keras counts epochs from 0, so ``epoch`` is the number finished; the stage is
        # that of the epoch about to run.
        fine_tuning = trainable_at(self.config, epoch + 1) == "top"
        first = self.config["epochs"] if fine_tuning else 0  # the stage's epochs come after it
        base = self.config["lr"] * (FINE_TUNE_LR_FACTOR if fine_tuning else 1.0)
        losses = [r["val_loss"] for r in self.recorder.history if first < r["epoch"] <= epoch and "val_loss" in r]
        self.model.optimizer.learning_rate = plateau_lr(base, losses)


class EpochScalars(keras.callbacks.Callback):
    """TensorBoard scalars per epoch, as Keras' TensorBoard callback names them
    (``logs/train`` and ``logs/validation``, ``epoch_loss``, ``epoch_accuracy``...).

    Written with TensorFlow's own summary writer because Keras' callback needs the
    ``tensorboard`` package, which TensorFlow no longer installs; viewing needs it
    (``pip install tensorboard``), training does not.
    """

    def __init__(self, log_dir: Path):
        super().__init__()
        from tensorflow.core.framework import summary_pb2

        self.log_dir = log_dir
        self.writers: dict[str, Any] = {}
        self.metadata = summary_pb2.SummaryMetadata(
            plugin_data=summary_pb2.SummaryMetadata.PluginData(plugin_name="scalars")
        )

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        values = {k: float(v) for k, v in (logs or {}).items()}
        values["learning_rate"] = float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))
        for folder, prefix in (("train", ""), ("validation", "val_")):
            scalars = {
                name[len(prefix):]: value
                for name, value in values.items()
                if (name.startswith("val_") if prefix else not name.startswith("val_"))
            }
            if not scalars:
                continue
            if folder not in self.writers:
                self.writers[folder] = tf.summary.create_file_writer(str(self.log_dir / folder))
            with self.writers[folder].as_default():
                for name, value in scalars.items():
                    tf.summary.write(f"epoch_{name}", tf.constant(value, tf.float32), step=epoch, metadata=self.metadata)
            self.writers[folder].flush()

    def on_train_end(self, logs: dict[str, Any] | None = None) -> None:
        for writer in self.writers.values():
            writer.close()
        self.writers.clear()  # a fine-tuning stage's fit writes on with new ones


# ------------------------------------------------------------------ settings and folders


def _validate(epochs, batch_size, optimizer, early_stopping, steps_per_epoch, resize, strategy, precision,
              width, image_size) -> None:
    checks = [
        (width > 0, f"width must be positive, got {width}"),
        (image_size >= network.MIN_IMAGE_SIZE, f"image size must be at least {network.MIN_IMAGE_SIZE}, got {image_size}"),
        (epochs >= 1, f"epochs must be at least 1, got {epochs}"),
        (batch_size >= 1, f"batch size must be at least 1, got {batch_size}"),
        (optimizer in OPTIMIZERS, f"unknown optimizer {optimizer!r}; expected one of {OPTIMIZERS}"),
        (early_stopping is None or early_stopping >= 1, f"early stopping patience must be at least 1, got {early_stopping}"),
        (steps_per_epoch is None or steps_per_epoch >= 1, f"steps per epoch must be at least 1, got {steps_per_epoch}"),
        (resize in data.RESIZE_MODES, f"unknown resize mode {resize!r}; expected one of {data.RESIZE_MODES}"),
        (strategy in STRATEGIES, f"unknown strategy {strategy!r}; expected one of {STRATEGIES}"),
        (precision in PRECISIONS, f"unknown precision {precision!r}; expected one of {PRECISIONS}"),
    ]
    for ok, message in checks:
        if not ok:
            raise UsageError(message)


def make_strategy(plan: TrainingPlan) -> tf.distribute.Strategy | OneDevice:
    """The tf.distribute strategy of ``plan`` (:func:`dsxsd.environment.plan_training`);
    under another Keras backend (JAX), :class:`OneDevice`."""
    if plan.backend != "tensorflow":
        # tf.data still feeds the model: TensorFlow must not claim the GPU memory that
        # JAX allocates (each takes most of it). Too late once TensorFlow has run an op;
        # on a TensorFlow without GPU support there is nothing to hide.
        with contextlib.suppress(RuntimeError):
            tf.config.set_visible_devices([], "GPU")
        return OneDevice()
    if plan.strategy == "multiworker":
        return tf.distribute.MultiWorkerMirroredStrategy()
    if plan.strategy == "mirrored":
        # Named devices: left to itself MirroredStrategy takes the GPUs, or else CPU:0
        # alone, never several logical CPU devices.
        return tf.distribute.MirroredStrategy(devices=list(plan.devices))
    return tf.distribute.get_strategy()


class OneDevice:
    """What :func:`fit` uses of a ``tf.distribute`` strategy, where there is none: under
    Keras' JAX backend the model trains with plain ``model.fit`` on JAX's default device,
    and this process alone writes the run folder."""

    num_replicas_in_sync = 1
    extended = types.SimpleNamespace(should_checkpoint=True)
    cluster_resolver = None

    def scope(self) -> contextlib.AbstractContextManager:
        return contextlib.nullcontext()


# Train steps per execution on a GPU: the most Keras runs in one call of its compiled
# train function (see resolve_steps_per_execution).
GPU_STEPS_PER_EXECUTION = 16


def resolve_steps_per_execution(
    requested: int | None, steps_per_epoch: int, *, gpu: bool, strategy: str = "default"
) -> int:
    """How many train steps one call of Keras' compiled train function runs.

    The plain version is 1: ``fit`` calls the function once per step. Each call costs
    Keras some Python (the iterator, the callbacks, the dispatch): nothing beside a CPU
    step of this network, but a GPU step of a small network or batch is short enough
    that the GPU would idle through that overhead; at 16 per call it is a sixteenth
    (benchmarks/README.md has the figures). ``None`` chooses: 1 on a
    CPU, on a GPU the largest divisor of ``steps_per_epoch`` up to
    :data:`GPU_STEPS_PER_EXECUTION`.

    Keras runs whole executions: at 2 per execution an epoch of 7 steps would train 8, and
    a resumed run would start its stream of batches in the wrong place. So the number
    always divides the epoch's steps (a prime number of steps gets 1). A multi-worker run
    trains with its own loop (:mod:`dsxsd.train.loop`), one step at a time.
    """
    if requested is not None and requested < 1:
        raise UsageError(f"steps per execution must be at least 1, got {requested}")
    if requested is not None and steps_per_epoch % requested:
        raise UsageError(f"steps per execution must divide the {steps_per_epoch} steps of an epoch, got {requested}")
    if strategy == "multiworker":
        return 1
    if requested is not None:
        return requested
    if not gpu:
        return 1
    return max(n for n in range(1, min(GPU_STEPS_PER_EXECUTION, steps_per_epoch) + 1) if steps_per_epoch % n == 0)


def _optimizer(name: str, lr, weight_decay: float = 0.0) -> keras.optimizers.Optimizer:
    """The optimizer, at ``lr`` (a rate or a schedule). ``weight_decay`` is decoupled from
    the gradient (AdamW; with sgd the same decay, Keras' ``weight_decay``): each step
    shrinks every weight by ``lr * weight_decay`` of itself, as Keras and PyTorch's
    AdamW do, so its values are those of PyTorch's AdamW (0.01 there by default)."""
    if name == "sgd":
        return keras.optimizers.SGD(learning_rate=lr, momentum=SGD_MOMENTUM, weight_decay=weight_decay or None)
    if weight_decay:
        return keras.optimizers.AdamW(learning_rate=lr, weight_decay=weight_decay)
    return keras.optimizers.Adam(learning_rate=lr)


def _verbosity(verbose: int | str) -> int:
    if verbose == "auto":
        return 1 if sys.stdout.isatty() else 2
    return int(verbose)


def _backbone_setting(backbone_weights, weights_file: Path | None) -> str | None:
    """``backbone_weights`` as config.json records it: ``"imagenet"`` as given, so the
    run builds from Keras' cache wherever it resumes; a local file by its absolute path."""
    if weights_file is None:
        return None
    if isinstance(backbone_weights, str) and backbone_weights == _preflight.IMAGENET_WEIGHTS:
        return backbone_weights
    return str(weights_file.resolve())


def _config(
    manifest: Path, table, train_pairs, val_pairs, plan: TrainingPlan, dist, weights_file: Path | None,
    **settings,
) -> dict[str, Any]:
    from .. import __version__

    return {
        "format": run.RUN_FORMAT,
        "version": 1,
        "manifest": str(manifest),
        "manifest_sha256": run.sha256_file(manifest),
        **settings,
        # Of the file itself, "imagenet" too: a resume key, so a run continues only from
        # the weights it started from.
        "backbone_weights_sha256": None if weights_file is None else run.sha256_file(weights_file),
        "preprocessing": "unit" if weights_file is None else "caffe",
        "head_units": network.HEAD_UNITS,
        "label": "1 = same class",
        "precision": plan.precision,
        "strategy": plan.strategy,
        "replicas": dist.num_replicas_in_sync,
        # Not a resume key: XLA changes how fast a step runs, not what it computes.
        "jit": plan.jit,
        "pairs": {split: int((table["split"] == split).sum()) for split in ("train", "val", "test")},
        "images": {"train": len(train_pairs.paths), "val": len(val_pairs.paths)},
        "backend": keras.backend.backend(),
        "versions": _versions(__version__),
    }


def _versions(dsxsd_version: str) -> dict[str, str]:
    versions = {"dsxsd": dsxsd_version, "tensorflow": tf.__version__, "keras": keras.__version__}
    if keras.backend.backend() == "jax":
        import jax

        versions["jax"] = jax.__version__
    return versions


def _refuse_foreign(out: Path) -> list[Path]:
    """Refuse a file, or a folder dsxsd did not write (never touched, --overwrite or
    not); return the folder's entries but the lock file."""
    if not out.exists():
        return []
    if not out.is_dir():
        raise OutputExistsError("exists and is not a folder", file=out)
    if run.holds_own_lock_only(out):  # a run killed before it wrote anything else
        return []
    children = list(out.iterdir())
    if children and not run.is_run_folder(out):
        raise OutputExistsError("exists and is not a dsxsd run folder; choose another --out", file=out)
    return [child for child in children if child.name != run.LOCK_NAME]


def _prepare_out(out: Path, config: dict[str, Any], overwrite: bool) -> dict[str, Any] | None:
    """Make ``out`` (an existing folder whose lock this process holds) ready; return the
    checkpoint state to resume from, if any."""
    children = _refuse_foreign(out)
    if not children:
        return None
    if overwrite:
        for child in children:
            shutil.rmtree(child) if child.is_dir() and not child.is_symlink() else child.unlink()
        return None
    differences = run.config_differences(run.read_run_config(out), config)
    if differences:
        raise OutputExistsError(
            "holds a run with other settings (" + "; ".join(differences[:3])
            + "); pass --overwrite to replace it or choose another --out",
            file=out,
        )
    return _read_state(out, config)


def _read_state(out: Path, config: dict[str, Any]) -> dict[str, Any] | None:
    path = out / "checkpoints" / "state.json"
    if not path.is_file():
        return None
    try:
        state = json.loads(path.read_text(encoding="utf-8"))
        int(state["epoch"]), str(state["weights"])
    except (ValueError, KeyError, TypeError):
        raise OutputExistsError("checkpoints/state.json is damaged; pass --overwrite to start over", file=out) from None
    if not (out / "checkpoints" / state["weights"]).is_file():
        raise OutputExistsError(f"checkpoint {state['weights']} is missing; pass --overwrite to start over", file=out)
    return state


def _restore(model: keras.Model, weights: Path) -> None:
    model.load_weights(weights)  # the optimizer's state too: _compile built it


def _summary(out, history, initial_epoch, recorder, seconds, config) -> dict[str, Any]:
    last = history[-1] if history else {}
    best = recorder.best or {}
    return {
        "out": str(out),
        "epochs": len(history),
        "initial_epoch": initial_epoch,
        "resumed": initial_epoch > 0,
        "stopped_early": recorder.stopped_early,
        "loss": last.get("loss"),
        "accuracy": last.get("accuracy"),
        "val_loss": last.get("val_loss"),
        "val_accuracy": last.get("val_accuracy"),
        "best_epoch": best.get("epoch"),
        "best_val_loss": best.get("val_loss"),
        "seconds": round(seconds, 1),
        "strategy": config["strategy"],
        "replicas": config["replicas"],
        "precision": config["precision"],
        "jit": config["jit"],
    }


__all__ = [
    "FINE_TUNE_BLOCKS", "FINE_TUNE_LR_FACTOR", "OneDevice", "PRECISIONS", "STRATEGIES", "SettingError",
    "TrainingInterrupted", "fit", "make_strategy", "onto_device", "resolve_steps_per_execution", "RunRecorder",
    "total_epochs", "tower_features", "train_head_on_features", "train_input_device", "trainable_at",
]
