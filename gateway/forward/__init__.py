"""Sites and a central NOC: an edge gateway forwards what matters through NATS JetStream;
a central gateway consumes it into its one decision core (DESIGN §9).

* :mod:`gateway.forward.config` — the ``[forward]`` section (no client library imported).
* :mod:`gateway.forward.select` — which decided events cross the WAN, as forward-queue rows.
* :mod:`gateway.forward.edge` — drains the edge's durable forward queue into JetStream
  (a row is deleted only after JetStream's publish ack) and publishes the edge's heartbeat.
* :mod:`gateway.forward.central` — a durable JetStream consumer: each message becomes an
  event at its original time, acknowledged only after its batch committed.
"""
