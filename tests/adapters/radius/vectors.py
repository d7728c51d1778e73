"""Golden RADIUS packets from public documents and from real tools, with their sources."""

from __future__ import annotations


def hexbytes(text: str) -> bytes:
    return bytes.fromhex("".join(text.split()))


# RFC 2865 section 7.1 "User Telnet to Specified Host": shared secret "xyzzy5461".
RFC2865_SECRET = b"xyzzy5461"
RFC2865_7_1_ACCESS_REQUEST = hexbytes(
    """01 00 00 38 0f 40 3f 94 73 97 80 57 bd 83 d5 cb
       98 f4 22 7a 01 06 6e 65 6d 6f 02 12 0d be 70 8d
       93 d4 13 ce 31 96 e4 3f 78 2a 0a ee 04 06 c0 a8
       01 10 05 06 00 00 00 03"""
)
RFC2865_7_1_ACCESS_ACCEPT = hexbytes(
    """02 00 00 26 86 fe 22 0e 76 24 ba 2a 10 05 f6 bf
       9b 55 e0 b2 06 06 00 00 00 01 0f 06 00 00 00 00
       0e 06 c0 a8 01 03"""
)
# RFC 2865 section 7.2 "Framed User Authenticating with CHAP" (request only).
RFC2865_7_2_ACCESS_REQUEST = hexbytes(
    """01 01 00 47 2a ee 86 f0 8d 0d 55 96 9c a5 97 8e
       0d 33 67 a2 01 08 66 6c 6f 70 73 79 03 13 16 e9
       75 57 c3 16 18 58 95 f2 93 ff 63 44 07 72 75 04
       06 c0 a8 01 10 05 06 00 00 00 14 06 06 00 00 00
       02 07 06 00 00 00 01"""
)
# RFC 2865 section 7.3 "User with Challenge-Response card": the Access-Challenge.
RFC2865_7_3_ACCESS_CHALLENGE = hexbytes(
    """0b 02 00 4e 36 f3 c8 76 4a e8 c7 11 57 40 3c 0c
       71 ff 9c 45 12 30 43 68 61 6c 6c 65 6e 67 65 20
       33 32 37 36 39 34 33 30 2e 20 20 45 6e 74 65 72
       20 72 65 73 70 6f 6e 73 65 20 61 74 20 70 72 6f
       6d 70 74 2e 18 0a 33 32 37 36 39 34 33 30"""
)

# Captured on a loopback UDP socket from Debian's radclient (freeradius-utils 3.2) with secret
# "s3cret" and: Acct-Status-Type=Start, User-Name="nemo", Calling-Station-Id="AA-BB-CC-DD-EE-FF",
# Called-Station-Id="00-11-22-33-44-55:FreeWiFi", Acct-Session-Id="0123ABCD",
# NAS-IP-Address=192.0.2.1, Acct-Delay-Time=5, Event-Timestamp=1700000000,
# Acct-Input-Gigawords=1, Acct-Input-Octets=5
RADCLIENT_SECRET = b"s3cret"
RADCLIENT_START = hexbytes(
    """04d000776f072531e8c31269d33d087e4ca4cbb028060000000101066e656d6f1f1341412d42422d43432d44
       442d45452d46461e1c30302d31312d32322d33332d34342d35353a46726565576946692c0a303132334142
       43440406c000020129060000000537066553f1003406000000012a0600000005"""
)
