"""Compiled functions as AOTInductor packages: exported, compiled once, kept on disk, loaded fast.

The compiled path's two scans (:mod:`seqkit_torch._scan`) are compiled ahead of time on a CPU:
``torch.export`` traces a scan into a graph whose T and B are symbols (every other size is
fixed), AOTInductor compiles the graph into a shared library of C++ kernels and
packs it into a ``.pt2`` file, and the process runs it through the package loader of torch's
C++ runtime. A package is kept in a store on disk (:func:`store`), so a new process loads it in
hundredths of a second with neither dynamo nor Inductor imported; ``torch.compile`` instead
traced the scans again in every process (3-5 s, plus 2.7 s to import them).

A package's name is a hash of everything the compiled code depends on that its inputs do not
carry: the function, the cell's class and fields, the sizes that are not T or B, which optional
inputs are None, the constants (zoneout's probabilities), the dtypes and device, torch's and
seqkit's versions, the machine, Inductor's settings from the environment
(``TORCHINDUCTOR_*``), and the path and hash of each file of this process's code of it
(the exported function's, this module's, which sets Inductor's options such as
:data:`C_SHIMS`, and the cell's classes'): Python code can change under an unchanged version
(an edited cell, an editable install), and two checkouts of one version may share the store.
Beside the package, a record holds the hashes of every Python file whose code the export ran
(those, and whatever dynamo traced); a package whose files changed is compiled again.
Code without a file (a cell defined in a notebook or at the prompt) cannot be watched: its
packages are kept for the process that compiled them, never stored.

A package is code: it is loaded only from this store, which only this user writes, as
Inductor's own cache is.
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import hashlib
import json
import os
import platform
import shutil
import sys
import sysconfig
import tempfile
import threading
import warnings
import weakref
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import torch
import torch.utils._pytree as pytree

from seqkit import __version__

__all__ = ["Flat", "Package", "compile_package", "load_or_compile", "signature", "store"]

#: The store's folder: ``$SEQKIT_CACHE_DIR``, else ``$XDG_CACHE_HOME/seqkit``, else
#: ``~/.cache/seqkit``; packages live in its ``compiled/`` folder.
CACHE_ENV = "SEQKIT_CACHE_DIR"

#: A role per argument of an exported function: "tb" when every tensor in it is (T, B, ...),
#: "b" when (B, ...), None when its every size is fixed.
Roles = Sequence[str | None]


def store() -> Path:
    """The folder of compiled packages."""
    root = os.environ.get(CACHE_ENV)
    if not root:
        xdg = os.environ.get("XDG_CACHE_HOME")
        root = os.path.join(xdg, "seqkit") if xdg else os.path.join(Path.home(), ".cache", "seqkit")
    return Path(root) / "compiled"


def _strided(leaf):
    # a compiled graph indexes its inputs with the strides it was exported with; oneDNN's
    # packed weights have no strides
    if isinstance(leaf, torch.Tensor):
        leaf = leaf.detach()
        return leaf if leaf.is_mkldnn else leaf.contiguous()
    return leaf


#: How many leading sizes of an argument of each role are symbols (T and B, B, none).
_SYMBOLIC = {"tb": 2, "b": 1}


def signature(args: tuple, roles: Roles) -> str:
    """What a compiled function depends on in ``args``: every structure (which inputs are None,
    a dict's keys), constant, dtype, device and size but T and B. For the store's key."""
    parts = []
    for arg, role in zip(args, roles, strict=True):
        leaves, spec = pytree.tree_flatten(arg)
        parts.append(str(spec))
        for leaf in leaves:
            if isinstance(leaf, torch.Tensor):
                fixed = tuple(leaf.shape[_SYMBOLIC.get(role, 0) :])
                parts.append(f"{leaf.dtype}/{leaf.device}/{leaf.layout}/{fixed}")
            else:
                parts.append(repr(leaf))
    return "\n".join(parts)


@functools.lru_cache(maxsize=256)
def _cuts(spec: pytree.TreeSpec, roles: tuple) -> tuple[int, ...]:
    """Per leaf of arguments of structure ``spec``: how many of its leading sizes are symbols."""
    children = spec.children() if hasattr(spec, "children") else spec.children_specs
    cuts: list[int] = []
    for child, role in zip(children, roles, strict=True):
        cuts += [_SYMBOLIC.get(role, 0)] * child.num_leaves
    return tuple(cuts)


class Flat:
    """A call's arguments flattened once: the leaves (tensors detached, strided as a package
    reads them), their structure, and ``key``, which is equal for two calls exactly when their
    :func:`signature` is: what a process keeps its loaded packages by, made in microseconds."""

    __slots__ = ("key", "leaves", "spec")

    def __init__(self, args: tuple, roles: Roles) -> None:
        leaves, self.spec = pytree.tree_flatten(args)
        self.leaves = [_strided(leaf) for leaf in leaves]
        self.key = (self.spec,) + tuple(
            (leaf.dtype, leaf.device, leaf.layout, leaf.shape[cut:])
            if isinstance(leaf, torch.Tensor)
            else leaf
            for leaf, cut in zip(self.leaves, _cuts(self.spec, tuple(roles)), strict=True)
        )

    @property
    def args(self) -> tuple:
        return pytree.tree_unflatten(self.leaves, self.spec)

    @property
    def shapes(self) -> tuple:
        """Every tensor's whole shape, T and B included."""
        return tuple(leaf.shape for leaf in self.leaves if isinstance(leaf, torch.Tensor))


