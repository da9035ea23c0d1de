"""What a template reads, found statically from its syntax tree (never by rendering it)."""

from __future__ import annotations

import functools
from dataclasses import dataclass

from jinja2 import meta, nodes

from noukai_server.flows._environment import FlowEnvironment

# Parses and checks filter/test names exactly as rendering will, so load-time checks agree with runs.
_ENV = FlowEnvironment()


@dataclass(frozen=True)
class TemplateInfo:
    # Top-level names the template reads from the context (names it binds itself are left out).
    names: frozenset[str]
    # Step ids read as `steps.<id>` or `steps["<id>"]`, in order of appearance.
    step_refs: tuple[str, ...]
    # Parameter names read as `parameters.<name>` or `parameters["<name>"]`, in order of appearance;
    # a call such as `parameters.items()` is a method call, not a read of a parameter.
    parameter_refs: tuple[str, ...] = ()


@functools.lru_cache(maxsize=4096)
def inspect_template(source: str) -> TemplateInfo:
    """Names and step references of a template; raises jinja2.TemplateSyntaxError when it is invalid.

    Unknown filters and tests count as syntax errors, as they would when the template is compiled.
    """
    tree = _ENV.parse(source)
    names = frozenset(meta.find_undeclared_variables(tree))
    refs = _refs(tree, "steps") if "steps" in names else ()
    parameter_refs = _refs(tree, "parameters") if "parameters" in names else ()
    return TemplateInfo(names, refs, parameter_refs)


def _refs(tree: nodes.Template, name: str) -> tuple[str, ...]:
    """Keys read from the context value `name` with a constant key: `name.key` or `name["key"]`."""
    called = {id(node.node) for node in tree.find_all(nodes.Call)}
    refs: list[str] = []
    for node in tree.find_all((nodes.Getattr, nodes.Getitem)):
        assert isinstance(node, nodes.Getattr | nodes.Getitem)
        target = node.node
        if not (isinstance(target, nodes.Name) and target.name == name and target.ctx == "load"):
            continue
        if isinstance(node, nodes.Getattr):
            if id(node) in called:
                continue
            refs.append(node.attr)
        elif isinstance(node.arg, nodes.Const) and isinstance(node.arg.value, str):
            refs.append(node.arg.value)
        # A computed key (`steps[name]`) cannot be checked before the run.
    return tuple(dict.fromkeys(refs))
