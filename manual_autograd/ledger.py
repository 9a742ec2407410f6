"""The ledger: every tensor a forward pass keeps for its backward, attributed to the module that kept it.

The forward pass writes a ledger and the backward pass settles it; what is written decides how
much memory training takes. :func:`ledger` opens one around any forward pass, of this library's
layers or of native ``torch.nn`` ones alike, with no change to the model:

* ``torch.autograd.graph.saved_tensors_hooks`` sees every tensor an autograd node saves
  (``ctx.save_for_backward`` of a custom Function, or the saved variables of a built-in op);
* global module forward pre/post hooks keep a stack of the modules currently running, so each
  saved tensor is attributed to the innermost one, and tell whether it is that module's input,
  one of its parameters, its output or an intermediate value;
* storages are compared by address (while the saved tensors are alive), so a tensor two modules
  keep (a ReLU's output that the next Linear keeps as its input) is counted once in the unique
  total and its row names the other module.

Examples::

    >>> model = torch.nn.Sequential(manual_autograd.nn.Linear(784, 128), manual_autograd.nn.ReLU(),
    ...                             manual_autograd.nn.Linear(128, 10))
    >>> with manual_autograd.ledger(model) as led:
    ...     loss = model(torch.randn(64, 784)).square().mean()
    >>> print(led)               # a table, one row per saved tensor
    >>> led.unique_bytes         # bytes the backward will read, each storage once
    >>> led.to_dict()["records"]  # the same rows as plain data

:func:`record_saved` is the counter underneath, without the module attribution: the tensors
saved inside a block and the unique bytes of their storages (what ``benchmarks`` and the tests
count with)::

    >>> from manual_autograd.ledger import record_saved
    >>> with record_saved() as saved:
    ...     loss = model(x).square().mean()
    >>> saved.add_ctx_tensors(loss)      # tensors a custom Function keeps as ``ctx`` attributes
    >>> saved.unique_bytes(exclude=list(model.parameters()))
"""

from __future__ import annotations

import weakref
from dataclasses import asdict, dataclass, field
from typing import Dict, Iterable, List, Optional, Tuple

import torch
from torch import Tensor, nn
from torch.nn.modules import module as _module

__all__ = ["Ledger", "SavedRecord", "SavedTensor", "SavedTensors", "ctx_tensors", "ledger", "record_saved"]


@dataclass
class SavedRecord:
    """One tensor kept for backward.

    Attributes:
        module: qualified name of the innermost module running when it was saved (the root's
            class name for the root itself), or ``None`` outside every module.
        role: what the tensor is to that module: ``'input'`` (``'input1'``, ... for later
            positional tensors), a parameter name (``'weight'``), ``'output'`` or ``'intermediate'``.
        shape: the saved tensor's shape.
        dtype: its dtype, e.g. ``'float32'``.
        bytes: ``numel * element_size`` of the saved tensor itself.
        storage: index of its storage in this ledger; equal indices share memory.
        parameter: the parameter (``'fc1.weight'``) whose storage it is, if any.
        shares_with: other modules that saved a tensor on the same storage.
    """

    module: Optional[str]
    role: str
    shape: Tuple[int, ...]
    dtype: str
    bytes: int
    storage: int
    parameter: Optional[str] = None
    shares_with: List[str] = field(default_factory=list)


def _storage_key(t: Tensor):
    """(device, address) of ``t``'s storage, or ``None`` when it has none to share."""
    try:
        s = t.untyped_storage()
    except (RuntimeError, NotImplementedError):  # sparse, nested, some subclasses
        return None
    ptr = s.data_ptr()
    return (str(t.device), ptr) if ptr else None


def _storage_bytes(t: Tensor) -> int:
    try:
        return t.untyped_storage().nbytes()
    except (RuntimeError, NotImplementedError):
        return t.numel() * t.element_size()


@dataclass
class SavedTensor:
    """One tensor packed for backward, as :class:`SavedTensors` records it.

    Attributes:
        shape: its shape.
        dtype: its dtype.
        nbytes: ``numel * element_size``: the bytes of its own values.
        storage_nbytes: bytes of the storage it lives in (a small view of a big buffer keeps all of it).
        data_ptr: its ``data_ptr()``.
        storage: index of its storage in the recorder; equal indices share memory.
        tensor: a detached alias of it (same storage), or ``None`` for a recorder that keeps none.
    """

    shape: Tuple[int, ...]
    dtype: torch.dtype
    nbytes: int
    storage_nbytes: int
    data_ptr: int
    storage: int
    tensor: Optional[Tensor] = field(default=None, repr=False)


