"""What the model commands do before and while TensorFlow starts: TensorFlow's start-up
log lines stay hidden unless asked for, and every check that needs no TensorFlow is made
before it is imported (seconds), so a wrong argument fails at once.

Real processes: TensorFlow's C++ logs go to file descriptor 2, which an in-process runner
does not capture, and "before TensorFlow is imported" is proven by a ``tensorflow``
package that raises when imported.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# The lines TensorFlow's native code writes at import (absl's preamble, CPU features,
# oneDNN notes).
STARTUP_NOISE = ("absl::InitializeLog", "cpu_feature_guard", "oneDNN", "port.cc", "cudart_stub")


def _python(code: str, env: dict[str, str], cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300, env=env, cwd=cwd
    )


def _env(*paths: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("TF_CPP_MIN_LOG_LEVEL", "DSXSD_DEBUG")}
    env["PYTHONPATH"] = os.pathsep.join([*map(str, paths), str(ROOT), env.get("PYTHONPATH", "")])
    env.update(extra)
    return env


# --------------------------------------------------------------------------- TensorFlow's logs

TINY_TF_RUN = textwrap.dedent(
    """
    import os
    import dsxsd.train
    import tensorflow as tf
    assert float(tf.reduce_sum(tf.constant([1.0, 2.0]) * 2)) == 6.0
    print(os.environ.get("TF_CPP_MIN_LOG_LEVEL"))
    """
)


@pytest.mark.tf
def test_tensorflow_start_up_lines_are_hidden():
    pytest.importorskip("tensorflow")
    done = _python(TINY_TF_RUN, _env())
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "2"
    for noise in STARTUP_NOISE:
        assert noise not in done.stderr
    assert done.stderr.strip() == ""


@pytest.mark.tf
@pytest.mark.parametrize(
    "extra",
    [{"DSXSD_DEBUG": "1"}, {"TF_CPP_MIN_LOG_LEVEL": "0"}],
    ids=["DSXSD_DEBUG shows everything", "the user's own level wins"],
)
def test_tensorflow_logs_come_back_when_asked_for(extra):
    pytest.importorskip("tensorflow")
    done = _python(TINY_TF_RUN, _env(**extra))
    assert done.returncode == 0, done.stderr
    assert any(noise in done.stderr for noise in STARTUP_NOISE), done.stderr


@pytest.mark.tf
def test_verbose_option_leaves_tensorflow_its_logs():
    pytest.importorskip("tensorflow")
    code = textwrap.dedent(
        """
        import os
        from dsxsd.cli import main
        try:
            main(["--verbose", "predict", "--help"], prog_name="dsxsd")
        except SystemExit as exit:
            assert exit.code == 0
        import dsxsd.train
        import tensorflow as tf
        assert float(tf.reduce_sum(tf.constant([1.0, 2.0]) * 2)) == 6.0
        print(os.environ.get("DSXSD_DEBUG"))
        """
    )
    done = _python(code, _env())
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == "1"
    assert any(noise in done.stderr for noise in STARTUP_NOISE), done.stderr


# --------------------------------------------------------------------------- checks before TensorFlow


@pytest.fixture(scope="module")
def no_tensorflow(tmp_path_factory) -> Path:
    """A folder holding ``tensorflow`` and ``keras`` packages that fail when imported: the
    commands find them installed (as with the train extra, also in a core-only test
    environment) but must not import them before their checks."""
    root = tmp_path_factory.mktemp("fake")
    for name in ("tensorflow", "keras"):
        (root / name).mkdir()
        (root / name / "__init__.py").write_text(f'raise RuntimeError("the fake {name} was imported")\n')
    return root


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("data")
    (d / "pairs.csv").write_text(
        "left,right,label,left_class,right_class,split\n"
        "a.jpg,b.jpg,1,x,x,train\n"
        "a.jpg,c.jpg,0,x,y,test\n"
    )
    (d / "crops.csv").write_text("path,class\na.jpg,x\nb.jpg,y\nc.jpg,y\n")
    (d / "wrong.csv").write_text("image,label\na.jpg,1\n")
    (d / "a-file").write_text("not a folder\n")
    (d / "index.npz").write_text("not an index\n")
    (d / "run").mkdir()
    (d / "run" / "model.keras").write_text("never loaded: the checks fail first\n")
    # 2-way results on crops.csv are already there, for this model.
    sha = hashlib.sha256((d / "run" / "model.keras").read_bytes()).hexdigest()
    (d / "run" / "metrics.json").write_text(json.dumps({
        "format": "dsxsd.metrics", "version": 2, "model": "model.keras", "model_sha256": sha,
        "threshold": None, "threshold_calibration": None, "pairs": [],
        "n_way": [{"n_way": 2, "source": "../crops.csv", "split": None, "accuracy": 1.0}],
    }))
    (d / "scores.csv").write_text("already here\n")
    (d / "home").mkdir()
    (d / "home" / "thesis.tex").write_text("not a demo folder\n")
    return d


CASES = {
    # name: (arguments, exit code, the path the message names, what it says)
    "N-way above the classes": (
        ["evaluate", "run", "crops.csv", "--n-way", "20"], 1, "crops.csv", "20-way needs 20 classes, found 2"),
    "a split the manifest lacks": (
        ["evaluate", "run", "pairs.csv", "--split", "val"], 1, "pairs.csv", "no pairs in split 'val'"),
    "a missing manifest (evaluate)": (["evaluate", "run", "absent.csv"], 2, "absent.csv", "no such file or folder"),
    "a missing manifest (train)": (["train", "absent.csv", "--out", "new-run"], 2, "absent.csv", "no such file or folder"),
    "a --cache-limit that is not a size": (
        ["train", "pairs.csv", "--out", "new-run", "--cache-limit", "lots"], 2, "--cache-limit",
        "must be a size such as 500MB or 8GB, got 'lots'"),
    "a manifest without val pairs (train)": (
        ["train", "pairs.csv", "--out", "new-run"], 1, "pairs.csv", "no pairs in split 'val'"),
    "a run folder that cannot be made": (
        ["train", "pairs.csv", "--out", "a-file/run"], 1, "a-file/run", "a-file is a file, not a folder"),
    "an --out that cannot be written": (
        ["predict", "run", "--pairs", "pairs.csv", "--out", "a-file/scores.csv"], 1, "a-file/scores.csv",
        "a-file is a file, not a folder"),
    "an --out in a place that takes no files": (
        ["evaluate", "run", "crops.csv", "--n-way", "2", "--out", "/proc/nowhere"], 1, "/proc/nowhere",
        "cannot create files in /proc/nowhere: No such file or directory"),
    "results already in metrics.json": (
        ["evaluate", "run", "crops.csv", "--n-way", "2"], 2, "run/metrics.json",
        "already holds results for 2-way one-shot on ../crops.csv; pass --overwrite"),
    "an --out that exists": (
        ["predict", "run", "--pairs", "pairs.csv", "--out", "scores.csv"], 2, "scores.csv", "--overwrite"),
    "a missing image": (["predict", "run", "a-file", "absent.jpg"], 2, "absent.jpg", "no such file or folder"),
    "a missing model": (["predict", "absent.keras", "a-file", "a-file"], 2, "absent.keras", "no such file or folder"),
    "a manifest of the wrong shape": (
        ["embed", "run", "wrong.csv", "--out", "index-new.npz"], 1, "wrong.csv", "neither a crops manifest"),
    "an exact index not named .npz": (
        ["embed", "run", "crops.csv", "--exact", "--out", "index.txt"], 2, "index.txt", ".npz"),
    "a file that is not an index": (["search", "index.npz", "a-file"], 1, "index.npz", "not a dsxsd index"),
    "a demo folder that exists": (["demo", "--out", "home"], 2, "home", "--overwrite"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_checks_needing_no_tensorflow_come_first(case, no_tensorflow, data):
    args, code, path, message = CASES[case]
    run = f"from dsxsd.cli import main; main({args!r}, prog_name='dsxsd')"
    done = _python(run, _env(no_tensorflow), cwd=data)
    assert done.returncode == code, done.stderr
    assert "Traceback" not in done.stderr and "was imported" not in done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert path in last and message in last
    if code == 1:  # a data error is one line; usage errors come with click's usage lines
        assert done.stderr.strip() == last and last.startswith(f"error: {path}: ")
    assert done.stdout == ""
    assert not (data / "new-run").exists() and not (data / "index-new.npz").exists()


def test_a_run_folder_in_use_is_refused_before_tensorflow(no_tensorflow, data, tmp_path):
    # Held as dsxsd train holds it (an flock on run/.lock, which names the holder).
    fcntl = pytest.importorskip("fcntl")
    (data / "val-pairs.csv").write_text(
        (data / "pairs.csv").read_text() + "b.jpg,c.jpg,0,x,y,val\n"
    )
    busy = tmp_path / "busy"
    busy.mkdir()
    with open(busy / ".lock", "w") as lock:
        lock.write("4242\n")
        lock.flush()
        fcntl.flock(lock, fcntl.LOCK_EX)
        run = f"from dsxsd.cli import main; main(['train', 'val-pairs.csv', '--out', {str(busy)!r}])"
        done = _python(run, _env(no_tensorflow), cwd=data)
    assert done.returncode == 1, done.stderr
    assert done.stderr == f"error: {busy}: in use by process 4242; wait for it to end or choose another --out\n"


def test_a_backend_set_in_keras_json_is_refused_before_tensorflow(no_tensorflow, data, tmp_path):
    (tmp_path / "keras.json").write_text('{"backend": "torch"}')  # Keras' own settings file
    run = "from dsxsd.cli import main; main(['train', 'pairs.csv', '--out', 'new-run'])"
    done = _python(run, _env(no_tensorflow, KERAS_HOME=str(tmp_path)), cwd=data)
    assert done.returncode == 2, done.stderr
    assert done.stderr == ("error: training runs under Keras' tensorflow or jax backend, not 'torch': "
                           "set KERAS_BACKEND=tensorflow or KERAS_BACKEND=jax\n")


RECIPE_REFUSALS = {
    # options: (exit code, what the one error line says)
    ("--augment", "rotate"): (2, "'rotate' is not one of 'none', 'basic', 'crops'"),
    ("--augment", "pairs.csv"): (2, "'pairs.csv' is not one of 'none', 'basic', 'crops': --augment alone takes "
                                    "the next word for its value: put --augment after MANIFEST"),
    ("--lr-schedule", "step"): (2, "'step' is not one of 'constant', 'cosine', 'plateau'"),
    ("--weight-decay", "-0.5"): (2, "-0.5 is not in the range x>=0"),
    ("--augment-flips",): (2, "error: --augment-flips needs --augment basic or --augment crops"),
    ("--augment", "crops", "--no-augment"): (2, "--no-augment and --augment crops contradict each other"),
    ("--augment", "--freeze-backbone"): (2, "--augment cannot be combined with --freeze-backbone"),
}


@pytest.mark.parametrize("options", list(RECIPE_REFUSALS), ids=" ".join)
def test_bad_recipe_options_are_refused_before_tensorflow(options, no_tensorflow, data):
    code, message = RECIPE_REFUSALS[options]
    run = f"from dsxsd.cli import main; main(['train', 'pairs.csv', '--out', 'new-run', *{list(options)!r}])"
    done = _python(run, _env(no_tensorflow), cwd=data)
    assert done.returncode == code, done.stderr
    assert "Traceback" not in done.stderr and "was imported" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert lines[0].startswith("error: ") and message in lines[0], done.stderr
    assert lines[1:] in ([], ["Try '-c train --help' for help."]), done.stderr  # one line, click's hint at most
    assert not (data / "new-run").exists()


def test_a_manifest_taken_for_the_value_of_augment_is_named(no_tensorflow, data):
    run = "from dsxsd.cli import main; main(['train', '--augment', 'pairs.csv', '--out', 'new-run'])"
    done = _python(run, _env(no_tensorflow), cwd=data)
    assert done.returncode == 2, done.stderr
    assert done.stderr.splitlines()[0] == (
        "error: invalid value for '--augment': 'pairs.csv' is not one of 'none', 'basic', 'crops': "
        "--augment alone takes the next word for its value: put --augment after MANIFEST")
    assert not (data / "new-run").exists()
