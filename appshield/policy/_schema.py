"""The JSON Schema of policy format version 1, generated from the loader's own tables.

`appshield schema` prints it; `appshield/schema.json` is the same document, shipped for
editors (yaml-language-server: `# yaml-language-server: $schema=<path to schema.json>`).
The schema is a help for editing; the loader is the authority (it also checks globs,
networks, variables, `extends` and everything that needs more than a shape).
"""

from __future__ import annotations

import json
from typing import Any

from appshield.document import MATCH_FIELDS
from appshield.operations import CATEGORIES
from appshield.policy._fields import ACCESS, OPERATIONS, TRANSPORTS
from appshield.policy.loader import ACTIONS, MODES, PROTECTION_KEYS, VERSION

__all__ = ["FIELD_HELP", "policy_schema", "schema_text"]

Schema = dict[str, Any]

FIELD_HELP: dict[str, str] = {
    "executable": "Glob on the program. With a '/': the resolved absolute path. Without: the "
    "base name, only for a program found through PATH or in a folder the process cannot "
    "write. A deny also checks argv[0]. Path variables expand ('{python}': the interpreter).",
    "args": "Globs matched position by position against argv[1:]; a last item '**' matches "
    "any remainder. A list of such lists: any of them.",
    "shell": "true: the command runs through a shell (os.system, shell=True, sh -c).",
    "command_line": "Glob on the whole command line as one string ('*' crosses '/' and spaces).",
    "unshielded": "true: the child is a Python interpreter that would run without the shield.",
    "path": "Path glob: '*' one segment, '**' any depth, '?', '[...]'. '~', {cwd}, {home}, "
    "{tmp}, {prefix}, {stdlib}, {stdlib_modules}, {site_packages}, {policy_dir}, {python} "
    "expand at load time.",
    "access": "read, write or delete (default: all three).",
    "host": "Host name glob ('*.example.com'; '*' crosses dots) or IP literal.",
    "cidr": "IPv4 or IPv6 network, e.g. 10.0.0.0/8 (host bits must be zero).",
    "port": 'Port number or "LOW-HIGH" range (inclusive).',
    "operation": "connect, send (datagram), bind or resolve (default: all).",
    "transport": "tcp, udp, unix or raw (SOCK_RAW and packet sockets: denied unless a rule "
    "naming raw allows them).",
    "module": "Dotted module glob; also matches submodules ('ctypes' matches ctypes.util).",
    "origin": "Path glob on the file the module is loaded from (path variables expand: "
    "'{stdlib_modules}/**/*.py' is the standard library's own Python files).",
    "library": "Path glob on a native library loaded through ctypes or similar.",
    "scope": "Module globs: only when code of these modules is on the call stack.",
}

_PORT_TEXT = r"^\s*[0-9]+(\s*-\s*[0-9]+)?\s*$"


def _one_or_many(item: Schema, help_text: str) -> Schema:
    return {
        "description": help_text,
        "anyOf": [item, {"type": "array", "items": item, "minItems": 1}],
    }


def _field(name: str) -> Schema:
    help_text = FIELD_HELP[name]
    if name in ("shell", "unshielded"):
        return _one_or_many({"type": "boolean"}, help_text)
    if name == "access":
        return _one_or_many({"enum": list(ACCESS)}, help_text)
    if name == "operation":
        return _one_or_many({"enum": list(OPERATIONS)}, help_text)
    if name == "transport":
        return _one_or_many({"enum": list(TRANSPORTS)}, help_text)
    if name == "port":
        item = {
            "anyOf": [
                {"type": "integer", "minimum": 0, "maximum": 65535},
                {"type": "string", "pattern": _PORT_TEXT},
            ]
        }
        return _one_or_many(item, help_text)
    if name == "args":
        vector = {"type": "array", "items": {"type": "string"}}
        return {
            "description": help_text,
            "anyOf": [{"type": "string"}, vector, {"type": "array", "items": vector}],
        }
    return _one_or_many({"type": "string", "minLength": 1}, help_text)


def _condition(category: str, *, with_scope: bool) -> Schema:
    properties = {name: _field(name) for name in MATCH_FIELDS[category]}
    if with_scope:
        properties["scope"] = _field("scope")
    return {"type": "object", "additionalProperties": False, "properties": properties}


