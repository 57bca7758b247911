"""``sxtdist view``: serve an acquisition or a volume and print a neuroglancer link."""

from __future__ import annotations

import logging
import threading
import webbrowser

import click

logger = logging.getLogger(__name__)


@click.command()
@click.argument("path", type=click.Path())
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    help="Address to listen on (127.0.0.1: this machine only; 0.0.0.0 shares the data).",
)
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=0,
    help="Data server port (default: a free one).",
)
@click.option(
    "--public-client",
    is_flag=True,
    help="Only the public neuroglancer client's link (needs the internet), not a local one.",
)
@click.option("--open", "open_browser", is_flag=True, help="Open the link in the web browser.")
def command(path, host, port, public_client, open_browser) -> None:
    """Serve PATH (an acquisition or a volume) over HTTP and print a neuroglancer link.

    The link opens the volume in four panels, or the projections of an
    acquisition (interior scan shown, the others one click away), with the
    contrast set to the data's display window. It works while this command runs;
    Ctrl-C stops it. Over SSH, forward the ports printed (ssh -L).
    """
    # Here, not at the top: the viewer imports Zarr and the NGFF models, which ``sxtdist
    # view --help`` does not need.
    from ..io.viewer import serve

    with serve(path, host, port, local_client=not public_client) as view:
        if view.local_link:
            click.echo(f"neuroglancer  {view.local_link}")
        click.echo(f"public client {view.public_link}")
        click.echo(f"data          {view.data.url}")
        logger.info("serving %s; Ctrl-C stops", view.path)
        if open_browser:
            webbrowser.open(view.link)
        try:
            threading.Event().wait()
        except KeyboardInterrupt:
            logger.info("stopped")
