"""dsxsd ls: image files, recursive, sorted, relative or absolute."""

from __future__ import annotations

from click.testing import CliRunner

import dsxsd
from dsxsd.cli import main


def make_tree(root):
    for name in ["b.jpg", "a.PNG", "sub/c.jpeg", "sub/deeper/d.png", "notes.txt", "sub/e.gif"]:
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x")


def test_lists_images_sorted_relative(tmp_path):
    make_tree(tmp_path)
    assert dsxsd.list_images(tmp_path) == [
        "a.PNG", "b.jpg", "sub/c.jpeg", "sub/deeper/d.png", "sub/e.gif"
    ]


def test_extensions_filter_case_insensitive(tmp_path):
    make_tree(tmp_path)
    assert dsxsd.list_images(tmp_path, extensions=["png", ".JPG"]) == [
        "a.PNG", "b.jpg", "sub/deeper/d.png"
    ]


def test_cli_absolute_and_ext(tmp_path):
    make_tree(tmp_path)
    result = CliRunner().invoke(main, ["ls", str(tmp_path), "--ext", ".jpg,.jpeg", "--absolute"])
    assert result.exit_code == 0, result.output
    assert result.output.splitlines() == [
        (tmp_path / "b.jpg").resolve().as_posix(),
        (tmp_path / "sub" / "c.jpeg").resolve().as_posix(),
    ]


def test_cli_relative_default(tmp_path):
    make_tree(tmp_path)
    result = CliRunner().invoke(main, ["ls", str(tmp_path / "sub")])
    assert result.output.splitlines() == ["c.jpeg", "deeper/d.png", "e.gif"]


def test_cli_missing_folder_is_usage_error(tmp_path):
    result = CliRunner().invoke(main, ["ls", str(tmp_path / "nope")])
    assert result.exit_code == 2


def test_help():
    result = CliRunner().invoke(main, ["ls", "--help"])
    assert result.exit_code == 0 and "--absolute" in result.output
