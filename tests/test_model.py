"""The annotation model validates itself and shows the bad value."""

import math
import subprocess
import sys

import pytest

from dsxsd import AnnotationSet, BBox, ImageAnnotation, ObjectAnnotation


def obj(label="cat", box=(1, 2, 3, 4), **kw):
    return ObjectAnnotation(label, BBox(*box), **kw)


def test_bbox_keeps_values_as_floats_and_measures_itself():
    box = BBox(1, 2.5, 11, 22.5)
    assert box.as_tuple() == (1.0, 2.5, 11.0, 22.5)
    assert (box.width, box.height) == (10.0, 20.0)


@pytest.mark.parametrize("bad", ["1", None, True, math.nan, math.inf])
def test_bbox_refuses_non_numbers_naming_the_value(bad):
    with pytest.raises(ValueError) as caught:
        BBox(bad, 0, 1, 1)
    assert str(caught.value).startswith("xmin must be")
    assert str(caught.value).endswith(f"got {bad!r}")


def test_label_is_stripped_and_must_not_be_empty():
    assert obj("  dog \t").label == "dog"
    with pytest.raises(ValueError, match="label must not be empty, got '  '"):
        obj("  ")


def test_flags_must_be_booleans():
    with pytest.raises(ValueError, match="difficult must be True or False, got 1"):
        obj(difficult=1)


def test_image_sizes_must_be_whole_numbers():
    with pytest.raises(ValueError, match="width must be a whole number >= 0 or None, got 12.5"):
        ImageAnnotation("a.jpg", width=12.5)
    assert ImageAnnotation("a.jpg").width is None


def test_image_stem_ignores_folders_of_either_separator():
    assert ImageAnnotation("C:\\data\\img.01.jpg").stem == "img.01"
    assert ImageAnnotation("a/b/.hidden").stem == ".hidden"


def test_classes_default_to_first_appearance_order():
    images = [
        ImageAnnotation("1.jpg", objects=[obj("zebra"), obj("ant")]),
        ImageAnnotation("2.jpg"),
        ImageAnnotation("3.jpg", objects=[obj("ant"), obj("bee")]),
    ]
    assert AnnotationSet(images).classes == ("zebra", "ant", "bee")


def test_an_explicit_class_list_must_cover_every_label_and_not_repeat():
    images = [ImageAnnotation("1.jpg", objects=[obj("cat")])]
    assert AnnotationSet(images, classes=["dog", "cat"]).classes == ("dog", "cat")
    with pytest.raises(ValueError, match=r"labels \['cat'\] are used but not in the class list"):
        AnnotationSet(images, classes=["dog"])
    with pytest.raises(ValueError, match=r"class list repeats \['dog'\]"):
        AnnotationSet(images, classes=["dog", "cat", "dog"])


def test_skipped_takes_no_part_in_equality():
    from dsxsd import SkippedFile

    a = AnnotationSet([ImageAnnotation("1.jpg")])
    b = AnnotationSet([ImageAnnotation("1.jpg")], skipped=[SkippedFile("x.xml", "broken")])
    assert a == b and b.skipped[0].reason == "broken"


def test_to_frame_gives_one_row_per_object_in_order():
    images = [
        ImageAnnotation("1.jpg", 640, 480, 3, objects=[obj("cat", (1, 2, 3, 4)), obj("dog", (5, 6, 7.5, 8))]),
        ImageAnnotation("2.jpg", 10, 10, 3),
    ]
    frame = AnnotationSet(images).to_frame()
    assert list(frame.columns[:8]) == ["filename", "width", "height", "class", "xmin", "ymin", "xmax", "ymax"]
    assert frame["class"].tolist() == ["cat", "dog"]
    assert frame["xmax"].tolist() == [3.0, 7.5]
    assert frame["object_index"].tolist() == [0, 1]
    with_empty = AnnotationSet(images).to_frame(include_empty=True)
    assert len(with_empty) == 3
    assert with_empty["filename"].tolist() == ["1.jpg", "1.jpg", "2.jpg"]
    assert with_empty["class"].isna().tolist() == [False, False, True]


def test_model_objects_are_frozen():
    with pytest.raises(AttributeError):
        obj().label = "x"


def test_import_dsxsd_loads_neither_tensorflow_nor_pandas():
    code = "import sys, dsxsd; print(sorted(m for m in ('tensorflow', 'pandas', 'keras') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_dsxsd_search_and_embed_load_neither_tensorflow_nor_faiss_nor_onnxruntime_until_called():
    heavy = "('tensorflow', 'keras', 'faiss', 'onnxruntime', 'pandas')"
    code = (
        "import sys, dsxsd; from dsxsd import embed, search, Hit; "
        f"print(embed.__module__, search.__module__, sorted(m for m in {heavy} if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "dsxsd.inference dsxsd.inference []"
