"""A drift report as JSON, as a self-contained HTML page with plots, and as ``latest.json`` gauges.

``latest.json`` (``<data_root>/monitoring/drift/latest.json``) is what the serving side exports to
Prometheus; its format is fixed::

    {
      "created_at": "2026-01-02T03:04:05+00:00",   # ISO 8601, UTC: when the report was made
      "alarm": true,                               # the report-level (Holm-corrected) alarm
      "reference_model": "finpulse-forecaster/v3", # what the window was compared against
      "report": "<uri of the report's JSON>",
      "gauges": [                                  # one per (signal, feature): finpulse_drift_score{signal,feature}
        {"signal": "features", "feature": "ret_1d", "test": "psi", "score": 0.012},
        ...
      ]
    }

``signal`` is one of features, sentiment, embeddings, predictions; a feature with two tests (PSI and
KS) gets one gauge, the statistic of its more significant test (named in ``test``), so the gauge's
labels stay ``{signal, feature}``. Exporters read ``signal``, ``feature``, ``score`` and ``alarm``
(``finpulse_drift_alarm`` = 1 when true).
"""

from __future__ import annotations

import base64
import html
import io
import json
from typing import Any

import numpy as np

from finpulse.monitoring.drift import DriftReport
from finpulse.monitoring.reference import Snapshot, bin_counts


def to_json(report: DriftReport) -> str:
    return json.dumps(report.to_dict(), indent=2, default=str)


def gauges(entries: Any) -> list[dict[str, Any]]:
    """One gauge per (signal, feature): the statistic of its most significant finite test."""
    strongest: dict[tuple[str, str], Any] = {}
    for e in entries:
        key, p = (e.signal, e.feature), e.p_value if e.p_value is not None else 1.0
        best = strongest.get(key)
        if np.isfinite(e.score) and (best is None or p < (best.p_value if best.p_value is not None else 1.0)):
            strongest[key] = e
    return [{"signal": e.signal, "feature": e.feature, "test": e.test, "score": float(e.score)}
            for e in strongest.values()]


def latest(report: DriftReport, reference_model: str, report_uri: str | None = None) -> dict[str, Any]:
    """The ``latest.json`` document (format in the module docstring)."""
    return {"created_at": report.created_at, "alarm": bool(report.alarm), "reference_model": reference_model,
            "report": report_uri, "gauges": gauges(report.entries)}


def _png(fig: Any) -> str:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=80, bbox_inches="tight")
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode()


def _figure(ncols: int, nrows: int = 1) -> tuple[Any, np.ndarray]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(nrows, ncols, figsize=(3.2 * ncols, 2.4 * nrows), squeeze=False)
    return fig, axes.ravel()


