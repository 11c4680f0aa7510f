"""The README's configuration reference, generated from the settings object (a test keeps the two in sync)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, SecretStr

from core.config import (ChainSettings, ContractSettings, FiatRate, InkContract, MarketBatch, MarketSettings, Settings,
                         SubstrateAsset)

BEGIN, END = "<!-- config-reference:begin -->", "<!-- config-reference:end -->"


def _default(field: Any) -> str:
    if field.is_required():
        return "required"
    if field.default_factory is not None:
        value = field.default_factory()
        return "{}" if value == {} else "[]" if value == [] else "…"
    value = field.default
    if value is None:
        return "unset"
    if isinstance(value, SecretStr):
        return "(secret)"
    return f"`{value}`"


def _rows(model: type[BaseModel], prefix: str) -> list[tuple[str, str, str]]:
    rows = []
    for name, field in model.model_fields.items():
        ann = field.annotation
        key = f"{prefix}{name}"
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            rows += _rows(ann, key + ".")
            continue
        rows.append((key, _default(field), (field.description or "").replace("|", "\\|")))
    return rows


def reference_markdown() -> str:
    rows = _rows(Settings, "")
    rows = [r for r in rows if not r[0].startswith("chains")]
    at = next(i for i, r in enumerate(rows) if r[0] == "oracle.fiat_rates") + 1
    rows[at:at] = _rows(FiatRate, "oracle.fiat_rates.<currency>.")
    rows += _rows(ChainSettings, "chains.<name>.")
    rows = [r for r in rows if r[0] != "chains.<name>.contracts"]
    rows += _rows(ContractSettings, "chains.<name>.contracts.<Contract>.")
    at = next(i for i, r in enumerate(rows) if r[0] == "chains.<name>.assets") + 1
    rows[at:at] = _rows(SubstrateAsset, "chains.<name>.assets.<id>.")
    # Lists and maps of models: one row per field of an item (`markets[]`, its `batches.<token id>`).
    at = next(i for i, r in enumerate(rows) if r[0] == "chains.<name>.markets") + 1
    market = _rows(MarketSettings, "chains.<name>.markets[].")
    market += _rows(MarketBatch, "chains.<name>.markets[].batches.<token id>.")
    rows[at:at] = market
    at = next(i for i, r in enumerate(rows) if r[0] == "chains.<name>.ink_contracts") + 1
    rows[at:at] = _rows(InkContract, "chains.<name>.ink_contracts.<address>.")
    lines = ["| key | default | meaning |", "|---|---|---|"]
    lines += [f"| `{k}` | {d} | {m} |" for k, d, m in rows]
    return "\n".join(lines)


def render_into(readme: str) -> str:
    """The README text with the block between the markers replaced by the current reference."""
    head, rest = readme.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    return f"{head}{BEGIN}\n{reference_markdown()}\n{END}{tail}"


if __name__ == "__main__":  # python -m carbonledger.config_doc: rewrite the README's reference block
    from pathlib import Path

    readme = Path(__file__).resolve().parent.parent / "README.md"
    readme.write_text(render_into(readme.read_text()))
    print(f"updated {readme}")
