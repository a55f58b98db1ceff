"""``dsxsd train``: a pairs manifest into a trained Siamese model (a run folder); ``dsxsd
info``: what training would run on here, and why.

TensorFlow is imported inside the commands only, so ``dsxsd --help`` and every other
command work without the ``train`` extra, and these say how to get it.
"""

from __future__ import annotations

from pathlib import Path

import click

from .. import _preflight, presets
from ..presets import PRESETS
from ._common import (
    _InputPath, import_train, input_path, json_option, need_tensorflow, overwrite_option, print_json,
    setting_warnings,
)


class _BackboneWeights(_InputPath):
    """``imagenet``, or a local weights file that must exist (checked as every input path is)."""

    name = "imagenet|FILE"

    def convert(self, value, param, ctx):
        if value == _preflight.IMAGENET_WEIGHTS:
            return value
        return super().convert(value, param, ctx)


class _Augmentation(click.Choice):
    """``--augment``'s choices. Given alone it takes the next word for its value, so a
    manifest written after it is refused as a choice: say so, not only what the choices are."""

    def convert(self, value, param, ctx):
        if value not in self.choices and Path(value).is_file():
            self.fail(f"{value!r} is not one of {', '.join(map(repr, self.choices))}: --augment alone takes "
                      f"the next word for its value: put --augment after MANIFEST", param, ctx)
        return super().convert(value, param, ctx)


def _cache(value: str) -> str:
    return value if value in _preflight.CACHE_MODES else click.format_filename(value)