def feature_plot(reference: Snapshot, current: Snapshot) -> str | None:
    """Per feature: reference vs current share per reference bin."""
    names = [n for n in (reference.features or {}) if n in (current.features or {})]
    if not names:
        return None
    cols = min(4, len(names))
    fig, axes = _figure(cols, -(-len(names) // cols))
    for ax, name in zip(axes, names, strict=False):
        ref, cur = reference.features[name], current.features[name]
        r = np.asarray(ref.counts, float) / max(sum(ref.counts), 1)
        c = bin_counts(cur.sample, ref.edges).astype(float)
        c /= max(c.sum(), 1)
        x = np.arange(len(r))
        ax.bar(x - 0.2, r, 0.4, label="reference")
        ax.bar(x + 0.2, c, 0.4, label="current")
        ax.set_title(name, fontsize=9)
        ax.set_xticks([])
    axes[0].legend(fontsize=7)
    for ax in axes[len(names):]:
        ax.axis("off")
    return _png(fig)


def sentiment_plot(reference: Snapshot, current: Snapshot) -> str | None:
    if not (reference.class_counts and current.class_counts):
        return None
    fig, axes = _figure(2)
    labels = sorted(set(reference.class_counts) | set(current.class_counts))
    x = np.arange(len(labels))
    for i, (snap, name) in enumerate(((reference, "reference"), (current, "current"))):
        total = max(sum(snap.class_counts.values()), 1)
        axes[0].bar(x + (i - 0.5) * 0.4, [snap.class_counts.get(k, 0) / total for k in labels], 0.4, label=name)
        if snap.scores is not None:
            axes[1].hist(snap.scores, bins=30, alpha=0.5, density=True, label=name)
    axes[0].set_xticks(x, labels)
    axes[0].set_title("class mix", fontsize=9)
    axes[1].set_title("score", fontsize=9)
    axes[0].legend(fontsize=7)
    return _png(fig)


def mmd_plot(report: DriftReport) -> str | None:
    e = next((e for e in report.entries if e.test == "mmd" and e.detail.get("null")), None)
    if e is None:
        return None
    fig, axes = _figure(1)
    axes[0].hist(e.detail["null"], bins=40, color="grey", label="permutation null")
    axes[0].axvline(e.score, color="red", label=f"observed (p={e.p_value:.3g})")
    axes[0].set_title("embedding MMD^2", fontsize=9)
    axes[0].legend(fontsize=7)
    return _png(fig)


def prediction_plot(reference: Snapshot, current: Snapshot) -> str | None:
    if reference.predictions is None or current.predictions is None:
        return None
    fig, axes = _figure(1)
    both = np.concatenate([reference.predictions, current.predictions])
    bins = np.histogram_bin_edges(both[np.isfinite(both)], bins=30)
    axes[0].hist(reference.predictions, bins=bins, alpha=0.5, density=True, label="reference")
    axes[0].hist(current.predictions, bins=bins, alpha=0.5, density=True, label="current")
    axes[0].set_title("predictions", fontsize=9)
    axes[0].legend(fontsize=7)
    return _png(fig)


def _table(report: DriftReport) -> str:
    rows = []
    for e in report.entries:
        p = "" if e.p_value is None else f"{e.p_value:.3g}"
        t = "" if e.threshold is None else f"{e.threshold:.4g}"
        style = ' style="background:#fdd"' if e.alarm else ""
        rows.append(f"<tr{style}><td>{html.escape(e.signal)}</td><td>{html.escape(e.feature)}</td><td>{e.test}</td>"
                    f"<td>{e.score:.4g}</td><td>{p}</td><td>{t}</td><td>{e.alarm}</td>"
                    f"<td>{e.n_reference}</td><td>{e.n_current}</td></tr>")
    head = "".join(f"<th>{h}</th>" for h in ("signal", "feature", "test", "score", "p", "threshold", "alarm",
                                              "n ref", "n cur"))
    return f"<table border=1 cellspacing=0 cellpadding=3><tr>{head}</tr>{''.join(rows)}</table>"


def to_html(report: DriftReport, reference: Snapshot, current: Snapshot) -> str:
    """One self-contained page: verdict, reasons, the test table and PNG plots inlined as base64."""
    plots = [("Features: reference vs current, per reference bin", feature_plot(reference, current)),
             ("Sentiment: class mix and scores", sentiment_plot(reference, current)),
             ("Embeddings: MMD permutation null", mmd_plot(report)),
             ("Predictions", prediction_plot(reference, current))]
    imgs = "".join(f"<h3>{t}</h3><img src='data:image/png;base64,{b}'/>" for t, b in plots if b)
    verdict = "DRIFT ALARM" if report.alarm else "no drift alarm"
    reasons = "".join(f"<li>{html.escape(r)}</li>" for r in report.reasons) or "<li>none</li>"
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>FinPulse drift {report.created_at}</title>"
            f"</head><body><h1>FinPulse drift report: {verdict}</h1><p>{report.created_at}; alpha={report.alpha} "
            f"(Holm over {report.meta.get('tests', '?')} tests)</p><h2>Reasons</h2><ul>{reasons}</ul>"
            f"<h2>Tests</h2>{_table(report)}<h2>Plots</h2>{imgs}</body></html>")
