"""Golden files: the exact text ``render`` produces for a fixed inventory and fixed keys.

Run with ``UPDATE_GOLDEN=1`` to rewrite the expected files after an intended change, and review the
diff.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from tests.helpers import cli

HERE = Path(__file__).parent / "mesh"


def test_render_matches_golden_files(tmp_path: Path) -> None:
    work = tmp_path / "mesh"
    shutil.copytree(HERE, work, ignore=shutil.ignore_patterns("expected"))
    os.chmod(work / "wiremesh.keys", 0o700)
    for key in (work / "wiremesh.keys").iterdir():
        os.chmod(key, 0o600)
    r = cli("-f", work / "wiremesh.toml", "render", "--out", work / "out")
    assert r.code == 0, r.err
    assert "warning" not in r.err
    expected_dir = HERE / "expected"
    for produced in sorted((work / "out").glob("*/wg0.conf")):
        expected = expected_dir / produced.parent.name / "wg0.conf"
        if os.environ.get("UPDATE_GOLDEN"):
            expected.parent.mkdir(parents=True, exist_ok=True)
            expected.write_text(produced.read_text())
        assert produced.read_text() == expected.read_text(), produced.parent.name
    assert sorted(p.name for p in expected_dir.iterdir()) == ["fra", "hk-1", "hk-2", "home"]
    # The inventory gained the public keys and allocated addresses, and kept its comments.
    text = (work / "wiremesh.toml").read_text()
    assert 'name = "home"   # behind NAT: no endpoint' in text
    assert text.count("public_key = ") == 4
    assert text.count("address6 = ") == 4
