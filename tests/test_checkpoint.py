import io
import json
import os
import signal
import stat
import subprocess
import sys
import textwrap
import zipfile

import numpy as np
import pytest

from seqkit.checkpoint import (
    Checkpoint,
    CheckpointError,
    ReadLimits,
    read_checkpoint,
    save_checkpoint,
)


def make():
    return Checkpoint(
        "LanguageModel",
        {"hidden_size": 4},
        {"w": np.arange(6.0).reshape(2, 3)},
        {"vocab": {"tokens": ["<PAD>", "<UNK>", "<EOS>", "a"]}},
    )


def npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.lib.format.write_array(buffer, array, allow_pickle=False)
    return buffer.getvalue()


def rewrite(path, *, meta=None, members=None, drop=(), compression=zipfile.ZIP_STORED):
    """Rebuild the archive at ``path``: new metadata, extra or replaced members, dropped ones."""
    with zipfile.ZipFile(path) as zf:
        old = {info.filename: zf.read(info) for info in zf.infolist()}
    if meta is not None:
        old["__seqkit__.npy"] = npy(np.array(meta if isinstance(meta, str) else json.dumps(meta)))
    old.update(members or {})
    with zipfile.ZipFile(path, "w", compression=compression) as zf:
        for name, data in old.items():
            if name not in drop:
                zf.writestr(name, data)


def metadata(path) -> dict:
    with zipfile.ZipFile(path) as zf:
        return json.loads(str(np.load(io.BytesIO(zf.read("__seqkit__.npy")))))


def one_line_error(path, match, **kwargs) -> str:
    with pytest.raises(CheckpointError, match=match) as info:
        read_checkpoint(path, **kwargs)
    message = str(info.value)
    assert "\n" not in message and message.startswith(str(path))
    return message


def expect(shapes):
    return lambda kind, config, extra: shapes


def test_round_trip(tmp_path):
    path = save_checkpoint(tmp_path / "m.npz", make())
    back = read_checkpoint(path, expected_shapes=expect({"w": (2, 3)}))
    assert back.kind == "LanguageModel" and back.config == {"hidden_size": 4}
    assert back.extra == make().extra
    np.testing.assert_array_equal(back.params["w"], np.arange(6.0).reshape(2, 3))
    assert back.params["w"].flags.writeable


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
    one_line_error(path, match)


def test_newer_version_is_refused(tmp_path):
    path = tmp_path / "m.npz"
    meta = {"format": "seqkit-checkpoint", "version": 99, "kind": "X", "config": {}, "extra": {}}
    with open(path, "wb") as fh:
        np.savez(fh, __seqkit__=np.array(json.dumps(meta)))
    one_line_error(path, "version 99 is newer")


def test_pickled_content_is_never_loaded(tmp_path):
    path = tmp_path / "evil.npz"
    np.savez(path, __seqkit__=np.array([{"a": 1}], dtype=object))
    one_line_error(path, r"dtype \|O")


def test_missing_file(tmp_path):
    one_line_error(tmp_path / "nope.npz", "no such checkpoint file")


# --- crafted archives: checked before anything is decompressed ------------------------------------


def test_unexpected_members_are_refused_without_reading_them(tmp_path):
    path = save_checkpoint(tmp_path / "m.npz", make())
    rewrite(path, members={"junk.npy": npy(np.zeros(3))})
    one_line_error(
        path,
        r"parameters do not fit the config: missing none, unexpected 'junk'",
        expected_shapes=expect({"w": (2, 3)}),
    )
    rewrite(path, members={"../evil.npy": npy(np.zeros(3))})
    one_line_error(path, r"unexpected archive member '\.\./evil\.npy'")
    rewrite(path, members={"notes.txt": b"hi"}, drop=("../evil.npy",))
    one_line_error(path, r"unexpected archive member 'notes\.txt'")


