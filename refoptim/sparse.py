r"""Sparse gradients: ``SparseGrad``, what a torch sparse COO gradient carries.

``nn.Embedding(sparse=True)`` and friends give torch parameters a gradient in the sparse
COO layout: ``indices`` (integer, shape ``(sparse_dim, nnz)``), ``values`` (shape
``(nnz, *dense_dims)``) and the dense ``shape``. :class:`SparseGrad` is that triple over
any Array API namespace, to be assigned to ``Parameter.grad``; ``SGD``, ``Adagrad`` and
``SparseAdam`` step with it (the other optimizers refuse it with torch's message).

These operations decide how a sparse step rounds, and all follow torch 2.13's CPU kernels
bit for bit:

* :meth:`SparseGrad.coalesce` sums the values of duplicate indices. torch sorts the
  linear indices with its CPU ``sort`` (libstdc++'s ``std::sort``, an introsort that is
  *not* stable beyond 16 entries), then adds the duplicates one after another in that
  order. Addition is commutative, so the order only matters for an index that occurs
  three times or more; then refoptim replays torch's sort on the host
  (:func:`torch_cpu_sort_permutation`) to get torch's order, else it uses the stable
  ``xp.argsort``. The sum itself is loop-free per *rank*: the k-th duplicate of every
  index is added in one vectorised operation, so the Python loop runs as many times as
  the largest multiplicity, not once per entry.
* :func:`add_sparse_` is torch's ``dense.add_(sparse, alpha=a)``: every stored entry, in
  storage order and *without* coalescing, is added with a fused multiply-add
  ``dense[i] = fma(a, v, dense[i])``; duplicates are applied one after another.
* :meth:`SparseGrad.add` is torch's ``sparse.add(sparse, alpha=a)`` (SGD's sparse
  momentum buffer): a merge walk over both operands' entries in storage order, not
  coalesced, equal heads combined with ``fma(a, o, s)``; :meth:`SparseGrad.mul_` scales
  the values and, as torch's in-place product does, clears the coalesced flag.

Scatter into a dense array (torch's ``index_add`` of unique rows) is not part of the
Array API: :func:`scatter_rows` uses integer-array assignment where the array type has it
(NumPy, CuPy), a boolean-mask assignment built with ``xp.searchsorted`` where it has that
(array-api-strict), and ``xp.where`` over the whole array for immutable arrays (JAX);
the three agree bit for bit (they only move values).
"""

from __future__ import annotations

import math
from typing import Any

from ._backend import array_namespace, device_of, is_array, namespace_name, typename
from ._primitives import add, mul_

__all__ = ["SparseGrad", "add_sparse_", "gather_rows", "scatter_rows", "torch_cpu_sort_permutation"]


