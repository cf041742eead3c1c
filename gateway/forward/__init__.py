"""Sites and a central NOC: an edge gateway forwards what matters through NATS JetStream;
a central gateway consumes it into its one decision core (DESIGN §9).

* :mod:`gateway.forward.config` — the ``[forward]`` section (no client library imported).
* :mod:`gateway.forward.select` — which decided events cross the WAN, as forward-queue rows.
* :mod:`gateway.forward.edge` — drains the edge's durable forward queue into JetStream
  (a row is deleted only after JetStream's publish ack) and publishes the edge's heartbeat.
* :mod:`gateway.forward.central` — a durable JetStream consumer: each message (one event, or
  a batch of them) becomes events at their original times, acknowledged only after all of
  them committed.
* :mod:`gateway.forward.control` — the way back: per-site actions and versioned rule sets
  from the central, applied once at the edge.
"""
