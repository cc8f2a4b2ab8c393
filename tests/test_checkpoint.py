import json

import numpy as np
import pytest

from seqkit.checkpoint import Checkpoint, CheckpointError, read_checkpoint, save_checkpoint


def make():
    return Checkpoint(
        "LanguageModel",
        {"hidden_size": 4},
        {"w": np.arange(6.0).reshape(2, 3)},
        {"vocab": {"a": 1}},
    )


def test_round_trip(tmp_path):
    path = save_checkpoint(tmp_path / "m.npz", make())
    back = read_checkpoint(path)
    assert back.kind == "LanguageModel" and back.config == {"hidden_size": 4}
    assert back.extra == {"vocab": {"a": 1}}
    np.testing.assert_array_equal(back.params["w"], np.arange(6.0).reshape(2, 3))


def test_failed_write_keeps_the_old_file(tmp_path, monkeypatch):
    path = save_checkpoint(tmp_path / "m.npz", make())
    before = path.read_bytes()

    def boom(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(np, "savez", boom)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(path, make())
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["m.npz"]  # no temporary file left


@pytest.mark.parametrize(
    "damage, match",
    [
        (lambda p: p.write_bytes(p.read_bytes()[:100]), "truncated or corrupted"),
        (lambda p: p.write_bytes(b"not a zip at all"), "truncated or corrupted"),
        (lambda p: np.savez(p, x=np.ones(2)), "not a seqkit checkpoint"),
    ],
)
def test_damaged_files_give_one_clear_line(tmp_path, damage, match):
    path = save_checkpoint(tmp_path / "m.npz", make())
    damage(path)
    with pytest.raises(CheckpointError, match=match) as info:
        read_checkpoint(path)
    assert "\n" not in str(info.value)


def test_newer_version_is_refused(tmp_path):
    path = tmp_path / "m.npz"
    meta = {"format": "seqkit-checkpoint", "version": 99, "kind": "X", "config": {}, "extra": {}}
    with open(path, "wb") as fh:
        np.savez(fh, __seqkit__=np.array(json.dumps(meta)))
    with pytest.raises(CheckpointError, match="version 99 is newer"):
        read_checkpoint(path)


def test_pickled_content_is_never_loaded(tmp_path):
    path = tmp_path / "evil.npz"
    np.savez(path, __seqkit__=np.array([{"a": 1}], dtype=object))
    with pytest.raises(CheckpointError):
        read_checkpoint(path)


def test_missing_file(tmp_path):
    with pytest.raises(CheckpointError, match="no such checkpoint file"):
        read_checkpoint(tmp_path / "nope.npz")
