"""The json format: DESIGN.md's document, its JSON Schema, and errors that name a JSON path."""

from __future__ import annotations

import copy
import json
import tempfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator
from strategies import annotation_sets

import dsxsd
from dsxsd import AnnotationSet, BBox, ImageAnnotation, ObjectAnnotation
from dsxsd._schemas import load_schema
from dsxsd.errors import DsxsdError, HostileInputError, InvalidValueError, MalformedFileError
from dsxsd.formats.json import conforms, dumps, json_path, read_json, write_json


@pytest.fixture
def example():
    return AnnotationSet(
        [
            ImageAnnotation(
                "b.jpg",
                640,
                480,
                3,
                [
                    ObjectAnnotation("猫", BBox(10, 20, 110.5, 220), difficult=True, pose="Left"),
                    ObjectAnnotation(
                        "a&b <c>",
                        BBox(0, 0, 1, 1),
                        occluded=False,
                        attributes={"colour": "red", "score": [1, 2.5, None], "n": {"k": True}},
                    ),
                ],
                folder="VOC2007",
                path="/data/b.jpg",
                attributes={"source": "cvat"},
            ),
            ImageAnnotation("a.jpg"),
        ],
        classes=("a&b <c>", "猫", "unused"),
    )


EXPECTED = {
    "format": "dsxsd.annotations",
    "version": 1,
    "classes": ["a&b <c>", "猫", "unused"],
    "images": [
        {
            "filename": "b.jpg",
            "width": 640,
            "height": 480,
            "depth": 3,
            "folder": "VOC2007",
            "path": "/data/b.jpg",
            "objects": [
                {
                    "class": "猫",
                    "bbox": {"xmin": 10, "ymin": 20, "xmax": 110.5, "ymax": 220},
                    "difficult": True,
                    "truncated": False,
                    "pose": "Left",
                },
                {
                    "class": "a&b <c>",
                    "bbox": {"xmin": 0, "ymin": 0, "xmax": 1, "ymax": 1},
                    "difficult": False,
                    "truncated": False,
                    "pose": None,
                    "occluded": False,
                    "attributes": {"colour": "red", "score": [1, 2.5, None], "n": {"k": True}},
                },
            ],
            "attributes": {"source": "cvat"},
        },
        {
            "filename": "a.jpg",
            "width": None,
            "height": None,
            "depth": None,
            "folder": None,
            "path": None,
            "objects": [],
        },
    ],
}


def test_document_is_exactly_the_design(tmp_path, example):
    out = tmp_path / "ann.json"
    write_json(example, out)
    text = out.read_bytes().decode("utf-8")
    assert json.loads(text) == EXPECTED
    # Deterministic bytes: two-space indents, raw UTF-8, integers without ".0", final newline.
    assert text == json.dumps(EXPECTED, indent=2, ensure_ascii=False) + "\n"
    assert '"xmin": 10,' in text and '"xmax": 110.5,' in text and "猫" in text


def test_round_trip_is_lossless_for_every_field(tmp_path, example):
    out = tmp_path / "ann.json"
    write_json(example, out)
    back = read_json(out)
    assert back == example
    assert back.classes == ("a&b <c>", "猫", "unused")
    assert back.images[0].objects[1].occluded is False
    assert back.images[0].objects[0].occluded is None


def test_the_schema_is_a_valid_draft_2020_12_schema():
    schema = load_schema("annotations")
    Draft202012Validator.check_schema(schema)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"


def test_written_files_validate_against_the_schema(tmp_path, example):
    out = tmp_path / "ann.json"
    write_json(example, out)
    validator = Draft202012Validator(load_schema("annotations"))
    assert list(validator.iter_errors(json.loads(out.read_text("utf-8")))) == []


@settings(max_examples=40, deadline=None)
@given(annotation_sets())
def test_generated_sets_validate_against_the_schema(annotations):
    validator = Draft202012Validator(load_schema("annotations"))
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / "ann.json"
        write_json(annotations, out)
        assert list(validator.iter_errors(json.loads(out.read_text("utf-8")))) == []


def test_guessed_from_the_content_marker(tmp_path, example):
    out = tmp_path / "ann.json"
    dsxsd.write(example, out)
    assert dsxsd.guess_format(out) == "json"
    assert dsxsd.read(out) == example


def test_attributes_json_cannot_hold_are_refused_naming_the_image(tmp_path):
    bad = AnnotationSet([ImageAnnotation("a.jpg"), ImageAnnotation("b.jpg", attributes={"x": {1, 2}})])
    out = tmp_path / "ann.json"
    with pytest.raises(InvalidValueError) as caught:
        write_json(bad, out)
    assert "image 'b.jpg' has attributes JSON cannot hold" in str(caught.value)
    assert caught.value.field == "images[1]"
    assert not out.exists()
    nan = AnnotationSet([ImageAnnotation("a.jpg", attributes={"x": float("nan")})])
    with pytest.raises(InvalidValueError, match="image 'a.jpg'"):
        write_json(nan, out)


# ------------------------------------------------------------------ reading


