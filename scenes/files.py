"""Scene files: YAML (``.yaml``/``.yml``) and JSON (``.json``) <-> `Scene`.

Loading never executes code. YAML is composed into nodes with PyYAML's safe
composer and converted to plain values here (no object construction, no tags
beyond the standard scalars); JSON is parsed by a small reader on top of the
standard library's string and number scanners. Both keep a map from each dotted
field path (``props[2].material``) to its 1-based line, so every `SceneError`
from decoding or validation names ``file:line`` and the field.

Conventions:
    * YAML scalars follow the YAML 1.2 core schema: only ``true``/``false`` are
      booleans (not ``yes``/``on``), ``1e-5`` is a number, ``010`` is ten.
    * A key repeated in one mapping is an error (PyYAML would keep the last one).
    * Relative mesh paths are resolved against the scene file's folder and stored
      absolute and normalised, so a loaded scene simulates from any working
      directory without ``base_dir``. `save_file` writes paths as they are.

    scene = load_file("my_scene.yaml")
    save_file(scene, "copy.json")
"""
from __future__ import annotations

import bisect
import dataclasses
import json
import os
import re
from pathlib import Path

import yaml

from .core import Mesh, Scene
from .errors import SceneError

SUFFIXES = {".yaml": "yaml", ".yml": "yaml", ".json": "json"}

#: dotted field path -> 1-based line of its key (or list item) in the file
LineMap = dict[str, int]


# --------------------------------------------------------------------------- public API
def load_file(path) -> Scene:
    """Read, decode and validate a scene file; errors name file, line and field."""
    path = Path(path)
    fmt = _format_of(path)
    try:
        text = path.read_text(encoding="utf-8-sig")  # a leading BOM is dropped
    except FileNotFoundError:
        raise SceneError("", "scene file not found", file=str(path)) from None
    except IsADirectoryError:
        raise SceneError("", "is a folder, not a scene file", file=str(path)) from None
    except UnicodeDecodeError as e:
        raise SceneError("", f"not UTF-8 text ({e.reason} at byte {e.start})", file=str(path)) from None
    except OSError as e:
        raise SceneError("", f"cannot read scene file: {e.strerror or e}", file=str(path)) from None
    return loads(text, fmt, file=str(path), base_dir=path.parent)


def save_file(scene: Scene, path) -> Path:
    """Validate ``scene`` and write its canonical form (with ``schema_version``).

    The file is written to a temporary name and renamed, so an existing file is
    never left half-written. Mesh paths are written as they are: a relative one
    will be read against the file's folder when the file is loaded. Returns the
    path written.
    """
    path = Path(path)
    fmt = _format_of(path)
    text = dumps(scene.validate(), fmt)
    path.parent.mkdir(parents=True, exist_ok=True)
    # (a plain open, unlike mkstemp's 0600, gives the file the usual permissions)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def dumps(scene: Scene, fmt: str = "yaml") -> str:
    """The canonical text of ``scene`` in ``fmt`` ("yaml" or "json")."""
    data = scene.to_dict()
    data = {"schema_version": data.pop("schema_version"), **data}
    if fmt == "json":
        return json.dumps(data, indent=2, ensure_ascii=False) + "\n"
    if fmt == "yaml":
        return yaml.dump(data, Dumper=_Dumper, sort_keys=False, allow_unicode=True,
                         default_flow_style=False, width=100)
    raise ValueError(f"unknown scene file format {fmt!r} (valid: yaml, json)")


