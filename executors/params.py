"""A small declarative parameter toolkit: each task type states its schema once.

A task module declares its parameters as ``Param`` objects and its benchmark presets as
plain dicts, then normalizes a request with ``ParamSchema.validate``::

    SCHEMA = ParamSchema([
        Param("fmax", float, 0.05, min=0.0, exclusive_min=True, doc="force criterion, eV/A"),
        Param("optimizer", str, "BFGS", choices=("BFGS", "LBFGS", "FIRE")),
        Param("relax_cell", bool, False, aliases=("use_filter",)),
    ])
    PRESETS = {"mofsimbench": {"fmax": 1e-3, "optimizer": "LBFGS", "relax_cell": True}}

    def validate(parameters: dict) -> dict:
        return SCHEMA.validate(parameters, PRESETS)

What ``validate`` does, in order:

1. Keys are mapped to canonical names (spec names and MIRA aliases, e.g. ``enable_d3`` ->
   ``with_d3``); the same parameter given twice with different values is an error.
2. Keys that belong to the request envelope rather than to the physics (``ENVELOPE_KEYS``:
   ``structure_id``, ``model_key``, ...) are dropped, so a flat MIRA body can be passed as
   is; any other unknown key is rejected, naming every unknown key.
3. Values start from the declared defaults, then the preset named by ``protocol``
   (``"default"`` or ``"mofsimbench"``), then whatever the request gave explicitly.
4. Each value is coerced (numbers given as strings, ``"true"``, ``"2,2,2"``) and checked
   against its range or choices.

The result holds every parameter that has a value (parameters without a default and not
given are left out), including ``protocol``.  It is idempotent: validating the output
again returns the same dict, which matters because validation runs at submission and
again in the executor.

Every error is ``spool.errors.ValidationError`` with ``field="parameters.<key>"`` naming
the key as the client spelled it.  Nothing here imports torch or ase.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from spool import jsonsafe
from spool.errors import ValidationError

PROTOCOLS = ("default", "mofsimbench")

# Request-envelope keys that MIRA clients send in the same flat body as the physics
# parameters; they are handled elsewhere, so the parameter schema drops them silently.
ENVELOPE_KEYS = frozenset(
    {
        "structure_id",
        "structure",
        "model_key",
        "model",
        "task_type",
        "priority",
        "timeout",
        "notify_url",
        "notify_events",
        "notify_secret",
        "options",
        "name",
        "description",
        "tags",
    }
)

_TRUE = {"true", "1", "yes", "on", "y", "t"}
_FALSE = {"false", "0", "no", "off", "n", "f"}
PyType = type  # the field "type" below shadows the builtin inside the class body
_JSON_TYPES: dict[PyType, str] = {
    bool: "boolean",
    int: "integer",
    float: "number",
    str: "string",
    list: "array",
}


@dataclass(frozen=True)
class Param:
    """One parameter of a task type.

    ``type`` is one of ``bool``, ``int``, ``float``, ``str``, ``list``.  For ``list``,
    ``item_type`` (``int``, ``float`` or ``str``) types the items and ``length`` fixes the
    length (``min_length`` bounds it from below); ``min``/``max`` then apply to each item.
    ``choices`` (for ``str``) match case-insensitively and normalize to the spelling
    declared here.  A ``None`` value normally means "not given" (the default applies);
    with ``nullable`` an explicit ``None`` overrides the default and preset instead.
    """

    name: str
    type: PyType
    default: Any = None
    min: float | None = None
    max: float | None = None
    choices: tuple[str, ...] | None = None
    aliases: tuple[str, ...] = ()
    doc: str = ""
    exclusive_min: bool = False
    item_type: PyType | None = None
    length: int | None = None
    min_length: int | None = None
    nullable: bool = False

    def coerce(self, value: Any, key: str | None = None) -> Any:
        """Return ``value`` converted to this parameter's type, or raise ValidationError."""
        where = f"parameters.{key or self.name}"
        if value is None:
            return None
        if self.type is list:
            return self._coerce_list(value, where)
        out = _coerce_scalar(value, self.type, where, key or self.name)
        self._check(out, where, key or self.name)
        return out

    def _coerce_list(self, value: Any, where: str) -> list[Any]:
        name = where.removeprefix("parameters.")
        if isinstance(value, str):
            text = value.strip()
            if text.startswith("["):
                try:
                    value = jsonsafe.loads(text)  # bounded nesting: the text is the user's
                except ValueError as exc:
                    raise ValidationError(f"{name}: not a valid list: {exc}", field=where) from None
            else:
                value = [v.strip() for v in text.split(",") if v.strip()]
        if isinstance(value, int | float) and not isinstance(value, bool) and self.length:
            value = [value] * self.length  # a scalar supercell "2" means [2, 2, 2]
        if not isinstance(value, list | tuple):
            raise ValidationError(f"{name} must be a list", field=where)
        if self.length is not None and len(value) != self.length:
            raise ValidationError(
                f"{name} must have exactly {self.length} items, got {len(value)}", field=where
            )
        if self.min_length is not None and len(value) < self.min_length:
            raise ValidationError(f"{name} must have at least {self.min_length} items", field=where)
        item_type = self.item_type or float
        items = [_coerce_scalar(v, item_type, where, f"{name}[{i}]") for i, v in enumerate(value)]
        for i, item in enumerate(items):
            self._check(item, where, f"{name}[{i}]")
        return items

    def _check(self, value: Any, where: str, name: str) -> None:
        if self.choices is not None and isinstance(value, str):
            return  # already normalized by _canonical_choice below
        if isinstance(value, bool) or not isinstance(value, int | float):
            return
        if self.min is not None:
            if self.exclusive_min and not value > self.min:
                raise ValidationError(f"{name} must be > {self.min}, got {value}", field=where)
            if value < self.min:
                raise ValidationError(f"{name} must be >= {self.min}, got {value}", field=where)
        if self.max is not None and value > self.max:
            raise ValidationError(f"{name} must be <= {self.max}, got {value}", field=where)

    def canonical_choice(self, value: Any, key: str | None = None) -> Any:
        """Map a string to the declared spelling of a choice (case-insensitive)."""
        if self.choices is None or value is None:
            return value
        for choice in self.choices:
            if str(value).lower() == choice.lower():
                return choice
        name = key or self.name
        raise ValidationError(
            f"{name} must be one of {', '.join(self.choices)}; got {value!r}",
            field=f"parameters.{name}",
        )

    def to_schema(self) -> dict[str, Any]:
        """The JSON-Schema of this parameter (property object)."""
        out: dict[str, Any] = {"type": _JSON_TYPES[self.type]}
        if self.type is list:
            item: dict[str, Any] = {"type": _JSON_TYPES[self.item_type or float]}
            _add_bounds(item, self)
            out["items"] = item
            if self.length is not None:
                out["minItems"] = out["maxItems"] = self.length
            elif self.min_length is not None:
                out["minItems"] = self.min_length
        else:
            _add_bounds(out, self)
        if self.choices is not None:
            out["enum"] = list(self.choices)
        if self.default is not None:
            out["default"] = self.default
        if self.nullable or self.default is None:
            out["type"] = [out["type"], "null"]
        doc = self.doc
        if self.aliases:
            doc = f"{doc} (also accepted as: {', '.join(self.aliases)})".strip()
        if doc:
            out["description"] = doc
        return out


