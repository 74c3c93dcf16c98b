"""Random export artifacts, for export/serving tests and the serving benchmark."""

from collections.abc import Sequence

import numpy as np

from tfrec.export.artifacts import ExportArtifacts


def random_artifacts(num_users: int = 20, num_items: int = 50, dim: int = 8,
                     seen_per_user: int | Sequence[int] = 5, seed: int = 0, *,
                     item_prefix: str = "i", title: str = "Item {}", scorer=None,
                     text_encoder=None, metadata: dict | None = None,
                     item_bias: bool = True) -> ExportArtifacts:
    """Random embeddings for users `u0..` and items `<item_prefix>0..` (titles `title.format(i)`).

    seen_per_user: distinct training items per user (CSR), one count for all users or a cycle
    of counts (user u gets seen_per_user[u % len]). MovieLens-100K size: 943, 1682, 64, 90.
    item_bias: a random score offset per item (else none).
    """
    rng = np.random.default_rng(seed)
    counts = [seen_per_user] if isinstance(seen_per_user, int) else list(seen_per_user)
    seen = [np.sort(rng.choice(num_items, size=min(counts[u % len(counts)], num_items - 1),
                               replace=False)) for u in range(num_users)]
    indptr = np.concatenate([[0], np.cumsum([len(s) for s in seen])]).astype(np.int64)
    return ExportArtifacts(
        user_ids=np.array([f"u{u}" for u in range(num_users)]),
        item_ids=np.array([f"{item_prefix}{i}" for i in range(num_items)]),
        item_titles=np.array([title.format(i) for i in range(num_items)]),
        user_embeddings=rng.normal(size=(num_users, dim)).astype(np.float32),
        item_embeddings=rng.normal(size=(num_items, dim)).astype(np.float32),
        seen_indptr=indptr,
        seen_indices=np.concatenate(seen).astype(np.int64),
        scorer=scorer,
        text_encoder=text_encoder,
        metadata={"synthetic": True, "seed": seed} if metadata is None else metadata,
        item_bias=rng.normal(size=num_items).astype(np.float32) if item_bias else None,
    )
