"""Action lists for precision marketing: win-back, VIP care, at-risk and cross-sell.

Built only from the chapters' artifacts, one row per customer with the recommended action, and
written after the chapters as CSV (one file per list) and one Excel workbook (a sheet per list):

- ``<run>/actions/``: pseudonymised (``customer_key``), like everything else in the run folder.
- With ``privacy.export_real_ids: true``, also ``<restricted_dir>/<client>/<version>/`` with the
  client's own customer id beside the pseudonym. That folder is created owner-only (0700, files
  0600) and is never inside the run folder, so a published report folder cannot carry real ids.

A list whose chapter did not run (or had too little data) is left out and named in the result.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pandas as pd

from . import artifacts

#: RFM segments whose customers are at risk of leaving (chapter 02's names).
AT_RISK_SEGMENTS = ("At risk", "Can't lose them", "About to sleep", "Need attention")
VIP_ACTION = "VIP care: personal contact from the account team, early access, no discounting"
CROSS_SELL_TOP = 3


def _winback(run_dir: Path) -> pd.DataFrame | None:
    churn = artifacts.load(run_dir, "churn")
    if not churn or not churn.get("win_back"):
        return None
    wb = pd.DataFrame(churn["win_back"])
    cols = ["rank", "customer_key", "churn_probability", "value", "value_at_risk"]
    out = wb[cols + [c for c in wb.columns if c.startswith("reason_")]].copy()
    reason = out["reason_1"].fillna("no single reason") if "reason_1" in out else "no single reason"
    out["action"] = "Win-back contact with a personal offer; main risk: " + reason
    return out.sort_values("rank", kind="stable").reset_index(drop=True)


def _segments(run_dir: Path) -> tuple[pd.DataFrame | None, dict[str, Any]]:
    seg = artifacts.load_table(run_dir, "segmentation")
    meta = artifacts.load(run_dir, "segmentation") or {}
    return seg, meta


def _vip(run_dir: Path) -> pd.DataFrame | None:
    clv = artifacts.load_table(run_dir, "clv")
    seg, _ = _segments(run_dir)
    if clv is not None and "clv_decile" in clv:
        top = clv.loc[clv["clv_decile"] == 1, ["customer_key", "clv", "p_alive"]]
        top = top.sort_values(["clv", "customer_key"], ascending=[False, True], kind="stable")
        if seg is not None:
            top = top.merge(seg[["customer_key", "segment"]], on="customer_key", how="left")
        basis = "top tenth by CLV"
    elif seg is not None:
        top = seg.loc[seg["segment"] == "Champions", ["customer_key", "monetary", "segment"]]
        top = top.sort_values(["monetary", "customer_key"], ascending=[False, True], kind="stable")
        basis = "RFM segment Champions"
    else:
        return None
    if top.empty:
        return None
    top = top.reset_index(drop=True)
    top.insert(0, "rank", range(1, len(top) + 1))
    top["basis"] = basis
    top["action"] = VIP_ACTION
    return top


def _at_risk(run_dir: Path) -> pd.DataFrame | None:
    seg, meta = _segments(run_dir)
    if seg is None:
        return None
    churn = artifacts.load(run_dir, "churn") or {}
    # chapter 06 lists every segment with its churn figures and flags the at-risk ones
    flagged = [
        r["segment"]
        for r in churn.get("at_risk_segments") or []
        if isinstance(r, dict) and r.get("at_risk_segment")
    ]
    names = flagged or list(AT_RISK_SEGMENTS)
    out = seg.loc[
        seg["segment"].isin(names),
        ["customer_key", "segment", "recency_days", "frequency", "monetary"],
    ]
    if out.empty:
        return None
    scores = artifacts.load_table(run_dir, "churn")
    if scores is not None and "churn_probability" in scores:
        out = out.merge(
            scores[["customer_key", "churn_probability"]], on="customer_key", how="left"
        )
    actions = {name: v.get("action", "") for name, v in meta.get("segments", {}).items()}
    out["action"] = out["segment"].map(actions).fillna("Re-engage with a personal offer")
    out = out.sort_values(["monetary", "customer_key"], ascending=[False, True], kind="stable")
    out = out.reset_index(drop=True)
    out.insert(0, "rank", range(1, len(out) + 1))
    return out


def _cross_sell(run_dir: Path) -> pd.DataFrame | None:
    recs = artifacts.load_table(run_dir, "recommendations")
    if recs is None or recs.empty:
        return None
    top = recs.loc[recs["rank"] <= CROSS_SELL_TOP].sort_values(["customer_key", "rank"])
    wide = top.pivot(index="customer_key", columns="rank", values="item")
    wide.columns = [f"offer_{int(r)}" for r in wide.columns]
    wide = wide.reset_index()
    first = top.loc[top["rank"] == 1].set_index("customer_key")
    wide["source"] = wide["customer_key"].map(first["source"]) if "source" in first else None
    seg, _ = _segments(run_dir)
    if seg is not None:
        wide = wide.merge(
            seg[["customer_key", "segment", "monetary"]], on="customer_key", how="left"
        )
        wide = wide.sort_values(
            ["monetary", "customer_key"], ascending=[False, True], kind="stable"
        )
    wide["action"] = "Cross-sell: offer " + wide["offer_1"].astype(str)
    return wide.reset_index(drop=True)


BUILDERS = {
    "win_back": _winback,
    "vip_care": _vip,
    "at_risk": _at_risk,
    "cross_sell": _cross_sell,
}


def action_lists(run_dir: str | Path) -> dict[str, pd.DataFrame]:
    """Every action list the run's artifacts support, by name (pseudonymised)."""
    out = {}
    for name, build in BUILDERS.items():
        frame = build(Path(run_dir))
        if frame is not None and len(frame):
            out[name] = frame
    return out


