"""MkDocs hook: the API reference covers the whole public API, and every public object has a docstring.

mkdocstrings leaves out an object without a docstring without a word, so an undocumented public function
would vanish from the reference silently. This hook walks the package as mkdocstrings sees it (griffe, with
the same extension), and logs a WARNING, which fails `mkdocs build --strict`, for:

- each public module, class, function or method without a docstring of its own or inherited (a method that
  overrides a documented method of a base class, a Keras `call` or `get_config`, keeps that contract);
- each name of `tfvae.__all__` that no `::: identifier` block of the docs renders;
- each `tfvae` command without help text (the command-line page is generated from it).
"""

import importlib
import inspect
import logging
import pathlib
import re

import griffe

PACKAGE = "tfvae"
ROOT = pathlib.Path(__file__).resolve().parents[1]
EXTENSIONS = [str(ROOT / "docs" / "lazy_attributes.py")]
DIRECTIVE = re.compile(r"^:::\s+([A-Za-z_][\w.]*)\s*$", re.MULTILINE)

log = logging.getLogger("mkdocs.hooks.api_reference")
rendered = set()


def load(package=PACKAGE, search_paths=(ROOT,)):
    """The package as mkdocstrings loads it (static analysis, the docs' griffe extensions), aliases resolved."""
    loader = griffe.GriffeLoader(search_paths=[str(path) for path in search_paths],
                                 extensions=griffe.load_extensions(*EXTENSIONS))
    module = loader.load(package)
    loader.resolve_aliases(external=False, implicit=False)
    return module


def _is_dunder(name):
    return name.startswith("__") and name.endswith("__")


def _inherits_docstring(method):
    """Whether a base class of the method's class (at run time, so Keras's and TFP's count) documents it."""
    try:
        cls = getattr(importlib.import_module(method.parent.module.path), method.parent.name)
    except (ImportError, AttributeError):
        return False
    for base in inspect.getmro(cls)[1:]:
        if method.name in vars(base) and inspect.getdoc(getattr(base, method.name)):
            return True
    return False


def undocumented(module):
    """[(path, kind, file:line)] of the public modules, classes, functions and methods under `module` without a
    docstring, own or inherited."""
    found, seen = [], set()

    def visit(obj):
        if obj.path in seen:
            return
        seen.add(obj.path)
        for member in obj.members.values():
            if member.is_alias or not member.is_public or _is_dunder(member.name):
                continue
            if not (member.is_module or member.is_class or member.is_function):
                continue
            if not member.docstring and not (member.is_function and member.parent.is_class and _inherits_docstring(member)):
                found.append((member.path, member.kind.value, f"{member.relative_filepath}:{member.lineno}"))
            if member.is_module or member.is_class:
                visit(member)

    if not module.docstring:
        found.append((module.path, "module", f"{module.relative_filepath}:1"))
    visit(module)
    return found


def unrendered(module, identifiers):
    """The names of `module.__all__` that no `::: identifier` renders: neither the name itself, nor (for a name
    that aliases another object) the object it stands for or that object's module."""
    missing = []
    for name in module.exports or ():
        if _is_dunder(name):
            continue
        member = module.members.get(name)
        paths = {f"{module.path}.{name}"}
        if member is not None and member.is_alias:
            target = member.final_target
            paths |= {target.path, target.module.path}
        if not paths & identifiers:
            missing.append(f"{module.path}.{name}")
    return missing


def commands_without_help():
    """`tfvae COMMAND` names whose click command has no help text."""
    from tfvae.cli.main import main

    context = main.make_context("tfvae", ["--help"], resilient_parsing=True)
    return [f"tfvae {name}" for name in main.list_commands(context) if not (main.get_command(context, name).help or "").strip()]


# MkDocs events -------------------------------------------------------------------------------------------


def on_pre_build(config, **kwargs):
    rendered.clear()


def on_page_markdown(markdown, page, config, files, **kwargs):
    rendered.update(DIRECTIVE.findall(markdown))
    return markdown


def on_post_build(config, **kwargs):
    module = load()
    for path, kind, where in undocumented(module):
        log.warning("The public %s %s (%s) has no docstring, so the API reference leaves it out: add one.", kind, path,
                    where)
    for name in unrendered(module, rendered):
        log.warning("%s is public (in %s.__all__) but no page renders it: add `::: %s` to a page of docs/reference/.",
                    name, PACKAGE, name)
    for command in commands_without_help():
        log.warning("`%s` has no help text, so the command-line page says nothing about it: give it a docstring.",
                    command)