class SavedTensors(list):
    """The tensors saved for backward inside a ``with`` block (a list of :class:`SavedTensor`),
    and the bytes of their storages, each counted once.

    The one saved-tensor counter of the project: :class:`Ledger` adds module attribution on top
    of it, ``benchmarks`` and the tests count with it. Use it through :func:`record_saved`.

    Storages are told apart by address while they are alive: a storage freed during the block
    (its graph released) whose address is reused counts as a new one. Each counts at its full size.

    Args:
        keep_tensors: keep a detached alias of each saved tensor in :attr:`SavedTensor.tensor`
            (its storage then lives as long as the record).
    """

    def __init__(self, keep_tensors: bool = True):
        super().__init__()
        self.keep_tensors = keep_tensors
        self.storage_bytes: List[int] = []  # by storage index
        self._storages: Dict[tuple, Tuple[int, list]] = {}  # key -> (index, weak references)
        self._hooks = None

    def _alive(self, entry) -> bool:
        return any(ref() is not None for ref in entry[1])

    def storage_of(self, t: Tensor) -> int:
        """The index of ``t``'s storage, a new one if no live storage recorded here is ``t``'s."""
        key = _storage_key(t)
        entry = self._storages.get(key) if key is not None else None
        if entry is not None and not self._alive(entry):  # freed: the address now belongs to another
            entry = None
        if entry is None:
            entry = (len(self.storage_bytes), [])
            self.storage_bytes.append(_storage_bytes(t))
            if key is not None:
                self._storages[key] = entry
        if key is not None:
            # The storage's Python object lives as long as the storage; a saved alias, as long as
            # the graph that holds it: any of them alive means the address is still this storage's.
            if not entry[1]:
                entry[1].append(weakref.ref(t.untyped_storage()))
            entry[1].append(weakref.ref(t))
        return entry[0]

    def _add(self, t: Tensor):
        alias = t.detach()  # same storage, no grad_fn
        saved = SavedTensor(
            tuple(t.shape),
            t.dtype,
            t.numel() * t.element_size(),
            _storage_bytes(t),
            t.data_ptr(),
            self.storage_of(alias),
            alias if self.keep_tensors else None,
        )
        self.append(saved)
        return saved, alias

    def add(self, t: Tensor) -> SavedTensor:
        """Count ``t`` as saved (the pack hook calls this; call it for tensors kept outside the hooks)."""
        return self._add(t)[0]

    def add_ctx_tensors(self, root) -> None:
        """Count the tensors held as plain ``ctx`` attributes in ``root``'s graph (:func:`ctx_tensors`)."""
        for _, _, t in ctx_tensors(root):
            self.add(t)

    def _pack(self, t: Tensor) -> Tensor:
        # The graph keeps the detached alias: the tensor itself would make a reference cycle
        # through its own node when it is an output; autograd restores grad_fn on unpack.
        return self._add(t)[1]

    def __enter__(self) -> "SavedTensors":
        if self._hooks is not None:
            raise RuntimeError("record_saved(): this recorder is already active; open a new one")
        self._hooks = torch.autograd.graph.saved_tensors_hooks(self._pack, _unpack)
        self._hooks.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self._hooks.__exit__(*exc)
        self._hooks = None

    def unique_bytes(self, exclude: Iterable[Tensor] = (), only: Optional[Iterable[Tensor]] = None) -> int:
        """Bytes of the distinct storages recorded, each once.

        Args:
            exclude: tensors whose storages are not counted (e.g. parameters).
            only: if given, count only the storages of these tensors (e.g. the model inputs).
        """
        skip = self._indices(exclude)
        keep = None if only is None else self._indices(only)
        return sum(
            n for i, n in enumerate(self.storage_bytes) if i not in skip and (keep is None or i in keep)
        )

    def _indices(self, tensors: Iterable[Tensor]) -> set:
        out = set()
        for t in tensors:
            entry = self._storages.get(_storage_key(t))
            if entry is not None and self._alive(entry):
                out.add(entry[0])
        return out

    def __repr__(self) -> str:
        return f"SavedTensors({len(self)} saved tensors, unique {_fmt_bytes(self.unique_bytes())})"


def _unpack(t: Tensor) -> Tensor:
    return t


def record_saved(keep_tensors: bool = True) -> SavedTensors:
    """Record every tensor saved for backward inside the block (``saved_tensors_hooks``).

    Examples::

        >>> with record_saved() as saved:
        ...     out = torch.relu(x)
        >>> [(s.shape, s.dtype) for s in saved], saved.unique_bytes()
    """
    return SavedTensors(keep_tensors)


