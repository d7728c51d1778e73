"""The `[fleet]` section: the Device entity, metrics, alarm rules, signed remote configuration, safe mode.

Validated without touching the network: the pinned public key is decoded here, so a box with a
mistyped key is refused at `edgegw check-config`, not at the first bundle. So is a weak one
(`public_key_problem`): Ed25519 verification (RFC 8032, as `cryptography` does it) checks
[S]B = R + [k]A, and for a small-order A ([8]A the identity: 32 zero bytes is one) R = identity
and S = 0 satisfy it whenever k is a multiple of A's order, about one payload in four, with no
private key at all. Non-canonical encodings are refused with them: no key generator makes one.
"""

from __future__ import annotations

import base64
import enum
import ipaddress
import json

from pydantic import field_validator, model_validator

from gateway.configbase import ConfigProblems, Field, HttpUrl, Section
from gateway.tls import TlsSection

__all__ = [
    "AlarmKind",
    "AlarmRule",
    "AlarmsConfig",
    "FleetConfig",
    "Language",
    "MetricsConfig",
    "RemoteConfigConfig",
    "SafeModeConfig",
    "Severity",
    "public_key_problem",
]


class Severity(enum.Enum):
    CRITICAL = "critical"
    WARNING = "warning"


class Language(enum.Enum):
    JA = "ja"
    EN = "en"


class AlarmKind(enum.Enum):
    """What a rule watches; `threshold` means what the kind's comment says (ignored where it says so)."""

    UPLINK_NOT_DELIVERING = "uplink_not_delivering"  # an uplink delivered nothing for `for_s` while rows wait
    ADAPTER_DOWN = "adapter_down"  # an adapter not running (backing off or stopped) for `for_s`
    DEVICE_DOWN = "device_down"  # a device an adapter reports offline (diagnostics `offline`) for `for_s`
    BUFFER_FULL = "buffer_full"  # buffer rows above `threshold` % of its max_rows cap
    DISK_LOW = "disk_low"  # free disk in the data directory below `threshold` %
    CRASH_LOOP = "crash_loop"  # safe mode entered (see [fleet.safe_mode])
    BACKUP_FAILED = "backup_failed"  # the last backup older than `threshold` hours, or failed
    CLOCK_UNSYNCHRONISED = "clock_unsynchronised"  # the kernel says the clock is not synchronised
    RIVER_ALERT = "river_alert"  # a river Alert raised by the processing stage and not yet cleared


class AlarmRule(Section):
    kind: AlarmKind
    severity: Severity = Severity.WARNING
    for_s: float = Field(default=0.0, ge=0, description="how long the condition must hold before it is raised")
    threshold: float = Field(default=0.0, ge=0, description="% (buffer_full, disk_low) or hours (backup_failed)")


def _default_rules() -> tuple[AlarmRule, ...]:
    return (
        AlarmRule(kind=AlarmKind.UPLINK_NOT_DELIVERING, severity=Severity.CRITICAL, for_s=900),
        AlarmRule(kind=AlarmKind.ADAPTER_DOWN, for_s=300),
        AlarmRule(kind=AlarmKind.DEVICE_DOWN, for_s=600),
        AlarmRule(kind=AlarmKind.BUFFER_FULL, severity=Severity.CRITICAL, threshold=80),
        AlarmRule(kind=AlarmKind.DISK_LOW, severity=Severity.CRITICAL, threshold=10),
        AlarmRule(kind=AlarmKind.CRASH_LOOP, severity=Severity.CRITICAL),
        AlarmRule(kind=AlarmKind.BACKUP_FAILED, threshold=48),
        AlarmRule(kind=AlarmKind.CLOCK_UNSYNCHRONISED, for_s=600),
        AlarmRule(kind=AlarmKind.RIVER_ALERT, severity=Severity.CRITICAL),
    )


class AlarmsConfig(Section):
    rules: tuple[AlarmRule, ...] = Field(default_factory=_default_rules)
    repeat_s: float = Field(default=3600.0, gt=0, description="an alarm still raised is sent again this often")
    language: Language = Language.JA
    # severity -> addresses; an alarm of a severity with no list is sent to the platform only
    recipients: dict[Severity, tuple[str, ...]] = Field(default_factory=dict)
    to_platform: bool = True

    @field_validator("recipients")
    @classmethod
    def _addresses(cls, v: dict[Severity, tuple[str, ...]]) -> dict[Severity, tuple[str, ...]]:
        if not v:
            return v  # the class's own default instance is built at import: mail's modules load only with addresses
        from gateway.mail.message import MailError, check_address

        for severity, addresses in v.items():
            for i, address in enumerate(addresses):
                try:
                    check_address(address, f"recipients.{severity.value}[{i}]")
                except MailError as exc:
                    raise ValueError(str(exc)) from None
        return v


class MetricsConfig(Section):
    enabled: bool = False
    host: str = Field(default="127.0.0.1", description="loopback by default: the metrics say much about the box")
    port: int = Field(default=9464, ge=0, le=65535)

    @field_validator("host")
    @classmethod
    def _address(cls, v: str) -> str:
        try:
            ipaddress.ip_address(v)
        except ValueError:
            raise ValueError(f"must be an IP address to listen on, got {v!r}; e.g. 127.0.0.1") from None
        return v


