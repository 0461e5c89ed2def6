"""Linkage configuration: defaults, YAML loading and every refusal with its code and place."""

from __future__ import annotations

from pathlib import Path

import pytest

from agreements.approval import canonical_form
from agreements.loader import load_agreement
from broker.errors import AgreementError, ValidationError
from broker.link.config import (
    DEFAULT_CASCADE_SPEC,
    DEFAULT_CONFIG,
    LinkageConfig,
    Thresholds,
    config_from_mapping,
    load_linkage_config,
)
from broker.link.encode import DEFAULT_CASCADE


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "linkage.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_default_cascade_is_the_encoders() -> None:
    assert DEFAULT_CONFIG.encoder_cascade() == DEFAULT_CASCADE
    assert DEFAULT_CONFIG.strong_rules == frozenset({"nhs", "upn"})
    assert DEFAULT_CONFIG.thresholds.match_at > DEFAULT_CONFIG.thresholds.possible_at


def test_empty_file_gives_the_default(tmp_path: Path) -> None:
    assert load_linkage_config(_write(tmp_path, "")) == DEFAULT_CONFIG


def test_a_full_file_loads(tmp_path: Path) -> None:
    text = (
        "cascade:\n"
        "  - {name: nhs, forms: [nhs], strength: 3}\n"
        "  - {name: name_dob, forms: [given, family, dob], strength: 1}\n"
        "thresholds:\n"
        "  match_at: 0.999\n"
        "  possible_at: 0.3\n"
        "em:\n"
        "  max_iterations: 7\n"
        "guard:\n"
        "  dob_and_given: false\n"
    )
    config = load_linkage_config(_write(tmp_path, text))
    assert [k.name for k in config.cascade] == ["nhs", "name_dob"]
    assert config.strong_rules == frozenset({"nhs"})
    assert config.thresholds == Thresholds(match_at=0.999, possible_at=0.3)
    assert config.em.max_iterations == 7
    assert config.guard.dob_and_given is False
    assert config.guard.household_given is True


def test_unknown_field_names_its_path_and_line(tmp_path: Path) -> None:
    path = _write(tmp_path, "thresholds:\n  match_at: 0.99\n  posible_at: 0.5\n")
    with pytest.raises(ValidationError) as caught:
        load_linkage_config(path)
    error = caught.value
    assert error.code == "linkage_config_unknown_field"
    assert error.location.field == "thresholds.posible_at"
    assert error.location.file == "linkage.yaml"
    assert error.location.line == 3


def test_key_without_strength_is_refused(tmp_path: Path) -> None:
    path = _write(tmp_path, "cascade:\n  - name: nhs\n    forms: [nhs]\n")
    with pytest.raises(ValidationError) as caught:
        load_linkage_config(path)
    assert caught.value.code == "linkage_key_no_strength"
    assert caught.value.location.field == "cascade.0.strength"
    assert caught.value.location.line == 2


@pytest.mark.parametrize("strength", [0, 4, "strong"])
def test_key_of_undeclared_strength_is_refused(strength: object) -> None:
    data = {"cascade": [{"name": "nhs", "forms": ["nhs"], "strength": strength}]}
    with pytest.raises(ValidationError) as caught:
        config_from_mapping(data)
    assert caught.value.code == "linkage_key_no_strength"
    assert caught.value.location.field == "cascade.0.strength"


def test_thresholds_out_of_order_are_refused(tmp_path: Path) -> None:
    path = _write(tmp_path, "thresholds:\n  match_at: 0.4\n  possible_at: 0.6\n")
    with pytest.raises(ValidationError) as caught:
        load_linkage_config(path)
    assert caught.value.code == "linkage_thresholds_out_of_order"
    assert caught.value.location.field == "thresholds"
    assert caught.value.location.line == 1


def test_equal_thresholds_are_out_of_order() -> None:
    with pytest.raises(ValidationError) as caught:
        config_from_mapping({"thresholds": {"match_at": 0.5, "possible_at": 0.5}})
    assert caught.value.code == "linkage_thresholds_out_of_order"


@pytest.mark.parametrize("value", [0.0, 1.0, 1.5, -0.1])
def test_thresholds_must_be_probabilities(value: float) -> None:
    with pytest.raises(ValidationError) as caught:
        config_from_mapping({"thresholds": {"match_at": value, "possible_at": 0.01}})
    assert caught.value.code == "linkage_config_invalid"
    assert caught.value.location.field == "thresholds.match_at"


def test_cascade_with_an_unknown_form_is_refused() -> None:
    data = {"cascade": [{"name": "odd", "forms": ["shoe_size"], "strength": 2}]}
    with pytest.raises(ValidationError) as caught:
        config_from_mapping(data)
    assert caught.value.code == "linkage_cascade_invalid"
    assert "odd" in caught.value.message


