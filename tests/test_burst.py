"""A burst of webhooks into a real serve, with a SIGKILL in the middle (issue 17, item 4).

The small version of ``bench/webhooks.py --burst``: every delivery that got a 2xx is
stored once and becomes one XMPP message (again only within the documented window
after the kill), and the backlog drains, with a real Prosody, Prefect and DuckDB file.
"""

from __future__ import annotations

from pathlib import Path

from burst_support import SECRET, Burst, flows, plan
from serve_support import Serve
from xmpp_support import Prosody, Receiver

from triggerflow._store import Store

WINDOW = 400  # README, "What is guaranteed…": at most 2 x 200 messages again per kill


def test_a_killed_serve_mid_burst_delivers_every_accepted_delivery_once(
    prosody: Prosody, tmp_path: Path
) -> None:
    jid, password = prosody.new_user("burst")
    data = tmp_path / "data"
    serve = Serve(
        data, flows(tmp_path / "flows", jid), TRIGGERFLOW_GITHUB_SECRET=SECRET,
        **prosody.env(owner=jid),
    )  # fmt: skip
    receiver = Receiver(prosody, jid, password)
    burst = Burst(serve, plan(400), clients=16, kill_at=0.5, limit=240)
    try:
        serve.start()
        burst.post()
        got, _ = burst.wait_delivered(receiver, timeout=180)
        serve.stop()
    finally:
        serve.kill()
        receiver.close()

    assert burst.killed_after is not None
    codes = burst.codes()
    assert not [c for c in codes if c >= 500], codes
    accepted = burst.accepted()
    assert len(accepted) == len(set(burst.numbers)), "every delivery accepted at last"
    missing = accepted - set(got)
    assert not missing, f"{len(missing)} accepted deliveries never arrived: {sorted(missing)[:10]}"
    again = sum(c - 1 for c in got.values())
    assert again <= WINDOW, f"{again} messages twice"
    with Store(data / "triggerflow.duckdb").transaction(commit=False) as tx:
        rows, ids = tx.con.execute(
            "SELECT count(*), count(DISTINCT id) FROM inbox WHERE repo = 'bench/burst'"
        ).fetchone()
    assert rows == ids == len(accepted)