@click.command("train", short_help="Train the Siamese network on a pairs manifest into a run folder.")
@click.argument("manifest", type=input_path(dir_okay=False))
@click.option("--out", "out", required=True, type=click.Path(file_okay=False), help="The run folder to write (or resume).")
@click.option(
    "--preset", type=click.Choice(list(PRESETS)), default=None,
    help="A recipe for the options not given: reference (the default: the reference network) or cpu "
    "(a laptop and a small real dataset: width 0.125, 64 px, 10 epochs, lr 1e-3, partners resampled).",
)
@click.option("--epochs", type=click.IntRange(min=1), default=None, help="Epochs to train in all (raise it to continue a finished run); with --freeze-backbone, those of the frozen stage [default: 20, or the preset's].")
@click.option("--batch-size", type=click.IntRange(min=1), default=None, help="Global batch size (split across replicas) [default: 32].")
@click.option("--lr", type=click.FloatRange(min=0, min_open=True), default=None, help="Learning rate [default: 1e-4 adam, 1e-2 sgd, or the preset's].")
@click.option("--optimizer", type=click.Choice(["adam", "sgd"]), default="adam", show_default=True, help="sgd uses momentum 0.9.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of weights, shuffling and augmentation.")
@click.option("--early-stopping", type=click.IntRange(min=1), default=None, metavar="N", help="Stop after N epochs without a lower validation loss.")
@click.option("--steps-per-epoch", type=click.IntRange(min=1), default=None, help="Batches per epoch (the training pairs repeat) [default: all pairs once].")
@click.option("--width", type=click.FloatRange(min=0, min_open=True), default=None, help="Scales every conv width; 0.125 makes a CPU-sized model [default: 1.0, or the preset's].")
@click.option("--image-size", type=click.IntRange(min=32), default=None, help="Input side in pixels [default: 105, or the preset's].")
@click.option("--resize", type=click.Choice(["stretch", "letterbox"]), default="stretch", show_default=True, help="letterbox keeps the aspect ratio and pads.")
@click.option(
    "--augment", type=_Augmentation(_preflight.AUGMENTATIONS), is_flag=False, flag_value="basic", default=None,
    help="Augment training images. basic (--augment alone): random flips, brightness and contrast. crops, for "
    "object crops: a random resized crop, a rotation of up to 10 degrees, brightness, contrast and saturation, "
    "no flips. Given alone, put it after MANIFEST, which it would take for its value "
    "[default: none, or the preset's].",
)
@click.option("--no-augment", is_flag=True, default=False, help="Same as --augment none (overrides a preset's).")
@click.option("--augment-flips/--no-augment-flips", default=None, help="Random horizontal flips in the augmentation (mirrored text and digits are other objects) [default: on with basic, off with crops].")
@click.option("--weight-decay", type=click.FloatRange(min=0), default=None, metavar="FLOAT", help="Decoupled weight decay (AdamW; sgd: Keras' weight_decay), as in PyTorch's AdamW: each step shrinks every weight by lr x FLOAT of itself [default: 0, or the preset's].")
@click.option("--lr-schedule", type=click.Choice(_preflight.LR_SCHEDULES), default=None, help="constant; cosine: decays to 0 over the run's --epochs, step by step (then --epochs cannot change on resume); plateau: x0.2 after 2 epochs without a lower validation loss [default: constant, or the preset's].")
@click.option("--resample-negatives/--no-resample-negatives", default=None, help="Each epoch, give every different-class training pair a new partner of another class, drawn from the train split's images (against memorising a small dataset) [default: off, on with --preset cpu].")
@click.option("--resample-positives/--no-resample-positives", default=None, help="Each epoch, give every same-class training pair a new partner: another image of its class from the train split [default: off, on with --preset cpu].")
@click.option("--cache", default="auto", show_default=True, metavar="auto|memory|disk|none|DIR", help="Where the decoded images stay for the run. auto: in memory while they fit --cache-limit, past it in a store on disk (RUN/cache); memory; disk (RUN/cache); DIR: a store in DIR, kept across runs; none: decoded every epoch.")
@click.option("--cache-limit", default=None, metavar="SIZE", help="The most memory --cache auto gives the decoded images, e.g. 500MB or 8GB [default: half the machine's memory].")
@click.option("--backbone-weights", type=_BackboneWeights(dir_okay=False, path_type=Path), default=None, metavar="imagenet|FILE", help="Start the tower from VGG16 weights, with VGG16's preprocessing. imagenet: Keras' ImageNet weights (--width 1.0 only), downloaded once into Keras' cache (~/.keras/models, or $KERAS_HOME/models) and used from there; FILE: a local Keras VGG16 no-top weights file, never downloaded.")
@click.option("--freeze-backbone", is_flag=True, default=False, help="Train the head only, the tower fixed (meant with --backbone-weights): the tower runs once per image and the head trains on its features, so an epoch costs the head alone. Not with --augment.")
@click.option("--fine-tune-epochs", type=click.IntRange(min=0), default=0, show_default=True, metavar="N", help="After --freeze-backbone's --epochs, train the tower's last block (block5) and the head N epochs more, on images, at a tenth of --lr.")
@click.option("--strategy", type=click.Choice(["auto", "default", "mirrored", "multiworker"]), default="auto", show_default=True, help="auto: mirrored over 2+ GPUs, multiworker with TF_CONFIG, else default (one device). mirrored: all local GPUs; multiworker: the machines in TF_CONFIG.")
@click.option("--precision", type=click.Choice(["auto", "float32", "mixed_float16", "mixed_bfloat16"]), default="auto", show_default=True, help="auto: mixed_float16 on a GPU, float32 on a CPU.")
@click.option("--jit", type=click.Choice(["auto", "on", "off"]), default="auto", show_default=True, help="XLA compilation of the train step. auto: on with a GPU (and under JAX), off on a CPU and under mirrored or multiworker.")
@overwrite_option
@json_option
def train(manifest, out, preset, epochs, batch_size, lr, optimizer, seed, early_stopping, steps_per_epoch, width,
          image_size, resize, augment, no_augment, augment_flips, weight_decay, lr_schedule, resample_negatives,
          resample_positives, cache, cache_limit, backbone_weights,
          freeze_backbone, fine_tune_epochs, strategy, precision, jit, overwrite, as_json) -> None:
    """Train the Siamese VGG16 network on MANIFEST (a pairs.csv from make-pairs).

    Fits on the 'train' split, validates on 'val' (label 1 = same class), and writes
    --out: model.keras, best.keras, config.json, history.csv, logs/ (TensorBoard),
    curves.png and checkpoints/. Running the same command again after a crash or kill
    resumes from the last finished epoch; raising --epochs continues a finished run. A run
    folder with other settings is replaced only with --overwrite; a folder that is not a
    run folder is never replaced; a folder another dsxsd train is writing is refused.
    `dsxsd info` shows what --strategy, --precision and --jit auto pick here; a setting
    this machine cannot honour is replaced by what it can, with a warning line.

    \b
    dsxsd train pairs.csv --out run/
    dsxsd train pairs.csv --out run/ --preset cpu
    dsxsd train pairs.csv --out smoke/ --width 0.125 --image-size 32 --epochs 2
    dsxsd train pairs.csv --out run/ --backbone-weights imagenet
    dsxsd train pairs.csv --out run/ --backbone-weights imagenet --freeze-backbone --epochs 5 --fine-tune-epochs 5
    KERAS_BACKEND=jax dsxsd train pairs.csv --out run/   (JAX, one device)
    """
    need_tensorflow()
    if no_augment:
        if augment not in (None, "none"):
            raise click.UsageError(f"--no-augment and --augment {augment} contradict each other; give one")
        augment = "none"
    recipe = presets.resolve(preset, dict(
        epochs=epochs, batch_size=batch_size, lr=lr, width=width, image_size=image_size, augment=augment,
        weight_decay=weight_decay, lr_schedule=lr_schedule,
        resample_negatives=resample_negatives, resample_positives=resample_positives,
    ))
    # Before the seconds TensorFlow takes to import.
    _preflight.check_train(manifest, out, width=recipe["width"], backbone_weights=backbone_weights,
                           augment=recipe["augment"], freeze_backbone=freeze_backbone, fine_tune_epochs=fine_tune_epochs,
                           weight_decay=recipe["weight_decay"], lr_schedule=recipe["lr_schedule"],
                           augment_flips=augment_flips, cache=cache, cache_limit=cache_limit)
    if preset is not None and not as_json:
        click.echo(presets.describe(preset))
    train_package = import_train()
    with setting_warnings():
        summary = train_package.fit(
            manifest,
            out,
            preset=preset,
            **recipe,
            augment_flips=augment_flips,
            optimizer=optimizer,
            seed=seed,
            early_stopping=early_stopping,
            steps_per_epoch=steps_per_epoch,
            resize=resize,
            cache=_cache(cache),
            cache_limit=cache_limit,
            backbone_weights=backbone_weights,
            freeze_backbone=freeze_backbone,
            fine_tune_epochs=fine_tune_epochs,
            strategy=strategy,
            precision=precision,
            jit=jit,
            overwrite=overwrite,
            verbose=0 if as_json else "auto",
        )
    if as_json:
        print_json(summary)
    elif summary["already_complete"]:
        fixed = fine_tune_epochs or recipe["lr_schedule"] == "cosine"
        click.echo(f"{out} is already complete {_done(summary, recipe['epochs'], fine_tune_epochs, fixed)}")
    else:
        resumed = f" (resumed after epoch {summary['initial_epoch']})" if summary["resumed"] else ""
        stopped = ", stopped early" if summary["stopped_early"] else ""
        click.echo(
            f"trained {summary['epochs']} epochs{resumed}{stopped}: val_accuracy "
            f"{_fmt(summary['val_accuracy'])}, best val_loss {_fmt(summary['best_val_loss'])} "
            f"at epoch {summary['best_epoch']} -> {out}"
        )


