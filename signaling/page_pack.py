"""Each page as one answer: its stylesheet and its whole module graph inlined, minified.

A classroom on a satellite link pays 600 ms for every round trip, and a page that fetches
its styles and ten modules over six connections pays several of them, plus a lost packet's
retransmission on each: 6-9 s before the classroom page could even connect. Packed, the
page is one response of about 24 kB in gzip, loaded in about three round trips.

The modules stay the source (served as they are under /static, for the replay page's
tools and for debugging); the packing is done once, when the server starts. It knows the
few forms our modules are written in (single-line `import { a, b as c } from "./x.js";`
or `import "./x.js";`, `export function|class|const|let`) and refuses anything else with
`PackError`, which a test turns into a failing build rather than a broken page.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass
from html import escape

import rcssmin
import rjsmin


class PackError(ValueError):
    """A page or module uses a form the packer does not handle."""


_IMPORT = re.compile(r'^import\s*(?:\{([^}]*)\}\s*from\s*)?"\./([\w-]+\.js)";?[ \t]*$', re.M)
_ANY_IMPORT = re.compile(r"^\s*import\b(?!\s*\()", re.M)
_EXPORT = re.compile(r"^export\s+((?:async\s+)?function\*?|class|const|let)\s+([\w$]+)", re.M)
_ANY_EXPORT = re.compile(r"^\s*export\b", re.M)
_STYLESHEET = re.compile(r'<link rel="stylesheet" href="/static/(css/[\w-]+\.css)">')
_PRELOAD = re.compile(r'[ \t]*<link rel="modulepreload" href="[^"]*">\n?')
_MODULE_SCRIPT = re.compile(r'<script type="module" src="/static/js/([\w-]+\.js)"></script>')


@dataclass(frozen=True)
class _Module:
    name: str
    imports: list[tuple[str, list[tuple[str, str]]]]  # (module, [(exported, local)])
    exports: list[str]
    body: str


def _parse(name: str, source: str) -> _Module:
    imports: list[tuple[str, list[tuple[str, str]]]] = []
    for names, module in _IMPORT.findall(source):
        pairs = []
        for item in (part.strip() for part in names.split(",")):
            if not item:
                continue
            exported, _, local = item.partition(" as ")
            pairs.append((exported.strip(), (local or exported).strip()))
        imports.append((module, pairs))
    body = _IMPORT.sub("", source)
    if _ANY_IMPORT.search(body):
        raise PackError(f"{name}: an import the packer does not know")
    exports = [found for _, found in _EXPORT.findall(body)]
    body = _EXPORT.sub(lambda m: f"{m.group(1)} {m.group(2)}", body)
    if _ANY_EXPORT.search(body):
        raise PackError(f"{name}: an export the packer does not know")
    return _Module(name, imports, exports, body)


def _graph(entry: str, read: Callable[[str], str]) -> dict[str, _Module]:
    """`entry` and every module it imports, parsed, in the order they run."""
    modules: dict[str, _Module] = {}
    visiting: set[str] = set()

    def visit(name: str) -> None:
        if name in modules:
            return
        if name in visiting:
            raise PackError(f"{name}: imports form a cycle")
        visiting.add(name)
        module = _parse(name, read(name))
        for dependency, _ in module.imports:
            visit(dependency)
        visiting.discard(name)
        modules[name] = module

    visit(entry)
    return modules


def module_graph(entry: str, read: Callable[[str], str]) -> list[str]:
    """The names of `entry` and every module it imports, in the order they run."""
    return list(_graph(entry, read))


def bundle(entry: str, read: Callable[[str], str]) -> str:
    """One module script with `entry` and every module it imports, each in a scope of its
    own (their top-level names cannot collide), run in import order as the browser would.
    `read(name)` gives a module's source."""
    modules = _graph(entry, read)
    order = list(modules)
    index = {name: i for i, name in enumerate(order)}
    parts = []
    for name in order:
        module = modules[name]
        for dependency, pairs in module.imports:
            exported = set(modules[dependency].exports)
            missing = [e for e, _ in pairs if e not in exported]
            if missing:
                raise PackError(f"{name}: {dependency} does not export {', '.join(missing)}")
        bindings = "".join(
            f"const {{{', '.join(f'{e}: {local}' for e, local in pairs)}}} = m{index[dep]};\n"
            for dep, pairs in module.imports
            if pairs
        )
        result = f"return {{{', '.join(module.exports)}}};"
        # async: a module may await at its top level, as a module can.
        parts.append(
            f"// {name}\nconst m{index[name]} = await (async () => {{\n"
            f"{bindings}{module.body}\n{result}\n}})();\n"
        )
    return str(rjsmin.jsmin("".join(parts)))


@dataclass(frozen=True)
class PackedPage:
    html: bytes
    gzipped: bytes
    # The CSP hash of its inline module script.
    script_hash: str


_ROOT = re.compile(r"<html\b", re.I)
# What the browser reads as it is (a script's or a style's text) and the comments
# between the elements, which only a developer reads.
_RAW_TEXT = re.compile(r"(<(script|style)\b.*?</\2>)", re.I | re.S)
_COMMENT = re.compile(r"<!--.*?-->\n?", re.S)


def _strip_comments(html: str) -> str:
    """The page without its HTML comments, scripts' and styles' text left as it is."""
    parts = _RAW_TEXT.split(html)
    # split() gives [text, block, tag name, text, block, tag name, ..., text].
    for i in range(0, len(parts), 3):
        parts[i] = _COMMENT.sub("", parts[i])
    return "".join(part for i, part in enumerate(parts) if i % 3 != 2)


def pack_page(
    html: str, read: Callable[[str], str], hints: dict[str, str] | None = None
) -> PackedPage:
    """The page with its stylesheet and module script inlined. `read(path)` gives a file
    of the web client by its path under /static (`css/app.css`, `js/classroom.js`).
    `hints`: what the server tells every page before it connects, as `data-*`
    attributes of its `<html>` element (`{"ice-servers": "none"}` is
    `document.documentElement.dataset.iceServers`). HTML comments are left out: on a
    satellite link every byte of the projector page counts."""
    html = _strip_comments(html)
    if hints:
        for name in hints:
            if not re.fullmatch(r"[a-z]+(-[a-z]+)*", name):
                raise PackError(f"a page hint is named {name!r}: lowercase words and dashes only")
        attributes = "".join(f' data-{name}="{escape(value)}"' for name, value in hints.items())
        html, found = _ROOT.subn(lambda m: m.group(0) + attributes, html, count=1)
        if not found:
            raise PackError("a page without an <html> element takes no hints")
    html = _STYLESHEET.sub(lambda m: f"<style>{rcssmin.cssmin(read(m.group(1)))}</style>", html)
    html = _PRELOAD.sub("", html)
    scripts = _MODULE_SCRIPT.findall(html)
    if len(scripts) != 1:
        raise PackError(f"a page has {len(scripts)} module scripts; the packer takes one")
    code = bundle(scripts[0], lambda name: read(f"js/{name}"))
    if re.search(r"</script|<!--", code, re.I):
        raise PackError("a module holds a closing script tag or an HTML comment opener")
    html = _MODULE_SCRIPT.sub(lambda _: f'<script type="module">{code}</script>', html)
    digest = hashlib.sha256(code.encode("utf-8")).digest()
    body = html.encode("utf-8")
    return PackedPage(
        html=body,
        gzipped=gzip.compress(body, compresslevel=9, mtime=0),
        script_hash=f"'sha256-{base64.b64encode(digest).decode()}'",
    )
