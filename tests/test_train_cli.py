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
