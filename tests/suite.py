"""The test suite, one test file per pytest process, as many processes at a time as there are cores.

TensorFlow keeps what it compiled for a model (XLA programs, traced graphs) until its process ends, so the
whole suite in one process grows past 12 GiB; one process per file stays near 3 GiB. Most of a file's time is
TensorFlow tracing and compiling small models, one core's work, so files run side by side (the longest first,
each file's output printed whole when it ends). Arguments go to every pytest run (`python tests/suite.py -m
"not slow"`); arguments naming tests (a path or a node id) run those in one pytest process, as pytest would.

    python tests/suite.py [PYTEST ARGS]          TFVAE_TEST_PROCESSES=1 runs one file at a time
"""

import concurrent.futures
import os
import pathlib
import subprocess
import sys
import time

TESTS = pathlib.Path(__file__).resolve().parent
NO_TESTS_COLLECTED = 5  # pytest's exit code when a file's tests are all deselected
# The files that take longest, started first so that the processes end together; the rest follow by name.
LONGEST_FIRST = ("test_registry.py", "test_hierarchical.py", "test_labels.py", "test_estimators.py",
                 "test_run_integrity.py", "test_docs.py", "test_distributed.py")


def names_tests(argument):
    return not argument.startswith("-") and (argument.endswith(".py") or "::" in argument or
                                             pathlib.Path(argument).is_dir())


def ordered(paths):
    rank = {name: index for index, name in enumerate(LONGEST_FIRST)}
    return sorted(paths, key=lambda path: (rank.get(path.name, len(rank)), path.name))


def run_file(command, path):
    started = time.monotonic()
    result = subprocess.run([*command, str(path.relative_to(TESTS.parent))], check=False, cwd=TESTS.parent,
                            capture_output=True, text=True)
    print(result.stdout + result.stderr + f"[{path.name}: {(time.monotonic() - started) / 60:.1f} minutes]\n", flush=True)
    return result.returncode


def main(arguments):
    pytest = [sys.executable, "-P", "-m", "pytest"]  # -P: the installed package, not the source folder beside
    if any(names_tests(argument) for argument in arguments):
        return subprocess.call([*pytest, *arguments])
    processes = int(os.environ.get("TFVAE_TEST_PROCESSES", os.cpu_count() or 1))
    started, paths = time.monotonic(), ordered(TESTS.glob("test_*.py"))
    with concurrent.futures.ThreadPoolExecutor(processes) as pool:
        codes = dict(zip(paths, pool.map(lambda path: run_file([*pytest, *arguments], path), paths)))
    failed = [f"{path.name} (exit {code})" for path, code in codes.items() if code not in (0, NO_TESTS_COLLECTED)]
    minutes = (time.monotonic() - started) / 60
    print(f"\n{'FAILED: ' + ', '.join(failed) if failed else 'Every test file passed'} ({minutes:.1f} minutes)", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
