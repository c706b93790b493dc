from __future__ import annotations

import pytest

from reelforge.files import atomic_dir


def test_crash_mid_write_leaves_no_output(tmp_path):
    out = tmp_path / "clips"
    with pytest.raises(RuntimeError), atomic_dir(out) as scratch:
        (scratch / "manifest.parquet").write_text("half")
        raise RuntimeError("killed")
    assert not out.exists()