def _add_bounds(out: dict[str, Any], p: Param) -> None:
    if p.min is not None:
        out["exclusiveMinimum" if p.exclusive_min else "minimum"] = p.min
    if p.max is not None:
        out["maximum"] = p.max


def _coerce_scalar(value: Any, typ: type, where: str, name: str) -> Any:
    if typ is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, int) and value in (0, 1):
            return bool(value)
        if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
            return value.strip().lower() in _TRUE
        raise ValidationError(f"{name} must be a boolean, got {value!r}", field=where)
    if typ is str:
        if isinstance(value, str):
            return value.strip()
        raise ValidationError(f"{name} must be a string, got {value!r}", field=where)
    if isinstance(value, bool):
        raise ValidationError(f"{name} must be a number, got {value!r}", field=where)
    number: float
    if isinstance(value, int | float):
        number = value
    elif isinstance(value, str):
        try:
            number = float(value.strip())
        except ValueError:
            raise ValidationError(f"{name} must be a number, got {value!r}", field=where) from None
    else:
        raise ValidationError(f"{name} must be a number, got {value!r}", field=where)
    try:
        finite = math.isfinite(number)
    except OverflowError:  # an int with hundreds of digits: beyond any bound
        finite = False
    if not finite:
        raise ValidationError(f"{name} must be a finite number, got {value!r:.40}", field=where)
    if typ is int:
        if isinstance(number, float) and not number.is_integer():
            raise ValidationError(f"{name} must be an integer, got {value!r}", field=where)
        return int(number)
    return float(number)


COMMON_PARAMS: tuple[Param, ...] = (
    Param(
        "with_d3",
        bool,
        False,
        aliases=("enable_d3", "d3"),
        doc="add DFT-D3(BJ) dispersion on top of the model",
    ),
    Param(
        "force_d3",
        bool,
        False,
        doc="allow a D3 term on a model already trained with D3 (double counting)",
    ),
    Param(
        "dtype",
        str,
        "float32",
        choices=("float32", "float64"),
        aliases=("precision",),
        doc="floating-point precision of the model",
    ),
    Param(
        "protocol",
        str,
        "default",
        choices=PROTOCOLS,
        doc="'mofsimbench' applies the MOFSimBench reference values; explicit values win",
    ),
)


