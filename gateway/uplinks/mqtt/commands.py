"""IoT Agent commands over MQTT: an mqtt uplink takes the commands the agent sends its devices and answers them.

The public surface of the feature, in modules of one job each:
- command_codec.py: the agents' command topics and payloads read, answers built (pure);
- command_listener.py: the listener's connection, subscriptions and reconnects, and each command message
  run through `dispatch`, within bounds;
- answer_publisher.py: the answers published, made smaller when too large for the broker (answer_cut.py);
- command_counters.py: the totals for metrics.
MQTT.md's Commands section is the user's side of it.
"""

from gateway.uplinks.mqtt.command_codec import (
    CommandMessage,
    CommandPayloadError,
    device_of_topic,
    parse_command,
    result_messages,
    result_text,
)
from gateway.uplinks.mqtt.command_counters import CommandListenerCounters
from gateway.uplinks.mqtt.command_listener import (
    IDENTITY_TEMPLATE,
    REFUSAL_REPLIES,
    Dispatch,
    MqttCommandListener,
    uplink_apikeys,
)
from gateway.uplinks.mqtt.config import command_topics

__all__ = [
    "IDENTITY_TEMPLATE",
    "REFUSAL_REPLIES",
    "CommandListenerCounters",
    "CommandMessage",
    "CommandPayloadError",
    "Dispatch",
    "MqttCommandListener",
    "command_topics",
    "device_of_topic",
    "parse_command",
    "result_messages",
    "result_text",
    "uplink_apikeys",
]