def _done(summary, epochs: int, fine_tune_epochs: int = 0, fixed_epochs: bool = False) -> str:
    """What a finished run holds, and how to get more out of it. ``fixed_epochs``: its
    --epochs is a resume key (fine-tuning stages, a cosine schedule)."""
    trained = summary["epochs"]
    if summary["stopped_early"]:
        return f"(stopped early after epoch {trained}); pass --overwrite to train it again"
    if fine_tune_epochs:  # its stages are fixed: --epochs and --fine-tune-epochs are resume keys
        return f"({trained} epochs, {fine_tune_epochs} of them fine-tuning); pass --overwrite to train it again"
    if fixed_epochs:  # the cosine's length is the run's
        return f"({trained} epochs on a cosine schedule); pass --overwrite to train it again"
    if trained > epochs:
        return f"({trained} epochs); raise --epochs above {trained} to train more"
    return f"({trained} of {epochs} epochs); raise --epochs to train more"


def _fmt(value) -> str:
    return "n/a" if value is None else f"{value:.4f}"


@click.command("info", short_help="Versions, devices and what train would pick here (for bug reports).")
@json_option
def info(as_json) -> None:
    """Print what decides how training runs on this machine: dsxsd, Python, platform,
    TensorFlow (its distributions, CUDA/cuDNN build, XLA), Keras and its backend, JAX,
    onnxruntime, the devices, the GPUs the NVIDIA driver reports, and what `dsxsd train
    --strategy auto --precision auto --jit auto` would pick and why. Problems (a GPU
    TensorFlow does not see, two TensorFlow distributions) end the report as `warning:`
    lines, each with the command that fixes it. Works without TensorFlow installed.
    Paste it into bug reports.

    \b
    dsxsd info
    dsxsd info --json
    """
    from .. import environment

    report = environment.info()
    if as_json:
        print_json(report)
        return
    for line in _info_lines(report):
        click.echo(line)


