"""Unit tests of cera_rag.losses: hand-computed values, exact masking, gradients and shape errors."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from cera_rag.losses import AttentionAlignmentLoss, InfoNCELoss, TripletLoss, ranking_loss

# ---------------------------------------------------------------------------------------------
# Fixtures: 2-d unit vectors with known cosines (scaled, so the loss must normalise them).
#   q1 = (1, 0), q2 = (0, 1); p1 = (0.6, 0.8), p2 = (0.8, 0.6)
#   cos(q1, p1) = 0.6, cos(q1, p2) = 0.8, cos(q2, p2) = 0.6, cos(q2, p1) = 0.8
#   n1 = [(0.8, 0.6), (0, 1)]: cos with q1 = 0.8, 0.0; with q2 = 0.6, 1.0
#   n2 = [(0.6, 0.8), (1, 0) padded]: cos with q1 = 0.6; with q2 = 0.8
# ---------------------------------------------------------------------------------------------


def _batch() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    q = torch.tensor([[1.0, 0.0], [0.0, 1.0]]) * 3.0
    p = torch.tensor([[0.6, 0.8], [0.8, 0.6]]) * 2.0
    n = torch.tensor([[[0.8, 0.6], [0.0, 1.0]], [[0.6, 0.8], [1.0, 0.0]]]) * 5.0
    n_mask = torch.tensor([[True, True], [True, False]])
    return q, p, n, n_mask


def _reference(
    q: torch.Tensor,
    p: torch.Tensor,
    n: torch.Tensor,
    n_mask: torch.Tensor,
    loss: str,
    margin: float,
    temperature: float,
    in_batch: bool,
) -> float:
    """Plain-Python loops over the valid negatives, one query at a time."""

    def cos(x: torch.Tensor, y: torch.Tensor) -> float:
        return float(F.cosine_similarity(x, y, dim=0))

    batch, k = n.shape[:2]
    hinges: list[float] = []
    per_query: list[float] = []
    for i in range(batch):
        negatives = [n[i, j] for j in range(k) if n_mask[i, j]]
        if in_batch:
            negatives += [p[j] for j in range(batch) if j != i]
            if loss == "infonce":
                negatives += [n[j, m] for j in range(batch) if j != i for m in range(k) if n_mask[j, m]]
        pos = cos(q[i], p[i])
        if loss == "triplet":
            hinges += [max(0.0, margin - pos + cos(q[i], x)) for x in negatives]
        else:
            logits = [pos / temperature] + [cos(q[i], x) / temperature for x in negatives]
            per_query.append(-logits[0] + math.log(sum(math.exp(v) for v in logits)))
    if loss == "triplet":
        return sum(hinges) / len(hinges) if hinges else 0.0
    return sum(per_query) / len(per_query)


# ------------------------------------------------------------------ TripletLoss: hand values


def test_triplet_single_query_hand_value() -> None:
    q = torch.tensor([[3.0, 0.0]])
    p = torch.tensor([[1.2, 1.6]])  # cos 0.6
    n = torch.tensor([[[0.8, 0.6], [0.0, 2.0]]])  # cos 0.8 and 0.0
    # max(0, 0.2 - 0.6 + 0.8) = 0.4 and max(0, 0.2 - 0.6 + 0.0) = 0, mean over 2 pairs = 0.2
    assert TripletLoss(margin=0.2)(q, p, n).item() == pytest.approx(0.2, abs=1e-6)
    # margin 0.5: 0.7 and max(0, -0.1) = 0 -> 0.35
    assert TripletLoss(margin=0.5)(q, p, n).item() == pytest.approx(0.35, abs=1e-6)


def test_triplet_batch_hand_values() -> None:
    q, p, n, n_mask = _batch()
    # Own hard negatives only: q1 -> 0.4, 0 ; q2 -> 0.2 - 0.6 + 0.8 = 0.4 (n22 padded); 3 pairs
    no_ib = TripletLoss(margin=0.2, in_batch_negatives=False)(q, p, n, n_mask)
    assert no_ib.item() == pytest.approx(0.8 / 3, abs=1e-6)
    # Plus in-batch positives: q1 vs p2 -> 0.4, q2 vs p1 -> 0.4; 5 pairs, sum 1.6
    with_ib = TripletLoss(margin=0.2, in_batch_negatives=True)(q, p, n, n_mask)
    assert with_ib.item() == pytest.approx(1.6 / 5, abs=1e-6)
    # In-batch positives only: both pairs 0.4
    assert TripletLoss(margin=0.2)(q, p).item() == pytest.approx(0.4, abs=1e-6)


def test_infonce_batch_hand_values() -> None:
    q, p, n, n_mask = _batch()
    e = math.exp
    # tau = 0.5, logits = cos / 0.5. In-batch: other positives and every query's valid hard negatives.
    # q1: pos 0.6 | p2 0.8, n11 0.8, n12 0.0, n21 0.6
    l1 = -1.2 + math.log(e(1.2) + e(1.6) + e(1.6) + e(0.0) + e(1.2))
    # q2: pos 0.6 | p1 0.8, n11 0.6, n12 1.0, n21 0.8
    l2 = -1.2 + math.log(e(1.2) + e(1.6) + e(1.2) + e(2.0) + e(1.6))
    loss = InfoNCELoss(temperature=0.5, in_batch_negatives=True)(q, p, n, n_mask)
    assert loss.item() == pytest.approx((l1 + l2) / 2, abs=1e-5)
    # Own hard negatives only: q1: pos 0.6 | 0.8, 0.0 ; q2: pos 0.6 | 0.8
    l1 = -1.2 + math.log(e(1.2) + e(1.6) + e(0.0))
    l2 = -1.2 + math.log(e(1.2) + e(1.6))
    loss = InfoNCELoss(temperature=0.5, in_batch_negatives=False)(q, p, n, n_mask)
    assert loss.item() == pytest.approx((l1 + l2) / 2, abs=1e-5)


def test_infonce_without_negatives_is_zero() -> None:
    q, p = torch.randn(1, 4), torch.randn(1, 4)
    loss = InfoNCELoss()(q, p)
    assert loss.item() == pytest.approx(0.0, abs=1e-7)  # -log(e^s / e^s)


@pytest.mark.parametrize("loss", ["triplet", "infonce"])
@pytest.mark.parametrize("in_batch", [True, False])
def test_matches_loop_reference_with_ragged_negatives(loss: str, in_batch: bool) -> None:
    torch.manual_seed(0)
    q, p, n = torch.randn(4, 8), torch.randn(4, 8), torch.randn(4, 3, 8)
    n_mask = torch.tensor([[1, 1, 1], [1, 0, 0], [0, 0, 0], [1, 1, 0]], dtype=torch.bool)
    fn = ranking_loss(loss, margin=0.5, temperature=0.1, in_batch_negatives=in_batch)  # type: ignore[arg-type]
    expected = _reference(q, p, n, n_mask, loss, margin=0.5, temperature=0.1, in_batch=in_batch)
    assert fn(q, p, n, n_mask).item() == pytest.approx(expected, rel=1e-5, abs=1e-6)


# ------------------------------------------------------------------ TripletLoss: masking


@pytest.mark.parametrize("loss", ["triplet", "infonce"])
@pytest.mark.parametrize("in_batch", [True, False])
def test_masked_negatives_equal_dropped_rows(loss: str, in_batch: bool) -> None:
    torch.manual_seed(1)
    q, p, n = torch.randn(3, 6), torch.randn(3, 6), torch.randn(3, 4, 6)
    n_mask = torch.ones(3, 4, dtype=torch.bool)
    n_mask[:, 2:] = False
    fn = ranking_loss(loss, in_batch_negatives=in_batch)  # type: ignore[arg-type]
    masked = fn(q, p, n, n_mask)
    dropped = fn(q, p, n[:, :2])
    torch.testing.assert_close(masked, dropped, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("loss", ["triplet", "infonce"])
@pytest.mark.parametrize("in_batch", [True, False])
def test_padding_values_never_matter(loss: str, in_batch: bool) -> None:
    torch.manual_seed(2)
    q, p, n = torch.randn(3, 5), torch.randn(3, 5), torch.randn(3, 3, 5)
    n_mask = torch.tensor([[1, 0, 0], [1, 1, 0], [1, 1, 1]], dtype=torch.bool)
    fn = ranking_loss(loss, margin=1.0, in_batch_negatives=in_batch)  # type: ignore[arg-type]
    reference = fn(q, p, n, n_mask)

    garbage = n.clone()
    garbage[~n_mask] = float("nan")
    garbage.requires_grad_(True)
    q_ = q.clone().requires_grad_(True)
    loss_value = fn(q_, p, garbage, n_mask)
    torch.testing.assert_close(loss_value, reference)
    loss_value.backward()
    assert q_.grad is not None and torch.isfinite(q_.grad).all()
    assert garbage.grad is not None and torch.isfinite(garbage.grad).all()
    assert (garbage.grad[~n_mask] == 0).all()


def test_integer_mask_accepted() -> None:
    q, p, n, n_mask = _batch()
    fn = TripletLoss()
    torch.testing.assert_close(fn(q, p, n, n_mask.long()), fn(q, p, n, n_mask))


# ------------------------------------------------------------------ TripletLoss: degenerate cases


def test_triplet_without_any_negative_is_zero_with_grad() -> None:
    q = torch.randn(1, 4, requires_grad=True)
    p = torch.randn(1, 4)
    n = torch.randn(1, 2, 4)
    for loss in (
        TripletLoss()(q, p),  # one query: no in-batch negative
        TripletLoss(in_batch_negatives=False)(q, p),
        TripletLoss()(q, p, n, torch.zeros(1, 2, dtype=torch.bool)),
        TripletLoss(in_batch_negatives=False)(q, p, torch.randn(1, 0, 4)),
    ):
        assert loss.item() == 0.0
        assert loss.requires_grad
        loss.backward()
        assert q.grad is not None and (q.grad == 0).all()


def test_zero_negatives_k0() -> None:
    torch.manual_seed(3)
    q, p = torch.randn(3, 4), torch.randn(3, 4)
    for kind in ("triplet", "infonce"):
        fn = ranking_loss(kind)  # type: ignore[arg-type]
        torch.testing.assert_close(fn(q, p, torch.randn(3, 0, 4)), fn(q, p))


def test_triplet_gradient_lowers_loss() -> None:
    torch.manual_seed(4)
    q = torch.randn(4, 8, requires_grad=True)
    p, n = torch.randn(4, 8), torch.randn(4, 3, 8)
    for kind in ("triplet", "infonce"):
        fn = ranking_loss(kind, margin=0.5, temperature=0.1)  # type: ignore[arg-type]
        qq = q.detach().clone().requires_grad_(True)
        opt = torch.optim.SGD([qq], lr=0.5)
        start = fn(qq, p, n).item()
        for _ in range(20):
            opt.zero_grad()
            fn(qq, p, n).backward()
            opt.step()
        assert fn(qq, p, n).item() < start


# ------------------------------------------------------------------ TripletLoss: errors


@pytest.mark.parametrize(
    ("q_shape", "p_shape", "n_shape", "mask_shape"),
    [
        ((4,), (4,), None, None),  # q not 2-d
        ((0, 4), (0, 4), None, None),  # empty batch
        ((2, 4), (2, 3), None, None),  # p dim mismatch
        ((2, 4), (3, 4), None, None),  # p batch mismatch
        ((2, 4), (2, 4), (2, 4), None),  # n not 3-d
        ((2, 4), (2, 4), (3, 1, 4), None),  # n batch mismatch
        ((2, 4), (2, 4), (2, 1, 5), None),  # n dim mismatch
        ((2, 4), (2, 4), (2, 3, 4), (2, 2)),  # n_mask shape mismatch
        ((2, 4), (2, 4), None, (2, 3)),  # n_mask without n
    ],
)
def test_triplet_shape_errors(
    q_shape: tuple[int, ...],
    p_shape: tuple[int, ...],
    n_shape: tuple[int, ...] | None,
    mask_shape: tuple[int, ...] | None,
) -> None:
    n = torch.randn(n_shape) if n_shape else None
    n_mask = torch.ones(mask_shape, dtype=torch.bool) if mask_shape else None
    for kind in ("triplet", "infonce"):
        with pytest.raises(ValueError):
            ranking_loss(kind)(torch.randn(q_shape), torch.randn(p_shape), n, n_mask)  # type: ignore[arg-type]


def test_triplet_bad_arguments() -> None:
    with pytest.raises(ValueError, match="loss"):
        ranking_loss("hinge")  # type: ignore[arg-type]
    chosen = ranking_loss("infonce", margin=0.3, temperature=0.1, in_batch_negatives=False)
    assert isinstance(chosen, InfoNCELoss) and chosen.temperature == 0.1 and not chosen.in_batch_negatives
    hinge = ranking_loss("triplet", margin=0.3, temperature=0.1)
    assert isinstance(hinge, TripletLoss) and hinge.margin == 0.3 and hinge.in_batch_negatives
    with pytest.raises(ValueError, match="temperature"):
        InfoNCELoss(temperature=0.0)
    with pytest.raises(ValueError, match="margin"):
        TripletLoss(margin=-0.1)


# ------------------------------------------------------------------ AttentionAlignmentLoss: hand values

# Toy: attention a = (0.5, 0.3, 0.2), target w = (2, 0, 1) -> r = (2/3, 0, 1/3).
#   rationale support: a' = (0.5, 0.2) / 0.7 = (5/7, 2/7)
#       KL = 2/3 log((2/3)/(5/7)) + 1/3 log((1/3)/(2/7)) = 2/3 log(14/15) + 1/3 log(7/6) = 0.0053883
#   full support: a' = a
#       KL = 2/3 log((2/3)/0.5) + 1/3 log((1/3)/0.2) = 2/3 log(4/3) + 1/3 log(5/3) = 0.3620633
ATT = torch.tensor([[0.5, 0.3, 0.2]])
TGT = torch.tensor([[2.0, 0.0, 1.0]])
KL_RATIONALE = 2 / 3 * math.log(14 / 15) + 1 / 3 * math.log(7 / 6)
KL_FULL = 2 / 3 * math.log(4 / 3) + 1 / 3 * math.log(5 / 3)


def test_alignment_hand_values() -> None:
    mask = torch.ones(1, 3, dtype=torch.bool)
    assert KL_RATIONALE == pytest.approx(0.0053883, abs=1e-7)
    assert KL_FULL == pytest.approx(0.3620633, abs=1e-7)
    rationale = AttentionAlignmentLoss(support="rationale")(ATT, TGT, mask)
    full = AttentionAlignmentLoss(support="full")(ATT, TGT, mask)
    assert rationale.item() == pytest.approx(KL_RATIONALE, abs=1e-6)
    assert full.item() == pytest.approx(KL_FULL, abs=1e-6)


def test_alignment_perfect_match_is_zero() -> None:
    attention = torch.tensor([[0.0, 0.6, 0.4, 0.0]])
    target = torch.tensor([[0.0, 3.0, 2.0, 0.0]])
    mask = torch.ones(1, 4)
    for support in ("rationale", "full"):
        loss = AttentionAlignmentLoss(support=support)(attention, target, mask)  # type: ignore[arg-type]
        assert loss.item() == pytest.approx(0.0, abs=1e-6)


def test_alignment_content_mask_and_padding() -> None:
    # Tokens: [CLS] t1 t2 [SEP] [PAD]; attention on [PAD] is garbage and must be ignored.
    attention = torch.tensor([[0.4, 0.3, 0.2, 0.1, float("nan")]])
    target = torch.tensor([[0.0, 1.0, 1.0, 0.0, 5.0]])  # weight on [PAD] is outside the mask: ignored
    mask = torch.tensor([[1, 1, 1, 1, 0]])
    content = torch.tensor([[0, 1, 1, 0, 0]], dtype=torch.bool)
    full = AttentionAlignmentLoss(support="full")
    # r = (0.5, 0.5) on t1, t2. With content_mask: a' = (0.3, 0.2) / 0.5 = (0.6, 0.4)
    expected = 0.5 * math.log(0.5 / 0.6) + 0.5 * math.log(0.5 / 0.4)
    assert full(attention, target, mask, content).item() == pytest.approx(expected, abs=1e-6)
    # Without: a' = (0.3, 0.2) over all real tokens (they sum to 1)
    expected = 0.5 * math.log(0.5 / 0.3) + 0.5 * math.log(0.5 / 0.2)
    assert full(attention, target, mask).item() == pytest.approx(expected, abs=1e-6)
    # Rationale support only looks at t1, t2 either way: a' = (0.6, 0.4)
    rationale = AttentionAlignmentLoss(support="rationale")
    expected = 0.5 * math.log(0.5 / 0.6) + 0.5 * math.log(0.5 / 0.4)
    assert rationale(attention, target, mask).item() == pytest.approx(expected, abs=1e-6)
    assert rationale(attention, target, mask, content).item() == pytest.approx(expected, abs=1e-6)


def test_alignment_batch_mean_skips_examples_without_rationale() -> None:
    attention = torch.cat([ATT, torch.tensor([[0.1, 0.1, 0.8]]), ATT])
    target = torch.cat([TGT, torch.zeros(1, 3), TGT * 7.0])  # the scale of the target is irrelevant
    mask = torch.ones(3, 3)
    for support, expected in (("rationale", KL_RATIONALE), ("full", KL_FULL)):
        loss = AttentionAlignmentLoss(support=support)(attention, target, mask)  # type: ignore[arg-type]
        assert loss.item() == pytest.approx(expected, abs=1e-6)


# ------------------------------------------------------------------ AttentionAlignmentLoss: behaviour


def test_rationale_support_ignores_mass_off_the_rationale() -> None:
    mask = torch.ones(1, 5)
    target = torch.tensor([[0.0, 2.0, 0.0, 1.0, 0.0]])
    a1 = torch.tensor([[0.30, 0.20, 0.10, 0.10, 0.30]])
    a2 = torch.tensor([[0.05, 0.20, 0.60, 0.10, 0.05]])  # same rationale mass, moved among the others
    a3 = torch.tensor([[0.02, 0.04, 0.90, 0.02, 0.02]])  # rationale mass scaled down, same proportions
    rationale = AttentionAlignmentLoss(support="rationale")
    full = AttentionAlignmentLoss(support="full")
    torch.testing.assert_close(rationale(a1, target, mask), rationale(a2, target, mask))
    torch.testing.assert_close(rationale(a1, target, mask), rationale(a3, target, mask))
    # Full support: moving mass among non-rationale tokens keeps the loss (r = 0 there) ...
    torch.testing.assert_close(full(a1, target, mask), full(a2, target, mask))
    # ... but mass taken off the rationale is penalised.
    assert full(a3, target, mask).item() > full(a1, target, mask).item() + 1.0


def test_full_support_depends_on_off_rationale_mass_rationale_does_not() -> None:
    mask = torch.ones(1, 4)
    target = torch.tensor([[1.0, 1.0, 0.0, 0.0]])
    on = torch.tensor([[0.45, 0.45, 0.05, 0.05]])
    off = torch.tensor([[0.15, 0.15, 0.35, 0.35]])
    rationale = AttentionAlignmentLoss(support="rationale")
    full = AttentionAlignmentLoss(support="full")
    assert rationale(on, target, mask).item() == pytest.approx(0.0, abs=1e-6)
    assert rationale(off, target, mask).item() == pytest.approx(0.0, abs=1e-6)
    assert full(on, target, mask).item() == pytest.approx(-math.log(0.9), abs=1e-6)
    assert full(off, target, mask).item() == pytest.approx(-math.log(0.3), abs=1e-6)


@pytest.mark.parametrize("support", ["rationale", "full"])
def test_sgd_on_attention_logits_lowers_kl(support: str) -> None:
    torch.manual_seed(5)
    mask = torch.tensor([[1, 1, 1, 1, 1, 0], [1, 1, 1, 1, 1, 1]], dtype=torch.bool)
    target = torch.tensor([[0.0, 3.0, 0.0, 1.0, 0.0, 0.0], [0.0, 1.0, 1.0, 0.0, 2.0, 0.0]])
    logits = torch.nn.Parameter(torch.randn(2, 6))
    fn = AttentionAlignmentLoss(support=support)  # type: ignore[arg-type]
    opt = torch.optim.SGD([logits], lr=1.0)

    def step() -> torch.Tensor:
        attention = torch.softmax(logits.masked_fill(~mask, float("-inf")), dim=-1)
        return fn(attention, target, mask)

    losses = []
    for _ in range(30):
        opt.zero_grad()
        loss = step()
        loss.backward()
        assert logits.grad is not None and torch.isfinite(logits.grad).all()
        opt.step()
        losses.append(loss.item())
    final = step().item()
    assert losses[1] < losses[0]
    assert final < 0.5 * losses[0]


def test_alignment_zero_target_returns_zero_with_grad() -> None:
    attention = torch.tensor([[0.5, 0.3, 0.2], [0.1, 0.1, 0.8]], requires_grad=True)
    target = torch.zeros(2, 3)
    for support in ("rationale", "full"):
        loss = AttentionAlignmentLoss(support=support)(attention, target, torch.ones(2, 3))  # type: ignore[arg-type]
        assert loss.item() == 0.0
        assert loss.requires_grad
        (grad,) = torch.autograd.grad(loss, attention)
        assert (grad == 0).all()
    # Rationale weight only on masked-out tokens counts as no rationale.
    mask = torch.tensor([[1, 1, 0], [1, 1, 0]])
    target = torch.tensor([[0.0, 0.0, 1.0], [0.0, 0.0, 2.0]])
    assert AttentionAlignmentLoss()(attention, target, mask).item() == 0.0


def test_alignment_zero_attention_on_rationale_is_finite() -> None:
    attention = torch.tensor([[1.0, 0.0, 0.0]], requires_grad=True)
    loss = AttentionAlignmentLoss(support="rationale")(attention, TGT, torch.ones(1, 3))
    assert torch.isfinite(loss)
    loss.backward()
    assert attention.grad is not None and torch.isfinite(attention.grad).all()


def test_alignment_errors() -> None:
    fn = AttentionAlignmentLoss()
    mask = torch.ones(1, 3)
    with pytest.raises(ValueError, match="attention"):
        fn(torch.rand(3), torch.rand(3), torch.ones(3))
    with pytest.raises(ValueError, match="target"):
        fn(ATT, torch.rand(1, 4), mask)
    with pytest.raises(ValueError, match="mask"):
        fn(ATT, TGT, torch.ones(2, 3))
    with pytest.raises(ValueError, match="content_mask"):
        fn(ATT, TGT, mask, torch.ones(1, 2))
    with pytest.raises(ValueError, match="non-negative"):
        fn(ATT, torch.tensor([[1.0, -0.5, 0.0]]), mask)
    with pytest.raises(ValueError, match="support"):
        AttentionAlignmentLoss(support="tokens")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="eps"):
        AttentionAlignmentLoss(eps=0.0)