class SparseGrad:
    r"""A sparse COO gradient (torch's ``torch.sparse_coo_tensor``), to assign to
    ``Parameter.grad``.

    Args:
        indices: integer array of shape ``(sparse_dim, nnz)``: column ``k`` is the index of
            the ``k``-th stored value among the first ``sparse_dim`` dimensions.
        values: array of shape ``(nnz, *shape[sparse_dim:])`` (the gradient's dtype).
        shape: the dense shape (the parameter's shape).
        is_coalesced (bool, optional): promise that the indices are sorted and unique,
            as torch's ``is_coalesced=True`` (default: known only for ``nnz <= 1``).

    ``indices`` and ``values`` must be arrays of one namespace and one device; indices
    must lie within ``shape`` (checked here; torch skips that check by default).
    Duplicate indices are allowed and mean the sum of their values.

    Example:
        >>> import numpy as np
        >>> from refoptim import SparseGrad
        >>> g = SparseGrad(np.array([[2, 0, 2]]), np.array([1.0, 2.0, 3.0]), (4,))
        >>> g
        SparseGrad(indices=[[2, 0, 2]], values=[1.0, 2.0, 3.0], shape=(4,), nnz=3, dtype=float64)
        >>> c = g.coalesce()
        >>> (c.is_coalesced(), c.to_dense().tolist())
        (True, [2.0, 0.0, 4.0, 0.0])
    """

    __slots__ = ("_coalesced", "indices", "shape", "values")

    def __init__(self, indices: Any, values: Any, shape: tuple[int, ...] | Any, *, is_coalesced: bool | None = None) -> None:
        if not is_array(indices) or not is_array(values):
            bad = indices if not is_array(indices) else values
            raise TypeError(f"SparseGrad indices and values must be arrays, but got {typename(bad)}")
        xp = array_namespace(values)
        if array_namespace(indices) is not xp:
            raise TypeError(
                f"SparseGrad indices are an array of {namespace_name(array_namespace(indices))} but its "
                f"values are an array of {namespace_name(xp)}"
            )
        if device_of(indices) != device_of(values):
            raise RuntimeError(
                f"SparseGrad indices are on device {device_of(indices)} but its values are on device "
                f"{device_of(values)}"
            )
        if not xp.isdtype(indices.dtype, "integral"):
            raise TypeError(f"SparseGrad indices must have an integer dtype, but got {indices.dtype}")
        if indices.ndim != 2:
            raise ValueError(f"SparseGrad indices must have shape (sparse_dim, nnz), but got shape {tuple(indices.shape)}")
        if values.ndim < 1:
            raise ValueError("SparseGrad values must have shape (nnz, *dense_dims), but got a 0-d array")
        shape = tuple(int(s) for s in shape)
        sparse_dim, nnz = int(indices.shape[0]), int(indices.shape[1])
        if sparse_dim < 1:
            raise ValueError("SparseGrad needs at least one sparse dimension (indices of shape (0, nnz))")
        if int(values.shape[0]) != nnz:
            raise ValueError(
                f"SparseGrad indices and values must have the same number of entries (nnz), but got "
                f"{nnz} indices and {int(values.shape[0])} values"
            )
        if len(shape) != sparse_dim + values.ndim - 1 or tuple(values.shape[1:]) != shape[sparse_dim:]:
            raise ValueError(
                f"SparseGrad shape {shape} does not fit indices of shape {tuple(indices.shape)} and values "
                f"of shape {tuple(values.shape)}: expected len(shape) == sparse_dim + values.ndim - 1 and "
                "values.shape[1:] == shape[sparse_dim:]"
            )
        if nnz:
            bounds = xp.asarray(shape[:sparse_dim], dtype=indices.dtype, device=device_of(indices))
            if bool(xp.any(indices < 0)) or bool(xp.any(indices >= bounds[:, None])):
                raise IndexError(f"SparseGrad indices out of bounds for shape {shape[:sparse_dim]} (sparse dimensions)")
        self.indices = indices
        self.values = values
        self.shape = shape
        self._coalesced = bool(is_coalesced) if is_coalesced is not None else nnz <= 1

    # ------------------------------------------------------------------ torch's accessors
    @property
    def sparse_dim(self) -> int:
        """Number of sparse (indexed) leading dimensions (torch's ``sparse_dim()``)."""
        return int(self.indices.shape[0])

    @property
    def dense_dim(self) -> int:
        """Number of dense trailing dimensions carried by each value (torch's ``dense_dim()``)."""
        return self.values.ndim - 1

    @property
    def nnz(self) -> int:
        """Number of stored entries, duplicates included."""
        return int(self.indices.shape[1])

    def _nnz(self) -> int:
        """torch's ``_nnz()``: the number of stored entries."""
        return self.nnz

    def _indices(self) -> Any:
        """torch's ``_indices()``."""
        return self.indices

    def _values(self) -> Any:
        """torch's ``_values()``."""
        return self.values

    def size(self) -> tuple[int, ...]:
        """The dense shape (torch's ``size()``)."""
        return self.shape

    @property
    def ndim(self) -> int:
        """The number of dimensions of the dense shape."""
        return len(self.shape)

    @property
    def dtype(self) -> Any:
        """The values' dtype."""
        return self.values.dtype

    @property
    def device(self) -> Any:
        """The values' device."""
        return device_of(self.values)

    @property
    def is_sparse(self) -> bool:
        """Always ``True`` (torch's ``is_sparse``)."""
        return True

    def is_coalesced(self) -> bool:
        """True when the indices are known to be sorted and unique (torch's flag: set by
        :meth:`coalesce`, by ``is_coalesced=True``, and for ``nnz <= 1``)."""
        return self._coalesced

    def __neg__(self) -> SparseGrad:
        """torch's ``-grad``: the values negated, indices and coalesced flag kept."""
        return SparseGrad(self.indices, -self.values, self.shape, is_coalesced=self._coalesced)

    def __repr__(self) -> str:
        def show(a: Any) -> str:
            try:
                import numpy as np

                return str(np.asarray(a).tolist())
            except (TypeError, ValueError, RuntimeError):  # a namespace NumPy cannot read
                return f"<{tuple(a.shape)}>"

        return (
            f"SparseGrad(indices={show(self.indices)}, values={show(self.values)}, shape={self.shape}, "
            f"nnz={self.nnz}, dtype={self.dtype})"
        )

    # ------------------------------------------------------------------ torch's arithmetic
    def clone(self) -> SparseGrad:
        """torch's ``clone()``: indices and values copied, the coalesced flag kept."""
        xp = array_namespace(self.values)
        return SparseGrad(
            xp.asarray(self.indices, copy=True), xp.asarray(self.values, copy=True), self.shape,
            is_coalesced=self._coalesced,
        )

    def mul(self, value: Any) -> SparseGrad:
        """torch's out-of-place ``sparse.mul(scalar)``: the values times ``value`` (one
        plain rounding at the values' dtype), indices and coalesced flag kept."""
        return SparseGrad(self.indices, self.values * value, self.shape, is_coalesced=self._coalesced)

    def mul_(self, value: Any) -> SparseGrad:
        """torch's in-place ``sparse.mul_(scalar)``; returns ``self``.

        The values are multiplied in place (where the array type allows), indices kept.
        torch 2.13 quirk reproduced: the in-place product clears the coalesced flag of a
        tensor with two entries or more (``is_coalesced()`` is then ``nnz <= 1``, whatever
        it was before), while the out-of-place :meth:`mul` keeps it.
        """
        self.values = mul_(self.values, value)
        self._coalesced = self.nnz <= 1
        return self

    def add(self, other: SparseGrad, alpha: Any = 1) -> SparseGrad:
        r"""torch 2.13's CPU ``sparse.add(other_sparse, alpha=alpha)``: a new sparse tensor.

        Neither operand is coalesced first. torch walks both in storage order with two
        cursors, as the merge step of a merge sort: the smaller index (compared
        lexicographically) is emitted alone, equal indices are emitted once with their
        values combined. So the result keeps every entry of both (``nnz`` up to
        ``self.nnz + other.nnz``, never capped: repeated additions grow it without bound)
        and is sorted only where both operands were. Its values: ``0 + s`` for an entry
        of ``self`` alone (a ``-0.0`` becomes ``+0.0``), ``fma(alpha, o, 0)`` for one of
        ``other`` alone, ``fma(alpha, o, s)`` for a matched pair (BLAS ``axpy``: fused for
        float32/float64, a plain multiply then add for complex). The result is flagged
        coalesced only when both operands are.

        Special cases, as torch: ``other`` empty gives a copy of ``self`` (its flag);
        ``self`` empty gives ``other * alpha`` (a plain product, ``other``'s flag).

        The cursor walk runs on the host over the linear indices (one device-to-host
        copy; O(nnz) interpreted steps); the values are combined with array operations.
        """
        if not isinstance(other, SparseGrad):
            raise RuntimeError("add(sparse, dense) is not supported. Use add(dense, sparse) instead.")  # noqa: TRY004
        if other.shape != self.shape:
            raise RuntimeError(
                f"add: expected sizes of 'self' and 'other' to match, but {list(self.shape)} != {list(other.shape)}"
            )
        if other.sparse_dim != self.sparse_dim:
            raise RuntimeError(
                f"add: expected 'self' and 'other' to have same density, but 'self' has {self.sparse_dim} sparse "
                f"dimensions while 'other' has {other.sparse_dim} sparse dimensions"
            )
        if other.nnz == 0:
            return self.clone()
        if self.nnz == 0:
            xp = array_namespace(other.values)
            return SparseGrad(
                xp.asarray(other.indices, copy=True), other.values * alpha, self.shape, is_coalesced=other._coalesced
            )
        xp = array_namespace(self.values)
        device = self.device
        ra, rb, n_out, source = _merge_walk(_host_ints(self.linear_indices()), _host_ints(other.linear_indices()))
        ra_x = xp.asarray(ra, dtype=xp.int64, device=device)
        rb_x = xp.asarray(rb, dtype=xp.int64, device=device)
        both = xp.concat([self.indices, xp.astype(other.indices, self.indices.dtype)], axis=1)
        indices = xp.take(both, xp.asarray(source, dtype=xp.int64, device=device), axis=1)
        values = xp.zeros((n_out,) + self.shape[self.sparse_dim :], dtype=self.dtype, device=device)
        values = scatter_rows(values, ra_x, xp.take(values, ra_x, axis=0) + self.values)  # axpy(1, s): 0 + s
        values = scatter_rows(values, rb_x, add(xp.take(values, rb_x, axis=0), other.values, alpha=alpha))
        return SparseGrad(indices, values, self.shape, is_coalesced=self._coalesced and other._coalesced)

    def add_(self, other: SparseGrad, alpha: Any = 1) -> SparseGrad:
        """torch's in-place ``sparse.add_(other_sparse, alpha=alpha)``: :meth:`add`, stored
        into ``self``; returns ``self``."""
        out = self.add(other, alpha=alpha)
        self.indices, self.values, self._coalesced = out.indices, out.values, out._coalesced
        return self

    # ------------------------------------------------------------------ conversions
    def linear_indices(self) -> Any:
        """Each entry's row in the array viewed as ``(prod(shape[:sparse_dim]), *dense)``:
        torch's ``flatten_indices`` (int64)."""
        xp = array_namespace(self.values)
        idx = xp.astype(self.indices, xp.int64)
        sizes = self.shape[: self.sparse_dim]
        lin = idx[0, ...]
        for d in range(1, self.sparse_dim):
            lin = lin * sizes[d] + idx[d, ...]
        return lin

    def to_dense(self) -> Any:
        """The dense array (torch's ``to_dense()``): zeros, plus every entry added in torch's
        coalesced order (duplicates summed as :meth:`coalesce` sums them)."""
        xp = array_namespace(self.values)
        c = self.coalesce()
        rows = math.prod(self.shape[: self.sparse_dim])
        flat = xp.zeros((rows,) + self.shape[self.sparse_dim :], dtype=self.dtype, device=self.device)
        flat = scatter_rows(flat, c.linear_indices(), c.values)
        return xp.reshape(flat, self.shape)

    def zero_(self) -> SparseGrad:
        """torch's ``grad.zero_()`` on a sparse tensor: no entries left (nnz = 0)."""
        xp = array_namespace(self.values)
        return SparseGrad(
            xp.zeros((self.sparse_dim, 0), dtype=self.indices.dtype, device=self.device),
            xp.zeros((0,) + self.shape[self.sparse_dim :], dtype=self.dtype, device=self.device),
            self.shape,
            is_coalesced=True,
        )

    def coalesce(self) -> SparseGrad:
        """Sorted, unique indices with the values of duplicates summed, as torch's CPU
        ``coalesce()``: the same indices and the same bits.

        Returns ``self`` when already coalesced (as torch does). Duplicates are summed one
        after another, in the order torch's CPU ``sort`` leaves them (see the module
        docstring); the k-th duplicates of all indices are added in one operation.
        """
        if self._coalesced:
            return self
        xp = array_namespace(self.values)
        nnz = self.nnz
        lin = self.linear_indices()
        perm = xp.argsort(lin, stable=True)
        lin_s = xp.take(lin, perm)
        new = xp.concat([xp.ones((1,), dtype=xp.bool, device=self.device), lin_s[1:] != lin_s[:-1]])
        starts = xp.nonzero(new)[0]
        n_unique = int(starts.shape[0])
        sizes = xp.concat([starts[1:], xp.asarray([nnz], dtype=starts.dtype, device=self.device)]) - starts
        max_mult = int(xp.max(sizes))
        if max_mult >= 3 and nnz > 16:
            # Beyond 16 entries torch's sort is an unstable introsort; its order of the
            # duplicates decides how a sum of three or more rounds: replay it.
            perm = xp.asarray(torch_cpu_sort_permutation(_host_ints(lin)), dtype=xp.int64, device=self.device)
        first = xp.take(perm, starts)
        indices = xp.take(self.indices, first, axis=1)
        values = _sum_runs(xp, xp.take(self.values, perm, axis=0), new, starts, sizes, n_unique, max_mult)
        return SparseGrad(indices, values, self.shape, is_coalesced=True)


