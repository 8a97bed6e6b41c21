"""duet_ref -- independent PyTorch reference of the duet model (docs/MODEL.md).

Written from docs/MODEL.md only. Plain torch autograd supplies every gradient.

Contents
  init_branch / branch_forward   the two-branch MLP (fc-BN-ReLU-dropout-fc-L2) and
                                 the linear variant (fc-L2); weights stored [in x out]
  loss_terms                     i2t, t2i, img_struct, txt_struct and the total
  evaluate / recall_metrics      R@1/5/10, medr, meanr both ways, R-sum, folds
  make_optimizer / train         batches of B images x S sentences, Adam/SGD,
                                 per-epoch lr decay, best-val R-sum, patience

Its random stream (torch.Generator / numpy Generator) is its own; only the
semantics follow MODEL.md, not duet's RNG.

Choices the spec leaves open (documented here, reported to the C side):
  * A structure anchor needs at least one neighbour AND at least one negative;
    topk_mean is per row (K_eff = min(K, #negatives of that row)) and a term is
    the mean over its anchors (equal to sum / (#anchors * K_eff) whenever every
    row has the same number of negatives, as in i2t, t2i and txt_struct).
    A term with no anchors is 0.
  * A BN batch with n = 1 rows: the running variance is left unchanged (the
    unbiased factor n/(n-1) is undefined); the running mean is updated.
"""

import copy
import math
import time

import numpy as np
import torch

BN_EPS = 1e-5
BN_MOMENTUM = 0.1
NORM_EPS = 1e-12
DIST_EPS = 1e-4


# --------------------------------------------------------------------------- #
# Branches
# --------------------------------------------------------------------------- #

def init_branch(d_in, hidden, embed, linear=False, gen=None, dtype=torch.float32):
    """nn.Linear default init, weights stored [in x out]; gamma=1, beta=0.

    Returns (params, buffers): params a dict of leaf tensors with
    requires_grad=True, buffers {'running_mean','running_var'} (MLP only).
    """
    def uni(shape, fan_in):
        bound = 1.0 / math.sqrt(fan_in)
        t = torch.empty(shape, dtype=dtype)
        t.uniform_(-bound, bound, generator=gen)
        return t

    if linear:
        p = {"W": uni((d_in, embed), d_in), "b": uni((embed,), d_in)}
        bufs = {}
    else:
        p = {
            "W1": uni((d_in, hidden), d_in),
            "b1": uni((hidden,), d_in),
            "gamma": torch.ones(hidden, dtype=dtype),
            "beta": torch.zeros(hidden, dtype=dtype),
            "W2": uni((hidden, embed), hidden),
            "b2": uni((embed,), hidden),
        }
        bufs = {"running_mean": torch.zeros(hidden, dtype=dtype),
                "running_var": torch.ones(hidden, dtype=dtype)}
    for t in p.values():
        t.requires_grad_(True)
    return p, bufs


def l2_normalize(z):
    """E = Z / max(||Z||_2, 1e-12) per row."""
    n = torch.sqrt((z * z).sum(dim=1, keepdim=True))
    return z / torch.clamp(n, min=NORM_EPS)


