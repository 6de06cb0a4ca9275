"""Griffe extension: the names `tfvae/__init__.py` imports lazily (`_LAZY_ATTRIBUTES`, served by a module
`__getattr__` so that `import tfvae` stays light) become aliases of `tfvae`, so `::: tfvae.VAE` documents the
class under the name users write."""

import ast

import griffe


class LazyAttributes(griffe.Extension):
    """Adds `tfvae.NAME` -> `MODULE.ATTRIBUTE` aliases for each entry of `tfvae._LAZY_ATTRIBUTES`."""

    def on_module_members(self, *, node, mod, agent, **kwargs):
        if mod.path != "tfvae" or not isinstance(node, ast.Module):
            return
        for statement in node.body:
            if (isinstance(statement, ast.Assign) and len(statement.targets) == 1
                    and getattr(statement.targets[0], "id", None) == "_LAZY_ATTRIBUTES"):
                for name, (module, attribute) in ast.literal_eval(statement.value).items():
                    mod.set_member(name, griffe.Alias(name, f"{module}.{attribute}", parent=mod))