def test_missing_parameter_and_wrong_shape_name_the_parameter(tmp_path):
    path = save_checkpoint(tmp_path / "m.npz", make())
    one_line_error(
        path, r"missing 'b', unexpected none", expected_shapes=expect({"w": (2, 3), "b": (3,)})
    )
    one_line_error(
        path,
        r"parameter 'w' must have shape \(3, 2\) \(got \(2, 3\)\)",
        expected_shapes=expect({"w": (3, 2)}),
    )


def test_huge_declared_shape_is_refused_before_allocating(tmp_path):
    path = save_checkpoint(tmp_path / "m.npz", make())
    header = np.lib.format.header_data_from_array_1_0(np.zeros(2))
    header["shape"] = (10**12,)  # with only 16 bytes of data
    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(buffer, header)
    crafted = buffer.getvalue() + np.zeros(2).tobytes()
    rewrite(path, members={"w.npy": crafted})
    one_line_error(path, r"array 'w' declares shape \(1000000000000,\) of float64")


def test_dtype_outside_the_allow_list(tmp_path):
    path = save_checkpoint(tmp_path / "m.npz", make())
    rewrite(path, members={"w.npy": npy(np.zeros((2, 3), dtype=np.complex128))})
    one_line_error(path, r"array 'w' has dtype <c16; allowed: float32, float64, int32, int64")
    rewrite(path, members={"w.npy": npy(np.zeros((2, 3), dtype=np.int64))})
    one_line_error(path, r"parameter 'w' must be float32 or float64 \(got int64\)")


def test_compression_and_flags_are_allow_listed(tmp_path):
    path = save_checkpoint(tmp_path / "m.npz", make())
    rewrite(path, compression=zipfile.ZIP_BZIP2)
    one_line_error(path, r"compression method 12; allowed: 0 \(stored\), 8 \(deflated\)")
    path = save_checkpoint(tmp_path / "m.npz", make())
    data = bytearray(path.read_bytes())
    central = data.index(b"PK\x01\x02")  # the first central-directory entry
    data[central + 8] |= 0x20  # "compressed patched data": NotImplementedError in zipfile
    path.write_bytes(bytes(data))
    one_line_error(path, r"zip flags 0x0020; allowed flags")


def test_declared_sizes_are_capped_before_decompressing(tmp_path):
    path = save_checkpoint(tmp_path / "m.npz", make())
    rewrite(path, members={"big.npy": npy(np.zeros(200_000))}, compression=zipfile.ZIP_DEFLATED)
    one_line_error(
        path,
        r"'big\.npy' declares 1600128 bytes, over the cap of 1000 bytes",
        limits=ReadLimits(max_member_bytes=1000),
    )
    one_line_error(
        path,
        r"more than the cap of 100000 bytes in all",
        limits=ReadLimits(max_total_bytes=100_000, max_expansion=10**6),
    )
    one_line_error(
        path,
        r"would expand \d+ compressed bytes to 1600128 \(more than 2 times",
        limits=ReadLimits(max_expansion=2),
    )
    path.unlink()
    path = save_checkpoint(tmp_path / "m.npz", make())
    one_line_error(
        path,
        r"'__seqkit__\.npy' declares \d+ bytes, over the cap of 64 bytes",
        limits=ReadLimits(max_metadata_bytes=64),
    )


# --- metadata: a schema whose errors name the field ----------------------------------------------


def meta_with(path, **changes) -> dict:
    meta = metadata(path)
    for dotted, value in changes.items():
        *parents, last = dotted.split("__")
        target = meta
        for key in parents:
            target = target.setdefault(key, {})
        target[last] = value
    return meta


