"""The MQTT uplink family: config.py (the section), planning.py (pure message planning), session.py (one
connection), uplink.py (the Uplink), the command listener (commands.py names its public parts:
command_listener.py, command_codec.py, answer_publisher.py, answer_cut.py, command_counters.py),
confirm.py (delivery confirmed in Orion). MQTT.md documents it."""

from gateway.uplinks.mqtt.config import MqttUplinkConfig
from gateway.uplinks.mqtt.uplink import MqttUplink

__all__ = ["MqttUplink", "MqttUplinkConfig"]