def _write(lists: dict[str, pd.DataFrame], folder: Path) -> dict[str, int]:
    folder.mkdir(parents=True, exist_ok=True)
    for name, frame in lists.items():
        frame.to_csv(folder / f"{name}.csv", index=False)
    with pd.ExcelWriter(folder / "action_lists.xlsx", engine="openpyxl") as xl:
        for name, frame in lists.items():
            frame.to_excel(xl, sheet_name=name, index=False)
    return {name: len(frame) for name, frame in lists.items()}


def export(
    run_dir: str | Path,
    *,
    real_ids: pd.DataFrame | None = None,
    restricted: Path | None = None,
) -> dict[str, Any]:
    """Write the action lists; with ``real_ids`` also the real-id copies to ``restricted``.

    Parameters
    ----------
    run_dir
        The run folder (reads ``artifacts/``, writes ``actions/``).
    real_ids
        ``customer_key`` -> ``customer_id`` (the client's id; the canonical one of merged ids) and
        ``source_ids``; only when ``privacy.export_real_ids`` is set.
    restricted
        The owner-only folder for the real-id lists.

    Returns
    -------
    dict
        ``lists`` (rows per list), ``missing`` (lists whose chapters gave nothing) and, with real
        ids, ``restricted`` (the folder).

    """
    run_dir = Path(run_dir)
    lists = action_lists(run_dir)
    result: dict[str, Any] = {
        "lists": _write(lists, run_dir / "actions") if lists else {},
        "missing": [n for n in BUILDERS if n not in lists],
    }
    if real_ids is not None and restricted is not None and lists:
        old = os.umask(0o077)  # every folder and file created from here on is owner-only
        try:
            restricted.mkdir(parents=True, exist_ok=True)
            os.chmod(restricted, 0o700)
            ids = real_ids[["customer_key", "customer_id", "source_ids"]]
            named = {
                name: frame.merge(ids, on="customer_key", how="left").pipe(
                    lambda f: f[["customer_id", *[c for c in f.columns if c != "customer_id"]]]
                )
                for name, frame in lists.items()
            }
            _write(named, restricted)
            for path in restricted.iterdir():
                os.chmod(path, 0o600)
        finally:
            os.umask(old)
        (restricted / "README.txt").write_text(
            "Action lists with real customer ids. Owner-only; do not copy into the report folder.\n"
        )
        os.chmod(restricted / "README.txt", 0o600)
        result["restricted"] = str(restricted)
    (run_dir / "actions").mkdir(exist_ok=True)
    (run_dir / "actions" / "actions.json").write_text(
        json.dumps({k: v for k, v in result.items() if k != "restricted"}, indent=2) + "\n"
    )
    return result
