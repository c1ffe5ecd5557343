"""Load a recipe: find the file, follow `extends:`, apply `a.b=c` overrides, interpolate
`${ENV_VAR}` secrets, check every key against the schema and validate.

Every key remembers where it was set (``file:line`` or ``override 'a.b=c'``) so an error
can point at it. Values that came from the environment are remembered too, so anything
we write shows the placeholder instead of the secret.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import re
import types
import typing
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from deepeyes_cli.errors import RecipeError
from deepeyes_cli.recipe.schema import Recipe
from deepeyes_cli.suggest import closest

Key = tuple[str, ...]

BUILTIN_DIR = Path(__file__).resolve().parent.parent / "recipes"
RECIPE_PATH_ENV = "DEEPEYES_RECIPE_PATH"
_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
_OVERRIDE = re.compile(r"^([A-Za-z_][A-Za-z0-9_-]*(?:\.[A-Za-z0-9_-]+)*)=(.*)$", re.S)
_SECRET_NAME = re.compile(r"(api_key|apikey|token|password|secret)", re.I)
REDACTED = "***"


# --------------------------------------------------------------------------- finding files


def search_dirs() -> list[Path]:
    """Where recipe names are looked up, first match wins."""
    dirs = [Path.cwd() / "recipes"]
    dirs += [Path(p) for p in os.environ.get(RECIPE_PATH_ENV, "").split(os.pathsep) if p]
    dirs.append(BUILTIN_DIR)
    return dirs


def available_recipes() -> dict[str, Path]:
    """Every recipe name visible from here, mapped to its file (earlier dirs shadow later ones)."""
    found: dict[str, Path] = {}
    for d in search_dirs():
        if not d.is_dir():
            continue
        for f in sorted(d.glob("*.yaml")):
            found.setdefault(f.stem, f)
    return found


def display_path(path: Path) -> str:
    """A path relative to the working directory when it is below it, for messages."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def _looks_like_path(spec: str) -> bool:
    return "/" in spec or os.sep in spec or spec.endswith((".yaml", ".yml"))


def find_recipe(spec: str, relative_to: Path | None = None) -> Path:
    """Resolve a recipe name or path to a file."""
    if _looks_like_path(spec):
        p = Path(spec).expanduser()
        if not p.is_absolute() and relative_to is not None and (relative_to / p).exists():
            p = relative_to / p
        if p.is_file():
            return p.resolve()
        raise RecipeError(f"recipe file not found: {spec}", hint="check the path, or give a recipe name")
    if relative_to is not None and (relative_to / f"{spec}.yaml").is_file():
        return (relative_to / f"{spec}.yaml").resolve()
    names = available_recipes()
    if spec in names:
        return names[spec].resolve()
    close = closest(spec, names)
    hint = f"did you mean '{close}'? " if close else ""
    raise RecipeError(f"unknown recipe '{spec}'", hint=hint + "`deepeyes recipes ls` lists the recipes")


# --------------------------------------------------------------------------- YAML with line numbers


def _key_lines(node: yaml.Node | None, prefix: Key, out: dict[Key, int]) -> None:
    if isinstance(node, yaml.MappingNode):
        for k, v in node.value:
            key = (*prefix, str(k.value))
            out[key] = k.start_mark.line + 1
            _key_lines(v, key, out)


def read_yaml(path: Path) -> tuple[dict[str, Any], dict[Key, int]]:
    try:
        text = path.read_text(encoding="utf-8")
        data = yaml.safe_load(text)
        lines: dict[Key, int] = {}
        _key_lines(yaml.compose(text, Loader=yaml.SafeLoader), (), lines)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"{display_path(path)}:{mark.line + 1}" if mark is not None else display_path(path)
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise RecipeError(f"{where}: invalid YAML: {problem}", hint="fix the YAML syntax") from e
    except OSError as e:
        raise RecipeError(f"cannot read recipe {path}: {e.strerror}") from e
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise RecipeError(f"{path}: a recipe must be a mapping of sections", hint="see `deepeyes recipes show tiny`")
    return data, lines


# --------------------------------------------------------------------------- merging with provenance


def _walk(data: Mapping[str, Any], prefix: Key = ()) -> Iterator[tuple[Key, Any]]:
    for k, v in data.items():
        key = (*prefix, str(k))
        yield key, v
        if isinstance(v, dict):
            yield from _walk(v, key)


def _merge(base: dict[str, Any], top: Mapping[str, Any]) -> dict[str, Any]:
    """Deep-merge ``top`` onto ``base``: mappings merge, everything else replaces."""
    out = dict(base)
    for k, v in top.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = _merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


@dataclass
class _Layer:
    data: dict[str, Any]
    sources: dict[Key, str]
    files: list[Path]