def _merge_walk(a: list[int], b: list[int]) -> tuple[list[int], list[int], int, list[int]]:
    """torch's two-cursor walk over the (linear) indices ``a`` and ``b`` of a sparse-sparse
    addition: where each entry of ``a`` and of ``b`` lands in the result (``ra``, ``rb``),
    the result's length, and for each result entry the column of ``concat(a, b)`` whose
    index it takes."""
    na, nb = len(a), len(b)
    ra, rb = [0] * na, [0] * nb
    source = []
    i = j = 0
    while i < na and j < nb:
        x, y = a[i], b[j]
        k = len(source)
        if x < y:
            ra[i] = k
            source.append(i)
            i += 1
        elif x > y:
            rb[j] = k
            source.append(na + j)
            j += 1
        else:
            ra[i] = rb[j] = k
            source.append(i)
            i += 1
            j += 1
    k = len(source)
    ra[i:] = range(k, k + na - i)
    source.extend(range(i, na))
    k = len(source)
    rb[j:] = range(k, k + nb - j)
    source.extend(range(na + j, na + nb))
    return ra, rb, len(source), source


def _sum_runs(xp: Any, vals: Any, new: Any, starts: Any, sizes: Any, n_unique: int, max_mult: int) -> Any:
    """Sum each run of ``vals`` (runs start where ``new`` is true), left to right:
    ``((v0 + v1) + v2) + ...``, vectorised over runs one rank at a time.

    Runs are reordered by decreasing length (stably), so the runs that have a k-th
    element form a prefix; rank k is then one slice added to that prefix.
    """
    if max_mult <= 1:
        return vals
    nnz = int(vals.shape[0])
    device = device_of(vals)
    group = xp.cumulative_sum(xp.astype(new, xp.int64)) - 1
    rank = xp.arange(nnz, dtype=xp.int64, device=device) - xp.take(xp.astype(starts, xp.int64), group)
    order_g = xp.argsort(-sizes, stable=True)  # runs by decreasing length
    where_g = xp.argsort(order_g)  # position of each run in that order
    key = rank * n_unique + xp.take(where_g, group)
    vals = xp.take(vals, xp.argsort(key), axis=0)
    # counts[k] = number of runs longer than k = entries of rank k
    asc = xp.sort(sizes)
    ks = xp.arange(max_mult, dtype=asc.dtype, device=device)
    counts = _host_ints(n_unique - xp.searchsorted(asc, ks, side="right"))
    acc = vals[:n_unique, ...]
    offset = n_unique
    for c in counts[1:]:
        block = vals[offset : offset + c, ...]
        acc = xp.concat([acc[:c, ...] + block, acc[c:, ...]], axis=0)
        offset += c
    return xp.take(acc, where_g, axis=0)


