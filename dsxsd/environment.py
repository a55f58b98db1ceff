"""What this machine offers training, and what ``dsxsd train`` would make of it.

:func:`plan_training` turns ``--strategy``, ``--precision`` and ``--jit`` (``auto`` or
not) into concrete choices with a one-line reason each; :func:`dsxsd.train.fit` trains
by it and :func:`info` (``dsxsd info``) shows it, so what info says is what train does.
:func:`info` is the report users paste into bug reports: versions, devices, the GPU the
driver sees, TensorFlow's CUDA build, the installed TensorFlow distributions.

TensorFlow, Keras, JAX and onnxruntime are imported inside the functions, and only when
installed: ``import dsxsd`` never imports them, and ``dsxsd info`` works without them.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib
import importlib.metadata
import importlib.util
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from .errors import UsageError

INSTALL_TRAIN = 'pip install "dsxsd[train]"'
INSTALL_GPU = 'pip install "dsxsd[gpu]"'
# JAX's GPU wheels are JAX's own; dsxsd's gpu extra installs TensorFlow's.
INSTALL_JAX_GPU = 'pip install -U "jax[cuda12]"'

STRATEGIES = ("auto", "default", "mirrored", "multiworker")
PRECISIONS = ("auto", "float32", "mixed_float16", "mixed_bfloat16")
JIT_MODES = ("auto", "on", "off")

# Where the NVIDIA kernel driver shows itself once loaded, whatever is installed in Python.
NVIDIA_PROC = Path("/proc/driver/nvidia")
# Environment variables that change what training does; info reports those that are set.
ENVIRONMENT_VARIABLES = (
    "KERAS_BACKEND", "CUDA_VISIBLE_DEVICES", "TF_XLA_FLAGS", "XLA_FLAGS", "TF_FORCE_GPU_ALLOW_GROWTH",
    "TF_GPU_ALLOCATOR", "TF_ENABLE_ONEDNN_OPTS", "TF_CPP_MIN_LOG_LEVEL", "XLA_PYTHON_CLIENT_PREALLOCATE",
    "XLA_PYTHON_CLIENT_MEM_FRACTION", "DSXSD_DEBUG",
)


@dataclass(frozen=True)
class Device:
    """A device the Keras backend can run on. ``name`` is the logical device's name as the
    backend spells it (``/device:GPU:0`` under TensorFlow, ``cuda:0`` under JAX)."""

    kind: str  # "GPU" or "CPU" (or the backend's word for another accelerator, upper case)
    name: str
    model: str | None = None  # "NVIDIA H100 80GB HBM3"
    compute_capability: str | None = None
    memory_bytes: int | None = None


@dataclass(frozen=True)
class TrainingPlan:
    """The concrete strategy, precision and XLA choice of a training run, and why.

    ``devices``: what a mirrored strategy spreads the batch over (empty otherwise: the
    default strategy runs on the backend's first device, multi-worker on what each
    worker has). ``warnings``: settings asked for that cannot work here, each saying what
    is done instead.
    """

    backend: str
    strategy: str
    precision: str
    jit: bool
    devices: tuple[str, ...]
    reasons: dict[str, str]
    warnings: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# ----------------------------------------------------------------------------- devices


# What TensorFlow's native libraries write while it is imported and first looks for
# devices, whatever TF_CPP_MIN_LOG_LEVEL says: absl's preamble, the CPU instructions it
# was built for, oneDNN's note, and (the full ``tensorflow`` wheel) its CUDA stub's search
# for a driver.
_START_UP_LINES = (
    r"All log messages before absl::InitializeLog|cpu_feature_guard\.cc|To enable the following "
    r"instructions|oneDNN custom operations|cudart_stub\.cc"
)
# Where no NVIDIA driver is installed, the CUDA build's failed look for one is expected;
# beside a driver it is a real problem, and stays.
_NO_DRIVER_LINES = r"|cuda_platform\.cc:\d+\] failed call to cuInit|cuda_executor\.cc"


def quiet_tensorflow() -> None:
    """Keep TensorFlow's C++ start-up notes off the user's terminal; import it if it is
    installed and not yet imported.

    At import TensorFlow logs which CPU instructions it was built for, that oneDNN is on
    and that no CUDA driver was found, each preceded by absl's "All log messages before
    absl::InitializeLog() is called..." line (once per native library that logs, so pairs
    of them). None of it is actionable. TF_CPP_MIN_LOG_LEVEL=2 drops INFO and WARNING
    lines and keeps ERROR ones (real failures); it is read once, when TensorFlow's native
    code loads, so it is set before the first ``import tensorflow`` (every path into
    TensorFlow in dsxsd calls this first: :mod:`dsxsd.train` and this module). Some lines
    come before absl reads any setting: they are taken out of what the import writes to
    file descriptor 2, and everything else written there is passed on. A user's own
    TF_CPP_MIN_LOG_LEVEL wins and leaves the output alone, and DSXSD_DEBUG=1 (``dsxsd
    --verbose``) sets 0, TensorFlow's default, showing it all: said explicitly, because
    TensorFlow imports JAX where it is installed, and JAX sets 1.
    """
    debug = os.environ.get("DSXSD_DEBUG", "") not in ("", "0")
    users_own = "TF_CPP_MIN_LOG_LEVEL" in os.environ
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "0" if debug else "2")
    if debug or users_own or "tensorflow" in sys.modules or importlib.util.find_spec("tensorflow") is None:
        return
    driver = NVIDIA_PROC.exists() or shutil.which("nvidia-smi") is not None
    with _native_stderr_without(re.compile(_START_UP_LINES + ("" if driver else _NO_DRIVER_LINES))):
        try:
            import tensorflow as tf

            tf.config.list_physical_devices()  # the first look for devices, which logs too
        except Exception:  # a broken install: the import that needs it says what is wrong
            return


@contextlib.contextmanager
def _native_stderr_without(lines: re.Pattern) -> Iterator[None]:
    """Hold back what is written to file descriptor 2 (by C++ code too) inside the block,
    then pass on every line but those ``lines`` matches."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as held:
        os.dup2(held.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            held.seek(0)
            text = held.read().decode("utf-8", "replace")
            kept = [line for line in text.splitlines(keepends=True) if not lines.search(line)]
            if kept:
                sys.stderr.write("".join(kept))
                sys.stderr.flush()


def keras_backend() -> str:
    """The Keras backend training would use: Keras' own answer where Keras imports, else
    what it would read (KERAS_BACKEND, then ~/.keras/keras.json), else ``tensorflow``."""
    quiet_tensorflow()  # Keras imports TensorFlow under its default backend
    try:
        import keras

        return keras.backend.backend()
    except Exception:  # not installed, or broken (its backend fails to import): as Keras reads it
        return configured_backend()


def configured_backend() -> str:
    """The Keras backend as Keras reads it, importing nothing: KERAS_BACKEND, then
    ``~/.keras/keras.json`` (or under KERAS_HOME), else ``tensorflow``."""
    if os.environ.get("KERAS_BACKEND"):
        return os.environ["KERAS_BACKEND"]
    config = Path(os.environ.get("KERAS_HOME", Path.home() / ".keras")) / "keras.json"
    try:
        return str(json.loads(config.read_text(encoding="utf-8")).get("backend", "tensorflow"))
    except (OSError, ValueError, AttributeError):
        return "tensorflow"


def devices(backend: str | None = None) -> list[Device]:
    """The devices ``backend`` (default: Keras') can train on, GPUs first. Nothing is
    initialised: logical devices configured later (``tf.config``) are still possible."""
    backend = backend or keras_backend()
    if backend == "tensorflow":
        return _tensorflow_devices()
    if backend == "jax":
        return _jax_devices()
    return []  # torch and others: dsxsd does not train under them


def _tensorflow_devices() -> list[Device]:
    quiet_tensorflow()
    import tensorflow as tf

    found = []
    for kind in ("GPU", "CPU"):
        index = 0
        # Visible, not initialised: counting logical devices this way leaves TensorFlow's
        # runtime unstarted, which a multi-worker strategy made afterwards needs.
        for physical in tf.config.get_visible_devices(kind):
            details = tf.config.experimental.get_device_details(physical) if kind == "GPU" else {}
            capability = details.get("compute_capability")
            for _ in tf.config.get_logical_device_configuration(physical) or [None]:
                found.append(Device(
                    kind, f"/device:{kind}:{index}", details.get("device_name"),
                    None if capability is None else ".".join(map(str, capability)),
                ))
                index += 1
    return found


def _jax_devices() -> list[Device]:
    import jax

    found = []
    for device in jax.devices():
        kind = "GPU" if device.platform in ("gpu", "cuda", "rocm") else device.platform.upper()
        try:
            memory = (device.memory_stats() or {}).get("bytes_limit")
        except Exception:  # noqa: BLE001 - a backend without memory statistics
            memory = None
        capability = getattr(device, "compute_capability", None)
        found.append(Device(kind, f"{device.platform}:{device.id}", device.device_kind, capability, memory))
    return sorted(found, key=lambda d: d.kind != "GPU")


def xla_available(backend: str | None = None) -> bool:
    """Whether the backend can compile the train step with XLA (``--jit on``)."""
    backend = backend or keras_backend()
    if backend == "jax":
        return True  # XLA is how JAX runs anything
    if backend == "tensorflow":
        quiet_tensorflow()
        import tensorflow as tf

        return bool(tf.test.is_built_with_xla())
    return False


def gpu_driver() -> dict[str, Any]:
    """The NVIDIA GPUs the driver reports, whatever Python has installed: ``nvidia-smi``'s
    list where it answers, and whether ``/proc/driver/nvidia`` exists. ``present`` is
    either; a GPU TensorFlow or JAX does not see is then a problem of the install."""
    gpus = []
    command = shutil.which("nvidia-smi")
    if command:
        query = [command, "--query-gpu=name,memory.total,driver_version", "--format=csv,noheader,nounits"]
        try:
            done = subprocess.run(query, capture_output=True, text=True, timeout=20)
        except (OSError, subprocess.SubprocessError):
            done = None  # a hung or broken driver: reported as no answer
        if done is not None and done.returncode == 0:
            for line in done.stdout.splitlines():
                fields = [f.strip() for f in line.split(",")]
                if len(fields) == 3 and fields[0]:
                    memory = int(fields[1]) if fields[1].isdigit() else None
                    gpus.append({"name": fields[0], "memory_mib": memory, "driver": fields[2]})
    proc = NVIDIA_PROC.exists()
    return {"present": bool(gpus) or proc, "nvidia_smi": command is not None, "proc_driver_nvidia": proc, "gpus": gpus}


def tensorflow_distributions() -> dict[str, str]:
    """Every installed distribution that provides the ``tensorflow`` package, with its
    version (``tensorflow``, ``tensorflow-cpu``, ``tf-nightly``, ``tensorflow-intel``...).
    More than one is a broken install: they write the same files over each other. A
    metapackage with no files of its own (Windows' ``tensorflow`` over
    ``tensorflow-intel``) provides nothing and is not counted."""
    found = {}
    for name in importlib.metadata.packages_distributions().get("tensorflow", []):
        try:
            found[re.sub(r"[-_.]+", "-", name).lower()] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return dict(sorted(found.items()))


def problems(backend: str | None = None) -> list[str]:
    """What is wrong with this installation for training, each with the command that
    fixes it: several TensorFlow distributions at once; a GPU the driver shows but the
    backend does not see. Empty when all is well."""
    backend = backend or keras_backend()
    found = []
    driver = gpu_driver()
    distributions = tensorflow_distributions()
    if len(distributions) > 1:
        listed = ", ".join(f"{name} {version}" for name, version in distributions.items())
        install = INSTALL_GPU if driver["present"] else INSTALL_TRAIN
        found.append(
            f"{len(distributions)} TensorFlow distributions are installed ({listed}); they overwrite "
            f"each other's files in one tensorflow package: {_reinstall(distributions, install)}"
        )
    if driver["present"] and backend in ("tensorflow", "jax"):
        try:
            seen = [d for d in devices(backend) if d.kind == "GPU"]
        except ImportError:
            seen = None  # the backend is not installed: info says so on its own line
        if seen == []:
            found.append(_unseen_gpu(backend, driver, distributions))
    return found


def _unseen_gpu(backend: str, driver: dict[str, Any], distributions: dict[str, str]) -> str:
    names = ", ".join(dict.fromkeys(g["name"] for g in driver["gpus"])) or "the NVIDIA driver is loaded"
    if backend == "jax":
        return f"this machine has a GPU ({names}) but JAX sees none, so training runs on the CPU: {INSTALL_JAX_GPU}"
    import tensorflow as tf

    if not tf.test.is_built_with_cuda():
        which = ", ".join(distributions) or "this TensorFlow"
        why = f"{which} {tf.__version__} is built without CUDA"
    else:
        build = tf.sysconfig.get_build_info()
        why = (f"TensorFlow {tf.__version__} (CUDA {build.get('cuda_version', '?')}, cuDNN "
               f"{build.get('cudnn_version', '?')}) finds no usable CUDA libraries or driver")
    return (f"this machine has a GPU ({names}) but TensorFlow sees none ({why}), so training runs "
            f"on the CPU; TensorFlow with its CUDA libraries: {_reinstall(distributions, INSTALL_GPU)}")


def _reinstall(distributions: dict[str, str], install: str) -> str:
    """``install``, after removing every TensorFlow distribution but the full
    ``tensorflow`` the extras name (installing beside another would make two)."""
    if set(distributions) <= {"tensorflow"}:
        return install
    return f"pip uninstall -y {' '.join(distributions)} && {install}"


# ---------------------------------------------------------------------------- the plan


def plan_training(
    strategy: str = "auto", precision: str = "auto", jit: str | bool = "auto", *, backend: str | None = None
) -> TrainingPlan:
    """What ``fit(strategy=..., precision=..., jit=...)`` trains with here.

    ``auto`` picks: a multi-worker strategy when TF_CONFIG lists several tasks, mirrored
    over two or more local GPUs, else the default (one device); mixed_float16 on a GPU,
    float32 on a CPU; XLA on with a GPU (or under JAX, which always compiles), off on a
    CPU and under a mirrored or multi-worker strategy. A setting that cannot work here
    is replaced by what can, with a warning: ``mirrored`` with fewer than two devices to
    mirror (GPUs, or else logical CPU devices configured with ``tf.config``),
    ``mixed_float16`` without a GPU, ``jit`` on where XLA is missing or under a mirrored
    or multi-worker strategy. ``multiworker`` without TF_CONFIG is a
    :class:`~dsxsd.errors.UsageError`. TensorFlow's runtime is left unstarted.
    """
    if isinstance(jit, bool):
        jit = "on" if jit else "off"
    for value, allowed, what in ((strategy, STRATEGIES, "strategy"), (precision, PRECISIONS, "precision"),
                                 (jit, JIT_MODES, "jit")):
        if value not in allowed:
            raise UsageError(f"unknown {what} {value!r}; expected one of {allowed}")
    backend = backend or keras_backend()
    found = devices(backend)
    gpus = [d.name for d in found if d.kind == "GPU"]
    cpus = [d.name for d in found if d.kind == "CPU"]
    notes: list[str] = []  # each setting's helper adds its warning here
    strategy, mirrored, strategy_reason = _strategy(strategy, backend, gpus, cpus, notes)
    precision, precision_reason = _precision(precision, gpus, notes)
    jit_on, jit_reason = _jit(jit, backend, strategy, gpus, notes)
    return TrainingPlan(
        backend, strategy, precision, jit_on, tuple(mirrored),
        {"strategy": strategy_reason, "precision": precision_reason, "jit": jit_reason}, tuple(notes),
    )


def _strategy(asked: str, backend: str, gpus: list[str], cpus: list[str], notes: list[str]):
    if backend != "tensorflow":
        if tf_config_tasks() > 1:  # else every machine would train alone into the same folder
            raise UsageError(f"a TF_CONFIG cluster needs KERAS_BACKEND=tensorflow: under the {backend} "
                               "backend dsxsd trains on one device (unset TF_CONFIG)")
        if asked in ("mirrored", "multiworker"):
            notes.append(f"--strategy {asked} is TensorFlow's (tf.distribute); under Keras' {backend} "
                         f"backend training runs on one device (--strategy default)")
        return "default", [], f"tf.distribute strategies are TensorFlow's; under {backend} one device trains"
    tasks = tf_config_tasks()
    if asked == "multiworker" and tasks < 2:
        raise UsageError(
            "--strategy multiworker needs TF_CONFIG naming the cluster and this worker's task "
            "(see the README: 'Training on several machines')"
        )
    if asked in ("auto", "multiworker") and tasks > 1:
        return "multiworker", [], f"TF_CONFIG lists {tasks} workers"
    if asked == "auto":
        if len(gpus) > 1:
            return "mirrored", gpus, f"{len(gpus)} GPUs: the batch splits across them"
        return "default", [], "one GPU" if gpus else "no GPU: one device, the CPU"
    if asked == "mirrored":
        # Mirroring CPUs happens only when asked for and configured (tf.config logical
        # devices): they share the same cores, so it pays nothing but it tests the path.
        targets = gpus or cpus
        if len(targets) > 1:
            return "mirrored", targets, f"as asked, over {len(targets)} {'GPUs' if gpus else 'logical CPU devices'}"
        have = "one GPU" if gpus else "no GPU"
        notes.append(f"--strategy mirrored needs two or more GPUs and this machine has {have}: "
                     f"training on one device (--strategy default)")
        return "default", [], f"mirrored asked for, but {have} to mirror across"
    return "default", [], "as asked: one device"


def _precision(asked: str, gpus: list[str], notes: list[str]):
    if asked == "auto":
        if gpus:
            return "mixed_float16", "a GPU: float16 math on its tensor cores, float32 weights"
        return "float32", "no GPU: float16 is emulated on a CPU, slower than float32"
    if asked == "mixed_float16" and not gpus:
        notes.append("--precision mixed_float16 needs a GPU (a CPU emulates float16, several times "
                     "slower): training in float32")
        return "float32", "mixed_float16 asked for, but no GPU"
    return asked, "as asked"


def _jit(asked: str, backend: str, strategy: str, gpus: list[str], notes: list[str]):
    if asked == "off":
        return False, "as asked"
    missing = None
    if not xla_available(backend):
        missing = f"Keras' {backend} backend does not compile with XLA" if backend not in ("tensorflow", "jax") \
            else "this TensorFlow is built without XLA"
    elif strategy == "mirrored":
        # Keras' XLA step reads every replica's variables from the first device, which
        # XLA refuses ("Trying to access resource ... located in device ...:1").
        missing = "Keras cannot compile a mirrored train step with XLA"
    elif strategy == "multiworker":
        missing = "the multi-worker training loop runs without XLA"
    if missing:
        if asked == "on":
            notes.append(f"--jit on: {missing}: training without XLA (--jit off)")
        return False, missing
    if asked == "on":
        return True, "as asked"
    if backend == "jax":
        return True, "JAX compiles the train step with XLA; uncompiled it runs op by op"
    if gpus:
        return True, "a GPU: XLA fuses the train step's operations into fewer kernels"
    return False, "no GPU: on a CPU, XLA's compile time outweighs what it saves"


def tf_config_tasks() -> int:
    """How many chief and worker tasks TF_CONFIG lists (0 without TF_CONFIG); a
    :class:`~dsxsd.errors.UsageError` when it is not valid."""
    raw = os.environ.get("TF_CONFIG")
    if not raw:
        return 0
    try:
        cluster = json.loads(raw)["cluster"]
        return sum(len(v) for k, v in cluster.items() if k in ("chief", "worker"))
    except (ValueError, KeyError, TypeError, AttributeError):
        raise UsageError("TF_CONFIG is not valid JSON with a 'cluster' of chief/worker addresses") from None


# -------------------------------------------------------------------------------- info


def info() -> dict[str, Any]:
    """Everything about this machine that decides how training runs, as JSON-ready data:
    dsxsd, Python, platform, the TensorFlow, Keras, JAX and onnxruntime installs, the
    devices, the GPU driver, what ``train --strategy auto --precision auto --jit auto``
    would pick and why, and ``warnings`` (each with the command that fixes it). Works
    without TensorFlow, Keras or JAX: each then reads ``installed: false``."""
    from . import __version__

    # Before anything here imports TensorFlow, which may set some of them.
    variables = {name: os.environ[name] for name in ENVIRONMENT_VARIABLES if name in os.environ}
    if "TF_CONFIG" in os.environ:  # its addresses are the user's business; that it is set, ours
        variables["TF_CONFIG"] = "set"
    backend = keras_backend()
    report: dict[str, Any] = {
        "dsxsd": __version__,
        "python": {"version": platform.python_version(), "implementation": platform.python_implementation(),
                   "executable": sys.executable},
        "platform": {"system": platform.system(), "release": platform.release(), "machine": platform.machine(),
                     "platform": platform.platform(), "cpus": os.cpu_count(), "cpus_usable": _usable_cpus()},
        "environment": variables,
        "tensorflow": _tensorflow_info(),
        "keras": _keras_info(backend),
        "jax": _jax_info(),
        "gpu_driver": gpu_driver(),
        "onnxruntime": _onnxruntime_info(),
    }
    warnings: list[str] = []
    if not report["tensorflow"]["installed"]:
        warnings.append(f"TensorFlow is not installed; dsxsd train needs it: {INSTALL_TRAIN}")
    # The plan needs the backend's devices: Keras and its backend must import.
    ready = report["keras"]["installed"] and backend in ("tensorflow", "jax") and report[backend]["installed"]
    report["plan"] = None
    report["xla"] = {"available": None, "train_step": None,
                     "tf_auto_clustering": report["tensorflow"].get("auto_clustering")}
    if ready:
        try:
            plan = plan_training(backend=backend)
        except UsageError as exc:  # a broken TF_CONFIG: training would stop on it too
            warnings.append(str(exc))
        else:
            report["plan"] = plan.as_dict()
            report["xla"].update(available=xla_available(backend), train_step=plan.jit)
            warnings.extend(plan.warnings)
    # Without a usable backend only the install's own problems (several TensorFlows) show.
    warnings.extend(problems(backend if ready else "none"))
    report["warnings"] = warnings
    return report


def _usable_cpus() -> int | None:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count()


def _import(name: str):
    """The module, or None where it (or what it needs) is not installed or fails to import."""
    quiet_tensorflow()  # TensorFlow may come first here
    try:
        return importlib.import_module(name)
    except Exception:  # ImportError, or an install broken in any other way
        return None


def _tensorflow_info() -> dict[str, Any]:
    distributions = tensorflow_distributions()
    tf = _import("tensorflow")
    if tf is None:
        return {"installed": False, "version": None, "distributions": distributions, "install": INSTALL_TRAIN}
    return {
        "installed": True,
        "version": tf.__version__,
        "distributions": distributions,
        "built_with_cuda": bool(tf.test.is_built_with_cuda()),
        "build": {k: v if isinstance(v, (str, int, float, bool, type(None))) else str(v)
                  for k, v in tf.sysconfig.get_build_info().items()},
        "xla": bool(tf.test.is_built_with_xla()),
        "auto_clustering": tf.config.optimizer.get_jit() or None,
        "devices": [dataclasses.asdict(d) for d in _tensorflow_devices()],
    }


def _keras_info(backend: str) -> dict[str, Any]:
    try:
        version = importlib.metadata.version("keras")
    except importlib.metadata.PackageNotFoundError:
        return {"installed": False, "version": None, "backend": backend}
    quiet_tensorflow()
    try:
        importlib.import_module("keras")
        error = None
    except ImportError as exc:  # Keras 3 imports its backend, which may be the missing part
        error = str(exc)
    return {"installed": error is None, "version": version, "backend": backend, "error": error}


def _jax_info() -> dict[str, Any]:
    jax = _import("jax")
    if jax is None:
        return {"installed": False, "version": None}
    return {"installed": True, "version": jax.__version__, "jaxlib": _version("jaxlib"),
            "default_backend": jax.default_backend(), "devices": [dataclasses.asdict(d) for d in _jax_devices()]}


def _onnxruntime_info() -> dict[str, Any]:
    ort = _import("onnxruntime")
    if ort is None:
        return {"installed": False, "version": None, "providers": []}
    return {"installed": True, "version": ort.__version__, "providers": list(ort.get_available_providers())}


def _version(distribution: str) -> str | None:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


__all__ = [
    "Device",
    "INSTALL_GPU",
    "INSTALL_TRAIN",
    "JIT_MODES",
    "PRECISIONS",
    "STRATEGIES",
    "TrainingPlan",
    "devices",
    "gpu_driver",
    "info",
    "keras_backend",
    "plan_training",
    "problems",
    "configured_backend",
    "quiet_tensorflow",
    "tensorflow_distributions",
    "tf_config_tasks",
    "xla_available",
]
