"""The one MQTT client stack of the gateway: packets.py (sans-I/O codec) and client.py (asyncio client),
shared by the MQTT adapter, the MQTT uplink and its command listener."""
