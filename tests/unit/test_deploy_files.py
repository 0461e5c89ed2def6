"""Deployment examples name only settings the broker knows."""

from __future__ import annotations

from pathlib import Path

from broker.config import Settings

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"


def test_env_example_names_only_known_settings() -> None:
    known = {f"BROKER_{name.upper()}" for name in Settings.model_fields}
    names = {
        line.split("=", 1)[0]
        for line in (DEPLOY / "env.example").read_text().splitlines()
        if line and not line.startswith("#")
    }
    assert names
    assert names <= known