def branch_forward(p, bufs, x, train, mask=None, dropout=0.5, gen=None,
                   momentum=BN_MOMENTUM, eps=BN_EPS, update_stats=True):
    """Forward of one branch for a batch x [n x d_in]; returns E [n x o].

    Linear variant when 'W' in p.  In training mode with the MLP variant the
    dropout mask is `mask` when given (entries 0 or 1/(1-p)), else drawn from
    `gen`; the BN running stats in `bufs` are updated in place (no grad).
    """
    if "W" in p:
        return l2_normalize(x @ p["W"] + p["b"])
    z1 = x @ p["W1"] + p["b1"]
    if train:
        n = z1.shape[0]
        mu = z1.mean(dim=0)
        var = ((z1 - mu) ** 2).mean(dim=0)  # biased
        xh = (z1 - mu) / torch.sqrt(var + eps)
        if update_stats:
            with torch.no_grad():
                bufs["running_mean"].mul_(1 - momentum).add_(momentum * mu.detach())
                if n > 1:
                    bufs["running_var"].mul_(1 - momentum).add_(
                        momentum * var.detach() * (n / (n - 1)))
    else:
        xh = (z1 - bufs["running_mean"]) / torch.sqrt(bufs["running_var"] + eps)
    y = p["gamma"] * xh + p["beta"]
    r = torch.clamp(y, min=0)
    if train:
        if mask is None:
            if dropout > 0:
                keep = torch.rand(r.shape, generator=gen, dtype=r.dtype) >= dropout
                mask = keep.to(r.dtype) / (1.0 - dropout)
            else:
                mask = torch.ones_like(r)
        r = r * mask
    z2 = r @ p["W2"] + p["b2"]
    return l2_normalize(z2)


# --------------------------------------------------------------------------- #
# Loss
# --------------------------------------------------------------------------- #

def pdist(a, b):
    """d(a_i, b_j) = sqrt(max(2 - 2 a_i.b_j, 0) + 1e-4) for unit rows."""
    return torch.sqrt(torch.clamp(2.0 - 2.0 * (a @ b.t()), min=0.0) + DIST_EPS)


def _zero_like_graph(t):
    """A +0.0 scalar that stays connected to t's graph (zero gradient)."""
    return torch.zeros((), dtype=t.dtype) + 0.0 * t.sum()


def topk_hinge_term(pos, dist, neg_mask, margin, k):
    """Mean over anchors of the mean of the K_eff largest hinge terms.

    pos [n] (positive distance of each anchor), dist [n x m] (distances to every
    candidate), neg_mask [n x m] bool (which candidates are negatives).
    hinge = max(0, margin + pos - neg).  K_eff = min(k, #negatives) per row;
    ties broken by the lower candidate index (stable descending sort).
    Anchors with no negative are dropped; returns 0 when no anchor is left.
    """
    n_neg = neg_mask.sum(dim=1)
    rows = n_neg > 0
    if pos.shape[0] == 0 or not bool(rows.any()):
        return _zero_like_graph(dist)
    pos, dist, neg_mask, n_neg = pos[rows], dist[rows], neg_mask[rows], n_neg[rows]
    hinge = torch.clamp(margin + pos.unsqueeze(1) - dist, min=0.0)
    neg_inf = torch.full_like(hinge, -math.inf)
    h = torch.where(neg_mask, hinge, neg_inf)
    vals, _ = torch.sort(h, dim=1, descending=True, stable=True)
    k_eff = torch.clamp(n_neg, max=k)                      # [n]
    keep = torch.arange(h.shape[1]).unsqueeze(0) < k_eff.unsqueeze(1)
    sel = torch.where(keep, vals, torch.zeros_like(vals))
    per_row = sel.sum(dim=1) / k_eff.to(sel.dtype)
    return per_row.mean()


def structure_term(emb, owner, margin, k):
    """txt_struct / img_struct: anchors are rows with another row of the same
    owner; pos = farthest same-owner row (excluding itself), negatives every
    row with a different owner."""
    n = emb.shape[0]
    dist = pdist(emb, emb)
    same = owner.unsqueeze(0) == owner.unsqueeze(1)
    eye = torch.eye(n, dtype=torch.bool)
    nbr = same & ~eye
    anchors = nbr.any(dim=1)
    if not bool(anchors.any()):
        return _zero_like_graph(emb)
    pos = torch.where(nbr, dist, torch.full_like(dist, -math.inf)).max(dim=1).values
    idx = anchors.nonzero(as_tuple=True)[0]
    return topk_hinge_term(pos[idx], dist[idx], (~same)[idx], margin, k)


