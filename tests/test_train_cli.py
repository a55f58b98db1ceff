"""``dsxsd train`` on the command line, and without TensorFlow installed."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest
from click.testing import CliRunner

import dsxsd
from dsxsd.cli import main


def test_the_cli_does_not_import_tensorflow_until_train_runs():
    script = textwrap.dedent(
        """
        import sys
        from click.testing import CliRunner
        from dsxsd.cli import main
        result = CliRunner().invoke(main, ["train", "--help"])
        assert result.exit_code == 0, result.output
        assert "--backbone-weights" in result.output and "--strategy" in result.output
        print(sorted(m for m in ("tensorflow", "keras") if m in sys.modules))
        """
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_without_tensorflow_train_says_how_to_install_it(monkeypatch, tmp_path):
    # Make "import tensorflow" fail as it does where the train extra is not installed.
    monkeypatch.setitem(sys.modules, "tensorflow", None)
    for name in [m for m in sys.modules if m == "dsxsd.train" or m.startswith("dsxsd.train.")]:
        monkeypatch.delitem(sys.modules, name)
    # Importing again binds dsxsd.train to the new, TensorFlow-less module: put it back after.
    monkeypatch.delattr(dsxsd, "train", raising=False)
    (tmp_path / "pairs.csv").write_text("left,right,label,left_class,right_class,split\n")
    result = CliRunner().invoke(main, ["train", str(tmp_path / "pairs.csv"), "--out", str(tmp_path / "run")])
    assert result.exit_code == 2
    assert 'pip install "dsxsd[train]"' in result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "run").exists()


@pytest.mark.tf
def test_train_command_writes_a_run_and_guards_it(tmp_path):
    pytest.importorskip("tensorflow")
    from train_support import make_shapes_manifest

    manifest = make_shapes_manifest(tmp_path, per_class=8, positives=1)
    args = ["train", str(manifest), "--out", str(tmp_path / "run"), "--width", "0.125", "--image-size", "32",
            "--epochs", "1", "--batch-size", "8"]
    result = CliRunner().invoke(main, [*args, "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output)
    assert summary["epochs"] == 1 and summary["strategy"] == "default" and summary["precision"] == "float32"
    assert (tmp_path / "run" / "model.keras").is_file()
    again = CliRunner().invoke(main, [*args, "--lr", "0.01"])
    assert again.exit_code == 2
    assert "holds a run with other settings" in again.output and "--overwrite" in again.output
    text = CliRunner().invoke(main, [*args, "--epochs", "2"])  # continue: one more epoch
    assert text.exit_code == 0, text.output
    assert "trained 2 epochs (resumed after epoch 1)" in text.output
    usage = CliRunner().invoke(main, [*args, "--image-size", "16"])
    assert usage.exit_code == 2 and "--image-size" in usage.output


@pytest.mark.tf
def test_resampling_flags_reach_config_and_are_part_of_the_run(tmp_path):
    pytest.importorskip("tensorflow")
    from train_support import make_shapes_manifest

    from dsxsd.train import read_run_config

    manifest = make_shapes_manifest(tmp_path, per_class=8, positives=1)
    args = small_train_args(tmp_path, manifest, "--epochs", "1", "--steps-per-epoch", "1")
    result = CliRunner().invoke(main, [*args, "--resample-negatives", "--resample-positives"])
    assert result.exit_code == 0, result.output
    config = read_run_config(tmp_path / "run")
    assert config["resample_negatives"] is True and config["resample_positives"] is True
    without = CliRunner().invoke(main, [*args, "--resample-negatives"])  # a run of other settings
    assert without.exit_code == 2
    assert "resample_positives: True -> False" in without.output and "--overwrite" in without.output
    plain = CliRunner().invoke(main, [*args, "--overwrite"])
    assert plain.exit_code == 0, plain.output
    config = read_run_config(tmp_path / "run")
    assert config["resample_negatives"] is False and config["resample_positives"] is False
    assert "--resample-negatives" in CliRunner().invoke(main, ["train", "--help"]).output


def small_train_args(tmp_path, manifest, *more):
    return ["train", str(manifest), "--out", str(tmp_path / "run"), "--width", "0.125", "--image-size", "32",
            "--batch-size", "8", *more]


@pytest.mark.tf
def test_ctrl_c_says_what_was_kept_and_a_finished_run_says_it_is_complete(tmp_path, monkeypatch):
    pytest.importorskip("tensorflow")
    import functools

    import keras

    import dsxsd.train
    from train_support import make_shapes_manifest

    class CtrlCInEpoch3(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            if epoch == 2:
                raise KeyboardInterrupt

    manifest = make_shapes_manifest(tmp_path, per_class=8, positives=1)
    args = small_train_args(tmp_path, manifest, "--epochs", "5")
    with monkeypatch.context() as patch:
        patch.setattr(dsxsd.train, "fit", functools.partial(dsxsd.train.fit, callbacks=[CtrlCInEpoch3()]))
        result = CliRunner().invoke(main, args)
    assert result.exit_code == 130
    assert result.stderr.strip() == f"interrupted: {tmp_path / 'run'}: epoch 2 of 5 saved; run the same command to resume"
    done = CliRunner().invoke(main, args)
    assert done.exit_code == 0, done.output
    assert "trained 5 epochs (resumed after epoch 2)" in done.output
    again = CliRunner().invoke(main, args)
    assert again.exit_code == 0, again.output
    assert again.output.strip() == f"{tmp_path / 'run'} is already complete (5 of 5 epochs); raise --epochs to train more"
    assert "trained" not in again.output


HOLD_LOCK = textwrap.dedent(
    """
    import fcntl, os, sys, time
    os.makedirs(sys.argv[1], exist_ok=True)
    fd = os.open(os.path.join(sys.argv[1], ".lock"), os.O_RDWR | os.O_CREAT)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    os.write(fd, str(os.getpid()).encode())
    print("locked", flush=True)
    time.sleep(300)
    """
)


@pytest.mark.tf
@pytest.mark.skipif(sys.platform == "win32", reason="the run folder lock is flock on POSIX")
def test_a_run_folder_in_use_is_refused_and_a_dead_holder_is_taken_over(tmp_path):
    pytest.importorskip("tensorflow")
    from train_support import make_shapes_manifest

    manifest = make_shapes_manifest(tmp_path, per_class=8, positives=1)
    args = small_train_args(tmp_path, manifest, "--epochs", "1")
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(tmp_path / "run")], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        busy = CliRunner().invoke(main, args)
    finally:
        holder.kill()
        holder.wait()
    assert busy.exit_code == 1
    assert busy.output.strip() == f"error: {tmp_path / 'run'}: in use by process {holder.pid}; wait for it to end or choose another --out"
    assert not (tmp_path / "run" / "history.csv").exists()
    # the holder is gone, its lock file is not: the next run takes it over
    assert (tmp_path / "run" / ".lock").exists()
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert "trained 1 epochs" in result.output
    assert not (tmp_path / "run" / ".lock").exists()