def _dynamic_shapes(args: tuple, roles: Roles):
    T, B = torch.export.Dim("T", min=2), torch.export.Dim("B", min=2)
    dims = {"tb": {0: T, 1: B}, "b": {0: B}}

    def spec(arg, role):
        return pytree.tree_map(
            lambda leaf: dims.get(role) if isinstance(leaf, torch.Tensor) else None, arg
        )

    return (tuple(spec(arg, role) for arg, role in zip(args, roles, strict=True)),)


class _Function(torch.nn.Module):
    def __init__(self, fn: Callable) -> None:
        super().__init__()
        self.fn = fn

    def forward(self, *args):
        return self.fn(*args)


class Package:
    """A compiled package loaded by torch's C++ runtime, called with the :class:`Flat` arguments
    of the function it was made of; returns that function's result."""

    def __init__(self, path: Path, device: torch.device) -> None:
        index = -1 if device.index is None else device.index
        self.path = path
        self._loader = torch._C._aoti.AOTIModelPackageLoader(str(path), "model", False, 1, index)
        self._outputs = pytree.treespec_loads(self._loader.get_call_spec()[1])
        _LOADED.add(self)

    def __repr__(self) -> str:
        return f"Package({str(self.path)!r})"

    def __call__(self, flat: Flat):
        tensors = [leaf for leaf in flat.leaves if isinstance(leaf, torch.Tensor)]
        return pytree.tree_unflatten(self._loader.boxed_run(tensors), self._outputs)


#: Every package loaded in this process. A loader unpacks its package into a temporary folder
#: (``/tmp/aotinductor_*``, 2 MB) and removes it when freed; packages held by module globals
#: are not freed before the interpreter exits, so they are released at exit.
_LOADED: weakref.WeakSet[Package] = weakref.WeakSet()


@atexit.register
def _release() -> None:
    for package in list(_LOADED):
        package._loader = None


@functools.cache
def _machine() -> str:
    """What a package compiled here (for a CPU: on a GPU the loops are captured,
    not compiled) needs of a machine: the architecture and instruction sets (its C++ kernels use
    the widest one found)."""
    flags = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("flags", "Features")):
                flags = line
                break
    return f"{platform.machine()} {platform.system()} {flags}"


#: Top-level packages whose code an export runs but a compiled package does not depend on
#: beyond their versions (torch's is in the key; the others compute shapes and symbols).
_NOT_RECORDED = frozenset(
    {"torch", "functorch", "sympy", "mpmath", "numpy", "typing_extensions", "optree", "filelock"}
)


def _library_folders() -> tuple[str, ...]:
    paths = sysconfig.get_paths()
    return tuple(os.path.normcase(paths[k]) + os.sep for k in ("stdlib", "platstdlib"))


#: Names of code that is not in a file and that a package need not watch: Python's frozen
#: modules, torch.fx's generated code, code made by ``exec`` (dataclasses' methods).
_GENERATED = ("<frozen ", "<eval_with_key>", "<string>")