BOX = {"xmin": 1, "ymin": 2, "xmax": 3, "ymax": 4}


def document(**changes):
    doc = json.loads(json.dumps(EXPECTED))
    doc.update(changes)
    return doc


def put(tmp_path, doc, name="in.json"):
    path = tmp_path / name
    path.write_text(doc if isinstance(doc, str) else json.dumps(doc, indent=2), "utf-8")
    return path


def test_malformed_json_names_file_and_line(tmp_path):
    path = put(tmp_path, '{\n  "format": "dsxsd.annotations",\n  "version": 1,\n  "images": [\n}\n')
    with pytest.raises(MalformedFileError) as caught:
        read_json(path)
    assert caught.value.file == str(path)
    assert caught.value.line == 5
    assert str(caught.value).startswith(f"{path}, line 5: not valid JSON: ")


def test_nan_is_not_json(tmp_path):
    doc = document()
    doc["images"][0]["objects"][0]["bbox"]["xmin"] = "NAN_HERE"
    path = put(tmp_path, json.dumps(doc).replace('"NAN_HERE"', "NaN"))
    with pytest.raises(MalformedFileError, match="NaN is not a JSON number"):
        read_json(path)


def test_bad_value_names_its_json_path(tmp_path):
    doc = document()
    doc["images"].append(json.loads(json.dumps(doc["images"][0])))
    doc["images"][2]["objects"][1]["bbox"]["xmin"] = "12"
    path = put(tmp_path, doc)
    with pytest.raises(InvalidValueError) as caught:
        read_json(path)
    assert caught.value.field == "images[2].objects[1].bbox.xmin"
    assert str(caught.value) == (
        f"{path}, field 'images[2].objects[1].bbox.xmin': '12' is not of type 'number'"
    )


def test_the_first_error_in_the_document_is_reported(tmp_path):
    doc = document()
    doc["images"][1]["width"] = -1
    doc["images"][0]["objects"][0]["difficult"] = "yes"
    path = put(tmp_path, doc)
    with pytest.raises(InvalidValueError) as caught:
        read_json(path)
    assert caught.value.field == "images[0].objects[0].difficult"


@pytest.mark.parametrize(
    "change, field, message",
    [
        ({"format": "coco"}, "format", "'dsxsd.annotations' was expected"),
        ({"version": 2}, "version", "1 was expected"),
        ({"images": {}}, "images", "is not of type 'array'"),
        ({"extra": 1}, "$", "Additional properties are not allowed ('extra' was unexpected)"),
        ({"classes": ["a", "a"]}, "classes", "has non-unique elements"),
    ],
)
def test_top_level_errors(tmp_path, change, field, message):
    path = put(tmp_path, document(**change))
    with pytest.raises(InvalidValueError) as caught:
        read_json(path)
    assert caught.value.field == field
    assert message in str(caught.value)


def test_missing_keys_and_typos_are_caught(tmp_path):
    doc = document()
    del doc["images"][1]["filename"]
    path = put(tmp_path, doc)
    message = r"field 'images\[1\]': 'filename' is a required property"
    with pytest.raises(InvalidValueError, match=message):
        read_json(path)
    doc = document()
    doc["images"][0]["objects"][0]["clas"] = doc["images"][0]["objects"][0].pop("class")
    with pytest.raises(InvalidValueError, match=r"field 'images\[0\].objects\[0\]'"):
        read_json(put(tmp_path, doc))


def test_blank_names_and_unlisted_classes_are_refused(tmp_path):
    doc = document()
    doc["images"][0]["objects"][1]["class"] = " \u3000 "
    with pytest.raises(InvalidValueError) as caught:
        read_json(put(tmp_path, doc))
    assert caught.value.field == "images[0].objects[1].class"
    assert caught.value.reason == "' \\u3000 ' is empty or only white space"
    doc = document(classes=["猫"])
    with pytest.raises(InvalidValueError, match="field 'classes': labels \\['a&b <c>'\\] are used"):
        read_json(put(tmp_path, doc))


def test_lenient_where_nothing_is_lost(tmp_path):
    # Optional keys absent, integral floats as sizes, a byte-order mark.
    doc = {
        "format": "dsxsd.annotations",
        "version": 1,
        "images": [
            {"filename": "a.jpg", "width": 640.0, "objects": [{"class": "cat", "bbox": BOX}]},
            {"filename": "b.jpg"},
        ],
    }
    path = tmp_path / "in.json"
    path.write_bytes(b"\xef\xbb\xbf" + json.dumps(doc).encode())
    back = read_json(path)
    assert back == AnnotationSet(
        [
            ImageAnnotation("a.jpg", 640, objects=[ObjectAnnotation("cat", BBox(1, 2, 3, 4))]),
            ImageAnnotation("b.jpg"),
        ]
    )
    assert type(back.images[0].width) is int


def test_deep_nesting_is_an_error_not_a_crash(tmp_path):
    path = put(tmp_path, "[" * 100_000 + "]" * 100_000)
    with pytest.raises(DsxsdError) as caught:
        read_json(path)
    assert isinstance(caught.value, (HostileInputError, MalformedFileError))
    assert str(path) in str(caught.value)


