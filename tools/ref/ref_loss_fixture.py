#!/usr/bin/python3
"""Writes tests/fixtures/ref_loss/<case>/ : a tiny forward/loss/gradient/step
fixture per case, computed by the independent reference (tools/ref/duet_ref.py)
in float64 from float32 inputs, saved as float32 little-endian C-order .npy.

    /usr/bin/python3 tools/ref/ref_loss_fixture.py [--out DIR] [--check]

--check also runs the self-tests (gradcheck in float64, unit norms, total =
weighted sum of the terms, the forward against torch.nn modules) and exits
nonzero on a failure.  See tests/fixtures/ref_loss/README.md for the files.
"""

import argparse
import json
import os
import shutil
import sys

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import duet_ref as R  # noqa: E402

BASE = {"B": 6, "S": 2, "d_img": 7, "d_txt": 5, "hidden": 9, "embed": 4, "linear": 0,
        "dropout": 0.5, "margin": 0.2, "top_k": 3, "w_i2t": 1.0, "w_t2i": 1.5,
        "w_img_struct": 0.0, "w_txt_struct": 0.3, "bn_eps": 1e-5, "bn_momentum": 0.1,
        "lr": 0.01, "optimizer": "adam", "weight_decay": 0.01, "momentum": 0.0,
        "adam_beta1": 0.9, "adam_beta2": 0.999, "adam_eps": 1e-8}

# name -> (overrides, img groups or None, write per-term gradients, seed)
# The seeds were picked so that no hidden unit is dead for the whole batch, no
# two embeddings coincide and no kink (ReLU, hinge clamp, top-K cut) is closer
# than 3e-4 (see conditioning()), so float32 C lands on the same side.
CASES = {
    "mlp": ({}, None, True, 1101),
    "linear": ({"linear": 1}, None, True, 102),
    "mlp_bigk": ({"top_k": 10, "margin": 0.5}, None, False, 2203),
    "mlp_imgstruct": ({"w_img_struct": 0.7}, [5, 2, 5, 2, 2, 7], True, 1004),
    "sgd": ({"optimizer": "sgd", "momentum": 0.9, "weight_decay": 0.01, "lr": 0.05},
            None, False, 2705),
    "mlp_default_weights": ({"B": 8, "S": 3, "margin": 0.05, "top_k": 10, "w_t2i": 1.5,
                             "w_txt_struct": 0.05}, None, False, 106),
    "mlp_k1": ({"top_k": 1, "margin": 0.3}, None, False, 407),
}

TERMS = ("i2t", "t2i", "img_struct", "txt_struct")


def f32(a):
    return np.ascontiguousarray(np.asarray(a, dtype="<f4"))


def make_inputs(cfg, groups, seed):
    """float32 inputs and initial parameters (numpy), seeded."""
    rng = np.random.default_rng(seed)
    B, S, h, o = cfg["B"], cfg["S"], cfg["hidden"], cfg["embed"]
    arrays = {"img_x": f32(rng.standard_normal((B, cfg["d_img"]))),
              "txt_x": f32(rng.standard_normal((B * S, cfg["d_txt"])))}
    if groups is not None:
        arrays["img_group"] = f32(groups)
    for pre, d_in, n in (("img_", cfg["d_img"], B), ("txt_", cfg["d_txt"], B * S)):
        if cfg["linear"]:
            bd = 1.0 / np.sqrt(d_in)
            arrays[pre + "W"] = f32(rng.uniform(-bd, bd, (d_in, o)))
            arrays[pre + "b"] = f32(rng.uniform(-bd, bd, (o,)))
        else:
            bd1, bd2 = 1.0 / np.sqrt(d_in), 1.0 / np.sqrt(h)
            arrays[pre + "W1"] = f32(rng.uniform(-bd1, bd1, (d_in, h)))
            arrays[pre + "b1"] = f32(rng.uniform(-bd1, bd1, (h,)))
            arrays[pre + "gamma"] = f32(rng.uniform(0.5, 1.5, (h,)))
            arrays[pre + "beta"] = f32(rng.uniform(-0.3, 0.3, (h,)))
            arrays[pre + "W2"] = f32(rng.uniform(-bd2, bd2, (h, o)))
            arrays[pre + "b2"] = f32(rng.uniform(-bd2, bd2, (o,)))
            keep = rng.random((n, h)) >= cfg["dropout"]
            arrays[pre + "mask"] = f32(keep * (1.0 / (1.0 - cfg["dropout"])))
    return arrays