def loads(text: str, fmt: str = "yaml", *, file: str = "<string>", base_dir=None) -> Scene:
    """Parse, decode and validate scene text. Relative mesh paths are resolved
    against ``base_dir`` (left as they are when it is None)."""
    if fmt == "yaml":
        data, lines = parse_yaml(text, file)
    elif fmt == "json":
        data, lines = parse_json(text, file)
    else:
        raise ValueError(f"unknown scene file format {fmt!r} (valid: yaml, json)")
    if not isinstance(data, dict):
        kind = "empty" if data is None else f"a {type(data).__name__}, not a mapping"
        raise SceneError("", f"the scene file is {kind}; expected a mapping of scene fields",
                         file=file, line=lines.get("", 1))
    try:
        scene = Scene.from_dict(data)
        if base_dir is not None:
            _resolve_meshes(scene, Path(base_dir))
        return scene.validate()
    except SceneError as e:
        raise e.located(file, line_of(e.path, lines)) from None


def line_of(path: str, lines: LineMap) -> int | None:
    """Line of the deepest prefix of dotted field ``path`` present in ``lines``."""
    while True:
        if path in lines:
            return lines[path]
        cut = max(path.rfind("."), path.rfind("["))
        if cut <= 0:
            return lines.get("")
        path = path[:cut]


# --------------------------------------------------------------------------- meshes
def _resolve_meshes(scene: Scene, base_dir: Path):
    """Make relative mesh paths absolute (against the scene file's folder) and
    check each mesh file holds triangles."""
    for group in ("statics", "props"):
        for i, body in enumerate(getattr(scene, group)):
            shape = body.shape
            if not isinstance(shape, Mesh) or not shape.path:
                continue
            field = f"{group}[{i}].shape.path"
            p = Path(shape.path).expanduser()
            if not p.is_absolute():
                p = base_dir / p
            p = Path(os.path.normpath(p.absolute()))
            if not p.is_file():
                raise SceneError(field, f"mesh file '{shape.path}' not found (looked for {p})")
            _check_mesh(p, field)
            body.shape = dataclasses.replace(shape, path=str(p))


def _check_mesh(path: Path, field: str):
    """Read the mesh once now, so a bad one is reported with the file and line of
    the scene entry rather than later by the engine."""
    import trimesh  # heavy; only scenes with meshes pay for it
    try:
        mesh = trimesh.load(path, force="mesh")
    except Exception as e:  # trimesh raises many exception types on bad files
        raise SceneError(field, f"mesh file '{path}' cannot be read: {e}") from None
    if not isinstance(mesh, trimesh.Trimesh) or len(mesh.faces) == 0:
        raise SceneError(field, f"mesh file '{path}' holds no triangles")


def _format_of(path: Path) -> str:
    fmt = SUFFIXES.get(path.suffix.lower())
    if fmt is None:
        raise SceneError("", f"unknown scene file type '{path.suffix}'", choices=sorted(SUFFIXES),
                         file=str(path))
    return fmt


