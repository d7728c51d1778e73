"""The patron's pickup e-mail: one Japanese message (HTML and its plain-text part) with site, compartment, code, deadline."""

from __future__ import annotations

import html
from datetime import datetime
from zoneinfo import ZoneInfo

from gateway.mail.message import Mail

__all__ = ["PURPOSE", "pickup_mail"]

PURPOSE = "locker.pickup"
_WEEKDAYS = "月火水木金土日"


def _deadline(at: datetime, zone: ZoneInfo) -> str:
    local = at.astimezone(zone)
    return f"{local.year}年{local.month}月{local.day}日（{_WEEKDAYS[local.weekday()]}）{local:%H:%M}"


def pickup_mail(
    *, to: str, site: str, label: str, code: str, deadline: datetime, reference: str, zone: ZoneInfo
) -> Mail:
    """The notice sent once per assignment; `reference` is the mail queue's handle, never personal data."""
    where = site or "受取ロッカー"
    text = (
        "ご予約の資料を受取ロッカーにご用意しました。\n"
        "\n"
        f"受取場所　：{where}\n"
        f"ロッカー番号：{label}\n"
        f"暗証番号　：{code}\n"
        f"受取期限　：{_deadline(deadline, zone)}まで\n"
        "\n"
        "ロッカー横のタッチパネルで、ロッカー番号と暗証番号を入力してください。扉が開きます。\n"
        "暗証番号は一度だけ使えます。資料を取り出したら、扉を閉めてください。\n"
        "受取期限を過ぎると暗証番号は使えなくなります。その場合は図書館にお問い合わせください。\n"
        "\n"
        "このメールは送信専用です。返信はできません。\n"
    )
    e = html.escape
    rows = "".join(
        f'<tr><th style="text-align:left;padding-right:1em">{e(k)}</th><td>{e(v)}</td></tr>'
        for k, v in (
            ("受取場所", where),
            ("ロッカー番号", label),
            ("暗証番号", code),
            ("受取期限", f"{_deadline(deadline, zone)}まで"),
        )
    )
    body = (
        '<!DOCTYPE html><html lang="ja"><head><meta charset="utf-8"></head><body>'
        "<p>ご予約の資料を受取ロッカーにご用意しました。</p>"
        f"<table>{rows}</table>"
        "<p>ロッカー横のタッチパネルで、ロッカー番号と暗証番号を入力してください。扉が開きます。<br>"
        "暗証番号は一度だけ使えます。資料を取り出したら、扉を閉めてください。<br>"
        "受取期限を過ぎると暗証番号は使えなくなります。その場合は図書館にお問い合わせください。</p>"
        "<p>このメールは送信専用です。返信はできません。</p></body></html>"
    )
    return Mail(
        to=(to,),
        subject=f"【{where}】予約資料の受取のご案内（ロッカー {label}）",
        text=text,
        html=body,
        purpose=PURPOSE,
        reference=reference,
    )