def _host_ints(x: Any) -> list[int]:
    """A 1-d integer array as a Python list (one device-to-host copy)."""
    import numpy as np

    try:
        return np.asarray(x).tolist()
    except TypeError:  # CuPy refuses implicit host copies
        return x.get().tolist()
    except (ValueError, RuntimeError, AttributeError):
        return [int(v) for v in x]


# --------------------------------------------------------------------------- scatter, gather
def gather_rows(dense: Any, rows: Any) -> Any:
    """``dense[rows]`` along axis 0 (torch's ``sparse_mask`` values for unique rows)."""
    return array_namespace(dense).take(dense, rows, axis=0)


def scatter_rows(dense: Any, rows: Any, new: Any) -> Any:
    """``dense[rows] = new`` for *unique* ``rows`` along axis 0; returns the result (``dense``
    itself, updated in place, where the array type allows; a new array otherwise).

    Integer-array assignment where the array type has it; else a boolean mask of the rows
    (built with ``xp.searchsorted``) and a mask assignment; else ``xp.where``.
    """
    xp = array_namespace(dense)
    if int(rows.shape[0]) == 0:
        return dense
    try:
        dense[rows, ...] = new
        return dense
    except (IndexError, TypeError, ValueError, NotImplementedError, AttributeError):
        pass
    order = xp.argsort(rows)
    rows_s = xp.take(rows, order)
    new_s = xp.take(new, order, axis=0)
    n = int(dense.shape[0])
    every = xp.arange(n, dtype=rows_s.dtype, device=device_of(dense))
    j = xp.searchsorted(rows_s, every)
    j = xp.minimum(j, xp.asarray(int(rows_s.shape[0]) - 1, dtype=j.dtype, device=device_of(dense)))
    hit = xp.take(rows_s, j) == every
    try:
        dense[hit] = new_s
        return dense
    except (IndexError, TypeError, ValueError, NotImplementedError, AttributeError):
        pass
    expanded = xp.take(new_s, j, axis=0)
    mask = xp.reshape(hit, (n,) + (1,) * (dense.ndim - 1))
    return xp.where(mask, expanded, dense)


