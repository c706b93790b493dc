from __future__ import annotations

import json

import numpy as np

from reelforge.data.store import load_clips, read_manifest
from reelforge.evaluate.probe import GroundTruth, accuracy, chance, train_probe


def test_prompts_parse_against_the_vocabulary_of_the_ground_truth_file(demo):
    truth = GroundTruth(demo[0] / "ground_truth.json")
    vocab = truth.attributes
    assert truth.parse_prompt("a red circle moves left over a black background") == {
        "color": vocab["color"].index("red"),
        "shape": vocab["shape"].index("circle"),
        "direction": vocab["direction"].index("left"),
        "background": vocab["background"].index("black"),
    }
    assert truth.parse_prompt("a cat on a sofa") is None
    assert truth.parse_prompt("a pink circle moves left over a black background") is None


def test_the_vocabulary_comes_from_the_file_not_the_demo_code(demo, tmp_path):
    data = json.loads((demo[0] / "ground_truth.json").read_text())
    data["attributes"]["color"] = [*data["attributes"]["color"], "pink"]
    (tmp_path / "truth.json").write_text(json.dumps(data))
    truth = GroundTruth(tmp_path / "truth.json")
    assert truth.parse_prompt("a pink circle moves left over a black background")["color"] == 4
    del data["attributes"]  # a file written before the vocabulary was recorded: the values its shots use
    (tmp_path / "old.json").write_text(json.dumps(data))
    old = GroundTruth(tmp_path / "old.json").attributes
    assert old["shape"] == sorted({s["shape"] for v in data["videos"] for s in v["shots"]})


def test_every_clip_gets_its_shot_labels(demo, ingested):
    manifest = read_manifest(ingested)
    labels = GroundTruth(demo[0] / "ground_truth.json").label_clips(manifest)
    assert set(labels) == set(manifest.clip_id)


def test_probe_learns_real_clips_well_above_chance(demo, ingested):
    truth = GroundTruth(demo[0] / "ground_truth.json")
    manifest = read_manifest(ingested)
    labels = truth.label_clips(manifest)
    clips = load_clips(ingested)
    ids = list(manifest.clip_id)
    videos, labs = np.stack([clips[c] for c in ids]), [labels[c] for c in ids]
    probe = train_probe(videos, labs, truth.attributes, steps=150, lr=3e-3, batch_size=32, seed=0)
    acc = accuracy(probe, videos, labs)  # on its training clips: checks the wiring, not generalisation
    assert acc["color"] > 0.9 and acc["background"] > 0.9 and acc["all"] > chance(truth.attributes)["all"]
    assert set(acc) == set(truth.attributes) | {"all"}
