"""The test suite, one test file per pytest process.

TensorFlow keeps what it compiled for a model (XLA programs, traced graphs) until its process ends, so the
whole suite in one process grows past 12 GiB; one process per file stays near 3 GiB. Arguments go to every
pytest run (`python tests/suite.py -m "not slow"`); arguments naming tests (a path or a node id) run those
in one pytest process, as pytest would.

    python tests/suite.py [PYTEST ARGS]
"""

import pathlib
import subprocess
import sys
import time

TESTS = pathlib.Path(__file__).resolve().parent
NO_TESTS_COLLECTED = 5  # pytest's exit code when a file's tests are all deselected


def names_tests(argument):
    return not argument.startswith("-") and (argument.endswith(".py") or "::" in argument or
                                             pathlib.Path(argument).is_dir())


def main(arguments):
    pytest = [sys.executable, "-P", "-m", "pytest"]  # -P: the installed package, not the source folder beside
    if any(names_tests(argument) for argument in arguments):
        return subprocess.call([*pytest, *arguments])
    failed, started = [], time.monotonic()
    for path in sorted(TESTS.glob("test_*.py")):
        code = subprocess.call([*pytest, str(path.relative_to(TESTS.parent)), *arguments], cwd=TESTS.parent)
        if code not in (0, NO_TESTS_COLLECTED):
            failed.append(f"{path.name} (exit {code})")
    minutes = (time.monotonic() - started) / 60
    print(f"\n{'FAILED: ' + ', '.join(failed) if failed else 'Every test file passed'} ({minutes:.1f} minutes)", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