def _load_layer(path: Path, chain: tuple[Path, ...] = ()) -> _Layer:
    if path in chain:
        cycle = " -> ".join(p.name for p in (*chain, path))
        raise RecipeError(f"recipe extends itself: {cycle}", hint="remove the cycle from `extends:`")
    data, lines = read_yaml(path)
    parents = data.pop("extends", None)
    if parents is None:
        parents = []
    elif isinstance(parents, str):
        parents = [parents]
    elif not (isinstance(parents, list) and all(isinstance(p, str) for p in parents)):
        raise RecipeError(f"{path}:{lines.get(('extends',), 1)}: `extends` must be a recipe name, path or list")
    merged: dict[str, Any] = {}
    sources: dict[Key, str] = {}
    files: list[Path] = []
    for parent in parents:
        layer = _load_layer(find_recipe(parent, relative_to=path.parent), (*chain, path))
        merged = _merge(merged, layer.data)
        sources.update(layer.sources)
        files += layer.files
    merged = _merge(merged, data)
    for key, _ in _walk(data):
        sources[key] = f"{display_path(path)}:{lines.get(key, 1)}"
    files.append(path)
    return _Layer(merged, sources, files)


# --------------------------------------------------------------------------- schema walk


def _model_in(annotation: Any) -> type[BaseModel] | None:
    """The pydantic model inside an annotation such as ``Foo``, ``Foo | None``."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        for arg in typing.get_args(annotation):
            found = _model_in(arg)
            if found is not None:
                return found
    return None


def _is_open_mapping(annotation: Any) -> bool:
    origin = typing.get_origin(annotation)
    if origin in (dict, Mapping):
        return True
    if origin in (typing.Union, types.UnionType):
        return any(_is_open_mapping(a) for a in typing.get_args(annotation))
    return annotation is dict or annotation is Any


def schema_keys(model: type[BaseModel] = Recipe, prefix: Key = ()) -> list[str]:
    """All dotted keys of the schema, for suggestions and completion."""
    out: list[str] = []
    for name, f in model.model_fields.items():
        key = (*prefix, name)
        out.append(".".join(key))
        sub = _model_in(f.annotation)
        if sub is not None:
            out += schema_keys(sub, key)
    return out


def _suggest(key: Key, siblings: Iterable[str]) -> str | None:
    close = closest(key[-1], siblings)
    if close:
        return ".".join((*key[:-1], close))
    # The key may belong to another section (`lr` written at the top level, say).
    leaf_matches = [k for k in schema_keys() if k.split(".")[-1] == key[-1]]
    if leaf_matches:
        return leaf_matches[0]
    return closest(".".join(key), schema_keys(), cutoff=0.75)


def check_keys(data: Mapping[str, Any], sources: Mapping[Key, str], model: type[BaseModel] = Recipe,
               prefix: Key = ()) -> None:
    """Raise on the first key the schema does not know, with where it came from and a suggestion."""
    for raw_key, value in data.items():
        key = (*prefix, str(raw_key))
        fields = model.model_fields
        if key[-1] not in fields:
            where = sources.get(key) or sources.get(prefix) or "recipe"
            suggestion = _suggest(key, fields)
            hint = f"did you mean '{suggestion}'?" if suggestion else f"valid keys here: {', '.join(fields)}"
            raise RecipeError(f"{where}: unknown key '{'.'.join(key)}'", hint=hint)
        sub = _model_in(fields[key[-1]].annotation)
        if sub is not None and isinstance(value, dict):
            check_keys(value, sources, sub, key)


# --------------------------------------------------------------------------- overrides


def parse_override(text: str) -> tuple[Key, Any]:
    m = _OVERRIDE.match(text)
    if not m:
        raise RecipeError(f"bad override '{text}'", hint="write overrides as section.key=value, e.g. agent.max_turns=5")
    raw = m.group(2)
    if raw == "":
        value: Any = ""
    else:
        try:
            value = yaml.safe_load(raw)
        except yaml.YAMLError:
            value = raw
    return tuple(m.group(1).split(".")), value


def is_override(text: str) -> bool:
    """True when a command-line word is an `a.b=c` override rather than a path or question."""
    return bool(_OVERRIDE.match(text)) and not Path(text).exists()


def apply_override(data: dict[str, Any], sources: dict[Key, str], text: str) -> None:
    key, value = parse_override(text)
    node = data
    for i, part in enumerate(key[:-1]):
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        if not isinstance(child, dict):
            raise RecipeError(f"override '{text}': '{'.'.join(key[: i + 1])}' is not a section",
                              hint="overrides address a leaf key, e.g. model.path=…")
        node = child
    node[key[-1]] = value
    for sub, _ in _walk({key[-1]: value}, key[:-1]):
        sources[sub] = f"override '{text}'"


# --------------------------------------------------------------------------- secrets


@dataclass
class _Interpolation:
    env: Mapping[str, str]
    placeholders: dict[Key, str] = field(default_factory=dict)  # every value built from ${...}
    sensitive: set[Key] = field(default_factory=set)  # those whose key or variable looks secret
    missing: dict[Key, str] = field(default_factory=dict)

    def apply(self, data: Any, key: Key = ()) -> Any:
        if isinstance(data, dict):
            return {k: self.apply(v, (*key, str(k))) for k, v in data.items()}
        if isinstance(data, list):
            return [self.apply(v, (*key, str(i))) for i, v in enumerate(data)]
        if not isinstance(data, str) or "${" not in data:
            return data
        unset: list[str] = []
        names: list[str] = []

        def sub(m: re.Match[str]) -> str:
            name, default = m.group(1), m.group(2)
            names.append(name)
            if name in self.env:
                return self.env[name]
            if default is not None:
                return default
            unset.append(name)
            return ""

        value = _ENV_REF.sub(sub, data)
        self.placeholders[key] = data
        if _SECRET_NAME.search(key[-1]) or any(_SECRET_NAME.search(n) for n in names):
            self.sensitive.add(key)
        if unset:
            self.missing[key] = unset[0]
            return None
        return value


# --------------------------------------------------------------------------- result


@dataclass
class ResolvedRecipe:
    """A validated recipe plus what is needed to explain and re-create it."""

    recipe: Recipe
    name: str
    files: list[Path] = field(default_factory=list)
    overrides: list[str] = field(default_factory=list)
    sources: dict[Key, str] = field(default_factory=dict)
    secret_keys: dict[Key, str] = field(default_factory=dict)
    sensitive_keys: set[Key] = field(default_factory=set)
    missing_env: dict[Key, str] = field(default_factory=dict)

    def to_dict(self, redact: bool = True) -> dict[str, Any]:
        data = self.recipe.model_dump(mode="json")
        if redact:
            for key, placeholder in self.secret_keys.items():
                _set_path(data, key, placeholder)
            for key, value in list(_walk(data)):
                if (isinstance(value, str) and value and _SECRET_NAME.search(key[-1])
                        and key not in self.secret_keys):
                    _set_path(data, key, REDACTED)
        return data

    def to_yaml(self, redact: bool = True) -> str:
        return yaml.safe_dump(self.to_dict(redact), sort_keys=False, allow_unicode=True)

    @property
    def digest(self) -> str:
        blob = json.dumps(self.to_dict(redact=True), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()[:12]

    def secret_values(self) -> list[str]:
        """The plaintext secrets in this recipe, for log redaction."""
        data = self.recipe.model_dump(mode="json")
        out = []
        for key, value in [*_walk(data)]:
            if isinstance(value, str) and len(value) >= 4 and (
                    key in self.sensitive_keys or (key not in self.secret_keys and _SECRET_NAME.search(key[-1]))):
                out.append(value)
        return out

    def source_of(self, dotted: str) -> str:
        return self.sources.get(tuple(dotted.split(".")), "default")


def _set_path(data: dict[str, Any], key: Key, value: Any) -> None:
    node: Any = data
    for part in key[:-1]:
        node = node[int(part)] if isinstance(node, list) else node.get(part)
        if node is None:
            return
    if isinstance(node, dict):
        node[key[-1]] = value
    elif isinstance(node, list):
        node[int(key[-1])] = value


def _get_path(data: Any, key: Key) -> Any:
    for part in key:
        if isinstance(data, list):
            data = data[int(part)]
        elif isinstance(data, dict):
            data = data.get(part)
        else:
            return None
    return data


def _validation_error(e: ValidationError, sources: Mapping[Key, str], missing: Mapping[Key, str]) -> RecipeError:
    err = e.errors()[0]
    key = tuple(str(p) for p in err["loc"])
    dotted = ".".join(key)
    if key in missing:
        return RecipeError(f"{dotted} uses ${{{missing[key]}}}, which is not set",
                           hint=f"export {missing[key]}=… or override {dotted}=…")
    where = sources.get(key)
    prefix = f"{where}: " if where else ""
    value = err.get("input")
    shown = f" (got {value!r})" if value is not None and not isinstance(value, dict) else ""
    return RecipeError(f"{prefix}{dotted}: {err['msg']}{shown}",
                       hint=f"fix {dotted} in the recipe, or override it with {dotted}=…")


def load_recipe(spec: str | Path | None = None, overrides: Iterable[str] = (),
                env: Mapping[str, str] | None = None) -> ResolvedRecipe:
    """Load and validate a recipe. ``spec`` None gives the built-in defaults (Qwen2.5-VL-7B)."""
    env = os.environ if env is None else env
    overrides = list(overrides)
    if spec is None:
        layer = _Layer({}, {}, [])
        default_name = "defaults"
    else:
        path = find_recipe(str(spec))
        layer = _load_layer(path)
        default_name = path.stem
    data, sources = layer.data, dict(layer.sources)
    check_keys(data, sources)
    for text in overrides:
        apply_override(data, sources, text)
    check_keys(data, sources)
    interp = _Interpolation(env)
    data = interp.apply(data)
    try:
        recipe = Recipe.model_validate(data)
    except ValidationError as e:
        raise _validation_error(e, sources, interp.missing) from e
    name = recipe.run.name or default_name
    return ResolvedRecipe(recipe, name, layer.files, overrides, sources, interp.placeholders, interp.sensitive,
                          interp.missing)
