"""The report opens in headless Chromium with no console errors, no network, and its plots render.

Chromium is driven over the DevTools protocol on a pipe (``--remote-debugging-pipe``: fd 3
in, fd 4 out, NUL-separated JSON), so console messages arrive with their level and every
request the page makes is seen. A negative control (a page that throws) checks that the
error detection itself works. Skipped only when no Chromium binary is installed.
"""
from __future__ import annotations

import importlib.util
import json
import os
import select
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from pgf_sim.codesign.report.report import chromium_command, export_png, find_chromium, write_report

BROWSER = find_chromium()
pytestmark = pytest.mark.skipif(
    BROWSER is None, reason="no Chromium binary (/usr/bin/chromium or chromium on PATH): install it with "
                            "`apt-get install chromium` (or set PGF_SIM_CHROMIUM)")

# Counts of the rendered DOM: plotly adds .js-plotly-plot to each figure div and draws
# <svg class="main-svg">; markers and bars are <path class="point">.
_PROBE = """JSON.stringify({
  plots: document.querySelectorAll('.js-plotly-plot').length,
  plots_with_svg: [...document.querySelectorAll('.js-plotly-plot')].filter(d => d.querySelector('svg.main-svg')).length,
  main_svgs: document.querySelectorAll('svg.main-svg').length,
  points: document.querySelectorAll('.scatterlayer .point').length,
  bars: document.querySelectorAll('.barlayer .point').length,
  lines: document.querySelectorAll('.scatterlayer .js-line').length,
  titles: [...document.querySelectorAll('.gtitle')].map(t => t.textContent),
  // every x/y axis of every plot has a title in its layout AND drawn in the DOM (.g-x2title text ...)
  axes: [...document.querySelectorAll('.js-plotly-plot')].reduce((n, gd) => n + Object.keys(gd._fullLayout)
      .filter(k => /^[xy]axis\\d*$/.test(k)).length, 0),
  axes_without_title: [...document.querySelectorAll('.js-plotly-plot')].flatMap(gd => Object.keys(gd._fullLayout)
      .filter(k => /^[xy]axis\\d*$/.test(k))
      .filter(k => !(gd._fullLayout[k].title && gd._fullLayout[k].title.text) ||
                   !gd.querySelector('.g-' + k.replace('axis', '') + 'title text'))
      .map(k => gd.id + ':' + k)),
  // Pareto figures, and those whose pick trace (meta "pick") is drawn as a point
  pareto: [...document.querySelectorAll('.js-plotly-plot')].filter(gd =>
      (gd.layout.title.text || '').startsWith('Pareto front')).length,
  pareto_with_pick: [...document.querySelectorAll('.js-plotly-plot')].filter(gd =>
      (gd.layout.title.text || '').startsWith('Pareto front') &&
      gd.data.some(t => t.meta === 'pick') &&
      gd.querySelectorAll('.scatterlayer .trace').length === gd.data.length).length,
  page_height: document.documentElement.scrollHeight,
  // plots inside closed <details> (folded sections) and the width of every plot as laid out
  folded_plots: [...document.querySelectorAll('details:not([open]) .js-plotly-plot')].length,
  widths: [...document.querySelectorAll('.js-plotly-plot')].map(gd => Math.round(gd.getBoundingClientRect().width)),
  plot_widths: [...document.querySelectorAll('.js-plotly-plot')].map(gd => gd._fullLayout.width),
  menus: [...document.querySelectorAll('.js-plotly-plot')].map(gd => (gd.layout.updatemenus || []).length),
})"""


