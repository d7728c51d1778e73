"""MQTT southbound adapter: JSON payloads from a local broker (ChirpStack, Zigbee2MQTT, Tasmota) to Readings."""
