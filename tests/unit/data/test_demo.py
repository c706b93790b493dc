from __future__ import annotations

import json

from reelforge.data.demo import FPS, make_demo_data
from reelforge.data.video import VideoFile, to_rgb


def test_demo_data_is_deterministic_and_describes_every_file(tmp_path):
    a = make_demo_data(tmp_path / "a", videos=4, seed=7)
    b = make_demo_data(tmp_path / "b", videos=4, seed=7)
    assert a == b
    for v in a["videos"]:
        assert (tmp_path / "a" / v["file"]).read_bytes() == (tmp_path / "b" / v["file"]).read_bytes()
    kinds = {v["kind"] for v in a["videos"]}
    assert "broken" in kinds and len([v for v in a["videos"] if v["kind"] == "broken"]) == 3
    for v in a["videos"]:
        sidecar = (tmp_path / "a" / v["file"]).with_suffix(".txt")
        assert sidecar.exists() == (v["kind"] == "single")


def test_demo_video_decodes_to_ground_truth_length(demo):
    raw, truth = demo
    v = next(v for v in truth["videos"] if v["kind"] == "multi")
    with VideoFile(raw / v["file"]) as video:
        frames = list(video.frames())
        info = video.probe
    assert len(frames) == round(v["shots"][-1]["end_s"] * FPS)
    assert to_rgb(frames[0], 32, 32).shape == (32, 32, 3)
    assert info.codec == "h264" and (info.width, info.height) == (truth["width"], truth["height"])


def test_no_evaluation_prompt_is_a_caption_of_the_demo_videos(tmp_path):
    """The protocol's rule: evaluation prompts are held out. 40 videos without the rule show some of them."""
    from tests.conftest import REPO

    prompts = [p.lower() for p in (REPO / "evaluation/prompts.txt").read_text().splitlines() if p.strip()]
    captions = lambda truth: {s["caption"] for v in truth["videos"] for s in v["shots"]}  # noqa: E731
    free = make_demo_data(tmp_path / "free", videos=40, seed=0)
    assert captions(free) & set(prompts)  # the rule is needed: by chance, some shots match a prompt
    held = make_demo_data(tmp_path / "held", videos=40, seed=0, held_out=prompts)
    assert not captions(held) & set(prompts) and held["held_out_prompts"] == sorted(prompts)


def test_shots_cycle_through_every_combination_so_no_attribute_predicts_another():
    import numpy as np

    from reelforge.data.demo import Combos

    held = frozenset({"a red circle moves left over a black background"})
    combos = Combos(np.random.default_rng(0), held)
    shots = [combos.shot(0.0, 2.0, None) for _ in range(len(combos.all))]
    drawn = {(s.color, s.shape, s.direction, s.background) for s in shots}
    assert len(drawn) == len(shots) == len(combos.all)  # each combination once per cycle
    assert "a red circle moves left over a black background" not in {s.caption for s in shots}
    cut = [combos.shot(0.0, 2.0, "black") for _ in range(20)]
    assert all(s.background != "black" for s in cut)  # a cut always changes the scene


def test_demo_data_command_writes_portrait_and_landscape_videos_and_refuses_bad_sizes(tmp_path):
    """`make demo`'s mix: video i takes the (i mod n)-th size, and a video's file has that size."""
    from typer.testing import CliRunner

    from reelforge.cli import app

    out = tmp_path / "raw"
    r = CliRunner().invoke(app, ["demo-data", str(out), "--videos", "4", "--sizes", "128x96, 96x128"])
    assert r.exit_code == 0, r.output
    truth = json.loads((out / "ground_truth.json").read_text())
    valid = [v for v in truth["videos"] if v["kind"] != "broken"]
    assert [(v["width"], v["height"]) for v in valid] == [(128, 96), (96, 128)] * 2
    with VideoFile(out / valid[1]["file"]) as video:
        assert (video.probe.width, video.probe.height) == (96, 128)
    for bad in ("128", "128x96,x", "8x8"):
        r = CliRunner().invoke(app, ["demo-data", str(tmp_path / bad), "--sizes", bad])
        assert r.exit_code == 2 and "WIDTHxHEIGHT" in r.output, r.output
