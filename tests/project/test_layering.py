"""Imports go one way: shells (the CLI, flows/, serving/) -> stages -> library, and stages stay apart."""

from __future__ import annotations

from reelforge.stage_graph import ImportGraph, layer, layer_violations
from tests.conftest import REPO


def test_imports_go_one_way():
    assert layer_violations(ImportGraph.of(REPO)) == []


def test_a_library_module_importing_a_stage_or_a_shell_is_reported():
    graph = ImportGraph.of(REPO)
    graph.imports["reelforge.config"] = graph.imports["reelforge.config"] | {"reelforge.train.stage"}
    graph.imports["reelforge.promote"] = graph.imports["reelforge.promote"] | {"serving.deploy"}
    graph.imports["reelforge.caption.stage"] = graph.imports["reelforge.caption.stage"] | {
        "reelforge.data.ingest"
    }
    assert layer_violations(graph) == [
        "reelforge.caption.stage (stage) imports reelforge.data.ingest (stage)",
        "reelforge.config (library) imports reelforge.train.stage (stage)",
        "reelforge.promote (stage) imports serving.deploy (shell)",
    ]


def test_layers():
    assert [layer(m) for m in ("reelforge.cli", "flows.pipeline", "serving.app")] == ["shell"] * 3
    assert layer("reelforge.evaluate.stage") == "stage" and layer("reelforge.evaluate.metrics") == "library"
