"""The LabelImg fast path of the VOC reader is never more lenient than the full reader and
never reads a value differently: for generated LabelImg files and for thousands of
mutations of them, whatever the fast path accepts, the full reader accepts with the very
same result."""

from __future__ import annotations

from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dsxsd.errors import DsxsdError
from dsxsd.formats import _labelimg, _xml, voc

NAME = Path("x.xml")


def full_reader(data: bytes):
    return voc.parse_bytes(data, NAME)


def document(filename="a.jpg", size=(640, 480, 3), objects=(("dog", "Unspecified", 0, 0, (1, 2, 30, 40)),),
             path="/home/u/a.jpg", verified=False) -> str:
    parts = [
        '<annotation verified="yes">' if verified else "<annotation>",
        "\t<folder>images</folder>",
        f"\t<filename>{filename}</filename>",
        f"\t<path>{path}</path>",
        "\t<source>\n\t\t<database>Unknown</database>\n\t</source>",
        f"\t<size>\n\t\t<width>{size[0]}</width>\n\t\t<height>{size[1]}</height>\n\t\t<depth>{size[2]}</depth>\n\t</size>",
        "\t<segmented>0</segmented>",
    ]
    for name, pose, truncated, difficult, box in objects:
        corners = "".join(f"\n\t\t\t<{t}>{v}</{t}>" for t, v in zip(("xmin", "ymin", "xmax", "ymax"), box))
        parts.append(
            f"\t<object>\n\t\t<name>{name}</name>\n\t\t<pose>{pose}</pose>\n"
            f"\t\t<truncated>{truncated}</truncated>\n\t\t<difficult>{difficult}</difficult>\n"
            f"\t\t<bndbox>{corners}\n\t\t</bndbox>\n\t</object>"
        )
    return "\n".join(parts) + "\n</annotation>\n"


def assert_same_or_declined(data: bytes) -> bool:
    fast = voc.FILES.read_fast(data, str(NAME))
    if fast is None:
        return False
    try:
        full = full_reader(data)
    except DsxsdError as exc:  # pragma: no cover - the failure this test exists for
        raise AssertionError(f"the fast path accepted what the full reader refuses: {exc}\n{data!r}")
    assert fast == full, data
    return True


_text = st.one_of(
    st.text(st.characters(categories=("L", "N", "P", "S", "Zs"), exclude_characters="<>&"), min_size=1, max_size=12),
    st.text(st.characters(codec="utf-8", exclude_characters="<>&"), min_size=1, max_size=12),  # controls too
)
_numbers = st.one_of(
    st.integers(0, 10**6).map(str),
    st.floats(0, 1e6, allow_nan=False).map(lambda v: f"{v:.3f}"),
    st.sampled_from(["-3", "+4", "7.", " 12 ", "\n5\t"]),
    st.sampled_from(["1e3", "nan", "0x10", "1_0", "٣", "", "1.2.3"]),  # not numbers
)
_objects = st.lists(
    st.tuples(_text, st.one_of(st.just("Unspecified"), _text), st.sampled_from(["0", "1", "", "2", " 1 "]),
              st.sampled_from(["0", "1", "", "true"]), st.tuples(_numbers, _numbers, _numbers, _numbers)),
    max_size=4,
)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(filename=_text, objects=_objects, size=st.tuples(*[st.sampled_from(["640", "480", "3", " 7 ", "0", "", "1.0"])] * 3),
       verified=st.booleans(), bom=st.booleans())
def test_generated_files_read_the_same_by_both_readers(filename, objects, size, verified, bom):
    data = document(filename, size, objects, verified=verified).encode("utf-8")
    assert_same_or_declined((b"\xef\xbb\xbf" if bom else b"") + data)


_INSERTS = ["&", "&amp;", "<", ">", "]]>", "\r", "\r\n", "\x01", "\x7f", "\ufffe", "\u00a0", "é", " ",
            "<!-- c -->", "<?pi x?>", "<x/>", "</name>", "<name>b</name>", "\t", '"', "'", "1", ".", "-"]


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(position=st.floats(0, 1), cut=st.integers(0, 3), insert=st.sampled_from(_INSERTS + [""]),
       latin1=st.booleans())
def test_mutated_files_are_declined_or_read_the_same(position, cut, insert, latin1):
    text = document(objects=[("dog", "Left", 0, 1, (1, 2, 30, 40)), ("cat", "Unspecified", 1, 0, (5, 6, 7.5, 8))])
    at = int(position * len(text))
    mutated = text[:at] + insert + text[at + cut:]
    data = mutated.encode("latin-1", "replace") if latin1 else mutated.encode("utf-8")
    assert_same_or_declined(data)


def test_labelimg_files_take_the_fast_path_and_others_do_not():
    assert assert_same_or_declined(document().encode())
    assert assert_same_or_declined(b'<?xml version="1.0" encoding="utf-8"?>\n' + document(verified=True).encode())
    assert assert_same_or_declined(document(objects=()).encode())
    declined = [
        document(size=(0, 480, 3)),  # the size comes from the image header
        document().replace("<folder>", "<!-- c --><folder>"),
        document().replace("<annotation>", "<annotation>\n<owner>x</owner>"),  # CVAT extras
        document().replace("<name>dog</name>", "<name> </name>"),  # the full reader's error
        document().replace("<xmin>1</xmin>", "<xmin>1e3</xmin>"),
    ]
    assert [_labelimg.read(d.encode()) for d in declined] == [None] * len(declined)


def test_hostile_files_are_declined_at_once():
    # Each is declined in milliseconds; a pattern that backtracked quadratically would
    # hang here for hours, which is what this test is for.
    head = document().split("<object>")[0]
    for data in [
        head + "<object><name>a</name><pose>p</pose><truncated>" + " " * 200_000 + "x",
        head + "<object><name>" + "a" * 500_000,
        document().replace("</annotation>", "") + document().split("\t<object>")[1].split("</annotation>")[0] * 2000,
        document() + " " * (_labelimg.MAX_BYTES + 1),
    ]:
        assert _labelimg.read(data.encode()) is None
