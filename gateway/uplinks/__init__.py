"""Northbound uplinks: deliver batches of Readings to Orion, NGSI-LD brokers and MQTT brokers."""