def _info_lines(report) -> list[str]:
    tf, keras, jax, ort, system = (report[k] for k in ("tensorflow", "keras", "jax", "onnxruntime", "platform"))
    lines = [
        f"dsxsd        {report['dsxsd']}",
        f"python       {report['python']['version']} ({report['python']['implementation']}) {report['python']['executable']}",
        f"platform     {system['platform']}, {system['cpus']} CPUs ({system['cpus_usable']} usable)",
    ]
    distributions = ", ".join(f"{k} {v}" for k, v in tf["distributions"].items()) or "none"
    if tf["installed"]:
        build = tf["build"]
        cuda = (f"CUDA {build.get('cuda_version', '?')}, cuDNN {build.get('cudnn_version', '?')}"
                if tf["built_with_cuda"] else "no CUDA")
        lines.append(f"tensorflow   {tf['version']} ({distributions}; {cuda}; XLA {'yes' if tf['xla'] else 'no'})")
    else:
        lines.append(f"tensorflow   not installed (distributions: {distributions}): {tf['install']}")
    state = "" if keras["installed"] else (": " + (keras.get("error") or "not installed"))
    lines.append(f"keras        {keras['version'] or 'not installed'}, backend {keras['backend']}{state}")
    if jax["installed"]:
        lines.append(f"jax          {jax['version']} (jaxlib {jax['jaxlib']}), devices {_devices(jax['devices'])}")
    else:
        lines.append("jax          not installed")
    lines.append(f"onnxruntime  {ort['version']} ({', '.join(ort['providers'])})" if ort["installed"]
                 else "onnxruntime  not installed")
    if tf["installed"]:
        lines.append(f"devices      {_devices(tf['devices'])}")
    driver = report["gpu_driver"]
    gpus = "; ".join(
        f"{g['name']}{'' if g['memory_mib'] is None else ' %d MiB' % g['memory_mib']}, driver {g['driver']}"
        for g in driver["gpus"]
    )
    if not gpus:
        gpus = "NVIDIA driver loaded (/proc/driver/nvidia), nvidia-smi gave no list" if driver["present"] else "none"
    lines.append(f"gpu driver   {gpus}")
    if report["environment"]:
        lines.append("environment  " + " ".join(f"{k}={v}" for k, v in report["environment"].items()))
    plan = report["plan"]
    if plan:
        lines.append("train --strategy auto --precision auto --jit auto would use:")
        lines.append(f"  strategy   {plan['strategy']}: {plan['reasons']['strategy']}")
        lines.append(f"  precision  {plan['precision']}: {plan['reasons']['precision']}")
        lines.append(f"  jit        {'on' if plan['jit'] else 'off'}: {plan['reasons']['jit']}")
    lines += [f"warning: {w}" for w in report["warnings"]]
    return lines


def _devices(devices) -> str:
    described = []
    for d in devices:
        extra = [x for x in (d["model"] if d["kind"] != "CPU" else None,
                             d["compute_capability"] and f"compute {d['compute_capability']}",
                             d["memory_bytes"] and f"{d['memory_bytes'] / 2**30:.1f} GiB") if x]
        described.append(d["name"] + (f" ({', '.join(extra)})" if extra else ""))
    return ", ".join(described) or "none"


COMMANDS = [train, info]