def ctx_tensors(root) -> List[Tuple[object, str, Tensor]]:
    """``(node, attribute, tensor)`` for every tensor held as a plain attribute of a backward
    node in the graph of ``root`` (a tensor, or a ``grad_fn`` node): a custom Function's ``ctx``
    attributes, with the values of lists, tuples and dicts.

    ``save_for_backward`` goes through the saved-tensor hooks; a tensor stored as ``ctx.foo``
    does not, so it is found here by walking the graph.
    """
    found, seen = [], set()
    stack = [root.grad_fn if isinstance(root, Tensor) else root]
    while stack:
        node = stack.pop()
        if node is None or id(node) in seen:
            continue
        seen.add(id(node))
        for name, value in getattr(node, "__dict__", {}).items():
            values = list(value.values()) if isinstance(value, dict) else value
            values = values if isinstance(values, (list, tuple)) else (values,)
            found.extend((node, name, v) for v in values if isinstance(v, Tensor))
        stack.extend(fn for fn, _ in node.next_functions)
    return found


def _fmt_bytes(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)  # unreachable


class Ledger:
    """Records the tensors saved for backward while it is active. Use through :func:`ledger`.

    Args:
        roots: modules whose ``named_modules()`` names label the rows; modules outside them that
            run in the context are labelled by class name (``CrossEntropyLoss``, ``ReLU#1``).
    """

    def __init__(self, *roots: nn.Module):
        for i, r in enumerate(roots):
            if not isinstance(r, nn.Module):
                raise TypeError(f"ledger(): argument {i} must be an nn.Module, not {type(r).__name__}")
        self.records: List[SavedRecord] = []
        self._key_of: list = []
        self._roots = roots
        self._names: Dict[int, str] = {}
        self._params: Dict[tuple, str] = {}  # storage key -> parameter name
        self._saved = SavedTensors(keep_tensors=False)  # the counter: storage indices and bytes
        self._stack: list = []  # frames: [name, module, {key: role}, [record indices]]
        self._handles: list = []
        self._hooks = None
        self._active = False

    # ---- naming -------------------------------------------------------------------------

    def _name(self, m: nn.Module) -> str:
        name = self._names.get(id(m))
        if name is None:  # a module outside the roots: class name, numbered if it repeats
            base = type(m).__name__
            taken = set(self._names.values())
            name, i = base, 1
            while name in taken:
                name, i = f"{base}#{i}", i + 1
            self._names[id(m)] = name
            for pname, p in m.named_parameters(recurse=False):
                self._add_param(f"{name}.{pname}", p)
        return name

    def _add_param(self, name: str, p: Tensor) -> None:
        key = _storage_key(p)
        if key is not None:
            self._params.setdefault(key, name)

    # ---- hooks --------------------------------------------------------------------------

    def _pre_hook(self, m, args):
        roles = {}
        for i, a in enumerate(args):
            if isinstance(a, Tensor):
                key = _storage_key(a)
                if key is not None:
                    roles.setdefault(key, "input" if i == 0 else f"input{i}")
        for pname, p in m.named_parameters(recurse=False):
            key = _storage_key(p)
            if key is not None:
                roles.setdefault(key, pname)
        self._stack.append([self._name(m), m, roles, []])

    def _post_hook(self, m, args, out):
        # Pop up to and including m's frame (a frame left by a module that raised goes too);
        # a module that started before the ledger opened has no frame.
        if not any(f[1] is m for f in self._stack):
            return
        while self._stack:
            name, mod, roles, idx = self._stack.pop()
            if mod is m:
                outs = out if isinstance(out, (tuple, list)) else (out,)
                keys = {_storage_key(o) for o in outs if isinstance(o, Tensor)}
                for i in idx:
                    r = self.records[i]
                    if r.role == "intermediate" and self._key_of[i] in keys:
                        r.role = "output"
                break

    def _pack(self, t: Tensor):
        key = _storage_key(t)
        frame = self._stack[-1] if self._stack else None
        role = "intermediate"
        if frame is not None and key is not None:
            role = frame[2].get(key, "intermediate")
        is_param = isinstance(t, nn.Parameter) or isinstance(t._base, nn.Parameter)
        saved, alias = self._saved._add(t)
        param = self._params.get(key) if key is not None else None
        if param is None and is_param:
            param = "parameter"
        self.records.append(
            SavedRecord(
                module=frame[0] if frame is not None else None,
                role=role,
                shape=tuple(t.shape),
                dtype=str(t.dtype).removeprefix("torch."),
                bytes=t.numel() * t.element_size(),
                storage=saved.storage,
                parameter=param,
            )
        )
        self._key_of.append(key)
        if frame is not None:
            frame[3].append(len(self.records) - 1)
        return alias  # as SavedTensors._pack: no reference cycle through an output's own node

    def __enter__(self) -> "Ledger":
        if self._active:
            raise RuntimeError("ledger(): this ledger is already active; open a new one")
        self.records, self._key_of, self._saved = [], [], SavedTensors(keep_tensors=False)
        self._names, self._params, self._stack = {}, {}, []
        for root in self._roots:
            for name, m in root.named_modules(remove_duplicate=False):
                self._names.setdefault(id(m), name or type(root).__name__)
            for pname, p in root.named_parameters(remove_duplicate=False):
                self._add_param(pname, p)
        self._handles = [
            _module.register_module_forward_pre_hook(self._pre_hook),
            _module.register_module_forward_hook(self._post_hook, always_call=True),
        ]
        self._hooks = torch.autograd.graph.saved_tensors_hooks(self._pack, _unpack)
        self._hooks.__enter__()
        self._active = True
        return self

    def __exit__(self, *exc) -> None:
        self._hooks.__exit__(*exc)
        for h in self._handles:
            h.remove()
        self._handles, self._hooks, self._stack, self._active = [], None, [], False
        self._finish()

    def _finish(self) -> None:
        by_storage: Dict[int, List[int]] = {}
        for i, r in enumerate(self.records):
            by_storage.setdefault(r.storage, []).append(i)
        for i, r in enumerate(self.records):
            others = [self.records[j].module for j in by_storage[r.storage] if j != i]
            r.shares_with = sorted({"-" if m is None else m for m in others})

    # ---- results ------------------------------------------------------------------------

    @property
    def total_bytes(self) -> int:
        """Sum of every saved tensor's bytes, counting shared storage once per save."""
        return sum(r.bytes for r in self.records)

    @property
    def unique_bytes(self) -> int:
        """Bytes of the distinct storages the saved tensors live in: what backward keeps alive.

        Storages count at their full size: a saved slice keeps its whole base tensor alive.
        """
        return self._saved.unique_bytes()

    @property
    def activation_bytes(self) -> int:
        """:attr:`unique_bytes` less the parameters' storages (which exist with or without a graph)."""
        params = {r.storage for r in self.records if r.parameter is not None}
        return sum(b for i, b in enumerate(self._saved.storage_bytes) if i not in params)

    def by_module(self) -> Dict[Optional[str], List[SavedRecord]]:
        """The records grouped by module name, in the order the modules first saved."""
        out: Dict[Optional[str], List[SavedRecord]] = {}
        for r in self.records:
            out.setdefault(r.module, []).append(r)
        return out

    def to_dict(self) -> dict:
        """Everything as plain data: ``records`` (a list of dicts) and the byte totals."""
        return {
            "records": [asdict(r) for r in self.records],
            "total_bytes": self.total_bytes,
            "unique_bytes": self.unique_bytes,
            "activation_bytes": self.activation_bytes,
        }

    def __len__(self) -> int:
        return len(self.records)

    def __str__(self) -> str:
        head = ("module", "saved", "shape", "dtype", "bytes", "shares storage with")
        rows = []
        for r in self.records:
            shares = list(r.shares_with)
            if r.parameter is not None and r.parameter != r.role:
                shares.insert(0, f"param {r.parameter}")
            elif r.parameter is not None:
                shares.insert(0, "(parameter)")
            rows.append(
                (
                    "-" if r.module is None else r.module,
                    r.role,
                    "(" + ", ".join(map(str, r.shape)) + ")",
                    r.dtype,
                    _fmt_bytes(r.bytes),
                    ", ".join(shares) or "-",
                )
            )
        widths = [max(len(h), *(len(row[i]) for row in rows)) if rows else len(h) for i, h in enumerate(head)]
        right = {4}  # bytes right-aligned

        def line(cells):
            return "  ".join(c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths))).rstrip()

        out = [line(head), line(["-" * w for w in widths])]
        out += [line(row) for row in rows]
        out.append(
            f"{len(self.records)} saved tensors, {_fmt_bytes(self.total_bytes)}; "
            f"{len(self._saved.storage_bytes)} distinct storages, {_fmt_bytes(self.unique_bytes)} "
            f"(activations {_fmt_bytes(self.activation_bytes)}, "
            f"parameters {_fmt_bytes(self.unique_bytes - self.activation_bytes)})"
        )
        return "\n".join(out)

    def __repr__(self) -> str:
        return f"Ledger({len(self.records)} saved tensors, unique {_fmt_bytes(self.unique_bytes)})"


def ledger(*roots: nn.Module) -> Ledger:
    """Open a ledger of the tensors saved for backward, to use as a context manager.

    Args:
        roots: modules whose qualified names label the rows (``'0'``, ``'fc1'``); any module run
            inside the context is recorded, those outside ``roots`` under their class name.

    Examples::

        >>> with manual_autograd.ledger(model, loss_fn) as led:
        ...     loss = loss_fn(model(x), y)
        >>> print(led)
    """
    return Ledger(*roots)
