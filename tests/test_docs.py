"""The documentation: README.md and the site's pages in docs/.

Every Python block runs: a page's blocks in order, in one fresh process per page, trainings shortened to one
epoch on the first 2,000 training images, evaluations to the first 500 test images. A block that cannot run says why in a visible `<!-- not run by the tests: REASON -->` line above it, and
`NOT_RUN` lists every such reason, so none is skipped silently. Every `tfvae` command of a shell block parses
against the real command line, in an order that works. The site builds with `mkdocs build --strict` (which
fails on a broken link, a page left out of the nav, or a public name without a docstring: docs/hooks.py) and
works in a browser: Debian's chromium, headless, through selenium.
"""

import concurrent.futures
import dataclasses
import importlib.util
import itertools
import json
import os
import re
import shlex
import socket
import subprocess
import sys
import time

import click
import pytest
from conftest import REPO

DOCS = REPO / "docs"
README = REPO / "README.md"
PAGES = [README, *sorted(DOCS.rglob("*.md"))]
NOTE = "<!-- not run by the tests: "
# Every block that is not run, by page: (language, reason), in order.
NOT_RUN = {
    "docs/guides/serving.md": [("python", "it needs a TF Serving server")] * 3,
}
# The tests run every block as written but for its sizes: one epoch on 2,000 training images, 500 test images.
SHORTER = [(re.compile(r"\bepochs=\d+"), "epochs=1"), (re.compile(r'\bsplit="train"'), 'split="train[:2000]"'),
           (re.compile(r'\bsplit="test"'), 'split="test[:500]"')]