def test_cascade_weakest_first_is_refused() -> None:
    data = {
        "cascade": [
            {"name": "name_dob", "forms": ["given", "family", "dob"], "strength": 1},
            {"name": "nhs", "forms": ["nhs"], "strength": 3},
        ]
    }
    with pytest.raises(ValidationError) as caught:
        config_from_mapping(data)
    assert caught.value.code == "linkage_cascade_invalid"


def test_not_yaml_names_the_line(tmp_path: Path) -> None:
    with pytest.raises(ValidationError) as caught:
        load_linkage_config(_write(tmp_path, "em:\n  seed: [1,\n"))
    assert caught.value.code == "linkage_config_not_yaml"
    assert caught.value.location.line is not None


def test_not_a_mapping_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValidationError) as caught:
        load_linkage_config(_write(tmp_path, "- 1\n- 2\n"))
    assert caught.value.code == "linkage_config_invalid"


def test_missing_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValidationError) as caught:
        load_linkage_config(tmp_path / "absent.yaml")
    assert caught.value.code == "linkage_config_unreadable"


def test_messages_never_echo_values() -> None:
    with pytest.raises(ValidationError) as caught:
        config_from_mapping({"em": {"seed": "Jane Smith 2011-03-04"}})
    assert "Jane" not in caught.value.message
    assert all("Jane" not in p.message for p in caught.value.problems)


def test_with_agreement_overrides_only_what_is_declared() -> None:
    cascade = DEFAULT_CASCADE_SPEC[:2]
    config = DEFAULT_CONFIG.with_agreement(cascade, None)
    assert config.cascade == cascade
    assert config.thresholds == DEFAULT_CONFIG.thresholds
    assert DEFAULT_CONFIG.with_agreement(None, None) == DEFAULT_CONFIG
    tighter = Thresholds(match_at=0.9999, possible_at=0.9)
    assert DEFAULT_CONFIG.with_agreement(None, tighter).thresholds == tighter


def test_config_is_frozen() -> None:
    with pytest.raises(Exception, match="frozen"):
        DEFAULT_CONFIG.decisive_weight = 3.0  # type: ignore[misc]
    assert isinstance(LinkageConfig(), LinkageConfig)


EXAMPLE = Path(__file__).resolve().parents[2] / "agreements" / "examples" / "mace-cohort.yaml"


def _agreement_with(tmp_path: Path, extra: str) -> Path:
    text = EXAMPLE.read_text(encoding="utf-8").replace(
        "  match_keys: [nhs, upn, name_dob_postcode]\n  method: keyed_hash\n",
        "  match_keys: [nhs, upn, name_dob_postcode]\n  method: keyed_hash\n" + extra,
    )
    path = tmp_path / "agreement.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_an_agreement_without_engine_settings_signs_what_it_always_did() -> None:
    agreement = load_agreement(EXAMPLE, verify_approvals=True, today=None)
    assert agreement.linkage.cascade is None
    assert agreement.linkage.thresholds is None
    form = canonical_form(agreement)
    assert b'"cascade"' not in form
    assert b'"thresholds"' not in form
    config = DEFAULT_CONFIG.with_agreement(agreement.linkage.cascade, agreement.linkage.thresholds)
    assert config == DEFAULT_CONFIG


def test_an_agreement_declares_its_cascade_and_thresholds(tmp_path: Path) -> None:
    extra = (
        "  cascade:\n"
        "    - {name: nhs, forms: [nhs], strength: 3}\n"
        "    - {name: name_dob_postcode, forms: [given, family, dob, postcode], strength: 2}\n"
        "  thresholds: {match_at: 0.999, possible_at: 0.4}\n"
    )
    agreement = load_agreement(_agreement_with(tmp_path, extra), verify_approvals=False)
    assert agreement.linkage.thresholds == Thresholds(match_at=0.999, possible_at=0.4)
    assert b'"thresholds":{"match_at":0.999' in canonical_form(agreement)
    config = DEFAULT_CONFIG.with_agreement(agreement.linkage.cascade, agreement.linkage.thresholds)
    assert [k.name for k in config.cascade] == ["nhs", "name_dob_postcode"]
    assert config.strong_rules == frozenset({"nhs"})
    assert config.thresholds.match_at == 0.999


@pytest.mark.parametrize(
    "extra",
    [
        "  thresholds: {match_at: 0.3, possible_at: 0.4}\n",
        "  cascade:\n    - {name: nhs, forms: [nhs]}\n",
        "  cascade:\n    - {name: odd, forms: [shoe_size], strength: 2}\n",
        "  thresholds: {match_at: 0.99, possible_at: 0.4, tolerance: 1}\n",
    ],
)
def test_an_agreement_with_bad_engine_settings_is_refused(tmp_path: Path, extra: str) -> None:
    with pytest.raises(AgreementError) as caught:
        load_agreement(_agreement_with(tmp_path, extra), verify_approvals=False)
    assert any(
        "linkage" in p.message or "linkage" in str(p.location.field) for p in caught.value.problems
    )
