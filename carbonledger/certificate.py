"""A printable retirement certificate (one self-contained HTML page; a browser prints it to PDF).

Everything on it comes from the chain (carbonledger.verify), not from our database: the retirement's facts, the
batch's registry details, every custody step with its transaction, and the verification result at print time.
Its QR code carries the command that repeats the check with only a node: `carbonledger verify certificate …`.
"""

from __future__ import annotations

import datetime as dt
from html import escape
from typing import Any, Mapping

from carbonledger.verify import Report
from core.verifycmd import verify_command


def _qr_svg(text: str) -> str:
    import segno

    return segno.make(text, error="m").svg_inline(scale=3, dark="#1b3a2b")


def _when(ts: int | None) -> str:
    return "" if ts is None else dt.datetime.fromtimestamp(int(ts), dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def render_html(report: Report, addresses: Mapping[str, str], from_block: int, *, family: str = "evm",
                package: str | None = None) -> str:
    f: dict[str, Any] = report.facts
    batch = f.get("batch") or {}
    cmd = verify_command(f["certificate_id"], addresses, from_block, family=family, package=package)
    e = lambda v: escape(str(v if v is not None else ""))  # noqa: E731
    rows = "".join(
        f"<tr><td>{e(m.kind)}</td><td>{e(m.amount)}</td><td class=mono>{e(m.from_addr)}</td>"
        f"<td class=mono>{e(m.to_addr)}</td><td>{e(m.block_number)}</td><td>{e(_when(m.timestamp))}</td>"
        f"<td class=mono>{e(m.tx_hash)}:{e(m.log_index)}</td>"
        f"<td>{e(m.verification_hash or m.payment_ref or '')}</td></tr>" for m in report.events)
    checks = "".join(f"<li class={'ok' if c.ok else 'fail'}>{'✔' if c.ok else '✘'} {e(c.name)}: {e(c.detail)}</li>"
                     for c in report.checks)
    status = "Verified on chain" if report.ok else "NOT verified"
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Retirement certificate {e(f['certificate_id'])}</title>
<style>
body {{ font-family: Georgia, serif; margin: 2.5em auto; max-width: 60em; color: #1b3a2b; }}
h1 {{ font-size: 2em; margin-bottom: 0.1em; }} .sub {{ color: #557; }}
.amount {{ font-size: 1.6em; }} table {{ border-collapse: collapse; width: 100%; font-size: 0.8em; }}
td, th {{ border-bottom: 1px solid #cdd; padding: 0.3em; text-align: left; vertical-align: top; }}
.mono {{ font-family: monospace; word-break: break-all; }} .ok {{ color: #185; }} .fail {{ color: #a11; }}
.top {{ display: flex; justify-content: space-between; gap: 2em; }} code {{ word-break: break-all; }}
@media print {{ body {{ margin: 1em; }} }}
</style></head><body>
<div class=top><div>
<h1>Carbon credit retirement certificate</h1>
<div class=sub>Certificate {e(f['certificate_id'])} · chain {e(report.chain)} · {e(status)}</div>
<p class=amount>{e(f['amount'])} credits of batch {e(f['batch_id'])} retired for <b>{e(f['beneficiary'])}</b></p>
<p>Reason: {e(f['reason'])}<br>Holder: <span class=mono>{e(f['holder'])}</span><br>
Retired {e(_when(f.get('timestamp')))} in block {e(f['block_number'])}
({e(f.get('confirmations'))} confirmations{', final' if f.get('final') else ', not yet final'})<br>
Transaction <span class=mono>{e(f['tx_hash'])}</span>, log {e(f['log_index'])}<br>
Block hash <span class=mono>{e(f['block_hash'])}</span><br>
Contract <span class=mono>{e(f.get('contract'))}</span></p>
<p>Project {e(batch.get('projectId'))} · vintage {e(batch.get('vintage'))} · methodology {e(batch.get('methodology'))}
· registry {e(batch.get('registry'))} · serial {e(batch.get('serialNumber'))}<br>
Serials retired by this certificate (first in, first out within the batch):
<b class=mono>{e(f.get('serial_range') or 'none (the batch has no serial range)')}</b></p>
</div><div>{_qr_svg(cmd)}</div></div>
<h2>Checks at print time</h2><ul>{checks}</ul>
<h2>Chain of custody</h2>
<table><tr><th>step</th><th>amount</th><th>from</th><th>to</th><th>block</th><th>time</th><th>tx:log</th>
<th>attestation / payment</th></tr>{rows}</table>
<h2>Check it yourself</h2>
<p>With any node of this chain, and no database of ours:</p><p><code>{e(cmd)}</code></p>
</body></html>
"""