LANGUAGES = {"python", "bash", "text", "json"}
FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})[ \t]*(?P<info>[^`]*)$")
# What some pages' examples write, checked after they ran.
WRITES = {
    "docs/quickstart.md": ["vae.keras"],
    "docs/guides/exploring.md": ["samples.png", "reconstructions.png", "latent_space.png", "manifold.png",
                                 "interpolations.png", "kl_per_dimension.png", "logs"],
    "docs/guides/labels.md": ["serving/m1m2/1/saved_model.pb"],
    "docs/guides/serving.md": ["saved_models/fashion_mnist/1/saved_model.pb"],
}
# Page processes run side by side, this many at a time (most of a page's time is TensorFlow's start and tracing).
PARALLEL_PAGES = 2
CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"


def name(page):
    return page.relative_to(REPO).as_posix()


@dataclasses.dataclass
class Block:
    page: str
    line: int
    language: str
    code: str
    reason: str | None  # why it is not run, or None


def blocks(page):
    """The fenced code blocks of `page`, in order (indented ones, in admonitions or tabs, dedented)."""
    found, reason = [], None
    lines = page.read_text().splitlines()
    index = 0
    while index < len(lines):
        line = lines[index]
        opening = FENCE.match(line)
        if line.strip().startswith(NOTE):
            reason = line.strip()[len(NOTE) :].split("-->")[0].strip()
        elif opening:
            indent, fence = opening["indent"], opening["fence"]
            language = opening["info"].strip().split(" ")[0].strip("{}.") if opening["info"].strip() else ""
            code, index = [], index + 1
            while index < len(lines) and not (lines[index].strip().startswith(fence[0] * len(fence))
                                              and not lines[index].strip().strip(fence[0])):
                code.append(lines[index][len(indent) :] if lines[index].startswith(indent) else lines[index].lstrip())
                index += 1
            found.append(Block(name(page), index - len(code), language, "\n".join(code), reason))
            reason = None
        elif line.strip():
            reason = None  # a note applies to the block right below it
        index += 1
    return found


def every_block():
    return [block for page in PAGES for block in blocks(page)]


def test_every_code_block_names_a_known_language():
    unknown = [f"{b.page}:{b.line} {b.language or '(none)'}" for b in every_block() if b.language not in LANGUAGES]
    assert not unknown, f"Name each block's language, one of {sorted(LANGUAGES)}: {unknown}"


def test_only_blocks_that_need_a_server_are_not_run():
    not_run = {}
    for block in every_block():
        if block.reason:
            not_run.setdefault(block.page, []).append((block.language, block.reason))
    assert not_run == NOT_RUN


def test_blocks_that_are_not_run_still_compile():
    for block in every_block():
        if block.reason and block.language == "python":
            compile(block.code, f"{block.page}:{block.line}", "exec")


# Every Python block runs -----------------------------------------------------------------------------------

RUNNER = """
import json, sys
namespace = {"__name__": "__main__"}
page, code = json.load(open(sys.argv[1]))
for index, (line, block) in enumerate(code):
    print(f"{page} block {index} (line {line})", flush=True)
    exec(compile(block, f"{page}:{line}", "exec"), namespace)
print("all blocks ran", flush=True)
"""


def runnable(page):
    """[(line, code)] of the page's Python blocks that are run, shortened."""
    return [(b.line, shortened(b.code)) for b in blocks(page) if b.language == "python" and not b.reason]


def shortened(code):
    for pattern, replacement in SHORTER:
        code = pattern.sub(replacement, code)
    return code


RUN_PAGES = [name(page) for page in PAGES if runnable(page)]


@dataclasses.dataclass
class PageRun:
    returncode: int
    output: str
    seconds: float
    workdir: object


def run_page(page, workdir):
    """Runs the page's blocks in order in one fresh Python process, in `workdir`."""
    (workdir / "blocks.json").write_text(json.dumps([page, runnable(REPO / page)]))
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "MPLBACKEND": "Agg"}
    started = time.monotonic()
    result = subprocess.run([sys.executable, "-c", RUNNER, "blocks.json"], cwd=workdir, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, check=False, timeout=1800)
    return PageRun(result.returncode, result.stdout, time.monotonic() - started, workdir)


def cost(page):
    """A rough order of a page's run time, to start the longest first: the models it trains."""
    return sum(code.count(".fit(") for _, code in runnable(REPO / page))


@pytest.fixture(scope="session")
def page_runs(request, tmp_path_factory):
    """{page: future PageRun} for the pages this session tests, started together, `PARALLEL_PAGES` at a time."""
    selected = [item.callspec.params["page"] for item in request.session.items
                if getattr(item, "originalname", None) == "test_every_python_block_runs" and hasattr(item, "callspec")]
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=PARALLEL_PAGES)
    futures = {page: pool.submit(run_page, page, tmp_path_factory.mktemp(re.sub(r"\W", "_", page)))
               for page in sorted(selected, key=cost, reverse=True)}
    yield futures
    pool.shutdown(wait=True, cancel_futures=True)


@pytest.mark.slow
@pytest.mark.parametrize("page", RUN_PAGES)
def test_every_python_block_runs(page, page_runs):
    run = page_runs[page].result()
    print(f"{page}: {run.seconds:.0f} s")
    assert run.returncode == 0 and "all blocks ran" in run.output, run.output[-6000:]
    missing = [path for path in WRITES.get(page, []) if not (run.workdir / path).exists()]
    assert not missing, f"{page}'s examples should have written {missing}"


# Every tfvae command parses, in an order that works --------------------------------------------------------


def commands(page):
    """Every `tfvae ...` command of the page's shell blocks, as argument lists (continued lines joined)."""
    found = []
    for block in blocks(page):
        if block.language != "bash":
            continue
        for line in block.code.replace("\\\n", " ").splitlines():
            for part in re.split(r"&&|;", line):
                if part.strip().startswith("tfvae "):
                    found.append(shlex.split(part, comments=True)[1:])
    return found


def test_every_tfvae_command_parses_against_the_command_line():
    from tfvae.cli.main import main

    every = [args for page in PAGES for args in commands(page)]
    assert len(every) >= 30
    for args in every:
        context = main.make_context("tfvae", list(args))
        name_, command, rest = main.resolve_command(context, [*context.protected_args, *context.args])
        try:
            command.make_context(name_, rest, parent=context)
        except click.BadParameter as error:  # a run an earlier command creates is not here
            assert "does not exist" in str(error), (args, error)


@pytest.mark.parametrize("page", [name(page) for page in PAGES if commands(page)])
def test_the_commands_of_a_page_run_in_order_never_reuse_a_run_folder(page):
    outputs, used = set(), []
    for args in commands(REPO / page):
        options = dict(itertools.pairwise(args))
        if args[0] == "train":
            folder = options.get("--output-dir", "runs/latest")
            assert "--resume" in args or folder not in outputs, f"{folder} already holds a run: {args}"
            outputs.add(folder)
        elif args[0] in ("evaluate", "sample", "reconstruct", "export", "complete", "explore", "gradient-variance"):
            used.append(args[1])
    assert set(used) <= outputs, set(used) - outputs  # every run a command reads, an earlier command writes


# The front page, the nav, the figures ------------------------------------------------------------------------


def test_the_readme_and_the_site_give_the_same_install_and_test_commands():
    readme = [b.code for b in blocks(README) if b.language == "bash"]
    install_and_train, install_and_test = readme[0], readme[1]
    assert "tfvae train --dataset fashion_mnist" in install_and_train and install_and_test.endswith("tox")
    for page in ("index.md", "quickstart.md"):
        shown = [b.code for b in blocks(DOCS / page)]
        assert install_and_train in shown and install_and_test in shown, page
    assert "\ntox\n" in (REPO / ".ci" / "run").read_text() + "\n", ".ci/run runs the README's test command"


def test_the_readme_links_point_at_files_that_exist():
    targets = re.findall(r"\]\(([^)\s]+)\)", README.read_text())
    local = [t.split("#")[0] for t in targets if not re.match(r"[a-z]+:", t)]
    assert len(local) >= 10
    assert [t for t in local if not (REPO / t).exists()] == []


def nav_pages(entries):
    for entry in entries:
        value = next(iter(entry.values())) if isinstance(entry, dict) else entry
        if isinstance(value, list):
            yield from nav_pages(value)
        else:
            yield value


def test_every_page_is_in_the_nav_once():
    import yaml

    nav = list(nav_pages(yaml.safe_load((REPO / "mkdocs.yml").read_text())["nav"]))
    assert sorted(nav) == sorted(page.relative_to(DOCS).as_posix() for page in DOCS.rglob("*.md"))


def test_the_figures_are_small_png_files_every_one_shown():
    figures = sorted((DOCS / "figures").glob("*"))
    assert figures and all(f.suffix == ".png" for f in figures)
    sizes = {f.name: f.stat().st_size for f in figures}
    assert max(sizes.values()) < 200_000 and sum(sizes.values()) < 1_500_000, sizes
    text = "".join(page.read_text() for page in PAGES)
    assert [f.name for f in figures if f"figures/{f.name}" not in text] == []


# The API reference hook ------------------------------------------------------------------------------------


def docs_hooks():
    spec = importlib.util.spec_from_file_location("docs_hooks", DOCS / "hooks.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_docs_hook_names_public_objects_without_docstrings(tmp_path, monkeypatch):
    package = tmp_path / "probe"
    package.mkdir()
    (package / "__init__.py").write_text('"""A package."""\n__all__ = ["Shown", "hidden_from_pages"]\n'
                                         "from probe.parts import Shown, hidden_from_pages\n")
    (package / "parts.py").write_text(
        '"""Parts."""\n\n'
        "def hidden_from_pages():\n    pass\n\n"
        "def _private():\n    pass\n\n"
        "class Base:\n    def run(self):\n        \"\"\"Runs.\"\"\"\n\n    def bare(self):\n        pass\n\n"
        "class Shown(Base):\n    \"\"\"Shown.\"\"\"\n\n    def __init__(self):\n        pass\n\n"
        "    def run(self):\n        pass\n\n    def own(self):\n        pass\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    hooks = docs_hooks()
    module = hooks.load("probe", [tmp_path])
    assert [path for path, _, _ in hooks.undocumented(module)] == [
        "probe.parts.hidden_from_pages", "probe.parts.Base", "probe.parts.Base.bare", "probe.parts.Shown.own"]
    assert hooks.unrendered(module, {"probe.parts.Shown"}) == ["probe.hidden_from_pages"]
    assert hooks.unrendered(module, {"probe.parts"}) == []


def test_every_public_object_has_a_docstring_and_a_page():
    hooks = docs_hooks()
    module = hooks.load()
    rendered = set()
    for page in (DOCS / "reference").glob("*.md"):
        rendered.update(hooks.DIRECTIVE.findall(page.read_text()))
    assert hooks.undocumented(module) == []
    assert hooks.unrendered(module, rendered) == []
    assert hooks.commands_without_help() == []


# The site, built and opened in a browser -------------------------------------------------------------------


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """The site built with `mkdocs build --strict` into a temporary folder."""
    folder = tmp_path_factory.mktemp("site")
    result = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(folder)], cwd=REPO,
                            env={**os.environ, "NO_MKDOCS_2_WARNING": "1", "TF_CPP_MIN_LOG_LEVEL": "2",
                                 "PYTHONSAFEPATH": "1"}, text=True,
                            capture_output=True, check=False, timeout=900)
    assert result.returncode == 0, result.stderr[-5000:]
    return folder


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def served(site):
    """The built site's address, served by `python -m http.server`."""
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1", "--directory",
                               str(site)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(100):
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.1)
        yield f"http://127.0.0.1:{port}/"
    finally:
        server.terminate()
        server.wait(timeout=10)


@pytest.fixture(scope="module")
def browser():
    """Debian's chromium, headless, with its console log readable."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    if not (os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER)):
        pytest.fail(f"The browser test drives {CHROMIUM} through {CHROMEDRIVER}: "
                    "apt-get install -y chromium chromium-driver")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                     "--window-size=1280,1024"):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


def site_urls(base):
    """The address of every page of the nav."""
    import yaml

    urls = []
    for page in nav_pages(yaml.safe_load((REPO / "mkdocs.yml").read_text())["nav"]):
        path = page[: -len(".md")]
        path = path[: -len("index")] if path.endswith("index") else path + "/"
        urls.append(base + path)
    return urls


def open_page(driver, url):
    driver.get(url)
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(driver, 30).until(lambda d: d.execute_script("return document.readyState") == "complete")


@pytest.mark.slow
def test_every_page_loads_without_console_errors_its_images_load_and_nothing_comes_from_elsewhere(served, browser):
    urls = site_urls(served)
    assert len(urls) >= 20
    for url in urls:
        open_page(browser, url)
        errors = [entry for entry in browser.get_log("browser") if entry["level"] == "SEVERE"]
        assert errors == [], (url, errors)
        images = browser.execute_script(
            "return Array.from(document.images).map(i => [i.currentSrc || i.src, i.complete, i.naturalWidth])")
        assert [image for image in images if not (image[1] and image[2] > 0)] == [], url
        resources = browser.execute_script("return performance.getEntriesByType('resource').map(r => r.name)")
        assert [r for r in resources if not r.startswith(served)] == [], url
    open_page(browser, served + "guides/exploring/")
    assert len(browser.execute_script("return Array.from(document.images).filter(i => i.naturalWidth > 0)")) >= 6


@pytest.mark.slow
def test_the_search_box_finds_complete(served, browser):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    open_page(browser, served)
    field = WebDriverWait(browser, 10).until(lambda d: d.find_element(By.CSS_SELECTOR, "input.md-search__input"))
    WebDriverWait(browser, 10).until(lambda d: field.is_displayed())
    field.click()
    field.send_keys("complete")
    # The results are redrawn as each key arrives, so they are read in one script call, never element by element.
    results_text = "return Array.from(document.querySelectorAll('.md-search-result__item')).map(e => e.innerText).join(' ')"
    WebDriverWait(browser, 60).until(lambda d: "complete" in d.execute_script(results_text).lower(),
                                     message="no search result mentions 'complete'")
    links = browser.execute_script("return Array.from(document.querySelectorAll('.md-search-result__link')).map(a => a.href)")
    assert any("completion" in link for link in links), links


@pytest.mark.slow
def test_the_api_page_of_vae_lists_fit_log_likelihood_and_complete(served, browser):
    from selenium.webdriver.common.by import By

    open_page(browser, served + "reference/models/")
    heading = browser.find_element(By.ID, "tfvae.VAE")
    assert "VAE" in heading.text
    for method in ("fit", "log_likelihood", "complete"):
        element = browser.find_element(By.ID, f"tfvae.VAE.{method}")
        assert method in element.text, element.text
        documentation = element.find_element(By.XPATH, "following-sibling::div[contains(@class, 'doc-contents')]")
        assert documentation.text.strip(), f"tfvae.VAE.{method} is listed without its documentation"
