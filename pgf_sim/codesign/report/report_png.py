"""PNG export of the co-design report: a screenshot with headless Chromium when one is installed."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

FIG_HEIGHT_PX = 460  # the report's figure height (report.FIG_HEIGHT_PX), for the page-height estimate


def find_chromium() -> str | None:
    """Path of a Chromium/Chrome binary (``$PGF_SIM_CHROMIUM``, /usr/bin/chromium, or PATH)."""
    candidates = [os.environ.get("PGF_SIM_CHROMIUM", ""), "/usr/bin/chromium"]
    candidates += [shutil.which(n) or "" for n in ("chromium", "chromium-browser", "google-chrome")]
    return next((c for c in candidates if c and os.access(c, os.X_OK)), None)


def chromium_command(browser: str, profile_dir: str) -> list[str]:
    """Headless, offline-safe flags (no sandbox for root in containers, no background network)."""
    return [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--no-first-run", "--hide-scrollbars",
            f"--user-data-dir={profile_dir}"]


def export_png(html_path: str | Path, png_path: str | Path, *, width_px: int = 1600, height_px: int | None = None,
               timeout_s: float = 120.0) -> Path | None:
    """Screenshot the report with headless Chromium. Returns None (and prints why) without one.

    Height defaults to an estimate from the open figures (folded ``<details>`` sections stay
    closed in the screenshot) so the whole page fits.
    """
    browser = find_chromium()
    if browser is None:
        print("pgf-sim: PNG export skipped: no Chromium found (install it with `apt-get install chromium`, "
              "or set PGF_SIM_CHROMIUM to a Chrome/Chromium binary)")
        return None
    html_path, png_path = Path(html_path).resolve(), Path(png_path).resolve()
    if height_px is None:  # every figure's own layout height (plotly writes "height":N into its JSON)
        text = re.sub(r"<details.*?</details>", "<details>", html_path.read_text(encoding="utf-8"), flags=re.S)
        figs = text.split("<div class='fig'>")[1:]
        heights = [int(m.group(1)) if (m := re.search(r'"height":(\d+)', f)) else FIG_HEIGHT_PX for f in figs]
        height_px = 900 + sum(h + 60 for h in heights) + 30 * text.count("<tr>")
    png_path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as profile:
        cmd = chromium_command(browser, profile) + [
            f"--window-size={width_px},{height_px}", "--virtual-time-budget=10000",
            f"--screenshot={png_path}", html_path.as_uri()]
        subprocess.run(cmd, check=True, capture_output=True, timeout=timeout_s)
    return png_path
