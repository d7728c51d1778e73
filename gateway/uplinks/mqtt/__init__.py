"""The MQTT uplink family: config.py (the section), planning.py (pure message planning), session.py (one
connection), uplink.py (the Uplink), commands.py (the command listener), confirm.py (delivery confirmed in
Orion). MQTT.md documents it."""

from gateway.uplinks.mqtt.config import MqttUplinkConfig
from gateway.uplinks.mqtt.uplink import MqttUplink

__all__ = ["MqttUplink", "MqttUplinkConfig"]
