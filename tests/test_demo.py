"""dsxsd demo: the generated data, and a shortened run of the whole pipeline whose every
claimed file must exist and whose printed numbers must be the ones it recorded."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner
from PIL import Image

import dsxsd
from dsxsd.cli import main
from dsxsd.demo import MARKER, SHAPES, _prepare, generate_shapes

ROOT = Path(__file__).resolve().parent.parent


# --------------------------------------------------------------------------- generated data


def test_generated_shapes_are_labelimg_style_voc(tmp_path):
    made = generate_shapes(tmp_path / "shapes", images=6, objects=(2, 4), seed=3)
    back = dsxsd.read(tmp_path / "shapes" / "annotations", "voc")
    assert [i.filename for i in back.images] == [f"shapes_{n:04d}.jpg" for n in range(6)]
    assert set(back.classes) <= set(SHAPES)
    for written, read in zip(made.images, back.images):
        assert [(o.label, o.bbox) for o in read.objects] == [(o.label, o.bbox) for o in written.objects]
        assert read.folder == "images"
        assert read.path == str((tmp_path / "shapes" / "images" / read.filename).resolve())
        with Image.open(tmp_path / "shapes" / "images" / read.filename) as image:
            assert image.format == "JPEG" and image.mode == "RGB"
            assert image.size == (read.width, read.height) == (160, 120)
        boxes = [o.bbox for o in read.objects]
        assert 2 <= len(boxes) <= 4
        for i, box in enumerate(boxes):
            assert 0 <= box.xmin < box.xmax < 160 and 0 <= box.ymin < box.ymax < 120
            assert box.width == box.height  # each shape is drawn in a square
            for other in boxes[i + 1 :]:  # objects do not overlap
                assert box.xmax < other.xmin or other.xmax < box.xmin or box.ymax < other.ymin or other.ymax < box.ymin
    xml = (tmp_path / "shapes" / "annotations" / "shapes_0000.xml").read_text()
    assert xml.index("<folder>") < xml.index("<filename>") < xml.index("<path>") < xml.index("<size>")


def test_generated_shapes_are_drawn_where_the_boxes_say(tmp_path):
    made = generate_shapes(tmp_path / "s", images=3, seed=1)
    for image in made.images:
        with Image.open(tmp_path / "s" / "images" / image.filename) as picture:
            background = picture.getpixel((0, 0))
            for obj in image.objects:
                b = obj.bbox
                centre = picture.getpixel((int((b.xmin + b.xmax) / 2), int((b.ymin + b.ymax) / 2)))
                # Every shape covers its box's centre, in a colour far from the background.
                assert sum(abs(x - y) for x, y in zip(centre, background)) > 90


def test_same_seed_same_pictures_and_no_clobbering(tmp_path):
    generate_shapes(tmp_path / "a", images=2, seed=7)
    generate_shapes(tmp_path / "b", images=2, seed=7)
    generate_shapes(tmp_path / "c", images=2, seed=8)
    name = "images/shapes_0001.jpg"
    assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    assert (tmp_path / "a" / name).read_bytes() != (tmp_path / "c" / name).read_bytes()
    with pytest.raises(dsxsd.OutputExistsError):
        generate_shapes(tmp_path / "a", images=2, seed=7)


def test_overwrite_replaces_a_demo_folder_but_never_another_folder(tmp_path):
    demo = tmp_path / "demo"
    _prepare(demo, overwrite=False)
    (demo / "old.txt").write_text("from the last run")
    with pytest.raises(dsxsd.OutputExistsError, match="--overwrite"):
        _prepare(demo, overwrite=False)
    _prepare(demo, overwrite=True)
    assert (demo / MARKER).is_file() and not (demo / "old.txt").exists()

    precious = tmp_path / "home"
    precious.mkdir()
    (precious / "thesis.tex").write_text("years of work")
    with pytest.raises(dsxsd.OutputExistsError, match="not a dsxsd demo folder"):
        _prepare(precious, overwrite=True)
    assert (precious / "thesis.tex").read_text() == "years of work"


# --------------------------------------------------------------------------- the pipeline


@pytest.mark.tf
@pytest.mark.slow
def test_quick_demo_makes_every_file_it_claims_and_prints_what_it_measured(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the default --out is ./dsxsd-demo
    result = CliRunner().invoke(main, ["demo", "--quick"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    out = tmp_path / "dsxsd-demo"
    output = result.output
    for n in range(1, 10):
        assert f"[{n}/9]" in output

    # Every file listed under "everything is in" exists, and they are the summary's files.
    listing = output.split("everything is in", 1)[1].splitlines()[1:]
    listed = {}
    for line in listing:
        if not line.startswith("  "):
            break
        name, path = line.split()
        listed[name] = path
    summary = json.loads((out / "summary.json").read_text())
    assert listed == {name: os.path.relpath(path) for name, path in summary["files"].items()}
    for name, path in listed.items():
        assert Path(path).exists(), name
    assert {"annotations", "labels", "crops", "pairs", "model", "metrics", "roc", "scores", "index", "onnx"} <= set(listed)

    # The data flowed through every step.
    annotations = dsxsd.read(out / "shapes" / "annotations", "voc")
    assert summary["counts"]["pictures"] == len(annotations.images) == 20
    assert summary["counts"]["objects"] == annotations.num_objects == summary["counts"]["crops"]
    assert dsxsd.read(out / "labels.csv", "csv").num_objects == annotations.num_objects
    pairs = dsxsd.read_pairs(out / "pairs.csv")
    for split in ("train", "val", "test"):
        counts = summary["counts"]["pairs"][split]
        assert counts["same"] == int(((pairs["split"] == split) & (pairs["label"] == 1)).sum())
        assert counts["different"] == int(((pairs["split"] == split) & (pairs["label"] == 0)).sum())

    # Printed numbers are the recorded ones.
    history = (out / "run" / "history.csv").read_text().splitlines()
    assert len(history) == 1 + summary["training"]["epochs"]
    t = summary["training"]
    assert f"validation accuracy {t['val_accuracy']:.3f} after {t['epochs']} epoch" in output
    metrics = json.loads((out / "run" / "metrics.json").read_text())
    (test,) = [e for e in metrics["pairs"] if e["split"] == "test"]
    assert summary["test"]["roc_auc"] == pytest.approx(test["roc_auc"])
    assert f"ROC AUC {test['roc_auc']:.3f}, EER {test['eer']:.3f}" in output
    assert f"accuracy {test['at_threshold']['accuracy']:.3f} at threshold {metrics['threshold']:.3f}" in output
    (one_shot,) = [e for e in metrics["n_way"] if e["n_way"] == 3]
    assert f"3-way one-shot accuracy {one_shot['accuracy']:.3f} over {one_shot['trials']} trials" in output
    truths = [p["truth"] for p in summary["predictions"]]
    assert truths == ["same", "different"]
    for p in summary["predictions"]:
        assert 0.0 <= p["score"] <= 1.0
        assert p["verdict"] == ("same" if p["score"] >= metrics["threshold"] else "different")
        assert f"predict {p['truth']} pair: score {p['score']:.3f} -> {p['verdict']}" in output
    hits = summary["search"]["hits"]
    assert len(hits) == 3 and [h["score"] for h in hits] == sorted((h["score"] for h in hits), reverse=True)
    assert "top 3 classes " + ", ".join(h["class"] for h in hits) in output

    # The export scored the same pairs as Keras, without TensorFlow.
    served = summary["served"]
    assert served["largest_difference"] == max(
        abs(a - p["score"]) for a, p in zip(served["scores"], summary["predictions"])
    ) < 1e-4
    assert f"the ONNX export scores those pairs the same (largest difference {served['largest_difference']:.1g})" in output

    # Training said how it went, epoch by epoch.
    assert re.search(r"^      epoch 1/1: loss \d\.\d{3}, val_accuracy \d\.\d{3} \(\d+ s\)$", output, re.M)

    # The commands suggested last run as printed: they name files the demo made, the
    # predict one two crops of one class.
    predict_line, search_line = output.rstrip().splitlines()[-2:]
    tokens = predict_line.split()
    assert tokens[:3] == ["next:", "dsxsd", "predict"] and len(tokens) == 6
    model, left, right = tokens[3:]
    assert model == listed["onnx"] and Path(left).is_file() and Path(right).is_file()
    assert Path(left).parent == Path(right).parent and Path(left).parent.parent == out.relative_to(tmp_path) / "crops"
    index, query = search_line.split()[2:4]
    assert search_line.split()[:2] == ["dsxsd", "search"] and index == listed["index"]
    assert Path(query).is_file()

    # A second run does not clobber the first without --overwrite.
    again = CliRunner().invoke(main, ["demo", "--quick"])
    assert again.exit_code == 2 and "--overwrite" in again.output


def test_the_steps_before_training_show_before_tensorflow_loads(tmp_path):
    # TensorFlow takes seconds to import: the first four steps must not wait for it.
    script = textwrap.dedent(
        f"""
        import sys
        from dsxsd.demo import QUICK, run_demo

        def echo(line):
            print(line, flush=True)
            if line.startswith("[5/9]"):
                print(sorted(m for m in ("tensorflow", "keras") if m in sys.modules))
                raise SystemExit(0)

        run_demo({str(tmp_path / "demo")!r}, QUICK, echo=echo)
        """
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert [line[:5] for line in lines[:5]] == ["[1/9]", "[2/9]", "[3/9]", "[4/9]", "[5/9]"]
    assert lines[5] == "[]"


# --------------------------------------------------------------------------- examples


def test_labeling_pipeline_example_runs(tmp_path):
    script = ROOT / "examples" / "labeling_pipeline.py"
    done = subprocess.run(
        [sys.executable, str(script), str(tmp_path / "work")], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    work = tmp_path / "work"
    # What the example says it made is there and holds the corrected labels.
    reviewed = dsxsd.read(work / "labels.json")
    assert reviewed.num_objects == dsxsd.read(work / "prelabels", "voc").num_objects
    assert "starfish" in dsxsd.read(work / "prelabels", "voc").classes  # the pre-labeler's slip
    assert "star" in reviewed.classes and "starfish" not in reviewed.classes  # fixed in review
    assert re.search(r"wrote \d+ images, \d+ objects", done.stdout)
    assert (work / "labels.csv").read_text().startswith("filename,width,height,class,xmin,ymin,xmax,ymax")