def test_skip_leaves_out_bad_images_only(tmp_path):
    doc = document()
    doc["images"].append({"filename": "c.jpg", "width": "wide"})
    doc["images"].append({"filename": "d.jpg", "objects": [{"class": " ", "bbox": BOX}]})
    path = put(tmp_path, doc)
    back = read_json(path, on_error="skip")
    assert [image.filename for image in back] == ["b.jpg", "a.jpg"]
    assert [(s.file, s.reason) for s in back.skipped] == [
        (str(path), "images[2].width: 'wide' is not of type 'integer', 'null'"),
        (str(path), "images[3].objects[0].class: ' ' is empty or only white space"),
    ]
    top = document(version=3)
    with pytest.raises(InvalidValueError, match="field 'version'"):
        read_json(put(tmp_path, top), on_error="skip")


def test_json_path_spelling():
    assert json_path(["images", 3, "objects", 0, "bbox", "xmin"]) == "images[3].objects[0].bbox.xmin"
    assert json_path([]) == "$"


# ------------------------------------------------------------------ the quick check


CANDIDATES = [
    None, True, False, 0, 1, -1, 1.5, 640.0, "", " ", "x", "dsxsd.annotations", [], {}, ["x"], {"x": 1}
]
JSON_VALUES = st.one_of(
    st.sampled_from(CANDIDATES),
    st.recursive(
        st.none()
        | st.booleans()
        | st.integers()
        | st.floats(allow_nan=False, allow_infinity=False)
        | st.text(max_size=4),
        lambda children: st.lists(children, max_size=3)
        | st.dictionaries(st.text(max_size=5), children, max_size=3),
        max_leaves=5,
    ),
)
KEYS = ["format", "version", "classes", "images", "filename", "width", "objects", "class", "bbox",
        "xmin", "difficult", "occluded", "pose", "attributes", "$schema", "other"]
VALIDATOR = Draft202012Validator(load_schema("annotations"))


def nodes(value, path=()):
    yield path
    if isinstance(value, dict):
        children = value.items()
    else:
        children = enumerate(value) if isinstance(value, list) else ()
    for key, child in children:
        yield from nodes(child, path + (key,))


def mutated(document, path, action, value=None, key=None):
    """A copy of ``document`` with the node at ``path`` replaced, deleted or given a key."""
    document = copy.deepcopy(document)
    if not path:
        return value if action == "replace" else document
    parent = document
    for part in path[:-1]:
        parent = parent[part]
    if action == "replace":
        parent[path[-1]] = value
    elif action == "delete":
        del parent[path[-1]]
    elif action == "repeat" and parent[path[-1]] and isinstance(parent[path[-1]], list):
        parent[path[-1]].append(copy.deepcopy(parent[path[-1]][0]))
    elif action == "add" and isinstance(parent[path[-1]], dict):
        parent[path[-1]][key] = value
    return document


def mutations(document):
    for path in nodes(document):
        for value in CANDIDATES:
            yield mutated(document, path, "replace", value)
        yield mutated(document, path, "delete")
        yield mutated(document, path, "repeat")
        for key in KEYS:
            yield mutated(document, path, "add", 1, key)


def test_the_quick_check_is_never_laxer_than_the_schema():
    """Every single-node change of a document holding every key: whatever the quick check
    passes, the schema passes (and the check does pass some: the test has teeth)."""
    passed = failed = 0
    for document in mutations(document_()):
        if conforms(document):
            assert list(VALIDATOR.iter_errors(document)) == [], document
            passed += 1
        else:
            failed += 1
    assert passed > 100 and failed > 500


@settings(max_examples=100, deadline=None)
@given(annotation_sets(max_images=3, max_classes=4), st.data())
def test_the_quick_check_is_never_laxer_on_generated_documents(annotations, data):
    document = json.loads(dumps(annotations))
    assert conforms(document)  # what dsxsd writes takes the quick path
    path = data.draw(st.sampled_from(list(nodes(document))))
    action = data.draw(st.sampled_from(["replace", "replace", "delete", "add", "repeat"]))
    document = mutated(document, path, action, data.draw(JSON_VALUES), data.draw(st.sampled_from(KEYS)))
    if conforms(document):
        assert list(VALIDATOR.iter_errors(document)) == []


@pytest.mark.parametrize(
    "change",
    [
        lambda d: d["images"][0].update(width=True),
        lambda d: d["images"][0]["objects"][0]["bbox"].update(xmin=False),
        lambda d: d["images"][0]["objects"][0]["bbox"].pop("ymax"),
        lambda d: d["images"][0]["objects"][0].update(difficult=0),
        lambda d: d["images"][0].update(filename=" "),
        lambda d: d.update(version=True),
        lambda d: d.update(classes=["a", "a"]),
    ],
)
def test_the_quick_check_refuses_what_the_schema_refuses(change):
    document = document_()
    assert conforms(document)
    change(document)
    assert not conforms(document)
    assert list(VALIDATOR.iter_errors(document))


def document_():
    return json.loads(json.dumps(EXPECTED))