def param_names(cfg):
    return ("W", "b") if cfg["linear"] else ("W1", "b1", "gamma", "beta", "W2", "b2")


class Leaves:
    """Float64 leaves of both branches in the order img_*, txt_*."""

    def __init__(self, arrays, cfg):
        self.names = [pre + k for pre in ("img_", "txt_") for k in param_names(cfg)]
        self.t = {n: torch.tensor(arrays[n], dtype=torch.float64, requires_grad=True)
                  for n in self.names}

    def branch(self, pre):
        return {n[len(pre):]: v for n, v in self.t.items() if n.startswith(pre)}

    def named_params(self):
        return iter(self.t.items())

    def list(self):
        return [self.t[n] for n in self.names]


def forward_loss(cfg, arrays, leaves, bufs):
    """Training-mode forward with the stored masks; returns (ei, et, terms)."""
    B, S = cfg["B"], cfg["S"]
    d = lambda k: torch.tensor(arrays[k], dtype=torch.float64)  # noqa: E731
    ei = R.branch_forward(leaves.branch("img_"), bufs["img"], d("img_x"), True,
                          None if cfg["linear"] else d("img_mask"), cfg["dropout"],
                          momentum=cfg["bn_momentum"], eps=cfg["bn_eps"])
    et = R.branch_forward(leaves.branch("txt_"), bufs["txt"], d("txt_x"), True,
                          None if cfg["linear"] else d("txt_mask"), cfg["dropout"],
                          momentum=cfg["bn_momentum"], eps=cfg["bn_eps"])
    owner = torch.arange(B * S) // S
    grp = torch.tensor(arrays["img_group"]) if "img_group" in arrays else None
    terms = R.loss_terms(ei, et, owner, cfg["margin"], cfg["top_k"], grp, cfg["w_i2t"],
                         cfg["w_t2i"], cfg["w_img_struct"], cfg["w_txt_struct"])
    return ei, et, terms


def fresh_bufs(cfg):
    h = cfg["hidden"]
    if cfg["linear"]:
        return {"img": {}, "txt": {}}
    return {p: {"running_mean": torch.zeros(h, dtype=torch.float64),
                "running_var": torch.ones(h, dtype=torch.float64)} for p in ("img", "txt")}


def snap_b1(names, grads):
    """The gradient of b1 (the bias right before BN) is exactly zero in exact
    arithmetic (BN subtracts the batch mean); autograd leaves ~1e-17 of
    round-off.  Store the exact 0 (also makes the Adam step of b1 exact)."""
    out = []
    for n, g in zip(names, grads):
        if g is not None and n.endswith("_b1"):
            assert float(g.abs().max()) < 1e-13, (n, float(g.abs().max()))
            g = torch.zeros_like(g)
        out.append(g)
    return tuple(out)


def hinge_activity(ei, et, cfg, groups):
    """Fraction of the selected top-K entries that are > 0, per term."""
    B, S, m, K = cfg["B"], cfg["S"], cfg["margin"], cfg["top_k"]
    ei, et = ei.detach(), et.detach()
    c = torch.arange(B * S) // S
    d = R.pdist(ei, et)
    pos = d[c, torch.arange(B * S)]
    res = {}
    rows_i2t = [torch.clamp(m + pos[j] - d[c[j]][c != c[j]], min=0) for j in range(B * S)]
    rows_t2i = [torch.clamp(m + pos[j] - d[:, j][torch.arange(B) != c[j]], min=0)
                for j in range(B * S)]
    for name, rows in (("i2t", rows_i2t), ("t2i", rows_t2i)):
        sel = torch.cat([torch.sort(r, descending=True).values[:K] for r in rows])
        res[name] = float((sel > 0).double().mean())
    return res


