import pytest

import seqkit
from seqkit.config import load_config


def test_defaults(tmp_path):
    cfg = load_config(cwd=tmp_path, environ={})
    assert cfg == seqkit.Config(backend="numpy", dtype="float32", device="cpu", seed=None)


def test_precedence_explicit_over_env_over_file_over_default(tmp_path):
    (tmp_path / "seqkit.toml").write_text('dtype = "float64"\nseed = 3\n')
    sub = tmp_path / "a" / "b"
    sub.mkdir(parents=True)
    cfg = load_config(cwd=sub, environ={})
    assert (cfg.dtype, cfg.seed) == ("float64", 3)
    cfg = load_config(cwd=sub, environ={"SEQKIT_SEED": "7"})
    assert (cfg.dtype, cfg.seed) == ("float64", 7)
    cfg = load_config(cwd=sub, environ={"SEQKIT_SEED": "7"}, seed=9, dtype="float32")
    assert (cfg.dtype, cfg.seed) == ("float32", 9)


def test_pyproject_tool_table_and_nearest_file_wins(tmp_path):
    (tmp_path / "pyproject.toml").write_text(
        '[project]\nname = "x"\n[tool.seqkit]\ndevice = "auto"\n'
    )
    inner = tmp_path / "inner"
    inner.mkdir()
    (inner / "pyproject.toml").write_text(
        '[project]\nname = "y"\n'
    )  # no [tool.seqkit]: keep looking
    assert load_config(cwd=inner, environ={}).device == "auto"
    (inner / "seqkit.toml").write_text('device = "cuda:1"\n')
    assert load_config(cwd=inner, environ={}).device == "cuda:1"


def test_env_backend_is_used_by_get_backend(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SEQKIT_DTYPE", "float64")
    be = seqkit.get_backend()
    assert be.name == "numpy" and be.dtype == "float64"


@pytest.mark.parametrize(
    "text, match",
    [
        (
            'colour = "red"\n',
            r"seqkit.toml: unknown key 'colour'; allowed keys: backend, dtype, device, seed",
        ),
        (
            'dtype = "float16"\n',
            r"seqkit.toml: 'dtype' must be one of 'float32', 'float64' \(got 'float16'\)",
        ),
        (
            'device = "cuda 0"\n',
            r"'device' must be a name such as 'cpu', 'cuda', 'cuda:N', 'gpu' or 'auto' \(got 'cuda 0'\)",
        ),
        ('backend = "jaxx"\n', r"'backend' must be one of .*'numpy'.* \(got 'jaxx'\)"),
        ("seed = -1\n", r"'seed' must be a non-negative integer \(got -1\)"),
        ("dtype = [\n", r"not valid TOML"),
    ],
)
def test_bad_file_values_name_key_file_and_choices(tmp_path, text, match):
    (tmp_path / "seqkit.toml").write_text(text)
    with pytest.raises(seqkit.ConfigError, match=match):
        load_config(cwd=tmp_path, environ={})


@pytest.mark.parametrize(
    ("data", "match"),
    [
        (b"seed = \xff\n", r"seqkit.toml: not UTF-8 text \(byte 0xff at byte offset 7\)"),
        (b"\xfe\xffs\x00", r"seqkit.toml: not UTF-8 text \(byte 0xfe at byte offset 0\)"),
    ],
)
def test_a_config_file_that_is_not_utf8_names_the_file(tmp_path, data, match):
    """Was: the codec's message alone, naming no file."""
    (tmp_path / "seqkit.toml").write_bytes(data)
    with pytest.raises(seqkit.ConfigError, match=match):
        load_config(cwd=tmp_path, environ={})


@pytest.mark.parametrize(
    "backend, device, match",
    [
        ("numpy", "tpu", r"backend 'numpy' runs on device 'cpu' only \(got device 'tpu'\)"),
        ("torch", "tpu", r"'device' must be one of 'cpu', 'cuda', 'cuda:N', 'auto' \(got 'tpu'\)"),
    ],
)
def test_each_backend_validates_its_own_device_names(backend, device, match):
    if backend == "torch":
        pytest.importorskip("torch")
    with pytest.raises(seqkit.ConfigError, match=match):
        seqkit.get_backend(backend, device=device)


def test_bad_environment_value_names_the_variable(tmp_path):
    with pytest.raises(
        seqkit.ConfigError, match=r"environment variable SEQKIT_SEED: 'seed' must be"
    ):
        load_config(cwd=tmp_path, environ={"SEQKIT_SEED": "abc"})


def test_bad_argument(tmp_path):
    with pytest.raises(seqkit.ConfigError, match=r"argument 'dtype'"):
        load_config(cwd=tmp_path, environ={}, dtype="int8")


def test_config_is_frozen():
    cfg = seqkit.Config()
    with pytest.raises(AttributeError):
        cfg.backend = "torch"


def test_default_seed_comes_from_the_config_file_and_environment(tmp_path):
    from seqkit.config import default_seed, resolve_seed

    assert default_seed(cwd=tmp_path, environ={}) is None
    (tmp_path / "seqkit.toml").write_text("seed = 5\n")
    assert default_seed(cwd=tmp_path, environ={}) == 5
    assert default_seed(cwd=tmp_path, environ={"SEQKIT_SEED": "11"}) == 11
    assert resolve_seed(None, cwd=tmp_path, environ={}) == 5
    assert resolve_seed(0, cwd=tmp_path, environ={}) == 0  # an explicit seed always wins
    (tmp_path / "seqkit.toml").write_text("seed = -1\n")
    with pytest.raises(seqkit.ConfigError, match=r"seqkit\.toml: 'seed' must be a non-negative"):
        resolve_seed(None, cwd=tmp_path, environ={})


MODEL_WEIGHTS = """
import hashlib, seqkit
vocab = seqkit.Vocabulary.build(["abc"], level="char")
lm = seqkit.LanguageModel(vocab, cell="lstm", hidden_size=3)
params = lm.numpy_params()
print(hashlib.sha256(b"".join(params[k].tobytes() for k in sorted(params))).hexdigest())
"""


def test_a_model_without_a_seed_uses_the_config_seed(tmp_path):
    import os
    import subprocess
    import sys

    (tmp_path / "seqkit.toml").write_text("seed = 5\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("SEQKIT_")}
    runs = [
        subprocess.run(
            [sys.executable, "-c", MODEL_WEIGHTS],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        for _ in range(2)
    ]
    assert runs[0] == runs[1]
