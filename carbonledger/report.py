"""`carbonledger report retirements`: an offset report a company can file (CSV for BI tools, JSON, PDF).

The numbers come from store.reports (the same SQL as the API's `retirementReport`); the PDF adds a chart of
retirements per month (stacked by project) and per project, and per certificate the command that verifies it
from the chain alone (carbonledger verify, no database of ours needed). README "Offset reports" says how the
figures map to a GHG Protocol / CDP disclosure line.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import io
import json
import sys
from pathlib import Path
from typing import Any, Mapping

CSV_COLUMNS = ("time", "chain", "certificate_id", "beneficiary", "holder", "amount_tco2e", "project_id", "vintage",
               "methodology", "registry", "serial_number", "batch_id", "reason", "tx_hash", "log_index",
               "block_number", "block_hash")


def _iso(ts: int) -> str:
    return dt.datetime.fromtimestamp(int(ts), dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_when(text: str, what: str) -> int:
    """A date (YYYY-MM-DD, midnight UTC), an ISO-8601 time, or unix seconds."""
    from core.preflight import OperatorError

    if text.isdigit():
        return int(text)
    try:
        t = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise OperatorError(f"{what} {text!r} is not a date", "use YYYY-MM-DD, an ISO-8601 time or unix seconds") from None
    return int((t if t.tzinfo else t.replace(tzinfo=dt.timezone.utc)).timestamp())


def _cell(v: Any) -> Any:
    """A text cell a spreadsheet will not run as a formula (chain text is anyone's: "=HYPERLINK(...)")."""
    return "'" + v if isinstance(v, str) and v[:1] in ("=", "+", "-", "@", "\t", "\r") else v


def to_csv(report: Mapping[str, Any]) -> str:
    """One row per certificate (BI tools read this); totals are in JSON and PDF."""
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\n")
    w.writerow(CSV_COLUMNS)
    for r in report["retirements"]:
        w.writerow([_iso(r["block_timestamp"]), r["chain"], r["certificate_id"], _cell(r["beneficiary"]), r["holder"],
                    r["amount"], _cell(r["project_id"]), r["vintage"], _cell(r["methodology"]), _cell(r["registry"]),
                    _cell(r["serial_number"]), r["batch_id"], _cell(r["reason"]), r["tx_hash"], r["log_index"],
                    r["block_number"], r["block_hash"]])
    return out.getvalue()


def to_pdf(report: Mapping[str, Any], path: Path, commands: Mapping[tuple[str, int], str]) -> None:
    """A PDF: the filter and period, totals, a chart per month (stacked by project) and per project, and every
    certificate with its transaction and the command that verifies it."""
    from reportlab.graphics.charts.barcharts import HorizontalBarChart, VerticalBarChart
    from reportlab.graphics.charts.legends import Legend
    from reportlab.graphics.shapes import Drawing, String
    from reportlab.lib import colors
    from reportlab.lib.pagesizes import A4
    from reportlab.lib.styles import getSampleStyleSheet
    from reportlab.lib.units import cm
    from reportlab.platypus import Paragraph, SimpleDocTemplate, Spacer, Table, TableStyle

    from xml.sax.saxutils import escape

    def x(v: Any) -> str:  # reportlab reads Paragraph text as markup: chain text (anyone's) is escaped
        return escape(str(v if v is not None else "?"))

    styles = getSampleStyleSheet()
    small = styles["BodyText"].clone("small", fontSize=7, leading=8.5)
    f, t = report["filter"], report["totals"]
    who = f"beneficiary {x(f['beneficiary'])}" if f["beneficiary"] else f"holder {x(f['holder'])}"
    period = f"{_iso(f['from'])[:10]} to {_iso(f['to'])[:10]} (exclusive)" if f["to"] < 2**40 else f"from {_iso(f['from'])[:10]}"
    story: list[Any] = [
        Paragraph("Carbon offset retirements", styles["Title"]),
        Paragraph(f"{who} · {period}" + (f" · chain {x(f['chain'])}" if f["chain"] else ""), styles["Heading3"]),
        Paragraph(f"<b>{t['amount']:,} tCO2e</b> retired in <b>{t['certificates']}</b> certificate(s). "
                  "Figures are retirements recorded on chain (one credit unit = one tonne CO2e); each certificate "
                  "below can be checked from the chain alone with the command shown.", styles["BodyText"]),
        Spacer(1, 0.4 * cm)]
    palette = [colors.HexColor(c) for c in ("#1b7a4b", "#4a90c2", "#e0a030", "#a04a8a", "#6a6a6a", "#2aa198",
                                            "#d33682", "#859900")]
    months = sorted({m["month"] for m in report["by_month"]})
    projects = sorted({m["project_id"] for m in report["by_month"]})
    if months:
        d = Drawing(17 * cm, 7 * cm)
        chart = VerticalBarChart()
        chart.x, chart.y, chart.width, chart.height = 40, 40, 12 * cm, 5 * cm
        chart.data = [[sum(int(m["amount"]) for m in report["by_month"] if m["month"] == mo and m["project_id"] == p)
                       for mo in months] for p in projects]
        chart.categoryAxis.categoryNames = months
        chart.categoryAxis.style = "stacked"
        chart.categoryAxis.labels.fontSize = 7
        chart.valueAxis.valueMin = 0
        for i in range(len(projects)):
            chart.bars[i].fillColor = palette[i % len(palette)]
        d.add(chart)
        legend = Legend()
        legend.x, legend.y, legend.fontSize = 13.5 * cm, 6 * cm, 7
        legend.colorNamePairs = [(palette[i % len(palette)], p[:24]) for i, p in enumerate(projects)]
        d.add(legend)
        d.add(String(40, 6.6 * cm, "tCO2e retired per month, by project", fontSize=9))
        story += [d, Spacer(1, 0.3 * cm)]
        hd = Drawing(17 * cm, max(3, 0.8 * len(t["by_project"]) + 1.5) * cm)
        h = HorizontalBarChart()
        h.x, h.y, h.width, h.height = 90, 20, 11 * cm, max(1.5, 0.8 * len(t["by_project"])) * cm
        h.data = [[p["amount"] for p in t["by_project"]]]
        h.categoryAxis.categoryNames = [p["project_id"][:20] for p in t["by_project"]]
        h.categoryAxis.labels.fontSize = 7
        h.valueAxis.valueMin = 0
        h.bars[0].fillColor = palette[0]
        hd.add(h)
        hd.add(String(90, hd.height - 12, "tCO2e retired per project", fontSize=9))
        story += [hd, Spacer(1, 0.3 * cm)]
    grid = TableStyle([("FONTSIZE", (0, 0), (-1, -1), 7), ("GRID", (0, 0), (-1, -1), 0.25, colors.grey),
                       ("BACKGROUND", (0, 0), (-1, 0), colors.HexColor("#e8f1ec")), ("VALIGN", (0, 0), (-1, -1), "TOP")])
    story.append(Paragraph("Totals per project", styles["Heading3"]))
    story.append(Table([["project", "tCO2e"]] + [[p["project_id"], f"{p['amount']:,}"] for p in t["by_project"]],
                       style=grid, hAlign="LEFT"))
    story.append(Paragraph("Totals per vintage", styles["Heading3"]))
    story.append(Table([["vintage", "tCO2e"]] + [[str(v["vintage"] or "unknown"), f"{v['amount']:,}"] for v in t["by_vintage"]],
                       style=grid, hAlign="LEFT"))
    story.append(Paragraph("Certificates", styles["Heading3"]))
    rows = [["date", "certificate", "tCO2e", "project / vintage / methodology / serial", "transaction and how to verify"]]
    for r in report["retirements"]:
        cmd = commands.get((r["chain"], int(r["certificate_id"])), "")
        rows.append([_iso(r["block_timestamp"])[:10], f"{r['chain']} #{r['certificate_id']}", f"{int(r['amount']):,}",
                     Paragraph(f"{x(r['project_id'])} / {x(r['vintage'])} / {x(r['methodology'])} / "
                               f"{x(r['serial_number'])}<br/>for {x(r['beneficiary'])}: {x(r['reason'])}", small),
                     Paragraph(f"tx {x(r['tx_hash'])} log {r['log_index']}<br/><font face='Courier'>{x(cmd)}</font>",
                               small)])
    story.append(Table(rows, style=grid, colWidths=[1.8 * cm, 2.2 * cm, 1.5 * cm, 4.5 * cm, 8 * cm], repeatRows=1))
    if report["truncated"]:
        story.append(Paragraph("The certificate list was cut; the totals cover the whole period.", styles["Italic"]))
    SimpleDocTemplate(str(path), pagesize=A4, title="Carbon offset retirements", leftMargin=1.5 * cm,
                      rightMargin=1.5 * cm, topMargin=1.5 * cm, bottomMargin=1.5 * cm).build(story)


def cmd_report_retirements(args: argparse.Namespace) -> int:
    """Retirements of a beneficiary or holder in a period, with totals per project and vintage (CSV, JSON, PDF)."""
    import psycopg

    from chains.base import load_family
    from core.config import load_settings
    from core.database import resolve_database_url
    from core.preflight import OperatorError
    from core.verifycmd import verify_command
    from store.engine import libpq_url
    from store.preflight import check_database
    from store.reports import ReportFilter, retirement_report

    try:
        f = ReportFilter(beneficiary=args.beneficiary, holder=args.holder, chain=args.chain,
                         since=parse_when(args.since, "--from") if args.since else 0,
                         until=parse_when(args.until, "--to") if args.until else 2**62)
    except ValueError as exc:
        raise OperatorError(f"report: {exc}", "pass --beneficiary NAME or --holder 0xADDRESS, and --from before --to") from None
    if args.format == "pdf" and not args.out:
        raise OperatorError("a PDF report needs a file", "pass --out report.pdf")
    settings = load_settings(args.config)
    url = resolve_database_url(settings)
    check_database(url)
    with psycopg.connect(libpq_url(url), autocommit=True) as conn:
        report = retirement_report(conn, f)
    if args.format == "csv":
        text = to_csv(report)
    elif args.format == "json":
        text = json.dumps(report, indent=2) + "\n"
    else:
        commands = {}
        for name, cs in settings.chains.items():
            src = load_family(cs.family).reader.verify_source(name, cs)
            for r in report["retirements"]:
                if int(r["batch_id"]) >> 96:  # an existing market's certificate: `verify` rebuilds ours only
                    commands[(name, int(r["certificate_id"]))] = "not a carbonledger certificate: verify it with its market"
                    continue
                if r["chain"] == name and src is not None:
                    commands[(name, int(r["certificate_id"]))] = verify_command(
                        int(r["certificate_id"]), src.contracts, src.start, family=src.family, package=src.package)
        to_pdf(report, Path(args.out), commands)
        print(f"{args.out}: {report['totals']['certificates']} certificate(s), {report['totals']['amount']} tCO2e")
        return 0
    if args.out:
        Path(args.out).write_text(text)
    else:
        sys.stdout.write(text)
    return 0


def add_report_commands(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Register `report retirements` on the carbonledger command."""
    what = "Reports from the indexed data."
    r = sub.add_parser("report", help=what, description=what)
    rs = r.add_subparsers(dest="report", required=True)
    p = rs.add_parser("retirements", help=cmd_report_retirements.__doc__)
    who = p.add_mutually_exclusive_group(required=True)
    who.add_argument("--beneficiary", help="the beneficiary named in the retirements (exact)")
    who.add_argument("--holder", help="the address that retired the credits")
    p.add_argument("--from", dest="since", help="start of the period (YYYY-MM-DD or unix seconds; default: the beginning)")
    p.add_argument("--to", dest="until", help="end of the period, exclusive (default: now and on)")
    p.add_argument("--chain", help="only this chain (default: every chain)")
    p.add_argument("--format", choices=("csv", "json", "pdf"), default="csv", help="output format")
    p.add_argument("--out", help="write to this file (default: standard output; PDF needs a file)")
    p.set_defaults(func=cmd_report_retirements)