def _recorded(files: set[str]) -> dict[str, str] | None:
    """The hash of every Python file in ``files`` a package depends on; None when some of its
    code has no file (a cell defined in a notebook or at the prompt), which no hash can watch."""
    skip = _library_folders()
    roots = sorted((p for p in sys.path if p), key=len, reverse=True)
    kept = {}
    for name in files:
        path = os.path.normcase(os.path.abspath(name))
        if not os.path.isfile(path):
            if name.startswith(_GENERATED):
                continue
            return None
        if path.startswith(skip):
            continue
        root = next((r for r in roots if path.startswith(os.path.normcase(r) + os.sep)), None)
        if root is not None:
            top = Path(path[len(os.path.normcase(root)) + 1 :]).parts[0].removesuffix(".py")
            if top in _NOT_RECORDED:
                continue
        kept[path] = _hash_file(path)
    return kept


def _hash_file(path: str) -> str:
    try:
        return hashlib.sha256(Path(path).read_bytes()).hexdigest()
    except OSError:
        return ""


@contextlib.contextmanager
def _recording_files(files: set[str]):
    """Add to ``files`` the file of every Python function dynamo traces meanwhile: it records
    what it inlines, as torch's own caches of compiled code do, in each trace's
    ``TracingContext.traced_code``. (The scans' steps are traced by dynamo; the code around
    them runs in Python and is the exported function's own, whose file the caller adds.)"""
    from torch._guards import TracingContext

    init, contexts = TracingContext.__init__, []

    def recording_init(self, *args, **kwargs):
        init(self, *args, **kwargs)
        contexts.append(self)

    TracingContext.__init__ = recording_init
    try:
        yield files
    finally:
        TracingContext.__init__ = init
        for context in contexts:
            files.update(code.co_filename for code in getattr(context, "traced_code", ()))


#: The C function of each custom op that compiled code may call directly (op: its declarations),
#: registered by the op's module; any other custom op is called through AOTInductor's proxy
#: executor, which boxes its arguments and dispatches to its (maybe Python) kernel on every call.
C_SHIMS: dict[torch._ops.OpOverload, list[str]] = {}


def _inductor_configs() -> dict:
    """Inductor's options for a package: :data:`C_SHIMS`, and tanh as ``2 / (1 + exp(-2x)) - 1``.

    Inductor's vectorized tanh is Sleef's 1-ULP function, which costs about five of its exps: an
    LSTM's forward step is two tanhs and three sigmoids per element. The decomposition, an option
    of Inductor's C++ backend, costs one exp and one division; its error is absolute, under
    2e-7 in float32 (4e-16 in float64), so that near 0 it is no longer relative (a tanh of
    1e-9 is 0 in float32). At ``bench_torch.py --small`` it makes the forward package 0.5-0.9 ms
    faster (of 8-10 ms; docs/reference/performance.rst). Options a torch lacks are left out.
    """
    import torch._inductor.config as inductor

    configs: dict = {"aot_inductor.custom_ops_to_c_shims": dict(C_SHIMS)}
    if hasattr(inductor.cpp, "use_decompose_tanh"):
        configs["cpp.use_decompose_tanh"] = True
    return configs


def compile_package(
    fn: Callable, args: tuple, roles: Roles, path: Path, files: Iterable[str] = ()
) -> dict[str, str] | None:
    """Export ``fn`` at ``args``, compile it into the package ``path``; the hashes of ``files``
    and of every other file whose code ran in the export (None: some code has no file)."""
    files = {*files, fn.__code__.co_filename, __file__}  # __file__: how it exports and compiles
    with warnings.catch_warnings():
        # export and Inductor warn about their own internals (TorchScript's deprecation, ...)
        warnings.simplefilter("ignore")
        with _recording_files(files):
            exported = torch.export.export(
                _Function(fn), args, dynamic_shapes=_dynamic_shapes(args, roles), strict=False
            )
        _wait_for_probe()
        torch._inductor.aoti_compile_and_package(
            exported, package_path=str(path), inductor_configs=_inductor_configs()
        )
    return _recorded(files)