class DevTools:
    """Minimal DevTools-protocol client over Chromium's pipe transport."""

    def __init__(self, browser: str, profile: str) -> None:
        r_in, self._w = os.pipe()  # we write -> Chromium reads on fd 3
        self._r, w_out = os.pipe()  # Chromium writes on fd 4 -> we read

        def child_fds() -> None:  # via high numbers so the two dup2s cannot clobber each other
            os.dup2(r_in, 100)
            os.dup2(w_out, 101)
            os.dup2(100, 3)
            os.dup2(101, 4)

        self._log = tempfile.TemporaryFile()
        cmd = chromium_command(browser, profile) + [
            "--remote-debugging-pipe", "--window-size=1400,1000",
            # any host name fails to resolve: the page must not need the network
            "--host-resolver-rules=MAP * ~NOTFOUND", "about:blank"]
        self.proc = subprocess.Popen(cmd, preexec_fn=child_fds, close_fds=False,
                                     stdout=subprocess.DEVNULL, stderr=self._log)
        os.close(r_in)
        os.close(w_out)
        self._buf = b""
        self._next = 0
        self.events: list[dict] = []

    def send(self, method: str, params: dict | None = None, session: str | None = None, timeout: float = 60) -> dict:
        self._next += 1
        msg = {"id": self._next, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        os.write(self._w, json.dumps(msg).encode() + b"\0")
        reply = self.wait(lambda m: m.get("id") == self._next, timeout)
        if "error" in reply:
            raise RuntimeError(f"{method}: {reply['error']}")
        return reply.get("result", {})

    def wait(self, pred, timeout: float) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            for i, m in enumerate(self.events):
                if pred(m):
                    return self.events.pop(i) if "id" in m else m
            left = deadline - time.monotonic()
            if left <= 0 or self.proc.poll() is not None:
                raise TimeoutError("no DevTools reply (Chromium exited or hung)")
            if select.select([self._r], [], [], left)[0]:
                chunk = os.read(self._r, 1 << 20)
                if not chunk:
                    continue
                self._buf += chunk
                *msgs, self._buf = self._buf.split(b"\0")
                self.events += [json.loads(m) for m in msgs if m]

    def close(self) -> None:
        try:
            os.write(self._w, json.dumps({"id": 0, "method": "Browser.close"}).encode() + b"\0")
            self.proc.wait(timeout=20)
        except (OSError, subprocess.TimeoutExpired):
            self.proc.kill()  # only the Chromium this test started
            self.proc.wait()
        os.close(self._w)
        os.close(self._r)
        self._log.close()


def open_page(path: Path, tmp: Path, *, settle_s: float = 0.5, script: str | None = None) -> dict:
    """Load ``path`` (then run ``script``, e.g. opening a folded section); return its DOM probe,
    console/exception errors and requested URLs."""
    dt = DevTools(BROWSER, str(tmp / "profile"))
    try:
        target = dt.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        sid = dt.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        for domain in ("Runtime", "Log", "Page", "Network"):
            dt.send(f"{domain}.enable", session=sid)
        dt.send("Page.navigate", {"url": path.resolve().as_uri()}, session=sid)
        dt.wait(lambda m: m.get("method") == "Page.loadEventFired", timeout=60)
        if script:
            dt.send("Runtime.evaluate", {"expression": script}, session=sid)
        probe, last = None, None
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:  # until the rendered DOM stops changing
            time.sleep(settle_s)
            res = dt.send("Runtime.evaluate", {"expression": _PROBE, "returnByValue": True}, session=sid)
            probe = json.loads(res["result"]["value"])
            if probe == last:
                break
            last = probe
        shot = dt.send("Page.captureScreenshot", {"format": "png"}, session=sid)
        events = list(dt.events)
    finally:
        dt.close()
    errors = []
    for ev in events:
        method, p = ev.get("method"), ev.get("params", {})
        if method == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert"):
            errors.append("console." + p["type"] + ": " + " ".join(str(a.get("value", a.get("description")))
                                                                    for a in p.get("args", [])))
        elif method == "Runtime.exceptionThrown":
            d = p["exceptionDetails"]
            errors.append("exception: " + d.get("exception", {}).get("description", d.get("text", "")))
        elif method == "Log.entryAdded" and p["entry"]["level"] == "error":
            errors.append("log: " + p["entry"]["text"])
    urls = [ev["params"]["request"]["url"] for ev in events if ev.get("method") == "Network.requestWillBeSent"]
    return {"probe": probe, "errors": errors, "urls": urls, "screenshot_png_b64": shot["data"]}


def _sample_data():
    spec = importlib.util.spec_from_file_location("report_sample", Path(__file__).with_name("test_report.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.sample_data()


def test_detector_catches_errors(tmp_path):
    """Negative control: a page with a console.error, an exception and a network fetch."""
    bad = tmp_path / "bad.html"
    bad.write_text("<!DOCTYPE html><html><body><script>console.error('deliberate');"
                   "fetch('https://example.invalid/x.js').catch(() => {});"
                   "throw new Error('deliberate-throw');</script></body></html>")
    res = open_page(bad, tmp_path, settle_s=0.3)
    text = "\n".join(res["errors"])
    assert "console.error: deliberate" in text
    assert "deliberate-throw" in text
    assert any(u.startswith("https://") for u in res["urls"])


def test_report_renders_without_errors(tmp_path):
    path = write_report(tmp_path / "report.html", _sample_data())
    res = open_page(path, tmp_path)
    assert res["errors"] == []
    # offline: the page requests only itself (file://) and inline data
    assert all(u.startswith(("file:", "data:", "blob:", "about:")) for u in res["urls"]), res["urls"]
    probe = res["probe"]
    assert probe["plots"] == 6 and probe["plots_with_svg"] == 6  # every figure was drawn
    assert probe["main_svgs"] >= 12  # plotly draws two stacked main-svg layers per plot
    assert probe["points"] > 20 and probe["bars"] > 10 and probe["lines"] >= 6
    assert probe["axes"] >= 2 * 6 and probe["axes_without_title"] == []  # a title on every subplot's axes
    assert probe["pareto"] == probe["pareto_with_pick"] == 2  # each target's figure shows its pick
    titles = " | ".join(probe["titles"])
    for title in ("Pareto front on a100_80gb", "Gradient noise per recipe",
                  "Training curves", "Hardware design space around a100_80gb"):
        assert title in titles
    (tmp_path / "viewport.png").write_bytes(__import__("base64").b64decode(res["screenshot_png_b64"]))


def test_png_export(tmp_path):
    path = write_report(tmp_path / "report.html", _sample_data())
    png = export_png(path, tmp_path / "report.png")
    assert png is not None and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert png.stat().st_size > 50_000  # a page of plots, not a blank image


def test_two_cost_views_render_labelled(tmp_path):
    """A report with the trained-model view and a deployment-proxy view: both drawn, labelled."""
    from dataclasses import replace

    from pgf_sim.codesign.report.report import CostSection

    data = _sample_data()
    views = [CostSection(f"Cost model: {name}", f"note of {name}", data.results, data.picks, data.pick_errors,
                         data.layer_breakdowns) for name in ("trained model", "DEPLOYMENT PROXY vit_b at batch 32")]
    path = write_report(tmp_path / "views.html", replace(data, cost_views=views))
    res = open_page(path, tmp_path)
    assert res["errors"] == []
    n_hw = len(data.results.hardware_names())
    probe = res["probe"]
    # per view: one Pareto figure per target (training FLOPs a panel of it) + the layer breakdowns
    want = 2 * (n_hw + 1) + 3  # the per-layer breakdowns of a view are one figure (a menu chooses)
    assert probe["plots"] == probe["plots_with_svg"] == want
    titles = " | ".join(probe["titles"])
    assert "Cost model: DEPLOYMENT PROXY vit_b at batch 32" in titles and "Cost model: trained model" in titles


def _lm_report_data():
    """A language-model report as `pgf-sim run` writes it: bpc (lower is better), a deployment
    view with steep costs, a trained view whose costs are flat (folded), several breakdowns."""
    from dataclasses import replace

    from pgf_sim.codesign.decide.pareto import ResultTable
    from pgf_sim.codesign.decide.pick import pick
    from pgf_sim.codesign.report.report import CostSection, LayerBreakdown
    from pgf_sim.codesign.report.report_figures import MetricInfo
    from pgf_sim.core.metric import get_metric

    data = _sample_data()
    bpc = get_metric("bpc")
    # turn the sample's accuracies into bpc: better accuracy -> lower bpc
    steep = ResultTable([replace(c, accuracy_mean=2.0 + 5 * (1 - c.accuracy_mean)) for c in data.results], bpc)
    flat = ResultTable([replace(c, latency_s=1e-4 * (1 + 0.001 * i), energy_j=1e-5) for i, c in enumerate(steep)], bpc)
    hws = steep.hardware_names()
    limit = 2.0 + 5 * 0.07
    picks = [pick(steep, h, metric_limit=limit) for h in hws]
    flat_picks = [pick(flat, h, metric_limit=limit) for h in hws]
    layers = [LayerBreakdown(h, f"{p.best.label} (pick)", list(b.layers), list(b.latency_s), list(b.energy_j),
                             b.bound) for h, p in zip(hws, picks) for b in data.layer_breakdowns]
    views = [CostSection("Cost model: trained model", "flat", flat, flat_picks, (), layers, kind="trained"),
             CostSection("Cost model: DEPLOYMENT PROXY gpt2", "proxy", steep, picks, (), layers, kind="deploy")]
    metric = MetricInfo("validation bpc", " bits/char", 1.0, False, "validation split of shakespeare")
    return replace(data, results=(), picks=(), layer_breakdowns=(), cost_views=views, metric=metric,
                   test_results={p.best.label: (p.best.accuracy_mean - 0.01, 0.002, 3) for p in picks})


def test_language_model_report_is_short_and_folds_open(tmp_path):
    """The bpc report: answer first, flat trained view folded, every plot drawn with titled axes and
    the pick; opening the folded section gives its plots the page's width (not plotly's 700 px)."""
    path = write_report(tmp_path / "lm.html", _lm_report_data())
    res = open_page(path, tmp_path)
    assert res["errors"] == []
    probe = res["probe"]
    n_hw = 2
    assert probe["plots"] == probe["plots_with_svg"] == 2 * (n_hw + 1) + 3
    assert probe["axes_without_title"] == [] and probe["pareto"] == probe["pareto_with_pick"] == 2 * n_hw
    assert probe["folded_plots"] == n_hw + 1 + 1  # the trained view (fronts + layers) and the gradient noise
    assert sorted(probe["menus"], reverse=True)[:2] == [1, 1]  # per-layer: one figure per view, with a menu
    # a page of 9 figures of which 4 folded: the answer and 5 open figures, not 9 stacked ones
    assert probe["page_height"] < 6500, probe["page_height"]
    text = path.read_text()
    assert text.index("The answer per target") < text.index("Pareto front on")
    assert "validation bpc (bits\\u002fchar, lower is better)" in text  # an axis title (JSON escapes the /)
    assert "test split (reported, not used to pick)" in text
    opened = open_page(path, tmp_path, script="document.querySelectorAll('details').forEach(d => d.open = true)")
    assert opened["errors"] == [] and opened["probe"]["folded_plots"] == 0
    assert opened["probe"]["page_height"] > probe["page_height"] + 1000
    widths = opened["probe"]["plot_widths"]
    assert min(widths) > 1000, widths  # every plot resized to the 1400 px window once its section opened


def test_memory_footprint_figures_render_with_every_axis_titled(tmp_path):
    """Results with footprints: each target's figure has five panels (2 x 3, the sixth slot a
    caption), all drawn with titled axes, the pick and, on the small target, the red crosses."""
    from pgf_sim.codesign.decide.pick import pick
    from pgf_sim.codesign.report.report import ReportData

    spec = importlib.util.spec_from_file_location("report_memory", Path(__file__).with_name("test_report_memory.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    table = module.table()
    picks = [pick(table, hw) for hw in table.hardware_names()]
    res = open_page(write_report(tmp_path / "memory.html", ReportData(results=table, picks=picks)), tmp_path)
    assert res["errors"] == []
    probe = res["probe"]
    assert probe["plots"] == probe["plots_with_svg"] == 2
    assert probe["axes"] == 2 * 10 and probe["axes_without_title"] == []  # 5 panels x (x, y) per target
    assert probe["pareto"] == probe["pareto_with_pick"] == 2


def test_the_gradient_noise_link_opens_its_folded_section(tmp_path):
    """The table of contents' 'gradient noise' link opens the folded section it points to (a closed
    <details> reached by its anchor looks like an empty section)."""
    path = write_report(tmp_path / "report.html", _sample_data())
    res = open_page(path, tmp_path, script="document.querySelector(\"a[href='#noise']\").click()")
    assert res["errors"] == []
    closed = open_page(path, tmp_path)
    assert res["probe"]["folded_plots"] < closed["probe"]["folded_plots"]  # the noise figure is no longer folded