# Ed25519 (RFC 8032 section 5.1): the field prime, the curve constant d and a square root of -1
_P = 2**255 - 19
_D = -121665 * pow(121666, -1, _P) % _P
_SQRT_M1 = pow(2, (_P - 1) // 4, _P)
KEY_SHOWN_CHARS = 60  # a 32-byte key is 44 in base64
PASTE_KEY = "paste the platform's real public key (`edgegw config public-key platform.pem` where its key is kept)"


def public_key_problem(raw: bytes) -> str | None:
    """Why 32 bytes must not be pinned as the platform's Ed25519 public key, or None for a sound key."""
    number = int.from_bytes(raw, "little")
    sign, y = number >> 255, number & ((1 << 255) - 1)
    noncanonical = "not the canonical encoding of an Ed25519 point (y not below 2^255-19, or x = 0 with its sign bit)"
    if y >= _P:
        return noncanonical
    x2 = (y * y - 1) * pow(_D * y * y + 1, -1, _P) % _P
    x = pow(x2, (_P + 3) // 8, _P)
    if (x * x - x2) % _P:
        x = x * _SQRT_M1 % _P
    if (x * x - x2) % _P:
        return "not a point of the Ed25519 curve: no key pair has it"
    if x == 0 and sign:
        return noncanonical
    if x & 1 != sign:
        x = _P - x
    point = (x, y, 1, x * y % _P)
    for _ in range(3):
        point = _add(point, point)
    if point[0] == 0 and point[1] == point[2]:  # [8]A is the identity
        return "a small-order Ed25519 point (32 zero bytes is one): bundles verify against it without any private key"
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    try:
        Ed25519PublicKey.from_public_bytes(raw)
    except ValueError as exc:
        return f"not an Ed25519 public key the verifier can load ({exc})"
    return None


def _add(p: tuple[int, int, int, int], q: tuple[int, int, int, int]) -> tuple[int, int, int, int]:
    """Point addition in extended coordinates (RFC 8032 section 5.1.4); complete, so it doubles too."""
    x1, y1, z1, t1 = p
    x2, y2, z2, t2 = q
    a, b = (y1 - x1) * (y2 - x2) % _P, (y1 + x1) * (y2 + x2) % _P
    c, d = t1 * 2 * _D * t2 % _P, z1 * 2 * z2 % _P
    e, f, g, h = b - a, d - c, d + c, b + a
    return e * f % _P, g * h % _P, f * g % _P, e * h % _P


class RemoteConfigConfig(Section):
    url: HttpUrl | None = Field(default=None, description="where the signed bundle is fetched (https)")
    interval_s: float = Field(default=900.0, ge=10)
    public_key: str = Field(
        description="the platform's Ed25519 public key, base64 of 32 bytes, pinned at commissioning"
    )
    health_window_s: float = Field(default=600.0, gt=0, description="uplinks must deliver again within this")
    allow_http: bool = False  # only for a test bench: a bundle is signed, yet its fetch is then observable
    tls: TlsSection = TlsSection()  # ca_file for a platform with its own CA; client certificate if it asks for one

    @field_validator("public_key")
    @classmethod
    def _key(cls, v: str) -> str:
        # a public key is no secret: quoted (cut short: a whole PEM pasted), so the technician sees what was pasted
        shown = json.dumps(v if len(v) <= KEY_SHOWN_CHARS else v[: KEY_SHOWN_CHARS - 1] + "…", ensure_ascii=False)
        try:
            raw = base64.b64decode(v, validate=True)
        except ValueError:
            raise ValueError(
                f"must be base64 of a 32-byte Ed25519 public key, got {shown} (not base64); {PASTE_KEY}"
            ) from None
        if len(raw) != 32:
            raise ValueError(f"an Ed25519 public key is 32 bytes, got {len(raw)} bytes ({shown}); {PASTE_KEY}")
        return v

    @model_validator(mode="after")
    def _sound(self) -> RemoteConfigConfig:
        # the key's soundness here rather than in _key: a field's error would hide the url's (every error at once)
        problems = []
        weak = public_key_problem(base64.b64decode(self.public_key))
        if weak is not None:
            problems.append(("public_key", f"{weak}, got {json.dumps(self.public_key)}; {PASTE_KEY}"))
        if self.url is not None and not self.url.startswith("https://") and not self.allow_http:
            problems.append(("", f"url must be https, got {self.url!r}; or set allow_http = true on a test bench"))
        if problems:
            raise ConfigProblems(problems)
        return self


class SafeModeConfig(Section):
    restarts: int = Field(default=5, ge=2, description="this many restarts (of an adapter, or of the gateway) ...")
    within_s: float = Field(default=600.0, gt=0, description="... within this many seconds: a crash loop")


class FleetConfig(Section):
    device_id: str | None = Field(default=None, description="the Device entity id; default urn:ngsi-ld:Device:<id>")
    report_interval_s: float = Field(default=300.0, ge=5, description="the Device entity is sent this often")
    metrics: MetricsConfig = MetricsConfig()
    alarms: AlarmsConfig = AlarmsConfig()
    remote_config: RemoteConfigConfig | None = None
    safe_mode: SafeModeConfig = SafeModeConfig()
