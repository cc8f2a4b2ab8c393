import pytest

import seqkit

# The jax backend and the peephole cell as installed through their entry points, or registered
# here in a bare checkout; at import, so that parametrisations over the registries see them.
try:
    import jax  # noqa: F401
except ImportError:  # without jax (the NumPy-only run on Python 3.13) these tests do not apply
    collect_ignore_glob = ["test_*.py"]
else:
    if "jax" not in seqkit.list_backends():
        import seqkit_jax

        seqkit.register_plugin(seqkit_jax, name="jax")
try:
    import seqkit_peephole
except ImportError:
    seqkit_peephole = None
if seqkit_peephole is not None and "lstm_peephole" not in seqkit.list_cells():
    seqkit.register_plugin(seqkit_peephole, name="peephole")


@pytest.fixture(autouse=True)
def no_config(monkeypatch, tmp_path):
    """No SEQKIT_* variable or seqkit.toml of the caller's leaks into a test."""
    for var in ("SEQKIT_BACKEND", "SEQKIT_DTYPE", "SEQKIT_DEVICE", "SEQKIT_SEED"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.chdir(tmp_path)
