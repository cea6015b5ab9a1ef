"""The self-contained HTML report: tables, figures as base64 PNG, config diffs, doctor findings.

Nothing is referenced outside the page (no external src/href, inline CSS only), so the file
can be mailed or archived on its own.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime
import html
import json
from pathlib import Path
from typing import Sequence

from reporting import comparison, configs
from reporting.doctor import DoctorReport
from reporting.runs import BrokenRun, RunData
from reporting.tables import COMPARISON_TITLE, Table, column_headers, footnotes, row_cells

_CSS = """
body { font-family: -apple-system, Segoe UI, Helvetica, Arial, sans-serif; margin: 2em;
       color: #222; max-width: 1600px; }
table { border-collapse: collapse; margin: 1em 0; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 4px 8px; text-align: right; vertical-align: top; }
th { background: #f2f2f2; }
td:first-child, th:first-child, td:last-child { text-align: left; }
td.notsep { background: #fff3cd; }
img { max-width: 100%; border: 1px solid #eee; margin: 0.5em 0; }
.footnotes { font-size: 0.85em; color: #444; }
.broken, .messages { color: #8a1c1c; }
code { background: #f6f6f6; padding: 0 3px; }
details { margin: 0.5em 0 1em 1em; }
.sev-error, .sev-critical { color: #b00020; font-weight: bold; }
.sev-warning { color: #a05a00; font-weight: bold; }
"""


@dataclasses.dataclass
class SetSection:
  """Everything the page shows for one table.

  Attributes:
    table: the table.
    overlays: overlay PNGs of the set.
    run_figures: per-run PNG, keyed by workdir.
    doctor: per-run doctor report, keyed by workdir.
  """

  table: Table
  overlays: list[Path]
  run_figures: dict[Path, Path]
  doctor: dict[Path, DoctorReport]


def render(sections: Sequence[SetSection], broken: Sequence[BrokenRun],
           messages: Sequence[str], inputs: Sequence[str]) -> str:
  """Returns the full HTML page."""
  now = datetime.datetime.now().isoformat(timespec="seconds")
  parts = ["<!DOCTYPE html>", "<html><head><meta charset=\"utf-8\">",
           "<title>curvelab report</title>", f"<style>{_CSS}</style></head><body>",
           "<h1>curvelab report</h1>",
           f"<p>Generated {now} from {', '.join(f'<code>{_e(i)}</code>' for i in inputs)}.</p>"]
  parts += _messages(messages)
  for section in sections:
    parts += _section(section)
  parts += _broken(broken)
  parts.append("</body></html>")
  return "\n".join(parts)


def _e(text) -> str:
  return html.escape(str(text))


def _messages(messages: Sequence[str]) -> list[str]:
  if not messages:
    return []
  return (["<h2>Messages</h2>", "<ul class=\"messages\">"]
          + [f"<li>{_e(m)}</li>" for m in messages] + ["</ul>"])


def _broken(broken: Sequence[BrokenRun]) -> list[str]:
  if not broken:
    return []
  return (["<h2>Runs left out (could not be read)</h2>", "<ul class=\"broken\">"]
          + [f"<li><code>{_e(b.location.workdir)}</code>: {_e(b.reason)}</li>" for b in broken]
          + ["</ul>"])


def _section(section: SetSection) -> list[str]:
  table = section.table
  parts = [f"<h2>{_e(table.title)}</h2>"] + _table_html(table) + [_footnotes(footnotes(table))]
  if comparison.has_matches(table):
    parts.append(f"<h3>{_e(COMPARISON_TITLE)}</h3>")
    parts += _plain_table_html(comparison.headers(table),
                               [comparison.cells(table, row) for row in table.rows])
    parts.append(_footnotes(comparison.footnotes(table)))
  if section.overlays:
    parts.append("<h3>All runs of the set</h3>")
    parts += [_img(p) for p in section.overlays]
  parts.append("<h3>Runs</h3>")
  reference = table.rows[0].runs[0] if table.rows else None
  for row in table.rows:
    parts.append(f"<h4>{_e(row.name)}</h4>")
    for run in row.runs:
      parts += _run_block(run, reference, section)
  return parts


def _table_html(table: Table) -> list[str]:
  out = ["<table>", "<tr>" + "".join(f"<th>{_e(h)}</th>" for h in column_headers(table.metric))
         + "</tr>"]
  for row in table.rows:
    cells = row_cells(row, table.metric)
    tds = [f"<td>{_e(c)}</td>" for c in cells[:-1]]
    # Highlight the comparison cell when some pair is within the noise.
    css = " class=\"notsep\"" if any(c.not_separated for c in row.comparisons) else ""
    tds.append(f"<td{css}>{'<br>'.join(_e(c.cell()) for c in row.comparisons) or '–'}</td>")
    out.append("<tr>" + "".join(tds) + "</tr>")
  out.append("</table>")
  return out


def _plain_table_html(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
  """Renders a table of plain text cells."""
  out = ["<table>", "<tr>" + "".join(f"<th>{_e(h)}</th>" for h in headers) + "</tr>"]
  out += ["<tr>" + "".join(f"<td>{_e(c)}</td>" for c in cells) + "</tr>" for cells in rows]
  out.append("</table>")
  return out


def _footnotes(notes: Sequence[str]) -> str:
  return "<ol class=\"footnotes\">" + "".join(f"<li>{_e(n)}</li>" for n in notes) + "</ol>"


def _run_block(run: RunData, reference: RunData | None, section: SetSection) -> list[str]:
  out = [f"<details open><summary><b>{_e(run.label)}</b> — <code>{_e(run.workdir)}</code>"
         f"{_status(run)}</summary>"]
  out += _config_diff(run, reference)
  if run.workdir in section.run_figures:
    out.append(_img(section.run_figures[run.workdir]))
  out += _doctor(section.doctor.get(run.workdir))
  out.append("</details>")
  return out


def _status(run: RunData) -> str:
  if run.summary is None:
    return " (no summary.json: unfinished)"
  status = run.summary.get("status")
  return f" (status: {_e(status)})" if status else ""


def _config_diff(run: RunData, reference: RunData | None) -> list[str]:
  if reference is None or run is reference:
    return ["<p>Config: reference run of this set (others are compared with it).</p>"]
  changes = configs.diff(configs.comparable(reference.config), configs.comparable(run.config))
  if not changes:
    return [f"<p>Config: same as {_e(reference.label)} (seed and paths aside).</p>"]
  items = "".join(f"<li><code>{_e(k)}</code>: {_e(_json(a))} → {_e(_json(b))}</li>"
                  for k, a, b in changes)
  return [f"<p>Config differences from {_e(reference.label)}:</p><ul>{items}</ul>"]


def _json(value) -> str:
  return json.dumps(value) if value is not None else "(absent)"


def _doctor(report: DoctorReport | None) -> list[str]:
  if report is None:
    return []
  source = f" ({_e(report.source)})" if report.source else ""
  if not report.findings:
    return [f"<p>Doctor{source}: {_e(report.note or 'no findings')}.</p>"]
  out = [f"<p>Doctor{source}:</p><ul>"]
  for f in report.findings:
    severity = str(f.get("severity") or "").lower()
    out.append(
        f"<li><span class=\"sev-{_e(severity)}\">{_e(f.get('severity') or '')}</span> "
        f"<b>{_e(f.get('id'))}</b>{_epochs(f.get('epochs'))}"
        f"{_detail('evidence', f.get('evidence'))}"
        f"{_detail('recommendations', f.get('recommendations'))}</li>")
  out.append("</ul>")
  return out


def _epochs(epochs) -> str:
  if not epochs:
    return ""
  if isinstance(epochs, (list, tuple)):
    epochs = ", ".join(str(e) for e in epochs)
  return f" (epochs {_e(epochs)})"


def _detail(name: str, value) -> str:
  if not value:
    return ""
  if isinstance(value, dict):
    # The doctor's evidence: a one-sentence "text" plus the named numbers behind it.
    numbers = ", ".join(f"{k}={_short(v)}" for k, v in value.items() if k != "text")
    value = " ".join(p for p in (str(value.get("text", "")), f"({numbers})" if numbers else "")
                     if p)
  elif isinstance(value, (list, tuple)):
    return f"<br>{name}:<ul>" + "".join(f"<li>{_e(v)}</li>" for v in value) + "</ul>"
  return f"<br>{name}: {_e(value)}"


def _short(value) -> str:
  return f"{value:.4g}" if isinstance(value, float) else str(value)


def _img(path: Path) -> str:
  data = base64.b64encode(Path(path).read_bytes()).decode("ascii")
  return f"<div><img alt=\"{_e(Path(path).name)}\" src=\"data:image/png;base64,{data}\"></div>"
