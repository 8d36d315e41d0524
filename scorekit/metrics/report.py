"""A plain-text table of the figures :func:`evaluate` returns, with the real-against-real floor beside them."""

from __future__ import annotations

from typing import Any, Mapping


def _num(value: Any, digits: int = 4) -> str:
    return "-" if value is None else f"{value:.{digits}g}"


def _pm(result: Mapping[str, Any] | None, key: str, digits: int = 4) -> str:
    if not result or result.get(f"{key}_mean") is None:
        return "-"
    return f"{_num(result[f'{key}_mean'], digits)} ± {_num(result.get(f'{key}_std'), 2)}"


def format_table(metrics: Mapping[str, Any]) -> str:
    """Rows: sample counts, FID, IS (± std over splits), KID (± std over subsets), Eq. 6 loss; columns:
    the samples and the real held-out images (the floor), both against the same reference."""
    floor = metrics.get("real_floor") or None
    title = f"feature extractor: {metrics.get('extractor', '?')}"
    layers = metrics.get("feature_layers")
    if layers:
        title += " (" + ", ".join(f"{m}: {layer}" for m, layer in layers.items()) + ")"
    acc = (metrics.get("classifier") or {}).get("test_accuracy")
    if acc is not None:
        title += f"; classifier test accuracy {acc:.3f}"
    if metrics.get("repeat_channels"):
        title += "; grayscale repeated to 3 channels"
    rows = [
        ("", "samples", "real (floor)"),
        ("images", str(metrics.get("num_samples", "-")), str(floor["num_samples"]) if floor else "-"),
        ("reference images", str(metrics.get("num_reference", "-")), str(metrics.get("num_reference", "-")) if floor else "-"),
        ("FID", _num(metrics.get("fid")), _num(floor.get("fid")) if floor else "-"),
        ("IS", _pm(metrics, "isc"), _pm(floor, "isc")),
    ]
    matched = metrics.get("isc_matched")
    if matched and floor:
        rows.append((f"IS, splits of {matched['split_size']:.0f} images", _pm(matched, "isc"), _pm(floor, "isc")))
    rows.append(("KID", _pm(metrics, "kid"), _pm(floor, "kid")))
    if metrics.get("heldout_loss") is not None:
        rows.append(("Eq. 6 loss (held-out)", _num(metrics["heldout_loss"], 6), "-"))
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    lines = [title]
    for j, row in enumerate(rows):
        cells = [cell.ljust(w) if i == 0 else cell.rjust(w) for i, (cell, w) in enumerate(zip(row, widths))]
        lines.append("  ".join(cells).rstrip())
        if j == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)
