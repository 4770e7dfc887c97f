"""Regenerate docs/prefect-ui.png: ``python docs/screenshot.py`` (needs ``chromium``).

Starts ``triggerflow serve`` on a new data dir with this repository's ``flows/`` and an
XMPP account in the environment (it is never connected to: nothing runs in the few
seconds this takes), pauses one trigger by hand so that the picture shows what a paused
trigger looks like, and has headless Chromium take the Prefect UI's deployments page.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from serve_support import Serve  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "prefect-ui.png")
    ap.add_argument("--pause", default="security_digest", help="trigger paused by hand")
    args = ap.parse_args(argv)
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if not browser:
        print("chromium is not installed (apt-get install -y chromium)", file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory(prefix="tf-screenshot-") as tmp:
        serve = Serve(
            Path(tmp) / "data",
            ROOT / "flows",
            TRIGGERFLOW_XMPP_DEFAULT_JID="bot@example.org",
            TRIGGERFLOW_XMPP_DEFAULT_PASSWORD="not-a-real-password",
            TRIGGERFLOW_XMPP_DEFAULT_OWNER="me@example.org",
            TRIGGERFLOW_GITHUB_SECRET="not-a-real-secret",
        )
        if serve.cli("pause", args.pause).returncode != 0:
            print(f"could not pause {args.pause}", file=sys.stderr)
            return 1
        try:
            print(serve.start())
            shot = subprocess.run(
                [browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                 "--window-size=1400,900", "--virtual-time-budget=20000",
                 f"--screenshot={args.out}", f"http://127.0.0.1:{serve.port}/deployments"],
                capture_output=True, text=True, timeout=120,
            )  # fmt: skip
        finally:
            serve.kill()
    if shot.returncode != 0 or not args.out.is_file():
        print(shot.stderr[-2000:], file=sys.stderr)
        return 1
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
