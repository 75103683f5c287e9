"""Boolean masks, built in one place. Convention (same as ``F.scaled_dot_product_attention``):
``True`` marks a position that takes part (a valid frame, a key a query may attend to)."""
import torch


def sequence_mask(lengths: torch.Tensor, max_len: int | None = None) -> torch.Tensor:
    """``lengths (B,)`` -> ``(B, T)`` bool, True on the first ``lengths[b]`` positions of row b."""
    max_len = int(lengths.max()) if max_len is None else max_len
    return torch.arange(max_len, device=lengths.device) < lengths[:, None]


def key_padding_mask(lengths: torch.Tensor, max_len: int | None = None) -> torch.Tensor:
    """``lengths (B,)`` -> ``(B, 1, 1, T)`` attention mask hiding padded keys from every head and query."""
    return sequence_mask(lengths, max_len)[:, None, None, :]


def causal_mask(query_len: int, key_len: int | None = None, device=None) -> torch.Tensor:
    """``(Lq, Lk)`` bool: query i may attend to keys ``<= i + (Lk - Lq)``.

    With ``key_len > query_len`` the queries are the last ``query_len`` positions of the key sequence
    (incremental decoding with a cache of ``key_len - query_len`` past positions)."""
    key_len = query_len if key_len is None else key_len
    queries = torch.arange(query_len, device=device)[:, None] + (key_len - query_len)
    return torch.arange(key_len, device=device)[None, :] <= queries


def chunk_mask(length: int, chunk_size: int, left_chunks: int = -1, device=None) -> torch.Tensor:
    """``(T, T)`` bool self-attention mask of chunk-wise encoders (WeNet U2): query t sees the keys of
    its chunk ``t // chunk_size`` and of the ``left_chunks`` chunks before it (-1: all earlier chunks)."""
    chunk = torch.arange(length, device=device) // chunk_size
    behind = chunk[:, None] - chunk[None, :]  # how many chunks the key lies behind the query
    return (behind >= 0) & (behind <= left_chunks) if left_chunks >= 0 else behind >= 0