@dataclass
class ParamSchema:
    """The parameters of one task type (plus ``COMMON_PARAMS`` unless told otherwise)."""

    params: Sequence[Param]
    include_common: bool = True
    presets: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        own = list(self.params)
        own_names = {p.name for p in own}
        common = [p for p in COMMON_PARAMS if p.name not in own_names]
        if not self.include_common:
            common = []
        self.all_params: list[Param] = own + common
        self.by_name: dict[str, Param] = {}
        self.key_to_name: dict[str, str] = {}
        for p in self.all_params:
            if p.name in self.by_name:
                raise ValueError(f"parameter {p.name!r} declared twice")
            self.by_name[p.name] = p
            for key in (p.name, *p.aliases):
                if key in self.key_to_name:
                    raise ValueError(f"parameter key {key!r} declared twice")
                self.key_to_name[key] = p.name

    def names(self) -> list[str]:
        return [p.name for p in self.all_params]

    def validate(
        self, raw: Mapping[str, Any] | None, presets: Mapping[str, Mapping[str, Any]] | None = None
    ) -> dict[str, Any]:
        """Normalize a request's parameters; see the module docstring for the rules."""
        if raw is None:
            raw = {}
        if not isinstance(raw, Mapping):
            raise ValidationError("parameters must be an object", field="parameters")
        presets = self.presets if presets is None else presets
        given: dict[str, tuple[str, Any]] = {}  # canonical name -> (key as spelled, value)
        unknown: list[str] = []
        for key, value in raw.items():
            key = str(key)
            name = self.key_to_name.get(key)
            if name is None:
                if key not in ENVELOPE_KEYS:
                    unknown.append(key)
                continue
            p = self.by_name[name]
            if value is None and not p.nullable:
                continue  # null means "not given": the default or preset applies
            value = p.canonical_choice(p.coerce(value, key), key)
            if name in given and given[name][1] != value:
                raise ValidationError(
                    f"{given[name][0]} and {key} name the same parameter with different values",
                    field=f"parameters.{key}",
                )
            given[name] = (key, value)
        if unknown:
            raise ValidationError(
                f"unknown parameter(s): {', '.join(sorted(unknown))}; "
                f"accepted: {', '.join(sorted(self.key_to_name))}",
                field=f"parameters.{sorted(unknown)[0]}",
            )
        out: dict[str, Any] = {p.name: p.default for p in self.all_params}
        protocol = given["protocol"][1] if "protocol" in given else out.get("protocol")
        if protocol is not None and protocol != "default":
            for name, value in presets.get(protocol, {}).items():
                if name not in self.by_name:
                    raise ValueError(f"preset {protocol!r} names unknown parameter {name!r}")
                out[name] = value
        for name, (_, value) in given.items():
            out[name] = value
        return {k: _copy(v) for k, v in out.items() if v is not None}

    def to_schema(self, title: str | None = None) -> dict[str, Any]:
        """A JSON-Schema object for the parameters (aliases appear as extra properties)."""
        props: dict[str, Any] = {}
        for p in self.all_params:
            props[p.name] = p.to_schema()
        for p in self.all_params:
            for alias in p.aliases:
                alias_schema = dict(props[p.name])
                alias_schema["description"] = f"alias of {p.name}"
                props[alias] = alias_schema
        out: dict[str, Any] = {"type": "object", "properties": props, "additionalProperties": False}
        if title:
            out["title"] = title
        if self.presets:
            out["x-presets"] = {k: dict(v) for k, v in self.presets.items()}
        return out


def common_given(raw: Mapping[str, Any] | None, name: str) -> bool:
    """Whether a request's own parameters give the common parameter ``name`` a value,
    under any of its spellings (a default or preset does not count)."""
    param = next(p for p in COMMON_PARAMS if p.name == name)
    return any((raw or {}).get(key) is not None for key in (param.name, *param.aliases))


def _copy(value: Any) -> Any:
    return list(value) if isinstance(value, list) else value


def require_one_of(params: Mapping[str, Any], names: Iterable[str]) -> str:
    """Exactly one of ``names`` must be set in validated ``params``; return which one."""
    names = list(names)
    present = [n for n in names if params.get(n) is not None]
    if len(present) != 1:
        raise ValidationError(
            f"give exactly one of {', '.join(names)}"
            + (f" (got {', '.join(present)})" if present else ""),
            field=f"parameters.{(present or names)[-1]}",
        )
    return present[0]