def add_sparse_(dense: Any, grad: SparseGrad, alpha: Any = 1) -> Any:
    """torch's CPU ``dense.add_(sparse, alpha=alpha)``; returns the result (updated in place
    where writeable).

    Every stored entry is applied in storage order, *not* coalesced first:
    ``dense[i] = fma(alpha, v, dense[i])`` (one rounding, as torch's kernel; a plain add for
    ``alpha == 1``). Duplicate indices are applied one after another, so the result can
    differ from adding the coalesced gradient.
    """
    xp = array_namespace(dense)
    nnz = grad.nnz
    if nnz == 0:
        return dense
    shape = tuple(dense.shape)
    rows = math.prod(shape[: grad.sparse_dim])
    flat = xp.reshape(dense, (rows,) + shape[grad.sparse_dim :])
    lin = grad.linear_indices()
    # Storage order within each index: a stable sort, then ranks 0, 1, ... applied in turn.
    perm = xp.argsort(lin, stable=True)
    lin_s = xp.take(lin, perm)
    new = xp.concat([xp.ones((1,), dtype=xp.bool, device=device_of(dense)), lin_s[1:] != lin_s[:-1]])
    starts = xp.nonzero(new)[0]
    group = xp.cumulative_sum(xp.astype(new, xp.int64)) - 1
    rank_s = xp.arange(nnz, dtype=xp.int64, device=device_of(dense)) - xp.take(xp.astype(starts, xp.int64), group)
    max_rank = int(xp.max(rank_s))
    vals_s = xp.take(grad.values, perm, axis=0)
    for k in range(max_rank + 1):
        sel = xp.nonzero(rank_s == k)[0] if max_rank else None
        idx = lin_s if sel is None else xp.take(lin_s, sel)
        v = vals_s if sel is None else xp.take(vals_s, sel, axis=0)
        current = xp.take(flat, idx, axis=0)
        flat = scatter_rows(flat, idx, add(current, v, alpha=alpha))
    return _back(dense, xp.reshape(flat, shape))


