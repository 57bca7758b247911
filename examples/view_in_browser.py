"""What ``sxtdist view`` shows, as a browser shows it: a screenshot in headless Chromium.

Simulates a cell, reconstructs it, serves the volume (or the acquisition) the
way ``sxtdist view`` does, opens the neuroglancer link in headless Chromium and
saves a screenshot. docs/img/viewing.png is made by::

    python examples/view_in_browser.py --preset small --out docs/img/viewing.png

Needs the ``neuroglancer`` package (extra ``view``: its client is served
locally, no network), ``playwright`` (extra ``browser``; only its driver, no
browser download) and a Chromium (Debian: ``apt-get install chromium``). The
WebGL that neuroglancer draws with comes from Chromium's software renderer
(SwiftShader), so no GPU or screen is needed.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

#: Chromium flags that work on a machine with no screen, GPU or outside network.
CHROMIUM_ARGS = (
    "--headless=new",
    "--no-sandbox",
    "--no-first-run",
    "--disable-quic",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--use-angle=swiftshader",  # WebGL on the CPU
    "--enable-unsafe-swiftshader",
    "--ignore-gpu-blocklist",
)
CHROMIUM = os.environ.get("SXTDIST_CHROMIUM", "/usr/bin/chromium")


def screenshot(link: str, out: str, size=(1000, 800), settle_s: float = 8.0, timeout_s=120):
    """Open ``link`` in headless Chromium, wait until the view stops changing, save a PNG.

    Neuroglancer draws as chunks arrive; the page is taken once two screenshots
    ``settle_s`` apart are the same (or at ``timeout_s``).
    """
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=list(CHROMIUM_ARGS))
        try:
            page = browser.new_page(viewport={"width": size[0], "height": size[1]})
            page.goto(link)
            deadline = time.monotonic() + timeout_s
            previous = None
            while True:
                time.sleep(settle_s)
                png = page.screenshot()
                if png == previous or time.monotonic() > deadline:
                    break
                previous = png
        finally:
            browser.close()
    with open(out, "wb") as f:
        f.write(png)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="small", help="simulation preset (tiny, small)")
    ap.add_argument("--what", choices=["volume", "acquisition"], default="volume")
    ap.add_argument("--out", default="viewing.png", help="the screenshot (PNG)")
    ap.add_argument("--work", help="working directory (default: a temporary one)")
    args = ap.parse_args(argv)

    from sxtdist.cli import main as sxtdist
    from sxtdist.io.viewer import serve

    work = args.work or tempfile.mkdtemp(prefix="sxtdist-view-")
    acq = os.path.join(work, "cell.zarr")
    vol = os.path.join(work, "cell_recon.zarr")
    if not os.path.exists(acq):
        sxtdist(["simulate", acq, "--preset", args.preset, "--seed", "1", "-q"])
    if args.what == "volume" and not os.path.exists(vol):
        code = sxtdist(["reconstruct", acq, vol, "--workers", "1", "-q"])
        if code:
            return code
    with serve(vol if args.what == "volume" else acq) as view:
        if view.local_link is None:
            print("needs the neuroglancer package (pip install 'sxtdist[view]')", file=sys.stderr)
            return 2
        screenshot(view.local_link, args.out)
    print(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
