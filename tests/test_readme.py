"""The README's examples: every Python block runs, in order, in a fresh process; every `tfvae` command parses
against the real command line, and the commands form a sequence that works when run in order."""

import itertools
import json
import re
import shlex
import subprocess
import sys

import click
import pytest
from conftest import REPO

README = REPO / "README.md"
NOT_RUN = "<!-- not run by the tests: "
# The tests run every block as written but for its epochs: each `epochs=N` trains one epoch here.
SHORTER = (re.compile(r"\bepochs=\d+"), "epochs=1")


def blocks(language):
    """[(code, reason it is not run or None)] of the README's fenced blocks in `language`, in order."""
    found, reason = [], None
    lines = iter(README.read_text().splitlines())
    for line in lines:
        if line.startswith(NOT_RUN):
            reason = line[len(NOT_RUN) : line.index("-->")].strip()
        elif line.strip() == f"```{language}":
            code = []
            for inner in lines:
                if inner.strip() == "```":
                    break
                code.append(inner)
            found.append(("\n".join(code), reason))
            reason = None
        elif line.strip():
            reason = None  # a note applies to the block right below it
    return found


def test_only_blocks_that_need_a_server_are_not_run():
    skipped = [reason for _, reason in blocks("python") if reason]
    assert skipped == ["it needs a TF Serving server"]


RUNNER = """
import json, re, sys
namespace = {}
for index, code in enumerate(json.load(open(sys.argv[1]))):
    print(f"block {index}", flush=True)
    exec(compile(code, f"README.md python block {index}", "exec"), namespace)
print("all blocks ran")
"""


@pytest.mark.slow
def test_every_python_block_runs_in_order_in_a_fresh_process(tmp_path):
    pattern, replacement = SHORTER
    code = [pattern.sub(replacement, block) for block, reason in blocks("python") if not reason]
    (tmp_path / "blocks.json").write_text(json.dumps(code))
    result = subprocess.run([sys.executable, "-c", RUNNER, str(tmp_path / "blocks.json")], cwd=tmp_path, text=True,
                            capture_output=True, check=False, timeout=3000)
    assert result.returncode == 0 and "all blocks ran" in result.stdout, result.stdout[-2000:] + result.stderr[-5000:]
    assert (tmp_path / "vae.keras").is_file() and (tmp_path / "serving" / "m1m2" / "1" / "saved_model.pb").is_file()


def commands():
    """Every `tfvae ...` command of the README's shell blocks, as argument lists (continued lines joined)."""
    found = []
    for block, _ in blocks("bash"):
        for line in block.replace("\\\n", " ").splitlines():
            for part in line.split("&&"):
                if part.strip().startswith("tfvae "):
                    found.append(shlex.split(part, comments=True)[1:])
    return found


def test_every_tfvae_command_parses_against_the_command_line():
    from tfvae.cli.main import main

    assert len(commands()) >= 15
    for args in commands():
        context = main.make_context("tfvae", list(args))
        name, command, rest = main.resolve_command(context, [*context.protected_args, *context.args])
        try:
            command.make_context(name, rest, parent=context)
        except click.BadParameter as error:  # a run an earlier command creates is not here
            assert "does not exist" in str(error), (args, error)


def test_the_commands_run_in_order_never_reuse_a_run_folder():
    outputs, used = set(), []
    for args in commands():
        options = dict(itertools.pairwise(args))
        if args[0] == "train":
            folder = options.get("--output-dir", "runs/latest")
            assert "--resume" in args or folder not in outputs, f"{folder} already holds a run: {args}"
            outputs.add(folder)
        elif args[0] in ("evaluate", "sample", "reconstruct", "export", "complete", "explore", "gradient-variance"):
            used.append(args[1])
    assert set(used) <= outputs, set(used) - outputs  # every run a command reads, an earlier command writes
