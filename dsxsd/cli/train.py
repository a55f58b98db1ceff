"""``dsxsd train``: a pairs manifest into a trained Siamese model (a run folder).

TensorFlow is imported inside the command only, so ``dsxsd --help`` and every other
command work without the ``train`` extra, and this one says how to get it.
"""

from __future__ import annotations

import click

from .. import _preflight
from ._common import input_path, json_option, need_tensorflow, overwrite_option, print_json

INSTALL_HINT = 'pip install "dsxsd[train]"'
# What the train extra brings (h5py comes with Keras).
TRAIN_EXTRA_MODULES = frozenset({"tensorflow", "keras", "h5py", "matplotlib"})


def import_train():
    """``dsxsd.train``, or a MissingDependencyError (exit 2) naming the install line."""
    import importlib

    from ..errors import MissingDependencyError

    try:
        train_package = importlib.import_module("dsxsd.train")
        train_package.require_tensorflow()  # the network alone imports without it
    except ImportError as exc:
        top = (exc.name or "").split(".")[0]
        if top not in TRAIN_EXTRA_MODULES:
            raise
        raise MissingDependencyError(
            f"training needs {top}, which is not installed: run {INSTALL_HINT}"
        ) from None
    return train_package


def _cache(value: str) -> str:
    return value if value in ("memory", "none") else click.format_filename(value)


@click.command("train", short_help="Train the Siamese network on a pairs manifest into a run folder.")
@click.argument("manifest", type=input_path(dir_okay=False))
@click.option("--out", "out", required=True, type=click.Path(file_okay=False), help="The run folder to write (or resume).")
@click.option("--epochs", type=click.IntRange(min=1), default=20, show_default=True, help="Epochs to train in all (raise it to continue a finished run).")
@click.option("--batch-size", type=click.IntRange(min=1), default=32, show_default=True, help="Global batch size (split across replicas).")
@click.option("--lr", type=click.FloatRange(min=0, min_open=True), default=None, help="Learning rate [default: 1e-4 adam, 1e-2 sgd].")
@click.option("--optimizer", type=click.Choice(["adam", "sgd"]), default="adam", show_default=True, help="sgd uses momentum 0.9.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of weights, shuffling and augmentation.")
@click.option("--early-stopping", type=click.IntRange(min=1), default=None, metavar="N", help="Stop after N epochs without a lower validation loss.")
@click.option("--steps-per-epoch", type=click.IntRange(min=1), default=None, help="Batches per epoch (the training pairs repeat) [default: all pairs once].")
@click.option("--width", type=click.FloatRange(min=0, min_open=True), default=1.0, show_default=True, help="Scales every conv width; 0.125 makes a CPU-sized model.")
@click.option("--image-size", type=click.IntRange(min=32), default=105, show_default=True, help="Input side in pixels.")
@click.option("--resize", type=click.Choice(["stretch", "letterbox"]), default="stretch", show_default=True, help="letterbox keeps the aspect ratio and pads.")
@click.option("--augment", is_flag=True, help="Random flips, brightness and contrast on training images.")
@click.option("--cache", default="memory", show_default=True, metavar="memory|none|DIR", help="Keep decoded images in memory for the run, on disk in DIR, or decode once per epoch.")
@click.option("--backbone-weights", type=input_path(dir_okay=False), default=None, help="A local Keras VGG16 no-top weights file (never downloaded); switches to VGG16's preprocessing.")
@click.option("--strategy", type=click.Choice(["auto", "default", "mirrored", "multiworker"]), default="auto", show_default=True, help="mirrored: all local GPUs; multiworker: the machines in TF_CONFIG.")
@click.option("--precision", type=click.Choice(["auto", "float32", "mixed_float16", "mixed_bfloat16"]), default="auto", show_default=True, help="auto: mixed_float16 on a GPU, float32 on a CPU.")
@overwrite_option
@json_option
def train(manifest, out, epochs, batch_size, lr, optimizer, seed, early_stopping, steps_per_epoch, width,
          image_size, resize, augment, cache, backbone_weights, strategy, precision, overwrite, as_json) -> None:
    """Train the Siamese VGG16 network on MANIFEST (a pairs.csv from make-pairs).

    Fits on the 'train' split, validates on 'val' (label 1 = same class), and writes
    --out: model.keras, best.keras, config.json, history.csv, logs/ (TensorBoard),
    curves.png and checkpoints/. Running the same command again after a crash or kill
    resumes from the last finished epoch; raising --epochs continues a finished run. A run
    folder with other settings is replaced only with --overwrite; a folder that is not a
    run folder is never replaced; a folder another dsxsd train is writing is refused.

    \b
    dsxsd train pairs.csv --out run/
    dsxsd train pairs.csv --out smoke/ --width 0.125 --image-size 32 --epochs 2
    KERAS_BACKEND=jax dsxsd train pairs.csv --out run/   (JAX, one device)
    """
    need_tensorflow()
    _preflight.check_train(manifest, out)  # before the seconds TensorFlow takes to import
    train_package = import_train()
    summary = train_package.fit(
        manifest,
        out,
        epochs=epochs,
        batch_size=batch_size,
        lr=lr,
        optimizer=optimizer,
        seed=seed,
        early_stopping=early_stopping,
        steps_per_epoch=steps_per_epoch,
        width=width,
        image_size=image_size,
        resize=resize,
        augment=augment,
        cache=_cache(cache),
        backbone_weights=backbone_weights,
        strategy=strategy,
        precision=precision,
        overwrite=overwrite,
        verbose=0 if as_json else "auto",
    )
    if as_json:
        print_json(summary)
    elif summary["already_complete"]:
        click.echo(f"{out} is already complete {_done(summary, epochs)}")
    else:
        resumed = f" (resumed after epoch {summary['initial_epoch']})" if summary["resumed"] else ""
        stopped = ", stopped early" if summary["stopped_early"] else ""
        click.echo(
            f"trained {summary['epochs']} epochs{resumed}{stopped}: val_accuracy "
            f"{_fmt(summary['val_accuracy'])}, best val_loss {_fmt(summary['best_val_loss'])} "
            f"at epoch {summary['best_epoch']} -> {out}"
        )


def _done(summary, epochs: int) -> str:
    """What a finished run holds, and how to get more out of it."""
    trained = summary["epochs"]
    if summary["stopped_early"]:
        return f"(stopped early after epoch {trained}); pass --overwrite to train it again"
    if trained > epochs:
        return f"({trained} epochs); raise --epochs above {trained} to train more"
    return f"({trained} of {epochs} epochs); raise --epochs to train more"


def _fmt(value) -> str:
    return "n/a" if value is None else f"{value:.4f}"


COMMANDS = [train]
