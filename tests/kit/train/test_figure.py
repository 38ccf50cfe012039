"""The loss figure: each loss on its own scale (log when it spans decades), lr and momentum panels, title."""
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from crossscale_kit.train import figure  # noqa: E402
from crossscale_kit.train.logger import MetricsLogger  # noqa: E402


def _rows(n=40):
    return [{"step": s, "loss/host": 5.0 * 0.8**s, "loss/gram": 0.3 + 0.01 * np.sin(s), "lr": 1e-3 * s / n,
             "momentum": 0.99 + 0.01 * s / n} for s in range(1, n + 1)]


def test_spans_decades():
    assert figure.spans_decades(np.array([1.0, 0.05]))
    assert not figure.spans_decades(np.array([1.0, 0.5]))
    assert not figure.spans_decades(np.array([1.0, -1.0, 100.0]))  # a non-positive value cannot go on a log axis


def test_panels_scales_and_title(tmp_path, monkeypatch):
    seen = {}
    real_savefig = plt.Figure.savefig

    def capture(fig, *a, **k):
        seen["axes"] = {ax.get_title(): ax.get_yscale() for ax in fig.axes if ax.get_title()}
        seen["title"] = fig._suptitle.get_text() if fig._suptitle else ""
        return real_savefig(fig, *a, **k)

    monkeypatch.setattr(plt.Figure, "savefig", capture)
    out = figure.plot_run(_rows(), tmp_path / "f.png", title="latentmim_sa.gin: 40 of 100 optimizer steps")
    assert out.exists() and out.stat().st_size > 0
    assert seen["axes"]["loss/host (log)"] == "log"  # 5 * 0.8^40 spans decades
    assert seen["axes"]["loss/gram"] == "linear"
    assert "lr" in seen["axes"] and "momentum" in seen["axes"]
    assert seen["title"] == "latentmim_sa.gin: 40 of 100 optimizer steps"


def test_logger_plot_writes_png(tmp_path):
    logger = MetricsLogger(tmp_path, tensorboard=False)
    for r in _rows(12):
        logger.log(r["step"], {k: v for k, v in r.items() if k != "step"})
    logger.close()
    assert logger.plot(title="t").name == "loss_curves.png"
    assert figure.plot_run([{"step": 1, "lr": 0.1}], tmp_path / "x.png") is None  # no loss, no figure
