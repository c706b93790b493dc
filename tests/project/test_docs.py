"""The docs state what the code does: commands that exist, tables generated from the code."""

from __future__ import annotations

import re

from reelforge.cli import command_flags
from tests.conftest import REPO


def test_readme_names_only_commands_that_exist():
    readme = (REPO / "README.md").read_text()
    named = set(re.findall(r"`reelforge ([a-z][a-z-]+)", readme))
    assert named and named <= set(command_flags()), named - set(command_flags())


def test_the_size_table_in_the_docs_is_the_one_the_code_builds():
    from reelforge.model.backbone import size_table

    assert size_table() in (REPO / "docs/training.md").read_text()
