"""``lightmedseg models``: the shipped models and their cards (task, channels, spacing, labels, scores)."""

from __future__ import annotations

import argparse
import json

from lightmedseg.inference.options import DEFAULT_TTA_MODE, TTA_PASSES


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print the cards as JSON")


def format_card(name: str, card: dict) -> str:
    """A few lines describing one shipped model."""
    if not card:
        return f"{name}: (no card.json)"
    lines = [f"{name}: {card.get('task', '')}"]
    if "channels" in card:
        lines.append(f"  input channels: {len(card['channels'])} ({', '.join(card['channels'])})")
    geo = card.get("geometry", {})
    if "spacing" in geo:
        lines.append(f"  training spacing (z, y, x): {' x '.join(f'{s:g}' for s in geo['spacing'])} mm, "
                     f"orientation {geo.get('orientation', 'RAS')}")
    if "labels" in card:
        lines.append("  labels: " + ", ".join(f"{v} {n}" for n, v in sorted(card["labels"].items(), key=lambda kv: kv[1])))
    val = card.get("validation", {})
    if "mean_dice" in val:
        extra = f", HD95 {val['hd95_mm']} mm" if "hd95_mm" in val else ""
        lines.append(f"  validation: mean Dice {val['mean_dice']}%{extra} ({val.get('cases', '')})")
    largest = (card.get("postprocess") or {}).get("keep_largest")
    if largest:
        which = "every foreground label" if largest is True else ", ".join(str(v) for v in largest)
        lines.append(f"  post-processing (default): largest connected component of {which}; --no-keep-largest turns it off")
    contact = (card.get("postprocess") or {}).get("require_contact") or {}
    if contact:
        rules = "; ".join(f"{label} components touching no {' or '.join(map(str, anchors))}" for label, anchors in contact.items())
        lines.append(f"  post-processing (default): removed {rules}; --no-require-contact turns it off")
    members = (card.get("ensemble") or {}).get("members") if isinstance(card.get("ensemble"), dict) else None
    if members:
        lines.append(f"  ensemble: {len(members)} models ({', '.join(members)}), softmax averaged; "
                     "--no-ensemble for the first only (1/N of the time)")
    card_tta = (card.get("predict") or {}).get("tta")
    if card_tta:
        mode = card_tta if isinstance(card_tta, str) else DEFAULT_TTA_MODE
        lines.append(f"  test-time augmentation (default): {mode}, {TTA_PASSES[mode]} passes per window; --no-tta for one pass")
    lines.append(f"  use: lightmedseg predict -i CASE -o OUT -m {name}   or   lightmedseg.segment(image, model={name!r})")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    from lightmedseg.inference.cards import shipped_models

    models = shipped_models()
    if args.json:
        print(json.dumps(models, indent=2))
    else:
        print("\n".join(format_card(n, c) for n, c in models.items()) or "no shipped models in this build")
    return 0
