"""dvc.yaml against the code: deps from the import closure, params from the stage configs, real flags."""

from __future__ import annotations

import shutil

import yaml

from reelforge.cli import command_flags
from reelforge.stage_graph import STAGES, ImportGraph, dvc_problems, stage_sections
from tests.conftest import REPO


def test_dvc_yaml_declares_what_each_stage_runs_and_reads():
    assert dvc_problems(REPO, command_flags()) == []


def test_every_stage_reads_its_own_section():
    assert all(name in stage_sections(name) for name in STAGES)


def _project_copy(tmp_path):
    shutil.copytree(
        REPO / "src", tmp_path / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info")
    )
    for folder in ("flows", "serving"):
        shutil.copytree(REPO / folder, tmp_path / folder, ignore=shutil.ignore_patterns("__pycache__"))
    return yaml.safe_load((REPO / "dvc.yaml").read_text())


def _problems(tmp_path, dvc: dict) -> list[str]:
    (tmp_path / "dvc.yaml").write_text(yaml.safe_dump(dvc, sort_keys=False))
    return dvc_problems(tmp_path, command_flags())


def test_drift_of_each_kind_is_reported(tmp_path):
    """The faults dvc.yaml had before the check: stage code missing from deps, a params section a stage
    reads but does not declare, an input that is no dep; and a flag the command does not have."""
    dvc = _project_copy(tmp_path)
    dvc["stages"]["promote"]["deps"].remove("src/reelforge/promote.py")
    dvc["stages"]["evaluate"]["params"].remove("registry")
    dvc["stages"]["evaluate"]["deps"].remove("evaluation/prompts.txt")
    dvc["stages"]["caption"]["cmd"] += " --captioner-steps 3"
    problems = "\n".join(_problems(tmp_path, dvc))
    assert "promote: deps lack code the stage runs: ['src/reelforge/promote.py']" in problems
    assert (
        "evaluate: params ['evaluate', 'read'] != the sections its config reads: "
        "['evaluate', 'read', 'registry']" in problems
    )
    assert "evaluate: cmd path evaluation/prompts.txt is neither a dep nor an out" in problems
    assert "caption: cmd flags ['--captioner-steps'] do not exist on `reelforge caption`" in problems


def test_a_new_import_in_stage_code_makes_its_file_a_required_dep(tmp_path):
    dvc = _project_copy(tmp_path)
    promote = tmp_path / "src/reelforge/promote.py"
    # a lazy import inside a function runs too: it counts
    promote.write_text(promote.read_text() + "\n\ndef _later():\n    from reelforge.data import video\n")
    problems = _problems(tmp_path, dvc)
    assert any("promote: deps lack code" in p and "src/reelforge/data/video.py" in p for p in problems)


def test_the_graph_counts_parent_packages_and_lazy_imports():
    graph = ImportGraph.of(REPO)
    closure = graph.closure("reelforge.train.stage")
    assert {"reelforge", "reelforge.train", "reelforge.model.pipeline", "reelforge.config"} <= closure
    assert "reelforge.cli" not in closure and "serving.app" not in closure
    assert "reelforge.model.sizes" in graph.closure("reelforge.config")
