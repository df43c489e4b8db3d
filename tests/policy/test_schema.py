"""The JSON Schema: the shipped file is the generated one, and it agrees with the loader on
the example policies."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

import appshield
from appshield.policy._schema import policy_schema, schema_text

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = Path(appshield.__file__).parent / "schema.json"


def test_shipped_schema_is_the_generated_one() -> None:
    assert SHIPPED.read_text(encoding="utf-8") == schema_text(), (
        "regenerate: python -m appshield schema > appshield/schema.json"
    )


def test_schema_lists_every_match_field_per_category() -> None:
    schema = policy_schema()
    definitions = schema["definitions"]
    assert set(definitions["match_file"]["properties"]) == {"path", "access"}
    assert "scope" in definitions["unless_network"]["properties"]
    assert definitions["rule"]["additionalProperties"] is False
    assert json.loads(schema_text()) == schema


@pytest.mark.parametrize(
    "example", sorted((ROOT / "examples").glob("*.yaml")), ids=lambda p: p.name
)
def test_examples_validate(example: Path) -> None:
    jsonschema = pytest.importorskip("jsonschema")
    data = yaml.safe_load(example.read_text(encoding="utf-8"))
    jsonschema.Draft7Validator(policy_schema()).validate(data)


@pytest.mark.parametrize(
    "data",
    [
        {"version": 2},
        {
            "version": 1,
            "rules": [{"id": "a", "category": "file", "action": "deny", "match": {"host": "x"}}],
        },
        {"version": 1, "rules": [{"id": "a b", "category": "file", "action": "deny", "match": {}}]},
        {
            "version": 1,
            "rules": [{"id": "a", "category": "network", "action": "deny", "match": {"port": "x"}}],
        },
        {"version": 1, "surprise": True},
    ],
)
def test_schema_rejects_what_the_loader_rejects(data: dict[str, object]) -> None:
    jsonschema = pytest.importorskip("jsonschema")
    assert list(jsonschema.Draft7Validator(policy_schema()).iter_errors(data))
