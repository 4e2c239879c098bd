"""Classification heads, usable from YAML through ``!new:cltm_sb.recipe.heads.LinearHead``."""

from __future__ import annotations

import torch
from torch import nn


class LinearHead(nn.Module):
    """A linear classifier over a pooled embedding (optional dropout before it).

    Arguments:
        input_size: embedding size (the encoder's hidden size).
        n_classes: number of output classes.
        dropout: dropout probability on the input (0 as in the paper).

    Example:
        >>> head = LinearHead(8, 3)
        >>> head(torch.zeros(2, 8)).shape
        torch.Size([2, 3])
    """

    def __init__(self, input_size: int, n_classes: int, dropout: float = 0.0) -> None:
        super().__init__()
        if n_classes < 2:
            raise ValueError(f"LinearHead needs at least 2 classes, got {n_classes}")
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.linear = nn.Linear(input_size, n_classes)

    @property
    def n_classes(self) -> int:
        """Number of output classes."""
        return self.linear.out_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``(batch, n_classes)`` from ``(batch, input_size)``."""
        return self.linear(self.dropout(x))
