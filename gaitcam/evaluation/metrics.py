"""Re-identification metrics, pure numpy: CMC, Rank-k, both nAUCs, and chunked retrieval mAP.

Tie rule, everywhere: pessimistic. A wrong candidate that scores exactly as high as the right
one counts as ranked above it, so a degenerate embedding (all scores equal) can never look
good. The one exception is `nauc_roc`, which follows the ROC convention (a tie counts ½), as
sklearn's `roc_auc_score` does and as the paper's numbers were computed (spec §4, §8.8).
"""
from __future__ import annotations

import numpy as np

# Retrieval chunks hold about this many query x gallery scores (64 MB as float32).
_CHUNK_SCORES = 1 << 24
_MAX_CELLS = 1 << 31  # (row, bin) ids must fit beside 32 score bits in an int64 key


def cmc_curve(scores: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """CMC [C] of a closed-set classifier: cmc[k-1] = share of queries whose true class is
    among the k best-scored classes. scores [Q, C] (higher = better), labels [Q] in 0..C-1."""
    scores = np.asarray(scores)
    labels = np.asarray(labels, dtype=np.int64)
    if scores.ndim != 2 or labels.shape != (len(scores),):
        raise ValueError(f"expected scores [Q, C] and labels [Q], got {scores.shape} and {labels.shape}")
    true = scores[np.arange(len(scores)), labels]
    rank = (scores >= true[:, None]).sum(1)  # 1-based, ties with other classes count as above
    return np.cumsum(np.bincount(rank - 1, minlength=scores.shape[1])) / len(scores)


def rank_k(cmc: np.ndarray, k: int) -> float:
    """Rank-k rate from a CMC curve (rank k beyond the curve's end: its last value)."""
    return float(cmc[min(k, len(cmc)) - 1])


def nauc_cmc(cmc: np.ndarray) -> float:
    """nAUC as the older baselines define it: the mean of the CMC over k = 1..C (spec §4)."""
    return float(np.mean(cmc))


def nauc_roc(scores: np.ndarray, labels: np.ndarray) -> float:
    """nAUC as the SGE-LA code computes it (spec §4): the micro-averaged one-vs-rest ROC AUC,
    i.e. roc_auc(onehot.ravel(), scores.ravel()) over the raw scores (averaged logits).

    Computed as the Mann-Whitney U statistic with average ranks for ties, which equals the
    trapezoidal area under the ROC curve.
    """
    scores = np.asarray(scores, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.int64)
    positive = np.zeros(scores.shape, dtype=bool)
    positive[np.arange(len(scores)), labels] = True
    s, y = scores.ravel(), positive.ravel()
    order = np.argsort(s, kind="stable")
    s, y = s[order], y[order]
    new_value = np.concatenate([[True], s[1:] != s[:-1]])
    starts = np.flatnonzero(new_value)
    ends = np.concatenate([starts[1:], [len(s)]])
    mean_rank = (starts + 1 + ends) / 2  # 1-based average rank of each tie group
    ranks = mean_rank[np.cumsum(new_value) - 1]
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        raise ValueError("nauc_roc needs both positive and negative entries")
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def unit_rows(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (float32), so a dot product is the cosine similarity."""
    x = np.asarray(x, dtype=np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), np.float32(1e-12))


def retrieval(
    query: np.ndarray,
    query_labels: np.ndarray,
    gallery: np.ndarray,
    gallery_labels: np.ndarray,
    ks: tuple[int, ...] = (1, 5, 10),
    chunk: int | None = None,
    max_rank: int = 100,
) -> dict:
    """Each query ranks the whole gallery by cosine similarity.

    Returns rank{k} for every k in `ks` (first correct match within the top k), `map` (mean
    average precision over all correct matches), `cmc` (ranks 1..max_rank) and the
    per-query `first_rank` [Q] and `ap` [Q]. Every query needs at least one gallery item of
    its label. Works in chunks of queries and never holds a Q x G matrix; the ranking is
    exact, so the chunk size could only matter through the float rounding of the product.
    """
    q, g = unit_rows(query), unit_rows(gallery)
    ql, gl = np.asarray(query_labels), np.asarray(gallery_labels)
    if q.ndim != 2 or g.ndim != 2 or q.shape[1] != g.shape[1] or ql.shape != (len(q),) or gl.shape != (len(g),):
        raise ValueError(f"expected query [Q, D], gallery [G, D] and labels [Q], [G]; got "
                         f"{q.shape}, {g.shape}, {ql.shape}, {gl.shape}")
    if len(q) == 0 or len(g) == 0:
        raise ValueError("retrieval needs at least one query and one gallery item")
    if not (np.isfinite(q).all() and np.isfinite(g).all()):
        raise ValueError("query and gallery must be finite")
    # The gallery grouped by label: each query's positives are one slice of `by_label`.
    by_label = np.argsort(gl, kind="stable")
    labels, label_start, label_count = np.unique(gl[by_label], return_index=True, return_counts=True)
    slot = np.minimum(np.searchsorted(labels, ql), len(labels) - 1)
    if not (labels[slot] == ql).all():
        raise ValueError("every query needs at least one gallery item with its label")
    chunk = min(chunk or _CHUNK_SCORES // max(1, len(g)), _MAX_CELLS // max(1, len(g) // 2)) or 1
    work = _Workspace(min(chunk, len(q)), len(g))
    first = np.empty(len(q), dtype=np.int64)
    ap = np.empty(len(q), dtype=np.float64)
    for start in range(0, len(q), chunk):
        part = slice(start, start + chunk)
        n_pos = label_count[slot[part]]
        rows = np.repeat(np.arange(len(n_pos)), n_pos)
        offset = np.arange(len(rows)) - np.repeat(np.cumsum(n_pos) - n_pos, n_pos)
        cols = by_label[np.repeat(label_start[slot[part]], n_pos) + offset]
        scores = np.matmul(q[part], g.T, out=work.scores[: len(n_pos)])
        first[part], ap[part] = work.rank_positives(scores, rows, cols, n_pos)
    cmc = np.cumsum(np.bincount(np.minimum(first, max_rank + 1) - 1, minlength=max_rank + 1)[:max_rank]) / len(q)
    out = {f"rank{k}": float(np.mean(first <= k)) for k in ks}
    return out | {"map": float(ap.mean()), "cmc": cmc[: min(max_rank, len(g))], "first_rank": first, "ap": ap}


def _order_keys(x: np.ndarray) -> np.ndarray:
    """float32 -> int64 keys in [0, 2^32) with the same order (IEEE-754 sign-magnitude flip)."""
    bits = (x + np.float32(0)).view(np.int32).astype(np.int64)  # + 0 turns -0.0 into +0.0
    return np.where(bits >= 0, bits + (1 << 31), (1 << 31) - 1 - (bits & 0x7FFFFFFF))


class _Workspace:
    """Ranks of the positives in chunks of scores, exactly, in buffers reused across chunks.

    A full sort of every score row costs more than the matrix product that made it, so only
    the ranks of the (few) positives are counted: a per-row histogram over `n_bins` equal
    bins counts the items in higher bins, and only items sharing a bin with a positive are
    sorted, to count those within the bin. Integer keys (row, bin, score bits) make that one
    flat sort and searchsorted for the whole chunk. Big temporaries are allocated once,
    because fresh ones cost as much in page faults as the arithmetic on them.
    """

    def __init__(self, n_rows: int, n_items: int) -> None:
        self.n_bins = max(1, n_items // 2)  # ~2 items per bin: few to sort, a small histogram
        self.scores = np.empty((n_rows, n_items), dtype=np.float32)
        self.scaled = np.empty((n_rows, n_items), dtype=np.float32)
        self.bin32 = np.empty((n_rows, n_items), dtype=np.int32)
        self.cell = np.empty((n_rows, n_items), dtype=np.int64)
        self.occupied = np.zeros(n_rows * self.n_bins, dtype=bool)

    def rank_positives(
        self, scores: np.ndarray, rows: np.ndarray, cols: np.ndarray, n_pos: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """(rank of the first correct match, average precision) per row of scores [R, G];
        the positives are (rows, cols), grouped by row, n_pos [R] of them per row."""
        n_rows, n_items = scores.shape
        n_bins = self.n_bins
        scaled, bin32, cell = self.scaled[:n_rows], self.bin32[:n_rows], self.cell[:n_rows]
        lo, hi = scores.min(1, keepdims=True), scores.max(1, keepdims=True)
        span = np.where(hi > lo, hi - lo, np.float32(1))
        scale = np.where(hi > lo, np.float32(n_bins - 1) / span, 0).astype(np.float32)
        # Monotone in the score (float rounding never reverses an order): bin order = score order.
        np.multiply(np.subtract(scores, lo, out=scaled), scale, out=scaled)
        np.copyto(bin32, scaled, casting="unsafe")
        np.minimum(bin32, n_bins - 1, out=bin32)
        np.add(bin32, (np.arange(n_rows, dtype=np.int32) * n_bins)[:, None], out=bin32)
        np.copyto(cell, bin32)  # (row, bin) as one id
        flat_cell = cell.ravel()
        cum = np.bincount(flat_cell, minlength=n_rows * n_bins)
        np.cumsum(cum, out=cum)
        row_total = cum[np.arange(1, n_rows + 1) * n_bins - 1]

        pos_cell = cell[rows, cols]
        pos_key = _order_keys(scores[rows, cols])
        higher = row_total[rows] - cum[pos_cell]  # items in higher bins of the same row
        occupied = self.occupied[: n_rows * n_bins]
        occupied[pos_cell] = True
        near = np.flatnonzero(occupied[flat_cell])
        occupied[pos_cell] = False
        near_keys = np.sort((flat_cell[near] << 32) | _order_keys(scores.ravel()[near]))
        bin_end = np.searchsorted(near_keys, (pos_cell + 1) << 32)
        in_bin = bin_end - np.searchsorted(near_keys, (pos_cell << 32) | pos_key)
        items_ge = higher + in_bin  # items scoring >= this positive, itself included

        row_keys = (rows << 32) | pos_key
        sorted_row_keys = np.sort(row_keys)
        pos_ge = np.searchsorted(sorted_row_keys, (rows + 1) << 32) - np.searchsorted(sorted_row_keys, row_keys)

        starts = np.cumsum(n_pos) - n_pos
        first = 1 + np.minimum.reduceat(items_ge - pos_ge, starts)  # 1 + negatives >= the best positive
        ap = np.bincount(rows, weights=pos_ge / items_ge, minlength=n_rows) / n_pos
        return first, ap
