"""The heads' losses against numpy written from their definitions: retrieval with sampled
negatives and logQ, retrieval over every candidate, ranking (MSE, BCE), text/graph alignment."""

import numpy as np
import pytest
import tensorflow as tf

from tfrec.heads.alignment import AlignmentHead
from tfrec.heads.ranking import RankingHead
from tfrec.heads.retrieval import RetrievalHead


def _log_softmax(row):
    m = row.max()
    return row - m - np.log(np.exp(row - m).sum())


def _retrieval_reference(user, item, positives, extra, chunk, temperature, q=None,
                         full=False, remove_hits=True, num_candidates=5):
    """numpy: the mean over chunks of the mean over a chunk's rows of -log softmax(row)[own].

    A chunk's columns are its rows' positives, then the `extra` items. Logit of row r and
    column j: user[r] . item[id_j] / temperature - log q_j, where q_j is the expected count of
    id_j among the columns: chunk x q[id_j] on the in-batch columns, len(extra) / C on the
    extra ones (uniform draws from C candidates); no correction without q.
    A column j other than r's own holding r's positive item is dropped (an accidental hit);
    with `full`, every in-batch column but r's own is dropped too (a full softmax over `extra`).
    remove_hits=False keeps the accidental hits (to show that a test case has some).
    """
    chunk_losses = []
    for start in range(0, len(positives), chunk):
        rows = positives[start:start + chunk]
        ids = np.concatenate([rows, extra])
        log_q = np.zeros(len(ids))
        if q is not None:
            log_q[:len(rows)] = np.log(len(rows) * q[rows])
            log_q[len(rows):] = np.log(len(extra) / num_candidates)
        losses = []
        for r, own in enumerate(rows):
            logits = item[ids] @ user[start + r] / temperature - log_q
            keep = [j for j, i in enumerate(ids)
                    if j == r or ((i != own or not remove_hits)
                                  and not (full and j < len(rows)))]
            losses.append(-_log_softmax(logits[keep])[keep.index(r)])
        chunk_losses.append(np.mean(losses))
    return np.mean(chunk_losses)


USER = np.random.default_rng(3).normal(size=(4, 3))
ITEM = np.random.default_rng(4).normal(size=(6, 3))
POSITIVES = np.array([0, 3, 3, 1])
CANDIDATES = [0, 1, 2, 3, 5]  # item 4 was never a training positive
Q = np.array([0.25, 0.25, 0.0, 0.5, 0.0, 0.0])  # how often each item is a positive (of 4)


def _loss(head, positives=POSITIVES):
    return float(head(tf.constant(USER, tf.float32), tf.constant(ITEM, tf.float32),
                      tf.constant(positives)))


@pytest.mark.parametrize("sampling", [None, Q])
def test_sampled_negatives_with_and_without_logq_are_the_reference(sampling):
    head = RetrievalHead(CANDIDATES, temperature=0.5, negatives=3, chunk=2, sampling=sampling)
    head.draw_negatives = lambda: tf.constant([1, 4, 3])  # candidates 1, 5, 3
    extra = np.array([1, 5, 3])
    expected = _retrieval_reference(USER, ITEM, POSITIVES, extra, 2, 0.5, sampling)
    assert abs(_loss(head) - expected) < 1e-5
    # The case tests something: it has accidental hits (the extra 3 in both chunks, whose rows
    # hold positive 3; the extra 1 in the second chunk) and the correction moves the loss.
    with_hits = _retrieval_reference(USER, ITEM, POSITIVES, extra, 2, 0.5, sampling,
                                     remove_hits=False)
    assert abs(expected - with_hits) > 1e-2
    if sampling is not None:
        assert abs(expected - _retrieval_reference(USER, ITEM, POSITIVES, extra, 2, 0.5)) > 1e-2


def test_logq_worked_by_hand_on_one_row():
    # Users (1, 0) and (0, 1) with positives a = (1, 0) and b = (0, 1), temperature 1, no extra
    # negative: a and b are each other's in-batch negative; q(a) = 0.8, q(b) = 0.2.
    # Row 0 logits: a 1 - log 0.8, b 0 - log 0.2; loss log(1 + e^(b - a)) = log(1 + 4/e).
    # Row 1 logits: a 0 - log 0.8, b 1 - log 0.2; loss log(1 + e^(a - b)) = log(1 + 1/(4e)).
    # Mean (0.904832 + 0.087983) / 2 = 0.496408 (without logQ: log(1 + 1/e) = 0.313262).
    # (The head uses the expected counts 2 x 0.8 and 2 x 0.2: the same log 2 on every logit.)
    head = RetrievalHead([0, 1], temperature=1.0, negatives=0, chunk=2,
                         sampling=np.array([0.8, 0.2]))
    loss = head(tf.eye(2), tf.eye(2), tf.constant([0, 1]))
    assert abs(float(loss) - 0.496408) < 1e-5


