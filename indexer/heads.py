"""New heads pushed over WebSocket (evm: `eth_subscribe` newHeads; substrate: `chain_subscribeNewHeads`, or
`chain_subscribeFinalizedHeads` when the indexer follows finalized blocks) wake the sync loop at once; polling
stays the fallback, so a dropped socket only costs latency, never data (the loop still checks every block's
parent)."""

from __future__ import annotations

import logging
import threading

import orjson

log = logging.getLogger("carbonledger.indexer.heads")


class HeadWatcher:
    def __init__(self, chain: str, url: str, wake: threading.Event, stop: threading.Event, *, family: str = "evm",
                 finalized: bool = False) -> None:
        self.chain, self.url, self.wake, self.stop = chain, url, wake, stop
        if family == "substrate":
            self.subscribe = ("chain_subscribeFinalizedHeads" if finalized else "chain_subscribeNewHeads", [])
        else:
            self.subscribe = ("eth_subscribe", ["newHeads"])
        self.heads = 0
        self._thread = threading.Thread(target=self._run, name=f"heads-{chain}", daemon=True)

    def start(self) -> HeadWatcher:
        self._thread.start()
        return self

    def _run(self) -> None:
        from websockets.sync.client import connect

        while not self.stop.is_set():
            try:
                with connect(self.url, open_timeout=5, close_timeout=1) as ws:
                    ws.send(orjson.dumps({"jsonrpc": "2.0", "id": 1, "method": self.subscribe[0],
                                          "params": self.subscribe[1]}))
                    ack = orjson.loads(ws.recv(timeout=5))
                    if "error" in ack:
                        log.warning("head subscription not supported; polling only", extra={"chain": self.chain, "error": ack["error"]})
                        return
                    log.info("subscribed to new heads", extra={"chain": self.chain})
                    while not self.stop.is_set():
                        try:
                            ws.recv(timeout=1.0)
                        except TimeoutError:
                            continue
                        self.heads += 1
                        self.wake.set()
            except Exception as exc:  # noqa: BLE001 - any socket trouble: fall back to polling, retry later
                log.info("head subscription socket down; polling", extra={"chain": self.chain, "error": str(exc)[:200]})
                self.stop.wait(2.0)
