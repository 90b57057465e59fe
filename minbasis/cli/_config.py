"""Options generated from configuration dataclasses, and TOML config files (``--config FILE.toml``).

One source of defaults
----------------------
:func:`add_config_flags` adds command-line options whose defaults are *read* from the field
defaults of a configuration dataclass (:func:`dataclasses.fields`) or, for settings that are
keyword arguments of a function, from its signature; the defaults are never restated here. An
option shared by several models (``fit --max-iter`` for ``mlp`` and ``mlp-mf``) gets the common
default when all models agree and ``None`` otherwise, so that each model's own config default
applies; its help text shows the value of every model, generated from the same fields. Every
generated option records where its default comes from (``action.config_sources``), which
``tests/test_cli_config.py`` compares with the dataclasses.

Config files
------------
``minbasis COMMAND --config FILE.toml`` reads settings for COMMAND from a TOML file
(:func:`apply_config`): keys are the long option names, written with ``_`` or ``-``
(``r_cut`` or ``r-cut`` for ``--r-cut``); they replace the options' defaults, and options given
on the command line override the file. Keys at the top level apply to the command the file is
given to; a table named after a subcommand (``[basis]``, ``[fit]``, …) applies to that
subcommand only, so that one file can hold the settings of a whole workflow. Relative file
names in the file are read relative to the file's folder. An unknown key is an error naming
the key and the valid ones.
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import inspect
import json
import os
import re
from typing import Any, Callable, Iterable, Mapping, NamedTuple, NoReturn

from ..errors import MinbasisError

__all__ = ["ConfigSource", "config_defaults", "add_config_flags", "format_default", "config_flags", "config_keys",
           "read_config", "config_settings", "apply_config", "find_config", "add_config_option", "config_kwargs"]


class ConfigSource(NamedTuple):
    """Where a generated option's default comes from: ``label`` (the model or setting it is for,
    e.g. ``"mlp"``), ``config`` (a dataclass or a function) and ``field`` (its field or parameter name)."""

    label: str
    config: Any
    field: str


def config_defaults(config: Any) -> dict:
    """{field name: default} of a configuration dataclass (:func:`dataclasses.fields`; default factories
    are called), or {parameter name: default} of a function's keyword arguments; fields without a default
    are left out."""
    out = {}
    if dataclasses.is_dataclass(config):
        for f in dataclasses.fields(config):
            if f.default is not dataclasses.MISSING:
                out[f.name] = f.default
            elif f.default_factory is not dataclasses.MISSING:
                out[f.name] = f.default_factory()
        return out
    for name, p in inspect.signature(config).parameters.items():
        if p.default is not inspect.Parameter.empty:
            out[name] = p.default
    return out


def config_kwargs(args: argparse.Namespace, config_cls: type, options: Mapping[str, str]) -> dict:
    """{field: value} of the options in ``options`` (dest → field) that were given (not None) and that
    ``config_cls`` has; ``seed`` also sets ``validation_seed`` where the class has one. Options left out
    take the dataclass defaults."""
    names = set(config_defaults(config_cls))
    out = {field: getattr(args, dest) for dest, field in options.items()
           if field in names and getattr(args, dest, None) is not None}
    if "seed" in out and "validation_seed" in names:
        out["validation_seed"] = out["seed"]
    return out


def format_default(value: Any) -> str:
    """A default as the help text shows it: ``64,64`` for sequences, ``1e-06`` / ``30`` for floats."""
    if isinstance(value, (tuple, list)):
        return ",".join(format_default(v) for v in value)
    if isinstance(value, float):
        return format(value, "g")
    return str(value)


def _default_text(values: list[tuple[str, Any]], fmt: Callable[[Any], str]) -> str:
    """``default X`` when every label has the same (formatted) value, else ``default X for a and b, Y for c``."""
    groups: dict[str, list[str]] = {}
    for label, v in values:
        groups.setdefault(fmt(v), []).append(label)
    if len(groups) == 1:
        return f"default {next(iter(groups))}"
    return "default " + ", ".join(f"{text} for {' and '.join(labels)}" for text, labels in groups.items())


_PLACEHOLDER = re.compile(r"\{default(?::([^}]*))?\}")


def add_config_flags(parser: argparse.ArgumentParser | argparse._ArgumentGroup, config: Any,
                     fields: Mapping[str, Mapping[str, Any]]) -> list[argparse.Action]:
    """Add one option per configuration field, its default read from the configuration.

    Parameters
    ----------
    parser : an :class:`argparse.ArgumentParser` or an argument group
    config : a configuration dataclass or a function (its keyword defaults), or ``{label: config}``
        for options that set the same field of several models (e.g. ``{"mlp": MLPFitConfig,
        "mlp-mf": MLPMultiFidelityConfig}``)
    fields : ``{field name: add_argument keyword arguments}``, in option order. Extra keys:
        ``flag`` (option name; default ``--`` + the field name with ``-``), ``sources``
        (``{label: (config, field)}`` replacing ``config`` for this option), ``fmt`` (formats a
        default for the help text, default :func:`format_default`), ``to_arg`` (turns the
        configuration default into the option's default, e.g. ``list``). In ``help``,
        ``{default}`` is replaced by ``default X`` (or ``default X for mlp, Y for mlp-mf``) and
        ``{default:a,b}`` by the same for labels a and b only.

    Returns
    -------
    The new actions; each has ``config_sources``, a tuple of :class:`ConfigSource`, and ``config_to_arg``
    (the ``to_arg`` given, or None). The option's
    default is the configuration default when every source agrees, else None (the model's own
    configuration then applies; give ``default`` explicitly to override this rule).

    Raises
    ------
    ValueError
        A field that no source has, or a ``{default:label}`` naming an unknown label.
    """
    configs = config if isinstance(config, Mapping) else {"": config}
    actions = []
    for name, spec in fields.items():
        kw = dict(spec)
        flag = kw.pop("flag", "--" + name.replace("_", "-"))
        fmt = kw.pop("fmt", format_default)
        to_arg = kw.pop("to_arg", None)
        pairs = kw.pop("sources", None) or {label: (cfg, name) for label, cfg in configs.items()}
        sources = []
        for label, (cfg, field) in pairs.items():
            defaults = config_defaults(cfg)
            if field in defaults:
                sources.append((ConfigSource(label, cfg, field), defaults[field]))
        if not sources:
            raise ValueError(f"{flag}: no configuration among {list(pairs)} has a default for {name!r}")
        values = [v for _, v in sources]
        common = all(type(v) is type(values[0]) and v == values[0] for v in values)
        if "default" not in kw:
            kw["default"] = (to_arg(values[0]) if to_arg and values[0] is not None else values[0]) if common else None
        if "help" in kw:
            labelled = [(s.label, v) for s, v in sources]

            def fill(m: re.Match) -> str:
                if m.group(1) is None:
                    return _default_text(labelled, fmt)
                wanted = [w.strip() for w in m.group(1).split(",")]
                chosen = [(lb, v) for lb, v in labelled if lb in wanted]
                if len(chosen) != len(wanted):
                    raise ValueError(f"{flag}: help names labels {wanted}, sources are {[lb for lb, _ in labelled]}")
                return _default_text(chosen, fmt)

            kw["help"] = _PLACEHOLDER.sub(fill, kw["help"])
        action = parser.add_argument(flag, **kw)
        action.config_sources = tuple(s for s, _ in sources)
        action.config_to_arg = to_arg
        actions.append(action)
    return actions


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for a in parser._actions:
        if isinstance(a, argparse._SubParsersAction):
            return dict(a.choices)
    return {}


def config_flags(parser: argparse.ArgumentParser) -> list[tuple[str, argparse.Action]]:
    """(subcommand, action) of every option generated by :func:`add_config_flags` in ``parser``'s subcommands."""
    return [(name, a) for name, sp in _subparsers(parser).items() for a in sp._actions
            if getattr(a, "config_sources", None)]


# -- TOML config files ----------------------------------------------------------------------------------
_NOT_CONFIGURABLE = {"help", "config", "quiet"}


def config_keys(sub: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    """{key: action} of the settings a subcommand reads from a config file: its long options (dashes as
    underscores), without --help, --config and --quiet, plus the tables named in ``sub.config_tables``."""
    out = {}
    tables = set(getattr(sub, "config_tables", ()))
    for a in sub._actions:
        longs = [s for s in a.option_strings if s.startswith("--")]
        if not longs:
            continue
        key = longs[0][2:].replace("-", "_")
        if key in _NOT_CONFIGURABLE or key in tables:
            continue
        out[key] = a
    return out


def read_config(path: str | os.PathLike) -> dict:
    """The TOML document at ``path`` as a dict (:func:`minbasis.files.read_toml`).

    Raises
    ------
    MinbasisError
        Missing file, a folder, or invalid TOML.
    """
    from ..files import read_toml

    return read_toml(path)


def config_settings(document: Mapping[str, Any], command: str, commands: Iterable[str],
                    where: str = "config") -> dict:
    """The settings of ``command`` in a config document: its top-level keys (except the tables named after
    subcommands) merged with the table ``[command]``.

    Raises
    ------
    MinbasisError
        A key set both at the top level and in ``[command]``.
    """
    commands = set(commands)
    settings = {k: v for k, v in document.items() if not (k in commands and isinstance(v, dict))}
    section = document.get(command)
    if isinstance(section, dict):
        both = sorted(set(section) & set(settings))
        if both:
            raise MinbasisError(f"{where}: {both} set both at the top level and in [{command}]; keep one")
        settings.update(section)
    return settings


def _convert(action: argparse.Action, key: str, value: Any, where: str, base: str) -> Any:
    """A TOML value checked and converted like the command line would convert the option's text."""
    from ..validate import as_float, as_int
    from ._common import int_list, seed, species

    name = f"{where}: {key}"
    if isinstance(action, argparse._StoreTrueAction):
        if not isinstance(value, bool):
            raise MinbasisError(f"{name} must be true or false, got {value!r}")
        return value
    if getattr(action, "config_json", False) and isinstance(value, dict):
        value = json.dumps(value)
    if action.nargs == 2:
        if not (isinstance(value, list) and len(value) == 2 and all(isinstance(v, str) and v for v in value)):
            raise MinbasisError(f"{name} must be a list of two file names, got {value!r}")
        out = list(value)
    elif action.type is int:
        out = as_int(name, value)
    elif action.type is seed:
        out = as_int(name, value, minimum=0)
    elif action.type is float:
        out = as_float(name, value)
    elif action.type in (int_list, species) or getattr(action, "config_list", False):
        items = value if isinstance(value, list) else [value]
        allowed = (str, int) if action.type is int_list else str
        if not items or any(isinstance(v, bool) or not isinstance(v, allowed) for v in items):
            what = "an integer or a list of integers" if action.type is int_list else "a string or a list of strings"
            raise MinbasisError(f"{name} must be {what}, got {value!r}")
        text = ",".join(str(v) for v in items)
        try:
            out = action.type(text) if action.type is not None else text
        except argparse.ArgumentTypeError as exc:
            raise MinbasisError(f"{name}: {exc}") from None
    elif action.type is None:
        if not isinstance(value, str) or not value:
            raise MinbasisError(f"{name} must be a non-empty string, got {value!r}")
        out = value
    else:  # pragma: no cover - every option type of the CLI is handled above
        try:
            out = action.type(str(value))
        except (argparse.ArgumentTypeError, TypeError, ValueError) as exc:
            raise MinbasisError(f"{name}: {exc}") from None
    if action.choices is not None and out not in action.choices:
        raise MinbasisError(f"{name} must be one of {list(action.choices)}, got {out!r}")
    if getattr(action, "config_path", False):
        keep = getattr(action, "config_path_keep", ())
        join = (lambda p: p if os.path.isabs(p) or p in keep else os.path.join(base, p))
        out = [join(p) for p in out] if isinstance(out, list) else join(out)
    return out


def apply_config(sub: argparse.ArgumentParser, settings: Mapping[str, Any], path: str | os.PathLike,
                 command: str) -> None:
    """Make ``settings`` (from a config file) the defaults of subcommand parser ``sub``: options set in the
    file are no longer required, and the command line overrides them. A table named in
    ``sub.config_tables`` (``fit``: ``data``) is stored unconverted as ``args.config_<name>``.

    Raises
    ------
    MinbasisError
        An unknown key (naming it, a close match and every valid key), a key given twice (``r_cut`` and
        ``r-cut``), or a value of the wrong type or outside the option's choices.
    """
    keys = config_keys(sub)
    tables = tuple(getattr(sub, "config_tables", ()))
    where = str(path)
    base = os.path.dirname(os.path.abspath(path))
    seen: dict[str, str] = {}
    for raw, value in settings.items():
        key = str(raw).replace("-", "_")
        if key in seen:
            raise MinbasisError(f"{where}: {key!r} is given twice ({seen[key]!r} and {raw!r})")
        seen[key] = raw
        if key in tables:
            sub.set_defaults(**{f"config_{key}": value})
            continue
        action = keys.get(key)
        if action is None:
            valid = sorted(keys) + [f"[[{t}]] tables" for t in tables]
            close = difflib.get_close_matches(key, list(keys), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise MinbasisError(f"{where}: unknown setting {raw!r} for `minbasis {command}`{hint}; valid keys: "
                                f"{', '.join(valid)}")
        action.default = _convert(action, key, value, where, base)
        action.required = False


class _PreparseError(Exception):
    pass


class _Preparser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        """Never print or exit: the real parser reports the problem."""
        raise _PreparseError(message)


def find_config(parser: argparse.ArgumentParser, argv: list[str]) -> tuple[str | None, str | None]:
    """(subcommand, ``--config`` value) of a command line, read without the real parser (whose required
    options the config file may supply); (None, None) when there is none or the line does not parse."""
    pre = _Preparser(prog=parser.prog, add_help=False)
    pre.add_argument("-q", "--quiet", action="store_true")
    sub = pre.add_subparsers(dest="command", parser_class=_Preparser)
    for name, sp in _subparsers(parser).items():
        s = sub.add_parser(name, add_help=False)
        if "config" in {a.dest for a in sp._actions}:
            s.add_argument("--config", default=None)
    try:
        ns, _ = pre.parse_known_args(argv)
    except _PreparseError:
        return None, None
    return getattr(ns, "command", None), getattr(ns, "config", None)


def add_config_option(parser: argparse.ArgumentParser, help: str | None = None) -> argparse.Action:
    """The ``--config FILE.toml`` option of a subcommand (read by ``minbasis.cli.main`` before parsing)."""
    return parser.add_argument(
        "--config", default=None, metavar="FILE.toml",
        help=help or "TOML file of settings for this command: keys are the long option names (r_cut or r-cut "
                     "for --r-cut), at the top level or in a table named after the command ([basis], [fit], "
                     "...); options on the command line override the file; relative file names are read "
                     "relative to the file's folder (docs/guide/fitting.md#settings-in-a-toml-file)")