def _rule() -> Schema:
    per_category = [
        {
            "if": {"properties": {"category": {"const": category}}, "required": ["category"]},
            "then": {
                "properties": {
                    "match": {"$ref": f"#/definitions/match_{category}"},
                    "unless": {"$ref": f"#/definitions/unless_{category}"},
                }
            },
        }
        for category in CATEGORIES
    ]
    return {
        "type": "object",
        "additionalProperties": False,
        "required": ["id", "category", "action", "match"],
        "properties": {
            "id": {
                "type": "string",
                "pattern": "^[A-Za-z0-9._-]+$",
                "description": "Unique rule id: letters, digits, '.', '_' and '-'.",
            },
            "description": {"type": "string", "description": "What the rule is for."},
            "category": {"enum": list(CATEGORIES), "description": "What the rule is about."},
            "action": {
                "enum": list(ACTIONS),
                "description": "allow, deny, or alert (allowed but reported).",
            },
            "match": {
                "type": "object",
                "description": "Match fields (AND); each one value or a list (OR). {} matches"
                " every operation of the category.",
            },
            "unless": {
                "type": "object",
                "description": "An exception: when it matches (fields and/or scope), the rule"
                " does not apply.",
            },
            "scope": _field("scope"),
            "mode": {
                "enum": list(MODES),
                "description": "monitor: this rule only reports, whatever the policy mode.",
            },
        },
        "allOf": per_category,
    }


def _packages() -> Schema:
    grant: Schema = {
        "type": ["object", "null"],
        "additionalProperties": False,
        "description": "What this distribution's code may do: per category, a list of match-"
        "field mappings (one that holds grants the operation; [{}] grants the whole category)."
        " A category left out grants nothing of it.",
        "properties": {
            "version": {
                "type": "string",
                "description": "Version specifier the installed version must meet for the grant"
                " to apply, e.g. '>=2,<3' or '==1.*'.",
            },
            **{
                c: {"type": "array", "items": {"$ref": f"#/definitions/match_{c}"}}
                for c in CATEGORIES
            },
        },
    }
    return {
        "type": "object",
        "additionalProperties": False,
        "description": "Per-distribution least privilege (docs/packages.md): an operation is"
        " allowed only if the ordinary rules allow it and every third-party distribution"
        " responsible for it holds a grant for it.",
        "properties": {
            "default": {
                "enum": ["deny", "allow"],
                "description": "What a third-party distribution without an applicable grant may"
                " do: deny (nothing) or allow (what the ordinary rules allow).",
            },
            "first_party": _one_or_many(
                {"type": "string", "minLength": 1},
                "Installed distributions that are the application's own code.",
            ),
            "grants": {
                "type": ["object", "null"],
                "description": "Grants by distribution name (as importlib.metadata knows it).",
                "additionalProperties": grant,
            },
        },
    }


def policy_schema() -> Schema:
    definitions: Schema = {"rule": _rule()}
    for category in CATEGORIES:
        definitions[f"match_{category}"] = _condition(category, with_scope=False)
        definitions[f"unless_{category}"] = _condition(category, with_scope=True)
    action = {"enum": list(ACTIONS)}
    paths = {"type": "string", "minLength": 1}
    return {
        "$schema": "http://json-schema.org/draft-07/schema#",
        "title": "appshield policy",
        "description": "An appshield policy, format version 1. See docs/policy.md.",
        "type": "object",
        "additionalProperties": False,
        "required": ["version"],
        "properties": {
            "version": {"const": VERSION, "description": "The format version: 1."},
            "name": {"type": "string", "description": "Reported as the ruleset name."},
            "mode": {
                "enum": list(MODES),
                "description": "enforce: block denied operations; monitor: only report.",
            },
            "extends": _one_or_many(
                paths,
                "Policies to build on: files in this file's folder (or below), or built-in"
                " packs such as appshield:baseline.",
            ),
            "disable": _one_or_many(paths, "Ids of inherited rules to switch off."),
            "defaults": {
                "type": "object",
                "additionalProperties": False,
                "description": "The action when no rule matches; after extends are merged every"
                " category needs one.",
                "properties": {
                    c: {**action, "description": f"Default for {c}."} for c in CATEGORIES
                },
            },
            "rules": {"type": "array", "items": {"$ref": "#/definitions/rule"}},
            "protections": {
                "type": "object",
                "additionalProperties": False,
                "description": "Implicit protections, on unless turned off here.",
                "properties": {
                    name: {"type": "boolean", "default": True} for name in PROTECTION_KEYS
                },
            },
            "packages": _packages(),
        },
        "definitions": definitions,
    }


def schema_text() -> str:
    """The schema as shipped in appshield/schema.json (stable formatting, final newline)."""
    return json.dumps(policy_schema(), indent=2, sort_keys=False) + "\n"