def test_draws_are_uniform_positions_of_the_candidates():
    tf.random.set_seed(0)
    draws = RetrievalHead(CANDIDATES, 1.0, negatives=5000, chunk=2).draw_negatives().numpy()
    counts = np.bincount(draws, minlength=len(CANDIDATES))
    assert len(counts) == len(CANDIDATES)  # never outside [0, C)
    # each position is drawn 1000 times in expectation, standard deviation sqrt(5000 .2 .8) = 28
    assert np.all(np.abs(counts - 1000) < 5 * 28)


@pytest.mark.parametrize("positives", [POSITIVES, np.array([0, 4, 3, 4])])
def test_every_candidate_branch_is_an_exact_full_softmax_and_ignores_logq(positives):
    # positives 4 are not candidates: their own column is added to the candidates' softmax
    expected = _retrieval_reference(USER, ITEM, positives, np.array(CANDIDATES), 2, 0.5,
                                    full=True)
    for sampling in (None, Q):
        head = RetrievalHead(CANDIDATES, temperature=0.5, negatives=None, chunk=2,
                             sampling=sampling)
        assert abs(_loss(head, positives) - expected) < 1e-5


def _set_scorer(head, rng, dim):
    """Builds the head's MLP and gives it fixed weights; returns them (W1, b1, W2, b2)."""
    head.scorer((tf.zeros([1, dim]), tf.zeros([1, dim])))
    weights = [0.3 * rng.normal(size=w.shape).astype(np.float32)
               for w in head.scorer.get_weights()]
    head.scorer.set_weights(weights)
    return weights


def _scores(user, item, weights):
    """numpy PairScorer: relu([u, i, u*i] W1 + b1) W2 + b2, one score per row."""
    w1, b1, w2, b2 = weights
    hidden = np.maximum(np.concatenate([user, item, user * item], axis=1) @ w1 + b1, 0.0)
    return (hidden @ w2 + b2)[:, 0]


@pytest.mark.parametrize("classification", [False, True])
def test_ranking_losses_are_the_reference(classification):
    rng = np.random.default_rng(5)
    user, item = rng.normal(size=(5, 3)).astype(np.float32), rng.normal(size=(5, 3)).astype(
        np.float32)
    labels = np.array([1, 0, 1, 1, 0], np.float32) if classification else np.array(
        [4, 1, 3, 5, 2], np.float32)
    head = RankingHead(classification)
    s = _scores(user, item, _set_scorer(head, rng, 3))
    if classification:  # binary cross-entropy on logits: -y log sigmoid(s) - (1-y) log(1-sig(s))
        p = 1.0 / (1.0 + np.exp(-s))
        expected = np.mean(-labels * np.log(p) - (1 - labels) * np.log(1 - p))
    else:
        expected = np.mean((labels - s) ** 2)
    got = head(tf.constant(user), tf.constant(item), tf.constant(labels))
    assert abs(float(got) - expected) < 1e-4 * max(1.0, expected)


def _alignment_reference(text, graph, items, temperature, mask_repeats=True):
    """numpy symmetric InfoNCE: mean of text->graph and graph->text cross-entropies over the
    batch's rows; other rows holding the same item are left out of both softmaxes."""
    t = text[items] / np.linalg.norm(text[items], axis=1, keepdims=True)
    g = graph[items] / np.linalg.norm(graph[items], axis=1, keepdims=True)
    logits = t @ g.T / temperature
    losses = []
    for matrix in (logits, logits.T):
        for r in range(len(items)):
            keep = [j for j in range(len(items))
                    if j == r or items[j] != items[r] or not mask_repeats]
            losses.append(-_log_softmax(matrix[r, keep])[keep.index(r)])
    return 0.5 * (np.mean(losses[:len(items)]) + np.mean(losses[len(items):]))


@pytest.mark.parametrize("text_only", [False, True])
def test_alignment_is_symmetric_infonce_with_repeats_masked(text_only):
    rng = np.random.default_rng(6)
    text, graph = rng.normal(size=(6, 4)), rng.normal(size=(6, 4))
    items = np.array([0, 2, 2, 5, 1])
    head = AlignmentHead(temperature=0.2, text_only=text_only)
    got = head(tf.constant(text, tf.float32), tf.constant(graph, tf.float32),
               tf.constant(items))
    expected = _alignment_reference(text, graph, items, 0.2)
    assert abs(float(got) - expected) < 1e-4
    # the case tests the mask: unmasked, the two rows of item 2 are each other's negatives
    unmasked = _alignment_reference(text, graph, items, 0.2, mask_repeats=False)
    assert abs(unmasked - expected) > 1e-2