# --------------------------------------------------------------------------- YAML
_INT = re.compile(r"^(?:[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+)$")
_FLOAT = re.compile(r"^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?"
                    r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$")
_BOOL = re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$")
_NULL = re.compile(r"^(?:~|null|Null|NULL|)$")

_STR, _SEQ, _MAP = "tag:yaml.org,2002:str", "tag:yaml.org,2002:seq", "tag:yaml.org,2002:map"
_SCALAR_TAGS = {f"tag:yaml.org,2002:{k}" for k in ("str", "int", "float", "bool", "null")}
_IMPLICIT = (("tag:yaml.org,2002:bool", _BOOL, "tTfF"),
             ("tag:yaml.org,2002:int", _INT, "-+0123456789"),
             ("tag:yaml.org,2002:float", _FLOAT, "-+0123456789."),
             ("tag:yaml.org,2002:null", _NULL, ["~", "n", "N", ""]))


class _Loader(yaml.SafeLoader):
    """Safe composer with YAML 1.2 core-schema scalar resolution."""


_Loader.yaml_implicit_resolvers = {}
for _tag, _re, _first in _IMPLICIT:
    _Loader.add_implicit_resolver(_tag, _re, list(_first))


class _Dumper(yaml.SafeDumper):
    """Block style, short scalar lists inline (``pos: [0.0, 0.0, 1.0]``), and a
    string is quoted when YAML 1.1 *or* 1.2 would read it as something else."""

    def represent_list(self, data):
        flow = all(isinstance(v, (int, float, bool, str)) and not (isinstance(v, str) and "\n" in v)
                   for v in data) and len(data) <= 8
        return self.represent_sequence(_SEQ, data, flow_style=flow)

    def represent_str(self, data):
        # PyYAML folds a NEL (U+0085) inside single quotes into a space: escape it
        if "\x85" in data:
            return self.represent_scalar(_STR, data, style='"')
        if "\n" in data:
            return self.represent_scalar(_STR, data, style="|")
        return super().represent_str(data)


for _tag, _re, _first in _IMPLICIT:
    _Dumper.add_implicit_resolver(_tag, _re, list(_first))
_Dumper.add_representer(list, _Dumper.represent_list)
_Dumper.add_representer(str, _Dumper.represent_str)


def parse_yaml(text: str, file: str = "<string>"):
    """YAML text -> (plain value, line map). Never constructs Python objects."""
    line_at = _line_counter(text)
    try:
        loader = _Loader(text)
    except yaml.reader.ReaderError as e:  # a control character in the text
        char = e.character if isinstance(e.character, int) else ord(e.character)
        raise SceneError("", f"YAML error: {e.reason} (character U+{char:04X})", file=file,
                         line=line_at(e.position)) from None
    try:
        root = loader.get_single_node()
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        what = " ".join(s for s in (e.context, e.problem) if s)
        raise SceneError("", f"YAML syntax error: {what}", file=file,
                         line=None if mark is None else line_at(mark.index)) from None
    except yaml.YAMLError as e:
        raise SceneError("", f"YAML error: {e}", file=file) from None
    finally:
        loader.dispose()
    lines: LineMap = {}
    if root is None:
        return None, lines
    done: dict[int, object] = {}

    def convert(node, path: str):
        lines.setdefault(path, line_at(node.start_mark.index))
        # aliases compose to the same node: convert it once, so an alias bomb
        # costs memory linear in the document
        if id(node) in done:
            return done[id(node)]
        if isinstance(node, yaml.MappingNode):
            if node.tag != _MAP:
                raise _tag_error(node, path, file, line_at(node.start_mark.index))
            out = {}
            done[id(node)] = out
            for knode, vnode in node.value:
                if not isinstance(knode, yaml.ScalarNode):
                    raise SceneError(path, "mapping keys must be plain names", file=file,
                                     line=line_at(knode.start_mark.index))
                key = knode.value
                sub = _join(path, key)
                key_line = line_at(knode.start_mark.index)
                if key in out:
                    raise SceneError(sub, f"duplicate key '{key}' (first given on line "
                                     f"{lines.get(sub, '?')})", file=file, line=key_line)
                lines[sub] = key_line
                out[key] = convert(vnode, sub)
            return out
        if isinstance(node, yaml.SequenceNode):
            if node.tag != _SEQ:
                raise _tag_error(node, path, file, line_at(node.start_mark.index))
            out = []
            done[id(node)] = out
            for i, item in enumerate(node.value):
                out.append(convert(item, f"{path}[{i}]"))
            return out
        # scalars: only the core-schema tags (plus explicit !!str etc.) are built
        if node.tag not in _SCALAR_TAGS:
            raise _tag_error(node, path, file, line_at(node.start_mark.index))
        try:
            value = _scalar(node)
        except ValueError as e:
            raise SceneError(path, str(e), file=file, line=line_at(node.start_mark.index)) from None
        done[id(node)] = value
        return value

    return convert(root, ""), lines


def _scalar(node):
    kind, v = node.tag.rsplit(":", 1)[1], node.value
    if kind == "str":
        return v
    if kind == "null":
        if not _NULL.match(v):
            raise ValueError(f"{v!r} is not null")
        return None
    if kind == "bool":
        if not _BOOL.match(v):
            raise ValueError(f"{v!r} is not true/false")
        return v.lower() == "true"
    if kind == "int":
        if not _INT.match(v):
            raise ValueError(f"{v!r} is not an integer")
        if v.startswith(("0o", "0x")):
            return int(v[2:], 8 if v[1] == "o" else 16)
        return int(v, 10)
    if not _FLOAT.match(v):
        raise ValueError(f"{v!r} is not a number")
    low = v.lower()
    if low.endswith("nan"):
        return float("nan")
    if low.endswith("inf"):
        return float("-inf") if v.startswith("-") else float("inf")
    return float(v)


def _tag_error(node, path, file, line):
    return SceneError(path, f"unsupported YAML tag '{node.tag}' (scene files hold plain "
                      "mappings, lists, strings, numbers, booleans and null)", file=file, line=line)


def _line_counter(text: str):
    """position -> 1-based line, counting only '\\n' as editors do (PyYAML's own
    marks also break lines at U+0085, U+2028 and U+2029)."""
    starts = [m.end() for m in re.finditer("\n", text)]
    return lambda pos: bisect.bisect_right(starts, pos) + 1


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


# --------------------------------------------------------------------------- JSON
_WS = re.compile(r"[ \t\n\r]*")
_NUMBER = json.scanner.NUMBER_RE


def parse_json(text: str, file: str = "<string>"):
    """JSON text -> (plain value, line map). Strict JSON (no NaN/Infinity);
    duplicate keys are an error. Strings and numbers go through the standard
    library's own scanners, so escapes and surrogate pairs read exactly as
    `json.loads` reads them."""
    try:  # syntax errors: let the standard parser find and place them
        json.loads(text)
    except json.JSONDecodeError as e:
        raise SceneError("", f"JSON syntax error: {e.msg} (column {e.colno})", file=file,
                         line=e.lineno) from None
    line_at = _line_counter(text)
    lines: LineMap = {}

    def skip(pos):
        return _WS.match(text, pos).end()

    def value(pos, path):
        # the document is valid JSON (checked above), so no syntax checks here
        pos = skip(pos)
        lines.setdefault(path, line_at(pos))
        c = text[pos]
        if c == "{":
            out = {}
            pos = skip(pos + 1)
            if text[pos] == "}":
                return out, pos + 1
            while True:
                key_line = line_at(pos)
                key, pos = json.decoder.scanstring(text, pos + 1)
                sub = _join(path, key)
                if key in out:
                    raise SceneError(sub, f"duplicate key '{key}' (first given on line "
                                     f"{lines.get(sub, '?')})", file=file, line=key_line)
                lines[sub] = key_line
                pos = skip(pos) + 1  # the ':'
                out[key], pos = value(pos, sub)
                pos = skip(pos)
                if text[pos] == "}":
                    return out, pos + 1
                pos = skip(pos + 1)  # the ','
        if c == "[":
            out = []
            pos = skip(pos + 1)
            if text[pos] == "]":
                return out, pos + 1
            while True:
                item, pos = value(pos, f"{path}[{len(out)}]")
                out.append(item)
                pos = skip(pos)
                if text[pos] == "]":
                    return out, pos + 1
                pos += 1
        if c == '"':
            return json.decoder.scanstring(text, pos + 1)
        for word, v in (("true", True), ("false", False), ("null", None)):
            if text.startswith(word, pos):
                return v, pos + len(word)
        for word in ("NaN", "Infinity", "-Infinity"):
            if text.startswith(word, pos):  # accepted by Python's json, not by JSON
                raise SceneError(path, f"{word} is not a JSON number (numbers must be finite)",
                                 file=file, line=line_at(pos))
        m = _NUMBER.match(text, pos)
        integer, frac, exp = m.groups()
        if frac or exp:
            return float(integer + (frac or "") + (exp or "")), m.end()
        return int(integer), m.end()

    data, _ = value(0, "")
    return data, lines