@pytest.mark.parametrize(
    "change, match",
    [
        (
            {"config__num_layers": 10**9},
            r"config\.num_layers must be an integer in 1\.\.1024 \(got 1000000000\)",
        ),
        ({"config__hidden_size": "4"}, r"config\.hidden_size must be an integer in 1\.\.65536"),
        ({"config__bidirectional": 1}, r"config\.bidirectional must be true or false \(got 1\)"),
        ({"version": True}, r"version must be an integer in 1\.\.1 \(got true\)"),
        ({"version": 0}, r"version must be an integer in 1\.\.1 \(got 0\)"),
        ({"kind": ["LanguageModel"]}, r"kind must be a string of at most 100 characters"),
        ({"extra__metadata": [["cli", 1]]}, r"extra\.metadata must be an object \(got \[\["),
        ({"extra__vocab": {"tokens": "abc"}}, r"extra\.vocab\.tokens must be a list"),
        (
            {"extra__vocab": {"tokens": ["a", 3]}},
            r"extra\.vocab\.tokens\[1\] must be a string of at most 1000 characters \(got 3\)",
        ),
        ({"extra__training": {"step": -1}}, r"extra\.training\.step must be an integer in 0\.\."),
        ({"surprise": 1}, r"unknown key surprise; allowed: config, extra, format, kind, version"),
    ],
)
def test_bad_metadata_names_the_field(tmp_path, change, match):
    path = save_checkpoint(tmp_path / "m.npz", make())
    rewrite(path, meta=meta_with(path, **change))
    message = one_line_error(path, match)
    assert "invalid checkpoint metadata" in message


def test_missing_metadata_key(tmp_path):
    path = save_checkpoint(tmp_path / "m.npz", make())
    meta = metadata(path)
    del meta["config"]
    rewrite(path, meta=meta)
    one_line_error(path, r"invalid checkpoint metadata: config is missing")


def test_deeply_nested_json_is_refused_without_recursing(tmp_path):
    path = save_checkpoint(tmp_path / "m.npz", make())
    deep = "[" * 100_000 + "]" * 100_000
    text = json.dumps(metadata(path))[:-1] + ', "extra": {"metadata": {"x": ' + deep + "}}}"
    rewrite(path, meta=text)
    one_line_error(path, r"metadata JSON nests 100003 levels deep; at most 64 allowed")
    # brackets inside strings do not count
    path = save_checkpoint(tmp_path / "m.npz", make())
    meta = meta_with(path, extra__metadata={"x": "[" * 1000})
    rewrite(path, meta=meta)
    assert read_checkpoint(path).extra["metadata"] == {"x": "[" * 1000}


def test_metadata_that_is_not_json(tmp_path):
    path = save_checkpoint(tmp_path / "m.npz", make())
    rewrite(path, meta="{not json")
    one_line_error(path, r"metadata '__seqkit__' is not valid JSON")
    rewrite(path, meta="[1, 2]")
    one_line_error(path, r"not a seqkit checkpoint \(format 'list'")


def test_expected_shapes_errors_become_checkpoint_errors(tmp_path):
    path = save_checkpoint(tmp_path / "m.npz", make())

    def shapes(kind, config, extra):
        raise ValueError(f"unknown cell {config.get('cell')!r}")

    one_line_error(
        path,
        r"the config does not describe a LanguageModel: unknown cell None",
        expected_shapes=shapes,
    )


def test_state_arrays_must_fit_their_parameters(tmp_path):
    ckpt = make()
    good = Checkpoint(
        ckpt.kind,
        ckpt.config,
        ckpt.params,
        ckpt.extra,
        state={"optim/exp_avg/w": np.zeros((2, 3)), "order": np.arange(4)},
    )
    path = save_checkpoint(tmp_path / "m.npz", good)
    back = read_checkpoint(path, expected_shapes=expect({"w": (2, 3)}))
    assert sorted(back.state) == ["optim/exp_avg/w", "order"]
    rewrite(path, members={"state/optim/exp_avg/w.npy": npy(np.zeros((3, 3)))})
    one_line_error(path, r"state array 'state/optim/exp_avg/w' must have its parameter's shape")
    rewrite(
        path,
        members={"state/optim/exp_avg/v.npy": npy(np.zeros(3))},
        drop=("state/optim/exp_avg/w.npy",),
    )
    one_line_error(path, r"state array 'state/optim/exp_avg/v' names no parameter")