def conditioning(cfg, arrays, ei, et):
    """Smallest distance of the fixture to a kink (float32 C may fall on the
    other side of a kink that is too close): |BN output| at the ReLU,
    |m + pos - neg| at the hinge clamp, the gap between the K-th and the
    (K+1)-th hinge of a row at the top-K cut, and |pos - other| in the
    structure max."""
    out = {}
    if not cfg["linear"]:
        ys = []
        for br in ("img", "txt"):
            x = torch.tensor(arrays[br + "_x"], dtype=torch.float64)
            z = x @ torch.tensor(arrays[br + "_W1"], dtype=torch.float64) + \
                torch.tensor(arrays[br + "_b1"], dtype=torch.float64)
            xh = (z - z.mean(0)) / torch.sqrt(z.var(0, unbiased=False) + cfg["bn_eps"])
            y = torch.tensor(arrays[br + "_gamma"]) * xh + torch.tensor(arrays[br + "_beta"])
            ys.append(y.abs().min())
        out["relu"] = float(min(ys))
    B, S, m, K = cfg["B"], cfg["S"], cfg["margin"], cfg["top_k"]
    ei, et = ei.detach(), et.detach()
    c = torch.arange(B * S) // S
    d = R.pdist(ei, et)
    pos = d[c, torch.arange(B * S)]
    dtt = R.pdist(et, et)
    rows = []
    for j in range(B * S):
        rows.append(m + pos[j] - d[c[j]][c != c[j]])
        rows.append(m + pos[j] - d[:, j][torch.arange(B) != c[j]])
        same = (c == c[j]) & (torch.arange(B * S) != j)
        p2 = dtt[j][same].max()
        rows.append(m + p2 - dtt[j][c != c[j]])
    if "img_group" in arrays:
        g = torch.tensor(arrays["img_group"])
        dii = R.pdist(ei, ei)
        for i in range(B):
            same = (g == g[i]) & (torch.arange(B) != i)
            if same.any() and (g != g[i]).any():
                rows.append(m + dii[i][same].max() - dii[i][g != g[i]])
    out["hinge"] = float(min(r.abs().min() for r in rows))
    gaps = []
    for r in rows:
        h = torch.sort(torch.clamp(r, min=0), descending=True).values
        if len(h) > K and h[K - 1] > 0:
            gaps.append(float(h[K - 1] - h[K]))
    out["topk_cut"] = min(gaps) if gaps else float("inf")
    return out


