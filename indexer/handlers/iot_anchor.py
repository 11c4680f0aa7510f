"""IoTAnchor: Merkle roots of IoT reading windows."""

from __future__ import annotations

from chains.base import ChainEvent
from indexer.context import Context
from indexer.registry import handler


@handler("IoTAnchor:Anchored")
def anchored(ev: ChainEvent, ctx: Context) -> None:
    a = ev.args
    if ctx.exists("iot_anchor", "root", a["root"]):  # the EVM contract reverts this; a Substrate remark cannot
        ctx.error(ev, f"Anchored: root {a['root']} is already anchored on this chain")
        return
    ctx.insert("iot_anchor", ev, anchor_id=a["anchorId"], root=a["root"], leaf_count=a["leafCount"],
               window_start=a["windowStart"], window_end=a["windowEnd"], quality_score=a["qualityScore"])
