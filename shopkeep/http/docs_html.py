"""The ``/docs`` page: the OpenAPI document rendered as one self-contained HTML page.

No scripts, fonts or stylesheets from elsewhere: it works offline and behind any firewall.
Each problem code has an anchor (``#problem-<code>``), which is what a problem's ``type``
points at; each schema has one too (``#schema-<Name>``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from html import escape
from typing import Any, Final

STYLE: Final = """
body { font: 15px/1.5 system-ui, sans-serif; max-width: 60rem; margin: 2rem auto; padding: 0 1rem; }
code, .path { font-family: ui-monospace, monospace; }
.op { border-top: 1px solid #ccc; padding: .5rem 0; }
.method { font-weight: bold; display: inline-block; min-width: 4.5rem; }
table { border-collapse: collapse; margin: .3rem 0; }
td, th { border: 1px solid #ddd; padding: .15rem .5rem; text-align: left; vertical-align: top; }
"""

_CONSTRAINTS: Final = (
    "minimum", "maximum", "minLength", "maxLength", "minItems", "maxItems", "pattern", "default"
)


def render_docs(document: Mapping[str, Any], problems: Mapping[str, tuple[int, str]]) -> str:
    """The page for ``document``, with the table of ``problems`` (code -> status, title)."""
    info = document["info"]
    parts = [
        "<!doctype html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{escape(info['title'])} API</title><style>{STYLE}</style></head><body>",
        f"<h1>{escape(info['title'])} API <small>{escape(info['version'])}</small></h1>",
        f"<p>{_text(info['description'])}</p>",
        "<p>Machine-readable: <a href=\"/openapi.json\">/openapi.json</a> (OpenAPI 3.1).</p>",
        "<h2>Operations</h2>",
    ]
    for path, methods in document["paths"].items():
        for method, operation in methods.items():
            parts.append(_operation(path, method, operation))
    parts.append("<h2>Problems</h2><table><tr><th>code</th><th>status</th><th>title</th></tr>")
    for code, (status, title) in problems.items():
        parts.append(
            f'<tr id="problem-{escape(code)}"><td><code>{escape(code)}</code></td>'
            f"<td>{status}</td><td>{escape(title)}</td></tr>"
        )
    parts.append("</table><h2>Schemas</h2>")
    for name, schema in document["components"]["schemas"].items():
        parts.append(_schema(name, schema))
    parts.append("</body></html>")
    return "\n".join(parts)


def _text(value: str) -> str:
    # the descriptions use `code` spans only: render them, escape the rest
    pieces = escape(value).split("`")
    return "".join(f"<code>{p}</code>" if i % 2 else p for i, p in enumerate(pieces))


def _operation(path: str, method: str, operation: Mapping[str, Any]) -> str:
    anchor = escape(operation["operationId"])
    lines = [
        f'<div class="op" id="op-{anchor}"><span class="method">{escape(method.upper())}</span>'
        f'<span class="path">{escape(path)}</span> — {escape(operation["summary"])}',
        f"<p>{_text(operation['description'])}</p>",
    ]
    if operation["parameters"]:
        lines.append("<table><tr><th>parameter</th><th>in</th><th>type</th><th>about</th></tr>")
        for p in operation["parameters"]:
            required = " (required)" if p["required"] else ""
            lines.append(
                f"<tr><td><code>{escape(p['name'])}</code>{required}</td><td>{escape(p['in'])}"
                f"</td><td>{_type(p['schema'])}</td><td>{_text(p['description'])}</td></tr>"
            )
        lines.append("</table>")
    body = operation.get("requestBody")
    if body is not None:
        [(media, content)] = body["content"].items()
        optional = "" if body["required"] else " (optional)"
        lines.append(
            f"<p>Body{optional}: <code>{escape(media)}</code> {_type(content['schema'])}</p>"
        )
    lines.append("<table><tr><th>status</th><th>answer</th></tr>")
    for status, response in operation["responses"].items():
        answer = _text(response["description"])
        for media, content in response.get("content", {}).items():
            answer += f" — <code>{escape(media)}</code> {_type(content['schema'])}"
        lines.append(f"<tr><td>{escape(status)}</td><td>{answer}</td></tr>")
    lines.append("</table></div>")
    return "\n".join(lines)


def _schema(name: str, schema: Mapping[str, Any]) -> str:
    lines = [f'<h3 id="schema-{escape(name)}">{escape(name)}</h3>']
    if "description" in schema:
        lines.append(f"<p>{_text(schema['description'])}</p>")
    properties = schema.get("properties", {})
    if properties:
        required = set(schema.get("required", ()))
        lines.append("<table><tr><th>field</th><th>type</th><th>required</th></tr>")
        for field, spec in properties.items():
            lines.append(
                f"<tr><td><code>{escape(field)}</code></td><td>{_type(spec)}</td>"
                f"<td>{'yes' if field in required else 'no'}</td></tr>"
            )
        lines.append("</table>")
    else:
        lines.append(f"<p>{_type(schema)}</p>")
    return "\n".join(lines)


def _type(schema: Mapping[str, Any]) -> str:
    """A JSON schema in a few words, linking to the named schemas it refers to."""
    if "$ref" in schema:
        name = escape(schema["$ref"].rsplit("/", 1)[-1])
        return f'<a href="#schema-{name}">{name}</a>'
    if "anyOf" in schema:
        return " or ".join(_type(option) for option in schema["anyOf"])
    if "enum" in schema:
        return "one of " + ", ".join(f"<code>{escape(str(v))}</code>" for v in schema["enum"])
    kind = schema.get("type", "any")
    if kind == "array":
        words = f"array of {_type(schema.get('items', {}))}"
    elif kind == "object" and "title" not in schema:
        words = "object"
    else:
        words = escape(str(kind))
        if "format" in schema:
            words += f" ({escape(schema['format'])})"
    constraints = [
        f"{key} {escape(json.dumps(schema[key]))}" for key in _CONSTRAINTS if key in schema
    ]
    if constraints:
        words += " <small>[" + "; ".join(constraints) + "]</small>"
    return words