def test_save_refuses_dtypes_it_could_not_read_back(tmp_path):
    bad = Checkpoint("X", {}, {"w": np.zeros(2, dtype=np.complex64)})
    with pytest.raises(ValueError, match=r"params\['w'\] must have a dtype in float32, float64"):
        save_checkpoint(tmp_path / "m.npz", bad)


# --- atomic writes: stale partials, file modes, errors naming the target -------------------------


def test_missing_folder_names_the_target_not_the_temporary_file(tmp_path):
    target = tmp_path / "nodir" / "m.npz"
    with pytest.raises(CheckpointError, match=r"m\.npz: folder .*nodir does not exist") as info:
        save_checkpoint(target, make())
    assert ".tmp" not in str(info.value)


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="needs POSIX modes, not root")
def test_read_only_folder_names_the_target(tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        with pytest.raises(CheckpointError, match=r"cannot write checkpoint .*m\.npz: cannot"):
            save_checkpoint(folder / "m.npz", make())
    finally:
        folder.chmod(0o755)


WRITER = textwrap.dedent(
    """
    import sys, numpy as np
    from seqkit import checkpoint as ck
    real = np.savez
    def slow(fh, **arrays):
        fh.write(b"partial bytes")
        fh.flush()
        print("writing", flush=True)
        sys.stdin.read()  # wait to be killed
    np.savez = slow
    ck.save_checkpoint(sys.argv[1], ck.Checkpoint("X", {}, {"w": np.zeros(3)}))
    """
)


@pytest.mark.skipif(os.name != "posix", reason="SIGKILL")
def test_next_write_removes_partials_of_killed_writers_only(tmp_path):
    target = tmp_path / "m.npz"
    child = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(target)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout.readline().strip() == "writing"
        partials = [p.name for p in tmp_path.iterdir()]
        assert len(partials) == 1 and partials[0].startswith(f".m.npz.{child.pid}-")
        # while the writer lives, its partial is not touched
        save_checkpoint(tmp_path / "m.npz", make())
        assert (tmp_path / partials[0]).exists()
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    legacy = tmp_path / ".m.npz.abcd1234.tmp"  # a killed writer of an older seqkit
    legacy.write_bytes(b"x")
    keep = [
        tmp_path / ".other.npz.abcd1234.tmp",
        tmp_path / ".m.npz.abcd1234.tmp.bak",
        tmp_path / "m.npz.abcd1234.tmp",
        tmp_path / ".m.npz.notes.tmp",
    ]
    for p in keep:
        p.write_bytes(b"x")
    save_checkpoint(target, make())
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == sorted(["m.npz"] + [p.name for p in keep])
    read_checkpoint(target)


@pytest.mark.skipif(os.name != "posix", reason="POSIX file modes")
@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_a_new_file_honours_the_umask(tmp_path, umask, mode):
    old = os.umask(umask)
    try:
        path = save_checkpoint(tmp_path / "m.npz", make())
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == mode


@pytest.mark.skipif(os.name != "posix", reason="POSIX file modes")
@pytest.mark.parametrize("existing", [0o644, 0o600, 0o640])
def test_overwriting_keeps_the_existing_mode(tmp_path, existing):
    path = save_checkpoint(tmp_path / "m.npz", make())
    path.chmod(existing)
    old = os.umask(0o077)
    try:
        save_checkpoint(path, make())
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == existing


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("member", ["w", "state/optim/exp_avg/w"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_non_finite_values_are_refused_naming_the_array(tmp_path, bad, member, dtype):
    """What a diverged run or a crafted file would hold: never a model that scores NaN."""
    path = save_checkpoint(tmp_path / "c.npz", make())
    array = np.arange(6.0).reshape(2, 3).astype(dtype)
    array[1, 2] = bad
    rewrite(path, members={member + ".npy": npy(array)})
    one_line_error(path, rf"array '{member}' holds NaN or infinite values")


@pytest.mark.parametrize(
    ("field", "value", "match"),
    [
        ("rng", "x", "rng must be an object"),
        ("rng", {}, "rng.bit_generator is missing"),
        ("rng.bit_generator", "MT19937", "rng.bit_generator must be 'PCG64'"),
        ("rng.state", "x", "rng.state must be an object"),
        ("rng.state.state", -1, "rng.state.state must be an integer"),
        ("rng.has_uint32", 2, "rng.has_uint32 must be an integer in 0..1"),
        ("best.value", "x", "best.value must be a number"),
        ("best.step", "y", "best.step must be an integer"),
        ("best.wait", -1, "best.wait must be an integer"),
    ],
)
def test_a_crafted_training_state_names_its_field(tmp_path, field, value, match):
    """Was: '<' not supported between 'float' and 'str', 'string indices must be integers'."""
    from seqkit.models import LanguageModel
    from seqkit.vocab import Vocabulary

    model = LanguageModel(Vocabulary.build(["ab", "ba"], level="char"), hidden_size=3, seed=0)
    model.fit(["ab", "ba"], steps=2, batch_size=2, seed=0)
    path = tmp_path / "m.npz"
    model.save(path)
    meta = metadata(path)
    node, *rest = field.split(".")
    target = meta["extra"]["training"]
    for key in [node, *rest][:-1]:
        target = target[key]
    target[[node, *rest][-1]] = value
    rewrite(path, meta=meta)
    one_line_error(path, f"extra.training.{match}")


@pytest.mark.parametrize(("where", "key"), [("extra", "vocab")])
def test_a_missing_entry_is_named_as_one(tmp_path, where, key):
    """Was: "... does not describe a LanguageModel: 'vocab'", the bare name of a KeyError."""
    import seqkit
    from seqkit.models import LanguageModel
    from seqkit.vocab import Vocabulary

    path = tmp_path / "m.npz"
    LanguageModel(Vocabulary.build(["ab"], level="char"), hidden_size=3, seed=0).save(path)
    meta = metadata(path)
    del meta[where][key]
    rewrite(path, meta=meta)
    with pytest.raises(CheckpointError) as info:
        seqkit.load(path)
    message = str(info.value)
    assert message.startswith(str(path)) and f"no '{key}' entry" in message, message


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"members": {"state/order.npy": npy(np.full(8, 99, dtype=np.int64))}}, "state/order"),
        ({"members": {"state/order.npy": npy(np.arange(3, dtype=np.int64))}}, "state/order"),
        ({"members": {"state/order.npy": npy(-np.ones(8, dtype=np.int64))}}, "state/order"),
        ({"training": {"losses": [float("nan"), 1.0]}}, "losses must be finite"),
        ({"training": {"best": {"value": 1.0, "step": 99, "wait": 0}}}, "best.step"),
    ],
)
def test_a_crafted_epoch_order_or_history_is_refused(tmp_path, change, match):
    """Was: 'list index out of range', or accepted (negative indices wrap), or a false
    divergence from a NaN first loss."""
    import seqkit
    from seqkit.models import LanguageModel
    from seqkit.vocab import Vocabulary

    texts = ["ab", "ba", "abba", "baab", "a", "b", "aab", "bba"]
    model = LanguageModel(Vocabulary.build(texts, level="char"), hidden_size=3, seed=0)
    model.fit(texts, steps=2, batch_size=2, seed=0)
    path = tmp_path / "m.npz"
    model.save(path)
    meta = metadata(path)
    meta["extra"]["training"].update(change.get("training", {}))
    rewrite(path, meta=meta, members=change.get("members"))
    with pytest.raises(CheckpointError, match=match) as info:
        seqkit.load(path)
    assert str(info.value).startswith(str(path))
