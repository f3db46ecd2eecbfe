"""``defdistill audit``: a verdict on a trained model, printed and written as JSON."""

from __future__ import annotations

import json

from defdistill.cli import main


def test_audit_command_gives_a_verdict(small_model, tmp_path, capsys):
    out_json = tmp_path / "audit.json"
    assert main(["audit", "--model", str(small_model), "--samples", "10", "--jsma-samples", "2",
                 "--cw-iterations", "100", "--cw-search-steps", "4", "--limit-test", "300",
                 "--quiet", "--json", str(out_json)]) == 0
    text = capsys.readouterr().out
    assert "verdict:" in text and "JSMA on Z" in text
    data = json.loads(out_json.read_text())
    assert data["verdict"]["masking"] is False  # a normally trained network masks nothing
    assert data["attacks"]["PGD Linf 0.3 on F"]["accuracy"] < 0.2
