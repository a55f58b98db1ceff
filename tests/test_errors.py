"""One usage-error class (exit code 2) and one error policy (``on_error``) for every
reader and stage."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

import dsxsd
from dsxsd.cli import main
from dsxsd.errors import (
    CropOptionError,
    DsxsdError,
    ErrorPolicy,
    InvalidValueError,
    MissingDependencyError,
    MissingPathError,
    OutputExistsError,
    PairsOptionError,
    SettingError,
    UnknownFormatError,
    UsageError,
)


def test_every_usage_error_exits_2_and_is_a_value_error():
    for kind in (UsageError, SettingError, CropOptionError, PairsOptionError, MissingPathError,
                 OutputExistsError, UnknownFormatError, MissingDependencyError):
        error = kind("bad", file="x")
        assert isinstance(error, UsageError) and isinstance(error, ValueError)
        assert isinstance(error, DsxsdError) and error.exit_code == 2
        assert str(error) == "x: bad"
    assert InvalidValueError("bad").exit_code == 1


def test_the_older_names_of_usage_error_stay_importable_where_they_were():
    from dsxsd.crops import CropOptionError as from_crops
    from dsxsd.pairs import PairsOptionError as from_pairs

    assert dsxsd.SettingError is from_crops is from_pairs is UsageError
    assert not isinstance(InvalidValueError("bad"), UsageError)


def test_the_policy_raises_or_lists():
    error = InvalidValueError("not a number", file="a.xml", line=3)
    with pytest.raises(InvalidValueError) as caught:
        ErrorPolicy("raise").failed(error)
    assert caught.value is error
    policy = ErrorPolicy("skip")
    assert not policy.stops and ErrorPolicy().stops
    policy.failed(error)
    policy.failed(error, "b.xml", reason="another reason", line=None)
    assert policy.skipped == [
        dsxsd.SkippedFile("a.xml", "not a number", 3),
        dsxsd.SkippedFile("b.xml", "another reason", None),
    ]
    # A policy given to a reader is copied: each run lists its own files.
    assert ErrorPolicy(policy).skipped == [] and ErrorPolicy(policy).mode == "skip"


@pytest.mark.parametrize("bad", ["ignore", None, True])
def test_a_bad_on_error_is_the_same_usage_error_everywhere(tmp_path, bad):
    (tmp_path / "a.csv").write_text("filename,width,height,class,xmin,ymin,xmax,ymax\n")
    calls = [
        lambda: dsxsd.read(tmp_path / "a.csv", on_error=bad),
        lambda: dsxsd.convert(tmp_path / "a.csv", tmp_path / "b.json", on_error=bad),
        lambda: dsxsd.crop(tmp_path / "a.csv", images=tmp_path, out=tmp_path / "c", on_error=bad),
    ]
    for call in calls:
        with pytest.raises(UsageError, match=f"on_error must be 'raise' or 'skip', got {bad!r}"):
            call()


def test_a_policy_object_reads_as_its_name_does(tmp_path):
    (tmp_path / "a.csv").write_text(
        "filename,width,height,class,xmin,ymin,xmax,ymax\n"
        "a.jpg,10,10,cat,1,1,5,5\nb.jpg,10,10,cat,x,1,5,5\n"
    )
    by_name = dsxsd.read(tmp_path / "a.csv", on_error="skip")
    policy = ErrorPolicy("skip")
    by_policy = dsxsd.read(tmp_path / "a.csv", on_error=policy)
    assert by_policy == by_name and by_policy.skipped == by_name.skipped
    assert [s.line for s in by_policy.skipped] == [3]
    assert policy.skipped == []  # the reader used its own copy


def test_the_cli_prints_an_api_usage_error_as_one_line_and_exits_2(tmp_path):
    (tmp_path / "labels.csv").write_text(
        "filename,width,height,class,xmin,ymin,xmax,ymax\na.jpg,10,10,cat,1,1,5,5\n"
    )
    result = CliRunner().invoke(main, ["crop", str(tmp_path / "labels.csv"), "--images",
                                       str(tmp_path), "--out", str(tmp_path / "c"), "--classes", "dog"])
    assert result.exit_code == 2
    assert result.output == "error: unknown classes ['dog']; the annotations have ['cat']\n"