def build_case(name, out_dir):
    over, groups, per_term, seed = CASES[name]
    cfg = dict(BASE)
    cfg.update(over)
    arrays = make_inputs(cfg, groups, seed)
    leaves = Leaves(arrays, cfg)
    bufs = fresh_bufs(cfg)
    ei, et, terms = forward_loss(cfg, arrays, leaves, bufs)
    out = dict(arrays)
    out["img_emb"] = ei.detach().numpy()
    out["txt_emb"] = et.detach().numpy()
    out["loss"] = np.array([float(terms[k]) for k in TERMS + ("total",)])
    params = leaves.list()
    grads = snap_b1(leaves.names,
                    torch.autograd.grad(terms["total"], params, retain_graph=True))
    for n, g in zip(leaves.names, grads):
        out["grad_" + n] = g.numpy()
    if per_term:
        for term in TERMS:
            if name != "mlp_imgstruct" and term == "img_struct":
                continue
            gs = snap_b1(leaves.names, torch.autograd.grad(terms[term], params,
                                                           retain_graph=True,
                                                           allow_unused=True))
            for n, p, g in zip(leaves.names, params, gs):
                out["grad_%s_%s" % (term, n)] = (torch.zeros_like(p) if g is None else g).numpy()
    if not cfg["linear"]:
        for p in ("img", "txt"):
            out[p + "_running_mean"] = bufs[p]["running_mean"].numpy()
            out[p + "_running_var"] = bufs[p]["running_var"].numpy()
    # one optimizer step from fresh state
    with torch.no_grad():
        for p, g in zip(params, grads):
            p.grad = g.clone()
    opt = R.make_optimizer(leaves, cfg["optimizer"], cfg["lr"], cfg["weight_decay"],
                           cfg["momentum"])
    opt.step()
    for n in leaves.names:
        out["step_" + n] = leaves.t[n].detach().numpy()

    if os.path.isdir(out_dir):
        shutil.rmtree(out_dir)
    os.makedirs(out_dir)
    with open(os.path.join(out_dir, "config.json"), "w") as fp:
        json.dump(cfg, fp, indent=1)
        fp.write("\n")
    for k, v in sorted(out.items()):
        np.save(os.path.join(out_dir, k + ".npy"), f32(v))
    return cfg, out


# --------------------------------------------------------------------------- #
# Self-tests
# --------------------------------------------------------------------------- #

def nn_forward(cfg, arrays, branch):
    """The MLP branch via torch.nn modules (weights transposed into nn.Linear)."""
    d = lambda k: torch.tensor(arrays[k], dtype=torch.float64)  # noqa: E731
    x = d(branch + "_x")
    if cfg["linear"]:
        lin = torch.nn.Linear(x.shape[1], cfg["embed"]).double()
        with torch.no_grad():
            lin.weight.copy_(d(branch + "_W").t())
            lin.bias.copy_(d(branch + "_b"))
        return F.normalize(lin(x), dim=1), None
    fc1 = torch.nn.Linear(x.shape[1], cfg["hidden"]).double()
    bn = torch.nn.BatchNorm1d(cfg["hidden"], eps=cfg["bn_eps"],
                              momentum=cfg["bn_momentum"]).double()
    fc2 = torch.nn.Linear(cfg["hidden"], cfg["embed"]).double()
    with torch.no_grad():
        fc1.weight.copy_(d(branch + "_W1").t())
        fc1.bias.copy_(d(branch + "_b1"))
        bn.weight.copy_(d(branch + "_gamma"))
        bn.bias.copy_(d(branch + "_beta"))
        fc2.weight.copy_(d(branch + "_W2").t())
        fc2.bias.copy_(d(branch + "_b2"))
    bn.train()
    y = fc2(torch.relu(bn(fc1(x))) * d(branch + "_mask"))
    return F.normalize(y, dim=1), bn


