"""Conversion of Readings into NGSI v2, NGSI-LD and FIWARE IoT Agent payloads."""