def loss_terms(img_emb, txt_emb, sent_img, margin=0.05, top_k=10, img_group=None,
               w_i2t=1.0, w_t2i=1.5, w_img_struct=0.0, w_txt_struct=0.05):
    """All four raw terms and the weighted total, as a dict of 0-d tensors.

    img_emb [B x o], txt_emb [n_s x o] (unit rows); sent_img [n_s] long: c(j);
    img_group [B] (any dtype) or None.
    """
    sent_img = sent_img.long()
    n_img = img_emb.shape[0]
    d_it = pdist(img_emb, txt_emb)                    # [B x n_s]
    pos = d_it[sent_img, torch.arange(txt_emb.shape[0])]   # d(I_c(j), T_j)
    # i2t: anchor (c(j), j); negatives d(I_c(j), T_j') with c(j') != c(j)
    d_rows = d_it[sent_img]                          # [n_s x n_s]
    neg_s = sent_img.unsqueeze(0) != sent_img.unsqueeze(1)
    i2t = topk_hinge_term(pos, d_rows, neg_s, margin, top_k)
    # t2i: anchor sentence j; negatives d(T_j, I_i), i != c(j)
    d_ti = d_it.t()                                   # [n_s x B]
    neg_i = torch.arange(n_img).unsqueeze(0) != sent_img.unsqueeze(1)
    t2i = topk_hinge_term(pos, d_ti, neg_i, margin, top_k)
    txt_struct = structure_term(txt_emb, sent_img, margin, top_k)
    if img_group is not None:
        g = torch.as_tensor(img_group)
        img_struct = structure_term(img_emb, g, margin, top_k)
    else:
        if w_img_struct != 0:
            raise ValueError("img_struct weight is nonzero but images have no groups")
        img_struct = _zero_like_graph(img_emb)
    total = w_i2t * i2t + w_t2i * t2i + w_img_struct * img_struct + w_txt_struct * txt_struct
    return {"i2t": i2t, "t2i": t2i, "img_struct": img_struct,
            "txt_struct": txt_struct, "total": total}


# --------------------------------------------------------------------------- #
# Evaluation
# --------------------------------------------------------------------------- #

def recall_metrics(img_emb, txt_emb, cap_img):
    """Metrics on one fold. img_emb [n x o], txt_emb [m x o] numpy or torch,
    cap_img [m] int: image (row of img_emb) of each caption."""
    im = torch.as_tensor(img_emb)
    tx = torch.as_tensor(txt_emb)
    cap_img = torch.as_tensor(np.asarray(cap_img), dtype=torch.long)
    scores = im @ tx.t()                                          # [n x m]
    n, m = scores.shape
    own = cap_img.unsqueeze(0) == torch.arange(n).unsqueeze(1)    # [n x m]
    best_own = torch.where(own, scores, torch.full_like(scores, -math.inf)).max(dim=1).values
    r_i2t = 1 + (scores > best_own.unsqueeze(1)).sum(dim=1)
    own_score = scores[cap_img, torch.arange(m)]
    r_t2i = 1 + (scores > own_score.unsqueeze(0)).sum(dim=0)

    def summ(r):
        r = r.numpy().astype(np.float64)
        return {"r1": 100.0 * np.mean(r <= 1), "r5": 100.0 * np.mean(r <= 5),
                "r10": 100.0 * np.mean(r <= 10), "medr": float(np.median(r)),
                "meanr": float(np.mean(r))}
    a, b = summ(r_i2t), summ(r_t2i)
    rsum = a["r1"] + a["r5"] + a["r10"] + b["r1"] + b["r5"] + b["r10"]
    return {"i2t": a, "t2i": b, "rsum": rsum}


