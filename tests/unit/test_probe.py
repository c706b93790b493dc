import numpy as np

from reelforge.clips import load_clips, read_manifest
from reelforge.probe import ATTRIBUTES, accuracy, chance, label_clips, parse_prompt, train_probe


def test_parse_prompt():
    assert parse_prompt("a red circle moves left over a black background") == {
        "color": ATTRIBUTES["color"].index("red"),
        "shape": ATTRIBUTES["shape"].index("circle"),
        "direction": ATTRIBUTES["direction"].index("left"),
        "background": ATTRIBUTES["background"].index("black"),
    }
    assert parse_prompt("a cat on a sofa") is None
    assert parse_prompt("a pink circle moves left over a black background") is None


def test_every_clip_gets_its_shot_labels(demo, ingested):
    manifest = read_manifest(ingested)
    labels = label_clips(manifest, demo[0] / "ground_truth.json")
    assert set(labels) == set(manifest.clip_id)


def test_probe_learns_real_clips_well_above_chance(demo, ingested):
    manifest = read_manifest(ingested)
    labels = label_clips(manifest, demo[0] / "ground_truth.json")
    clips = load_clips(ingested)
    ids = list(manifest.clip_id)
    videos, labs = np.stack([clips[c] for c in ids]), [labels[c] for c in ids]
    probe = train_probe(videos, labs, steps=150)
    acc = accuracy(probe, videos, labs)  # on its training clips: checks the wiring, not generalisation
    assert acc["color"] > 0.9 and acc["background"] > 0.9 and acc["all"] > chance()["all"]
    assert set(acc) == set(ATTRIBUTES) | {"all"}
