"""One evaluation harness for every model: full ranking over all items on valid and test."""

from tfrec.evaluate.metrics import cold_item_mask, filter_targets, full_ranking_metrics


def evaluate(score_fn, prepared, ks=(10, 20), splits=("valid", "test")) -> dict[str, dict]:
    """{"valid": metrics, "test": metrics, "test_cold": metrics} for `score_fn`.

    valid ranks all items but each user's training items; test also removes validation items.
    test_cold keeps only test targets whose item has no training interaction (reached through
    text and the knowledge graph alone); its "num_users" says how many users had one.
    """
    out = {}
    train_items = prepared.split.pairs("train")[1]
    for split in splits:
        exclude = prepared.csr("train") if split == "valid" else prepared.csr("train", "valid")
        targets = prepared.csr(split)
        out[split] = full_ranking_metrics(score_fn, exclude, targets, ks)
        if split == "test":
            cold = filter_targets(targets, cold_item_mask(train_items, prepared.num_items))
            out["test_cold"] = full_ranking_metrics(score_fn, exclude, cold, ks)
    return out
