"""Library RFID tag codecs: ISO 28560-3 (Danish data model), ISO 28560-2 (ISO/IEC 15962), CRCs."""

from adapters.rfid.crc import (
    append_iso15693_crc,
    check_iso15693_frame,
    crc16_ibm3740,
    crc16_iso15693,
)
from adapters.rfid.danish import (
    BlockOrder,
    DanishTag,
    DecodedDanishTag,
    Usage,
    decode_danish,
    encode_danish,
)
from adapters.rfid.errors import (
    RfidTagError,
    TagBadCompaction,
    TagBadField,
    TagBadStructure,
    TagBlank,
    TagCrcMismatch,
    TagLengthInvalid,
    TagTruncated,
    TagUnknownVersion,
    TagValueInvalid,
)
from adapters.rfid.iso15962 import (
    Compaction,
    DataElement,
    Iso28560Tag,
    Oid,
    SetInformation,
    compact_text,
    content_parameter_payload,
    decode_elements,
    decode_isil,
    decode_iso28560_2,
    decompact_text,
    encode_elements,
    encode_isil,
    set_information_text,
)

__all__ = [
    "BlockOrder", "Compaction", "DanishTag", "DataElement", "DecodedDanishTag", "Iso28560Tag",
    "Oid", "RfidTagError", "SetInformation", "TagBadCompaction", "TagBadField",
    "TagBadStructure", "TagBlank", "TagCrcMismatch", "TagLengthInvalid", "TagTruncated",
    "TagUnknownVersion", "TagValueInvalid", "Usage", "append_iso15693_crc",
    "check_iso15693_frame", "compact_text", "content_parameter_payload", "crc16_ibm3740",
    "crc16_iso15693", "decode_danish", "decode_elements", "decode_isil", "decode_iso28560_2",
    "decompact_text", "encode_danish", "encode_elements", "encode_isil",
    "set_information_text",
]
