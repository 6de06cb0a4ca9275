"""The malloc arena cap, checked by counting glibc's arenas in a fresh process."""

import os
import subprocess
import sys
import textwrap

import pytest

# Eight threads allocate at the same time, each from its own arena unless the cap stops it;
# glibc's malloc_stats() then prints one "Arena N:" block per arena on stderr.
_COUNT_ARENAS = textwrap.dedent(
    """
    import ctypes, sys, threading
    from tfvae.allocator import cap_malloc_arenas
    applied = cap_malloc_arenas() if sys.argv[1] == "cap" else False
    libc = ctypes.CDLL(None)
    libc.malloc.restype = ctypes.c_void_p
    barrier = threading.Barrier(8)
    def allocate():
        barrier.wait()
        libc.malloc(4096)
        barrier.wait()
    threads = [threading.Thread(target=allocate) for _ in range(8)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    print(applied, flush=True)
    libc.malloc_stats()
    """
)


def _arenas(mode, env=None):
    result = subprocess.run([sys.executable, "-c", _COUNT_ARENAS, mode], capture_output=True, text=True, check=True, env=env)
    return result.stdout.strip(), result.stderr.count("Arena ")


@pytest.fixture
def clean_env(monkeypatch):
    monkeypatch.delenv("MALLOC_ARENA_MAX", raising=False)
    return dict(os.environ)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc only")
def test_cap_limits_arenas_that_threads_would_otherwise_create(clean_env):
    applied, capped = _arenas("cap", clean_env)
    _, uncapped = _arenas("none", clean_env)
    assert applied == "True"
    assert capped <= 2
    assert uncapped > 2


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc only")
def test_cap_respects_the_users_malloc_arena_max(clean_env):
    applied, arenas = _arenas("cap", {**clean_env, "MALLOC_ARENA_MAX": "4"})
    assert applied == "False"
    assert 2 < arenas <= 4