def fold_metrics(img_emb, txt_emb, cap_img, fold_images=0):
    """Consecutive folds of fold_images images (0 = one fold) with their
    captions; every metric averaged over folds."""
    img_emb = torch.as_tensor(img_emb)
    txt_emb = torch.as_tensor(txt_emb)
    cap_img = np.asarray(cap_img, dtype=np.int64)
    n = img_emb.shape[0]
    if fold_images <= 0 or fold_images >= n:
        return recall_metrics(img_emb, txt_emb, cap_img)
    res = []
    for s in range(0, n, fold_images):
        e = min(s + fold_images, n)
        sel = np.nonzero((cap_img >= s) & (cap_img < e))[0]
        res.append(recall_metrics(img_emb[s:e], txt_emb[sel], cap_img[sel] - s))
    out = {"i2t": {}, "t2i": {}}
    for d in ("i2t", "t2i"):
        for k in res[0][d]:
            out[d][k] = float(np.mean([r[d][k] for r in res]))
    out["rsum"] = float(np.mean([r["rsum"] for r in res]))
    return out


class Model:
    """Both branches with their parameters and BN buffers."""

    def __init__(self, d_img, d_txt, hidden=2048, embed=512, linear=False,
                 dropout=0.5, gen=None, dtype=torch.float32):
        self.linear = bool(linear)
        self.dropout = dropout
        self.img, self.img_bufs = init_branch(d_img, hidden, embed, linear, gen, dtype)
        self.txt, self.txt_bufs = init_branch(d_txt, hidden, embed, linear, gen, dtype)

    def named_params(self):
        for pre, p in (("img_", self.img), ("txt_", self.txt)):
            for k, v in p.items():
                yield pre + k, v

    def forward(self, x_img, x_txt, train, gen=None, img_mask=None, txt_mask=None):
        ei = branch_forward(self.img, self.img_bufs, x_img, train, img_mask,
                            self.dropout, gen)
        et = branch_forward(self.txt, self.txt_bufs, x_txt, train, txt_mask,
                            self.dropout, gen)
        return ei, et

    @torch.no_grad()
    def embed(self, x, which, chunk=4096):
        p, b = (self.img, self.img_bufs) if which == "img" else (self.txt, self.txt_bufs)
        out = [branch_forward(p, b, x[s:s + chunk], False) for s in range(0, x.shape[0], chunk)]
        return torch.cat(out) if out else torch.zeros(0)

    def state(self):
        return {"img": {k: v.detach().clone() for k, v in self.img.items()},
                "txt": {k: v.detach().clone() for k, v in self.txt.items()},
                "img_bufs": copy.deepcopy(self.img_bufs),
                "txt_bufs": copy.deepcopy(self.txt_bufs)}

    @torch.no_grad()
    def load(self, st):
        for k, v in st["img"].items():
            self.img[k].copy_(v)
        for k, v in st["txt"].items():
            self.txt[k].copy_(v)
        for k, v in st["img_bufs"].items():
            self.img_bufs[k].copy_(v)
        for k, v in st["txt_bufs"].items():
            self.txt_bufs[k].copy_(v)


def evaluate(model, img_x, txt_x, cap_img, fold_images=0):
    """Evaluation-mode embeddings then fold_metrics."""
    ei = model.embed(img_x, "img")
    et = model.embed(txt_x, "txt")
    return fold_metrics(ei, et, cap_img, fold_images)


# --------------------------------------------------------------------------- #
# Optimization / training
# --------------------------------------------------------------------------- #

def make_optimizer(model, optimizer="adam", lr=1e-4, weight_decay=0.0, momentum=0.9):
    """Weight decay (wd * w added to the gradient) only on W1/W2 (W)."""
    decay, no_decay = [], []
    for name, t in model.named_params():
        (decay if name.split("_", 1)[1] in ("W1", "W2", "W") else no_decay).append(t)
    groups = [{"params": decay, "weight_decay": weight_decay},
              {"params": no_decay, "weight_decay": 0.0}]
    if optimizer == "adam":
        return torch.optim.Adam(groups, lr=lr, betas=(0.9, 0.999), eps=1e-8)
    if optimizer == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=momentum)
    raise ValueError("unknown optimizer %r" % optimizer)


def sample_batch(img_ids, img_caps, S, rng):
    """For each image of the batch, S of its captions: without replacement,
    with replacement when it has fewer than S. Returns (caption rows, c(j))."""
    rows, owner = [], []
    for b, i in enumerate(img_ids):
        caps = img_caps[i]
        pick = rng.choice(len(caps), size=S, replace=len(caps) < S)
        rows.extend(caps[q] for q in pick)
        owner.extend([b] * S)
    return np.asarray(rows, dtype=np.int64), np.asarray(owner, dtype=np.int64)