def load_or_compile(
    fn: Callable,
    args: tuple,
    roles: Roles,
    key: dict,
    device: torch.device,
    files: Iterable[str] = (),
) -> tuple[Package, bool]:
    """The package of ``fn`` for ``key`` and the signature of ``args``: from the store when the
    files its code came from are unchanged (True), else compiled now and stored (False).
    ``files``: sources to watch besides those the export is seen to run."""
    args = pytree.tree_map(_strided, args)
    # this process's own code of the package, by path and hash, is in its name: a package that
    # other code compiled (another checkout or installation of the same version, an edited
    # file) is never taken for it; the record then covers what else the export ran
    own = _recorded({*files, fn.__code__.co_filename, __file__})
    key = {**key, "signature": signature(args, roles), "torch": torch.__version__}
    key |= {"seqkit": __version__, "machine": _machine(), "sources": own}
    key["inductor_environment"] = _inductor_environment()
    text = json.dumps(key, sort_keys=True)
    name = hashlib.sha256(text.encode()).hexdigest()[:40]
    folder = store()
    path, record = folder / f"{name}.pt2", folder / f"{name}.json"
    usable = own is not None and _usable(folder)
    if usable:
        with contextlib.suppress(Exception):  # missing, damaged or stale: compiled again
            saved = json.loads(record.read_text())
            sources = saved["sources"]
            if saved["key"] == text and all(_hash_file(f) == h for f, h in sources.items()):
                return Package(path, device), True
    _start_probe(device)
    built = _private() / path.name
    sources = compile_package(fn, args, roles, built, files)
    if sources is None or not usable:  # code without a file, or no store: this process's own
        return Package(built, device), False
    # copied under temporary names, then renamed: a process that reads the store meanwhile
    # (another data-parallel worker) sees a whole package or none
    with tempfile.TemporaryDirectory(dir=folder) as tmp:
        shutil.copyfile(built, Path(tmp) / "package.pt2")
        os.replace(Path(tmp) / "package.pt2", path)
        written = Path(tmp) / "record.json"
        written.write_text(json.dumps({"key": text, "sources": sources}, indent=1))
        os.replace(written, record)
    built.unlink()
    return Package(path, device), False


def _inductor_environment() -> dict[str, str]:
    """The ``TORCHINDUCTOR_*`` variables that can change Inductor's code: those set when torch is
    imported become its options. Folders (``TORCHINDUCTOR_CACHE_DIR``) are left out: where
    Inductor keeps its own files changes no code."""
    return {
        name: value
        for name, value in os.environ.items()
        if name.startswith("TORCHINDUCTOR_") and not name.endswith("_DIR")
    }


def _usable(folder: Path) -> bool:
    """Whether ``folder`` can hold packages: made if missing (readable by its user only), and
    writable by no one but its owner, this user, since a package is code."""
    try:
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        status = folder.stat()
    except OSError:
        return False
    if hasattr(os, "getuid"):
        return status.st_uid == os.getuid() and not status.st_mode & 0o022
    return True


#: The folder of this process's own packages, made on first use and removed at exit.
_PRIVATE: list[Path] = []


def _private() -> Path:
    if not _PRIVATE:
        _PRIVATE.append(Path(tempfile.mkdtemp(prefix="seqkit-packages-")))
        atexit.register(shutil.rmtree, _PRIVATE[0], ignore_errors=True)
    return _PRIVATE[0]


# --- Inductor's probe of the CPU ----------------------------------------------------------------

#: The probe's thread once started (once per process).
_PROBE: list[threading.Thread] = []


def _start_probe(device: torch.device) -> None:
    """Start Inductor's probe of the CPU's vector instruction sets in a thread.

    Before its first C++ kernel in a process Inductor loads a test library per instruction set,
    each in a child process: 1.5 s, spent waiting. Started before the export, the probe is over
    by the time Inductor needs it. Its modules are imported here first, so that the thread
    imports nothing (two threads importing one module can deadlock on a cycle). Whatever fails
    in it, the compile meets and reports.
    """
    if _PROBE or device.type != "cpu":
        return
    with warnings.catch_warnings():
        # importing Inductor imports torch.utils.mkldnn, which uses the deprecated TorchScript
        warnings.simplefilter("ignore", DeprecationWarning)
        import torch._inductor.codecache  # noqa: F401
        import torch._inductor.cpp_builder  # noqa: F401
        import torch.utils.cpp_extension  # noqa: F401
        from torch._inductor.cpu_vec_isa import pick_vec_isa

    def probe():
        with contextlib.suppress(Exception):
            pick_vec_isa()

    thread = threading.Thread(target=probe, name="seqkit-inductor-cpu-probe", daemon=True)
    thread.start()
    _PROBE.append(thread)


def _wait_for_probe() -> None:
    # else Inductor would probe a second time, in parallel
    if _PROBE:
        _PROBE[0].join()
