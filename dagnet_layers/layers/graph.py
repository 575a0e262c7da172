"""Graph convolution over a fixed node set with a learned adjacency (DAG-Net's LSAM).

DAG-Net (Sec. 3.4, eq. 4) treats the :math:`N^2` patches of an image as the
nodes of one graph whose adjacency matrix :math:`A` is a parameter learned by
back-propagation, and stacks graph convolutions

.. math::

    H^{l} = \\sigma\\big(\\hat{A}\\, H^{l-1} W^{l-1}\\big), \\qquad H^0 = \\mathcal{V}

with widths 1024, 1024 and 512 and a ReLU after each. Every sample has the
same node set, so the layer is a batched dense matrix product; it can export
its learned graph as PyTorch Geometric ``edge_index`` / ``edge_weight``.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from typing import Literal

import torch
from torch import Tensor, nn

from dagnet_layers.layers._checks import check_positive_ints

__all__ = [
    "LearnedAdjacencyGCN",
    "PatchSumReadout",
    "adjacency_to_edge_index",
    "grid_adjacency",
    "initial_adjacency_of",
    "normalize_adjacency",
]

AdjacencyInit = Literal["grid", "identity", "uniform"]
Normalization = Literal["none", "symmetric", "softmax"]
Readout = Literal["mean", "sum", "max", "flatten", "none"]


def grid_adjacency(n: int, *, self_loops: bool = True, dtype: torch.dtype | None = None) -> Tensor:
    """Binary adjacency of an ``n x n`` patch grid (8-neighbourhood), row-major node order.

    Node ``i * n + j`` is grid row ``i``, column ``j`` (the order of
    :class:`PatchPartition` and of :func:`torch_geometric.utils.grid`, which gives
    the same graph: the tests compare the two). Two patches are neighbours when
    their rows and their columns each differ by at most one.

    Args:
        n: Patches per side.
        self_loops: Keep the diagonal (each patch is its own neighbour).
        dtype: Floating dtype of the result (default: the current default dtype).

    Returns:
        Tensor of shape (n*n, n*n) with entries 0 or 1, symmetric, on the CPU.

    Example:
        >>> grid_adjacency(2, self_loops=False)
        tensor([[0., 1., 1., 1.],
                [1., 0., 1., 1.],
                [1., 1., 0., 1.],
                [1., 1., 1., 0.]])
    """
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise ValueError(f"grid_adjacency(n=...) needs an integer n >= 1, got {n!r}")
    # on the CPU whatever the default device (a model built under ``torch.device("meta")``
    # still needs the real grid to start from)
    node = torch.arange(n * n, device="cpu")
    row, col = node // n, node % n
    near = ((row[:, None] - row[None, :]).abs() <= 1) & ((col[:, None] - col[None, :]).abs() <= 1)
    adj = near.to(dtype or torch.get_default_dtype())
    if not self_loops:
        adj.fill_diagonal_(0)
    return adj


def initial_adjacency_of(kind: AdjacencyInit, num_nodes: int) -> Tensor:
    """The adjacency a learned graph over ``num_nodes`` patches starts from.

    ``"grid"``: the row-normalised 8-neighbourhood of the patch grid with self-loops
    (``num_nodes`` a square); ``"identity"``: :math:`I`; ``"uniform"``: every entry
    :math:`1/M`.

    Example:
        >>> initial_adjacency_of("grid", 4)
        tensor([[0.2500, 0.2500, 0.2500, 0.2500],
                [0.2500, 0.2500, 0.2500, 0.2500],
                [0.2500, 0.2500, 0.2500, 0.2500],
                [0.2500, 0.2500, 0.2500, 0.2500]])
    """
    if kind == "identity":
        return torch.eye(num_nodes)
    if kind == "uniform":
        return torch.full((num_nodes, num_nodes), 1.0 / num_nodes)
    adj = grid_adjacency(math.isqrt(num_nodes))
    return adj / adj.sum(dim=-1, keepdim=True)


def normalize_adjacency(adj: Tensor, normalization: Normalization) -> Tensor:
    r"""Turn a raw (learned) adjacency into the propagation matrix :math:`\hat{A}`.

    - ``"none"``: :math:`\hat{A} = A`, the paper's literal eq. 4.
    - ``"symmetric"``: Kipf & Welling's GCN normalisation of the non-negative
      part with self-loops *added* (not overwritten, so a learned diagonal
      keeps its gradient): :math:`\tilde{A} = \max(A, 0) + I`,
      :math:`\hat{A} = \tilde{D}^{-1/2} \tilde{A} \tilde{D}^{-1/2}`. Entries
      at or below zero receive no gradient.
    - ``"softmax"``: row softmax, :math:`\hat{A}_{ij} = e^{A_{ij}} / \sum_k e^{A_{ik}}`.

    Args:
        adj: Raw adjacency (M, M), or (B, M, M).
        normalization: One of ``"none"``, ``"symmetric"``, ``"softmax"``.

    Returns:
        The propagation matrix, same shape as ``adj``.

    Example:
        >>> a = torch.tensor([[0., 1.], [1., 0.]])
        >>> normalize_adjacency(a, "symmetric")
        tensor([[0.5000, 0.5000],
                [0.5000, 0.5000]])
    """
    if normalization == "none":
        return adj
    if normalization == "symmetric":
        eye = torch.eye(adj.shape[-1], dtype=adj.dtype, device=adj.device)
        adj = adj.clamp(min=0) + eye
        deg_inv_sqrt = adj.sum(dim=-1).rsqrt()
        return deg_inv_sqrt.unsqueeze(-1) * adj * deg_inv_sqrt.unsqueeze(-2)
    if normalization == "softmax":
        return adj.softmax(dim=-1)
    raise ValueError(
        "normalization must be 'none', 'symmetric' or 'softmax', "
        f"got {normalization!r}"
    )


def adjacency_to_edge_index(adj: Tensor, threshold: float = 0.0) -> tuple[Tensor, Tensor]:
    r"""Export a dense propagation matrix as PyG ``(edge_index, edge_weight)``.

    :math:`\hat{A}_{ij}` is the weight with which node :math:`i` gathers from
    node :math:`j`, so it becomes the edge :math:`j \to i`: ``edge_index[0]``
    holds sources and ``edge_index[1]`` targets, PyG's default
    ``flow="source_to_target"``. Entries with :math:`|\hat{A}_{ij}| \le`
    ``threshold`` are dropped.

    Args:
        adj: Dense matrix (M, M).
        threshold: Magnitude at or below which an entry is not an edge.

    Returns:
        ``edge_index`` (2, E) long and ``edge_weight`` (E,).

    Example:
        >>> ei, ew = adjacency_to_edge_index(torch.tensor([[0., 2.], [0., 1.]]))
        >>> ei.tolist(), ew.tolist()
        ([[1, 1], [0, 1]], [2.0, 1.0])
    """
    if adj.dim() != 2 or adj.shape[0] != adj.shape[1]:
        raise ValueError(f"adj must be a square (M, M) matrix, got shape {tuple(adj.shape)}")
    target, source = (adj.abs() > threshold).nonzero(as_tuple=True)
    return torch.stack([source, target]), adj[target, source]


class _GraphAdjacency(nn.Module):
    """One (M, M) adjacency over a fixed node set: its options, storage, start and normalisation.

    The base of the graph layers that keep a single adjacency (learned, or fixed as a
    buffer); each calls :meth:`_init_adjacency` in its constructor.
    """

    adjacency: Tensor

    def _init_adjacency(self, owner: str, num_nodes: int, adjacency_init: AdjacencyInit,
                        normalization: Normalization, learn: bool) -> None:  # fmt: skip
        if adjacency_init not in ("grid", "identity", "uniform"):
            raise ValueError(f"{owner}(adjacency_init=...) must be 'grid', 'identity' or "
                             f"'uniform', got {adjacency_init!r}")  # fmt: skip
        if adjacency_init == "grid" and math.isqrt(num_nodes) ** 2 != num_nodes:
            raise ValueError(f"{owner}(adjacency_init='grid') needs a square number of nodes "
                             f"(N*N patches), got num_nodes={num_nodes}")  # fmt: skip
        if normalization not in ("none", "symmetric", "softmax"):
            raise ValueError(f"{owner}(normalization=...) must be 'none', 'symmetric' or "
                             f"'softmax', got {normalization!r}")  # fmt: skip
        self.num_nodes = num_nodes
        self.adjacency_init = adjacency_init
        self.normalization = normalization
        adjacency = torch.empty(num_nodes, num_nodes)
        if learn:
            self.adjacency = nn.Parameter(adjacency)
        else:
            self.register_buffer("adjacency", adjacency)

    @property
    def learn_adjacency(self) -> bool:
        """Whether the adjacency is a learned parameter."""
        return isinstance(self.adjacency, nn.Parameter)

    def initial_adjacency(self) -> Tensor:
        """The adjacency that :meth:`reset_parameters` starts from, shape (M, M)."""
        return initial_adjacency_of(self.adjacency_init, self.num_nodes)

    def _reset_adjacency(self) -> None:
        with torch.no_grad():
            self.adjacency.copy_(self.initial_adjacency())

    def propagation_matrix(self) -> Tensor:
        r"""The normalised adjacency :math:`\hat{A}` (M, M) used in the forward pass."""
        return normalize_adjacency(self.adjacency, self.normalization)


class LearnedAdjacencyGCN(_GraphAdjacency):
    r"""Stacked graph convolutions over a fixed node set with one learned adjacency.

    .. math::

        H^{l} = \sigma\big(\hat{A} H^{l-1} W^{l} + b^{l}\big), \qquad
        \hat{A} = \operatorname{norm}(A),\; A \in \mathbb{R}^{M \times M}\ \text{learned}

    One adjacency :math:`A` is shared by all layers and all samples (the
    paper's single learned matrix). The whole stack is a handful of batched
    matrix products: no loop over nodes or samples.

    Adjacency initialisation (``adjacency_init``):

    - ``"grid"``: the row-normalised 8-neighbourhood of the patch grid with
      self-loops (needs ``num_nodes`` to be a square);
    - ``"identity"``: :math:`I` (each node starts on its own);
    - ``"uniform"``: every entry :math:`1/M`.

    Normalisation (``normalization``): see :func:`normalize_adjacency`. The
    default ``"none"`` is the paper's literal :math:`H = \sigma(A H W)`.

    Args:
        in_features: Node feature width :math:`F_0` (1024 in the paper).
        hidden_features: Output width of each layer (paper: 1024, 1024, 512).
        num_nodes: Number of nodes :math:`M` (:math:`N^2` patches, 16 for N = 4).
        adjacency_init: ``"grid"``, ``"identity"`` or ``"uniform"``.
        normalization: ``"none"``, ``"symmetric"`` or ``"softmax"``.
        learn_adjacency: Learn :math:`A` (a parameter) or keep it fixed (a buffer).
        readout: Pool the nodes of the last layer: ``"mean"``, ``"sum"``,
            ``"max"``, ``"flatten"`` (concatenate) or ``"none"`` (keep nodes).
        act_layer: Activation class after each layer (``nn.Identity`` for none).
        bias: Add a learnable bias per layer.

    Shape:
        - Input: :math:`(B, M, F_0)` (or :math:`(M, F_0)`, treated as B = 1)
        - Output: :math:`(B, F_L)` for mean/sum/max, :math:`(B, M F_L)` for
          flatten, :math:`(B, M, F_L)` for none

    Example:
        >>> gcn = LearnedAdjacencyGCN(1024, (1024, 1024, 512), num_nodes=16)
        >>> gcn(torch.randn(2, 16, 1024)).shape
        torch.Size([2, 512])
        >>> edge_index, edge_weight = gcn.to_edge_index()
        >>> edge_index.shape[0], int(edge_index.max()) < 16
        (2, True)
    """

    def __init__(
        self,
        in_features: int = 1024,
        hidden_features: Sequence[int] = (1024, 1024, 512),
        num_nodes: int = 16,
        adjacency_init: AdjacencyInit = "grid",
        normalization: Normalization = "none",
        learn_adjacency: bool = True,
        readout: Readout = "mean",
        act_layer: type[nn.Module] = nn.ReLU,
        bias: bool = True,
    ) -> None:
        super().__init__()
        hidden_features = tuple(hidden_features)
        check_positive_ints("LearnedAdjacencyGCN", in_features=in_features)
        if not hidden_features or any(not isinstance(h, int) or h < 1 for h in hidden_features):
            raise ValueError(
                "LearnedAdjacencyGCN(hidden_features=...) must be a non-empty sequence of "
                f"positive ints, got {hidden_features!r}"
            )
        check_positive_ints("LearnedAdjacencyGCN", num_nodes=num_nodes)
        if readout not in ("mean", "sum", "max", "flatten", "none"):
            raise ValueError(
                "LearnedAdjacencyGCN(readout=...) must be 'mean', 'sum', 'max', 'flatten' or "
                f"'none', got {readout!r}"
            )
        self.in_features = in_features
        self.hidden_features = hidden_features
        self.readout = readout
        widths = (in_features, *hidden_features)
        self.weights = nn.ParameterList(
            nn.Parameter(torch.empty(w_in, w_out)) for w_in, w_out in itertools.pairwise(widths)
        )
        if bias:
            self.biases = nn.ParameterList(nn.Parameter(torch.empty(w)) for w in hidden_features)
        else:
            self.register_parameter("biases", None)
        self.acts = nn.ModuleList(act_layer() for _ in hidden_features)
        self._init_adjacency("LearnedAdjacencyGCN", num_nodes, adjacency_init, normalization,
                             learn_adjacency)  # fmt: skip
        self.reset_parameters()

    @property
    def out_features(self) -> int:
        """Width of the readout output."""
        last = self.hidden_features[-1]
        return last * self.num_nodes if self.readout == "flatten" else last

    def reset_parameters(self) -> None:
        """Glorot-initialise the weights, zero the biases, reset the adjacency."""
        for weight in self.weights:
            nn.init.xavier_uniform_(weight)
        if self.biases is not None:
            for b in self.biases:
                nn.init.zeros_(b)
        self._reset_adjacency()

    def to_edge_index(self, threshold: float = 0.0) -> tuple[Tensor, Tensor]:
        """The learned graph as PyG ``(edge_index, edge_weight)``, detached.

        See :func:`adjacency_to_edge_index` for the edge direction convention.
        """
        return adjacency_to_edge_index(self.propagation_matrix().detach(), threshold)

    def forward(self, x: Tensor) -> Tensor:
        """Propagate node features ``x`` (B, M, F) through every layer, then read out."""
        if x.dim() == 2:
            x = x.unsqueeze(0)
        if x.dim() != 3 or x.shape[1] != self.num_nodes or x.shape[2] != self.in_features:
            raise ValueError(
                f"LearnedAdjacencyGCN expects node features of shape (B, {self.num_nodes}, "
                f"{self.in_features}), got {tuple(x.shape)}"
            )
        adj = self.propagation_matrix().to(x.dtype)
        h = x
        for i, (weight, act) in enumerate(zip(self.weights, self.acts, strict=True)):
            h = adj @ (h @ weight.to(h.dtype))
            if self.biases is not None:
                h = h + self.biases[i].to(h.dtype)
            h = act(h)
        if self.readout == "mean":
            return h.mean(dim=1)
        if self.readout == "sum":
            return h.sum(dim=1)
        if self.readout == "max":
            return h.amax(dim=1)
        if self.readout == "flatten":
            return h.flatten(1)
        return h

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, hidden_features={self.hidden_features}, "
            f"num_nodes={self.num_nodes}, adjacency_init={self.adjacency_init!r}, "
            f"normalization={self.normalization!r}, learn_adjacency={self.learn_adjacency}, "
            f"readout={self.readout!r}"
        )


class PatchSumReadout(nn.Module):
    r"""DAG-Net's "LSAM without GCN": one fully connected layer per patch, summed.

    .. math::

        z = \sum_{m=1}^{M} \big(W v_m + b\big)

    (Sec. 4.3.2 of the paper). The FC layer is shared by all patches by
    default; ``shared=False`` gives each patch its own weights.

    Args:
        in_features: Node feature width (1024).
        out_features: Output width :math:`d` (512, as the GCN's last layer).
        num_nodes: Number of patches (needed when ``shared=False``).
        shared: One FC layer for all patches, or one per patch.

    Shape:
        - Input: :math:`(B, M, F)`; Output: :math:`(B, d)`

    Example:
        >>> PatchSumReadout(1024, 512)(torch.randn(2, 16, 1024)).shape
        torch.Size([2, 512])
    """

    def __init__(
        self,
        in_features: int = 1024,
        out_features: int = 512,
        num_nodes: int = 16,
        shared: bool = True,
    ) -> None:
        super().__init__()
        self.in_features = in_features
        self.out_features = out_features
        self.num_nodes = num_nodes
        self.shared = shared
        copies = 1 if shared else num_nodes
        self.weight = nn.Parameter(torch.empty(copies, in_features, out_features))
        self.bias = nn.Parameter(torch.empty(copies, out_features))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Initialise like :class:`torch.nn.Linear`."""
        bound = 1.0 / math.sqrt(self.in_features)
        nn.init.uniform_(self.weight, -bound, bound)
        nn.init.uniform_(self.bias, -bound, bound)

    def forward(self, x: Tensor) -> Tensor:
        """Sum the per-patch projections of ``x`` (B, M, F) into (B, d)."""
        if x.dim() != 3 or x.shape[2] != self.in_features:
            raise ValueError(
                f"PatchSumReadout expects (B, M, {self.in_features}), got {tuple(x.shape)}"
            )
        if self.shared:
            # Summing first is exact for a shared linear map and M times cheaper.
            return x.sum(dim=1) @ self.weight[0].to(x.dtype) + x.shape[1] * self.bias[0]
        if x.shape[1] != self.num_nodes:
            raise ValueError(
                f"PatchSumReadout(shared=False) was built for {self.num_nodes} patches, "
                f"got {x.shape[1]} (input shape {tuple(x.shape)})"
            )
        return torch.einsum("bmf,mfd->bd", x, self.weight.to(x.dtype)) + self.bias.sum(0)