def train_epoch(model, opt, img_x, txt_x, train_imgs, img_caps, cfg, rng, gen,
                img_group=None, max_steps=None, on_step=None):
    """One epoch: image order reshuffled, ceil(n/B) batches (last smaller).
    Returns the mean total loss over the batches run."""
    B, S = cfg["batch_images"], cfg["sents_per_image"]
    order = np.asarray(train_imgs)[rng.permutation(len(train_imgs))]
    n_batches = (len(order) + B - 1) // B
    losses = []
    for bi in range(n_batches):
        if max_steps is not None and bi >= max_steps:
            break
        ids = order[bi * B:(bi + 1) * B]
        rows, owner = sample_batch(ids, img_caps, S, rng)
        xi = img_x[torch.as_tensor(ids)]
        xt = txt_x[torch.as_tensor(rows)]
        ei, et = model.forward(xi, xt, True, gen)
        grp = None if img_group is None else torch.as_tensor(np.asarray(img_group)[ids])
        t = loss_terms(ei, et, torch.as_tensor(owner), cfg["margin"], cfg["top_k"], grp,
                       cfg.get("w_i2t", 1.0), cfg["w_t2i"], cfg.get("w_img_struct", 0.0),
                       cfg["w_txt_struct"])
        opt.zero_grad(set_to_none=True)
        t["total"].backward()
        opt.step()
        losses.append(float(t["total"]))
        if on_step is not None:
            on_step(bi)
    return float(np.mean(losses)) if losses else 0.0


def train(model, data, cfg, log=None):
    """Full training with per-epoch lr decay, best-val R-sum and patience.

    data: dict with 'img_x','txt_x' (torch), 'img_caps' (list of caption-row
    lists per image), 'train','val' (image index arrays), optional 'img_group'.
    Leaves the best-validation parameters in model; returns (best_epoch,
    best_val_metrics, history).
    """
    rng = np.random.default_rng(cfg["seed"])
    gen = torch.Generator().manual_seed(cfg["seed"] + 1)
    opt = make_optimizer(model, cfg.get("optimizer", "adam"), cfg["lr"],
                         cfg.get("weight_decay", 0.0), cfg.get("momentum", 0.9))
    val_imgs = np.asarray(data["val"])
    val_rows, val_owner = [], []
    for k, i in enumerate(val_imgs):
        val_rows.extend(data["img_caps"][i])
        val_owner.extend([k] * len(data["img_caps"][i]))
    val_rows = torch.as_tensor(np.asarray(val_rows, dtype=np.int64))
    best, best_epoch, best_state, bad, hist = -1.0, 0, None, 0, []
    for ep in range(1, cfg["epochs"] + 1):
        loss = train_epoch(model, opt, data["img_x"], data["txt_x"], data["train"],
                           data["img_caps"], cfg, rng, gen, data.get("img_group"))
        for g in opt.param_groups:
            g["lr"] *= cfg["lr_decay"]
        m = evaluate(model, data["img_x"][torch.as_tensor(val_imgs)],
                     data["txt_x"][val_rows], val_owner, cfg.get("fold_images", 0))
        hist.append({"epoch": ep, "loss": loss, "val_rsum": m["rsum"]})
        if log:
            log("epoch %d loss %.5f val rsum %.2f" % (ep, loss, m["rsum"]))
        if m["rsum"] > best:
            best, best_epoch, best_state, bad, best_m = m["rsum"], ep, model.state(), 0, m
        else:
            bad += 1
            if cfg.get("patience", 0) > 0 and bad >= cfg["patience"]:
                break
    if best_state is not None:
        model.load(best_state)
        return best_epoch, best_m, hist
    return 0, None, hist


def now():
    return time.perf_counter()