def self_check():
    ok = True

    def report(name, cond, detail=""):
        nonlocal ok
        ok &= bool(cond)
        print("%-58s %s %s" % (name, "ok" if cond else "FAIL", detail))

    for name in CASES:
        over, groups, _, seed = CASES[name]
        cfg = dict(BASE)
        cfg.update(over)
        arrays = make_inputs(cfg, groups, seed)
        leaves = Leaves(arrays, cfg)
        bufs = fresh_bufs(cfg)
        ei, et, t = forward_loss(cfg, arrays, leaves, bufs)
        norms = torch.cat([ei.norm(dim=1), et.norm(dim=1)])
        report(name + ": unit norms", torch.allclose(norms, torch.ones_like(norms), atol=1e-12))
        wsum = (cfg["w_i2t"] * t["i2t"] + cfg["w_t2i"] * t["t2i"] +
                cfg["w_img_struct"] * t["img_struct"] + cfg["w_txt_struct"] * t["txt_struct"])
        report(name + ": total = weighted sum", abs(float(wsum - t["total"])) < 1e-14,
               "total %.6f" % float(t["total"]))
        for br in ("img", "txt"):
            e_nn, bn = nn_forward(cfg, arrays, br)
            e = ei if br == "img" else et
            report("%s: %s forward = torch.nn modules" % (name, br),
                   torch.allclose(e_nn, e.detach(), atol=1e-12, rtol=0))
            if bn is not None:
                report("%s: %s running stats = BatchNorm1d" % (name, br),
                       torch.allclose(bn.running_mean, bufs[br]["running_mean"], atol=1e-14) and
                       torch.allclose(bn.running_var, bufs[br]["running_var"], atol=1e-14))
        # brute-force loss (plain python loops) against the vectorized one
        bf = brute_force_terms(ei.detach().numpy(), et.detach().numpy(), cfg,
                               arrays.get("img_group"))
        act = hinge_activity(ei, et, cfg, arrays.get("img_group"))
        print("%-58s %s" % (name + ": active share of selected hinges",
                            " ".join("%s %.2f" % kv for kv in act.items())))
        cond = conditioning(cfg, arrays, ei, et)
        e = torch.cat([ei, et]).detach()
        report(name + ": no two embeddings equal (no exact ties)",
               int(((e @ e.t()) > 1 - 1e-9).sum()) == e.shape[0])
        report(name + ": no kink closer than 3e-4",
               min(cond.values()) > 3e-4, " ".join("%s %.1e" % kv for kv in cond.items()))
        report(name + ": loss = brute-force loops",
               all(abs(bf[k] - float(t[k])) < 1e-12 for k in TERMS),
               " ".join("%s=%.5f" % (k, bf[k]) for k in TERMS))
        # gradcheck of the total and of each term w.r.t. every parameter
        if name in ("mlp", "linear", "mlp_imgstruct", "mlp_bigk", "mlp_default_weights"):
            for term in TERMS + ("total",):
                if term == "img_struct" and "img_group" not in arrays:
                    continue

                def fn(*ps, term=term):
                    lv = Leaves(arrays, cfg)
                    lv.t = dict(zip(lv.names, ps))
                    return forward_loss(cfg, arrays, lv, fresh_bufs(cfg))[2][term]
                inp = tuple(p.detach().clone().requires_grad_(True) for p in leaves.list())
                good = torch.autograd.gradcheck(fn, inp, eps=1e-6, atol=1e-6, rtol=1e-4,
                                                raise_exception=False)
                report("%s: gradcheck %s" % (name, term), good)
    # Adam first step = lr * g / (|g| + eps) with wd on W1/W2 only
    cfg = dict(BASE)
    arrays = make_inputs(cfg, None, 101)
    lv = Leaves(arrays, cfg)
    _, _, t = forward_loss(cfg, arrays, lv, fresh_bufs(cfg))
    gs = torch.autograd.grad(t["total"], lv.list())
    expect = {}
    for (n, p), g in zip(lv.t.items(), gs):
        gw = g + (cfg["weight_decay"] * p.detach() if n.split("_", 1)[1] in ("W1", "W2") else 0)
        expect[n] = p.detach() - cfg["lr"] * gw / (gw.abs() + cfg["adam_eps"])
        p.grad = g.clone()
    R.make_optimizer(lv, "adam", cfg["lr"], cfg["weight_decay"]).step()
    good = all(torch.allclose(lv.t[n].detach(), expect[n], atol=1e-15, rtol=1e-12)
               for n in lv.names)
    report("adam first step = closed form", good)
    # evaluation metrics on a hand example
    report("recall metrics hand example", hand_eval_check())
    return ok


