"""The stages and what they depend on, computed from the code: the check that keeps dvc.yaml true.

DVC reruns a stage when one of its declared deps or params changed, so dvc.yaml must declare every project
file a stage's code runs and every params section its config reads. Both are computed here, not listed by
hand: the deps are the import closure of the stage module (every `import`, also inside functions, read
from the source with `ast`), and the params are the fields of the config type its `run` takes.

The same import graph enforces the layering: shells (the CLI, `flows/`, `serving/`, this module) import
stages, stages import the library, and never the other way; no stage imports another stage.
"""

from __future__ import annotations

import ast
import importlib
import shlex
import typing
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import yaml

# Stage name (= the `reelforge` command = the dvc.yaml stage) -> the module whose `run` it calls.
STAGES: dict[str, str] = {
    "ingest": "reelforge.data.ingest",
    "caption": "reelforge.caption.stage",
    "train": "reelforge.train.stage",
    "evaluate": "reelforge.evaluate.stage",
    "promote": "reelforge.promote",
}
SHELLS = ("reelforge.cli", "reelforge.stage_graph", "flows", "serving")
PACKAGES = {"reelforge": "src/reelforge", "flows": "flows", "serving": "serving"}  # package -> folder
# Paths a stage writes that DVC must not manage: resumable training state, which `repro` would delete.
UNMANAGED = ("checkpoints/",)


def stage_module(name: str) -> typing.Any:
    return importlib.import_module(STAGES[name])


def stage_sections(name: str) -> list[str]:
    """The params sections a stage reads: the fields of the config its `run(cfg, ...)` takes."""
    config = typing.get_type_hints(stage_module(name).run)["cfg"]
    return list(config.model_fields)


@dataclass(frozen=True)
class ImportGraph:
    """module -> project modules it imports, and module -> its file (relative to the repo root)."""

    imports: dict[str, set[str]]
    files: dict[str, str]

    @classmethod
    def of(cls, repo: Path) -> ImportGraph:
        files = {}
        for package, folder in PACKAGES.items():
            for path in sorted((repo / folder).rglob("*.py")):
                rel = path.relative_to(repo / folder).with_suffix("")
                parts = [package, *rel.parts]
                if parts[-1] == "__init__":
                    parts.pop()
                files[".".join(parts)] = str(path.relative_to(repo))
        imports = {m: set(_imported(repo / f, m, files)) for m, f in files.items()}
        return cls(imports, files)

    def closure(self, module: str) -> set[str]:
        """Every project module that importing `module` can run, itself and its parent packages included."""
        seen: set[str] = set()
        todo = [module]
        while todo:
            m = todo.pop()
            if m in seen:
                continue
            seen.add(m)
            todo += [p for p in _parents(m) if p in self.files]
            todo += self.imports.get(m, ())
        return seen

    def deps(self, module: str) -> list[str]:
        return sorted(self.files[m] for m in self.closure(module))


def _parents(module: str) -> Iterator[str]:
    parts = module.split(".")
    for i in range(1, len(parts)):
        yield ".".join(parts[:i])


def _imported(path: Path, module: str, files: dict[str, str]) -> Iterator[str]:
    """Project modules imported anywhere in the file (`from a import b` counts `a.b` when that is a
    module, else `a`)."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(
                    package.split(".")[: len(package.split(".")) - node.level + 1] + [base]
                ).strip(".")
            names = [f"{base}.{a.name}" if f"{base}.{a.name}" in files else base for a in node.names]
        else:
            continue
        for name in names:
            while name and name not in files:  # `import a.b.c` of a package path: the deepest module known
                name = name.rpartition(".")[0]
            if name:
                yield name


def layer(module: str) -> str:
    if any(module == s or module.startswith(s + ".") for s in SHELLS):
        return "shell"
    return "stage" if module in STAGES.values() else "library"


def layer_violations(graph: ImportGraph) -> list[str]:
    """Imports against the direction shells -> stages -> library, and stages importing each other."""
    rank = {"shell": 2, "stage": 1, "library": 0}
    out = []
    for m, imported in sorted(graph.imports.items()):
        for i in sorted(imported):
            if rank[layer(i)] > rank[layer(m)] or (layer(m) == layer(i) == "stage" and m != i):
                out.append(f"{m} ({layer(m)}) imports {i} ({layer(i)})")
    return out


def dvc_problems(repo: Path, command_flags: dict[str, set[str]]) -> list[str]:
    """Where dvc.yaml disagrees with the code: a stage's command and its flags, its deps (every project
    file its module's import closure runs), its params (the sections its config reads)."""
    graph = ImportGraph.of(repo)
    stages = yaml.safe_load((repo / "dvc.yaml").read_text())["stages"]
    problems = []
    if set(stages) != set(STAGES):
        problems.append(f"dvc.yaml stages {sorted(stages)} != the pipeline's stages {sorted(STAGES)}")
    for name, entry in stages.items():
        if name not in STAGES:
            continue
        argv = shlex.split(entry["cmd"])
        if argv[:2] != ["reelforge", name]:
            problems.append(f"{name}: cmd must run `reelforge {name}`, not `{' '.join(argv[:2])}`")
        unknown = {a.split("=")[0] for a in argv[2:] if a.startswith("--")} - command_flags.get(name, set())
        if unknown:
            problems.append(f"{name}: cmd flags {sorted(unknown)} do not exist on `reelforge {name}`")
        declared = {_name(d) for d in entry.get("deps", [])}
        tracked = declared | {_name(o) for kind in ("outs", "metrics") for o in entry.get(kind, [])}
        for path in (a for a in argv[2:] if not a.startswith("-")):
            if not path.startswith(UNMANAGED) and not any(
                path == t or path.startswith(t + "/") for t in tracked
            ):
                problems.append(f"{name}: cmd path {path} is neither a dep nor an out")
        code = {d for d in declared if d.endswith(".py")}
        need = set(graph.deps(STAGES[name]))
        if need - code:
            problems.append(f"{name}: deps lack code the stage runs: {sorted(need - code)}")
        if code - need:
            problems.append(f"{name}: deps list code the stage does not run: {sorted(code - need)}")
        params = {_name(p) for p in entry.get("params", [])}
        sections = set(stage_sections(name))
        if params != sections:
            problems.append(
                f"{name}: params {sorted(params)} != the sections its config reads: {sorted(sections)}"
            )
    return problems


def _name(entry: str | dict) -> str:
    """A dvc.yaml list entry is a path, or a one-key mapping of a path to its options."""
    return entry if isinstance(entry, str) else next(iter(entry))