def _back(dense: Any, result: Any) -> Any:
    """``result`` written into ``dense`` when it is not already ``dense``'s memory."""
    from ._backend import assign

    return assign(dense, result)


# --------------------------------------------------------------------------- torch's sort order
def torch_cpu_sort_permutation(keys: list[int]) -> list[int]:
    """The permutation torch 2.13's CPU ``sort(stable=False)`` gives a 1-d integer tensor:
    libstdc++'s ``std::sort`` (introsort: median-of-three quicksort down to runs of 16,
    heapsort past ``2 * floor(log2 n)`` levels, then insertion sort) over (key, position)
    pairs compared by key. Equal keys end up in an order that is not their original
    one beyond 16 entries; ``coalesce`` sums duplicates in this order.

    Pure Python over a list: O(n log n) interpreted steps (about 0.1 s for 10**4 keys),
    used only when the order can change a sum (an index occurring three times or more
    in more than 16 entries).
    """
    k = list(keys)
    ix = list(range(len(k)))
    n = len(k)

    def swap(a: int, b: int) -> None:
        k[a], k[b] = k[b], k[a]
        ix[a], ix[b] = ix[b], ix[a]

    def adjust_heap(first: int, hole: int, length: int, vk: int, vi: int) -> None:
        top = hole
        second = hole
        while second < (length - 1) // 2:
            second = 2 * (second + 1)
            if k[first + second] < k[first + second - 1]:
                second -= 1
            k[first + hole], ix[first + hole] = k[first + second], ix[first + second]
            hole = second
        if (length & 1) == 0 and second == (length - 2) // 2:
            second = 2 * (second + 1)
            k[first + hole], ix[first + hole] = k[first + second - 1], ix[first + second - 1]
            hole = second - 1
        parent = (hole - 1) // 2
        while hole > top and k[first + parent] < vk:
            k[first + hole], ix[first + hole] = k[first + parent], ix[first + parent]
            hole = parent
            parent = (hole - 1) // 2
        k[first + hole], ix[first + hole] = vk, vi

    def pop_heap(first: int, last: int, result: int) -> None:
        vk, vi = k[result], ix[result]
        k[result], ix[result] = k[first], ix[first]
        adjust_heap(first, 0, last - first, vk, vi)

    def heap_sort(first: int, last: int) -> None:  # std::__partial_sort(first, last, last)
        length = last - first
        if length >= 2:
            parent = (length - 2) // 2
            while True:
                adjust_heap(first, parent, length, k[first + parent], ix[first + parent])
                if parent == 0:
                    break
                parent -= 1
        while last - first > 1:
            last -= 1
            pop_heap(first, last, last)

    def median_to_first(result: int, a: int, b: int, c: int) -> None:
        if k[a] < k[b]:
            if k[b] < k[c]:
                swap(result, b)
            elif k[a] < k[c]:
                swap(result, c)
            else:
                swap(result, a)
        elif k[a] < k[c]:
            swap(result, a)
        elif k[b] < k[c]:
            swap(result, c)
        else:
            swap(result, b)

    def unguarded_partition(first: int, last: int, pivot: int) -> int:
        while True:
            while k[first] < k[pivot]:
                first += 1
            last -= 1
            while k[pivot] < k[last]:
                last -= 1
            if not first < last:
                return first
            swap(first, last)
            first += 1

    def introsort_loop(first: int, last: int, depth: int) -> None:
        while last - first > 16:
            if depth == 0:
                heap_sort(first, last)
                return
            depth -= 1
            median_to_first(first, first + 1, first + (last - first) // 2, last - 1)
            cut = unguarded_partition(first + 1, last, first)
            introsort_loop(cut, last, depth)
            last = cut

    def linear_insert(last: int) -> None:
        vk, vi = k[last], ix[last]
        nxt = last - 1
        while vk < k[nxt]:
            k[last], ix[last] = k[nxt], ix[nxt]
            last = nxt
            nxt -= 1
        k[last], ix[last] = vk, vi

    def insertion_sort(first: int, last: int) -> None:
        for i in range(first + 1, last):
            if k[i] < k[first]:
                vk, vi = k[i], ix[i]
                k[first + 1 : i + 1], ix[first + 1 : i + 1] = k[first:i], ix[first:i]
                k[first], ix[first] = vk, vi
            else:
                linear_insert(i)

    if n > 1:
        introsort_loop(0, n, 2 * (n.bit_length() - 1))
        if n > 16:
            insertion_sort(0, 16)
            for i in range(16, n):
                linear_insert(i)
        else:
            insertion_sort(0, n)
    return ix