def brute_force_terms(ei, et, cfg, groups):
    """The four raw terms with python loops straight from MODEL.md."""
    B, S, m, K = cfg["B"], cfg["S"], cfg["margin"], cfg["top_k"]
    c = [j // S for j in range(B * S)]

    def d(a, b):
        return float(np.sqrt(max(2 - 2 * float(np.dot(a, b)), 0.0) + 1e-4))

    def topk_mean(row):
        k = min(K, len(row))
        return sum(sorted(row, reverse=True)[:k]) / k

    def term(rows):
        return float(np.mean(rows)) if rows else 0.0

    def hinge(p, n):
        return max(0.0, m + p - n)
    i2t, t2i, ts, im = [], [], [], []
    for j in range(B * S):
        pos = d(ei[c[j]], et[j])
        i2t.append(topk_mean([hinge(pos, d(ei[c[j]], et[q])) for q in range(B * S) if c[q] != c[j]]))
        t2i.append(topk_mean([hinge(pos, d(et[j], ei[i])) for i in range(B) if i != c[j]]))
        same = [q for q in range(B * S) if q != j and c[q] == c[j]]
        if same:
            p2 = max(d(et[j], et[q]) for q in same)
            ts.append(topk_mean([hinge(p2, d(et[j], et[q])) for q in range(B * S) if c[q] != c[j]]))
    if groups is not None:
        for i in range(B):
            same = [q for q in range(B) if q != i and groups[q] == groups[i]]
            negs = [q for q in range(B) if groups[q] != groups[i]]
            if same and negs:
                p2 = max(d(ei[i], ei[q]) for q in same)
                im.append(topk_mean([hinge(p2, d(ei[i], ei[q])) for q in negs]))
    return {"i2t": term(i2t), "t2i": term(t2i), "txt_struct": term(ts), "img_struct": term(im)}


def hand_eval_check():
    # 3 images, 4 captions: cap 0,1 -> img 0, cap 2 -> img 1, cap 3 -> img 2
    im = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.6, 0.8]], dtype=torch.float64)
    tx = torch.tensor([[0.0, 1.0], [0.8, 0.6], [1.0, 0.0], [0.6, 0.8]], dtype=torch.float64)
    # scores img x cap:
    # img0: [0, .8, 1, .6]   own best .8 -> higher: {1.0} -> rank 2
    # img1: [1, .6, 0, .8]   own cap2 = 0 -> higher 3 -> rank 4
    # img2: [.8, .96, .6, 1] own cap3 = 1 -> rank 1
    # cap0 (img0): scores [0,1,.8] own 0 -> rank 3 ; cap1: [.8,.6,.96] own .8 -> rank 2
    # cap2 (img1): [1,0,.6] own 0 -> rank 3 ; cap3 (img2): [.6,.8,1] -> rank 1
    m = R.recall_metrics(im, tx, [0, 0, 1, 2])
    exp_i = {"r1": 100 / 3, "r5": 100.0, "r10": 100.0, "medr": 2.0, "meanr": 7 / 3}
    exp_t = {"r1": 25.0, "r5": 100.0, "r10": 100.0, "medr": 2.5, "meanr": 9 / 4}
    good = all(abs(m["i2t"][k] - v) < 1e-9 for k, v in exp_i.items())
    good &= all(abs(m["t2i"][k] - v) < 1e-9 for k, v in exp_t.items())
    good &= abs(m["rsum"] - (100 / 3 + 200 + 25 + 200)) < 1e-9
    return good


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=os.path.join(here, "..", "..", "tests", "fixtures",
                                                  "ref_loss"))
    ap.add_argument("--check", action="store_true", help="run the self-tests too")
    a = ap.parse_args()
    torch.set_default_dtype(torch.float64)
    if a.check and not self_check():
        print("self-check FAILED", file=sys.stderr)
        return 1
    out = os.path.normpath(a.out)
    os.makedirs(out, exist_ok=True)
    for name in CASES:
        cfg, arrs = build_case(name, os.path.join(out, name))
        l = arrs["loss"]
        print("%-20s i2t %.5f t2i %.5f img_struct %.5f txt_struct %.5f total %.5f (%d files)"
              % (name, *l, len(arrs) + 1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
