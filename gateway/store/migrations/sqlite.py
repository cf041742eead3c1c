"""The SQLite schema as numbered migrations (``PRAGMA user_version`` holds the version).

History: releases before numbered migrations created every table with ``CREATE TABLE IF NOT
EXISTS`` at each open and always wrote ``user_version = 1``, whichever tables they had.
So a store at version 1 may hold the tables of 0001 only, or also those of any later step
below up to 0004; that is why 0001-0004 are idempotent (``IF NOT EXISTS``) and a version-1
store runs 0002-0004 again harmlessly. From 0005 on, a step runs exactly once and need
not be idempotent.
"""

from __future__ import annotations

from gateway.store.migrations import Migration, check_sequence

__all__ = ["LATEST", "MIGRATIONS"]

MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "initial", """
        CREATE TABLE IF NOT EXISTS alarms (
            id INTEGER PRIMARY KEY,
            key TEXT NOT NULL,
            device TEXT NOT NULL,
            level INTEGER NOT NULL,
            state TEXT NOT NULL,
            rule TEXT NOT NULL,
            title TEXT NOT NULL,
            count INTEGER NOT NULL,
            first_seen REAL NOT NULL,
            last_seen REAL NOT NULL,
            cleared_at REAL,
            ticket_id INTEGER,
            data TEXT NOT NULL DEFAULT '{}'
        );
        CREATE INDEX IF NOT EXISTS alarms_state ON alarms(state);
        CREATE INDEX IF NOT EXISTS alarms_key ON alarms(key);
        CREATE TABLE IF NOT EXISTS tickets (
            id INTEGER PRIMARY KEY,
            alarm_id INTEGER NOT NULL,
            alarm_key TEXT NOT NULL,
            device TEXT NOT NULL,
            level INTEGER NOT NULL,
            status TEXT NOT NULL,
            policy TEXT NOT NULL,
            opened_at REAL NOT NULL,
            updated_at REAL NOT NULL,
            closed_at REAL,
            data TEXT NOT NULL
        );
        CREATE INDEX IF NOT EXISTS tickets_status ON tickets(status);
        CREATE TABLE IF NOT EXISTS timeline (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            ticket_id INTEGER NOT NULL,
            ts REAL NOT NULL,
            actor TEXT NOT NULL,
            kind TEXT NOT NULL,
            note TEXT NOT NULL DEFAULT ''
        );
        CREATE INDEX IF NOT EXISTS timeline_ticket ON timeline(ticket_id, id);
        CREATE TABLE IF NOT EXISTS outbox (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            connector TEXT NOT NULL,
            ticket_id INTEGER NOT NULL,
            key TEXT NOT NULL,
            kind TEXT NOT NULL,
            payload TEXT NOT NULL,
            state TEXT NOT NULL DEFAULT 'pending',
            attempts INTEGER NOT NULL DEFAULT 0,
            next_attempt REAL NOT NULL DEFAULT 0,
            remote_id TEXT,
            last_error TEXT,
            created_at REAL NOT NULL,
            delivered_at REAL
        );
        CREATE INDEX IF NOT EXISTS outbox_pending ON outbox(state, connector, ticket_id, id);
        CREATE TABLE IF NOT EXISTS meta (
            key TEXT PRIMARY KEY,
            value TEXT NOT NULL
        );
    """),
    # Help-desk delivery: the remote id of each delivered ticket, per connector.
    Migration(2, "helpdesk_links", """
        CREATE TABLE IF NOT EXISTS helpdesk_links (
            connector TEXT NOT NULL,
            ticket_id INTEGER NOT NULL,
            remote_id TEXT NOT NULL,
            key TEXT NOT NULL,
            created_at REAL NOT NULL,
            PRIMARY KEY (connector, ticket_id)
        );
    """),
    # Maintenance windows made through the API or CLI (config windows live in the config).
    Migration(3, "maintenance", """
        CREATE TABLE IF NOT EXISTS maintenance (
            id TEXT PRIMARY KEY,
            start REAL NOT NULL,
            end REAL NOT NULL,
            data TEXT NOT NULL
        );
    """),
    # Delivery keys of INFORMs / QoS 1 messages, committed with their batch (resends across
    # a crash are answered, not recorded twice).
    Migration(4, "delivery_keys", """
        CREATE TABLE IF NOT EXISTS delivery_keys (
            key TEXT PRIMARY KEY,
            at REAL NOT NULL
        );
    """),
    # Edge mode: the durable forward queue (rows written with the batch that decided their
    # event; deleted once JetStream acknowledged them). seq never repeats (AUTOINCREMENT):
    # it is the per-edge sequence number in Nats-Msg-Id.
    Migration(5, "forward_queue", """
        CREATE TABLE IF NOT EXISTS forward_queue (
            seq INTEGER PRIMARY KEY AUTOINCREMENT,
            ts REAL NOT NULL,
            fault INTEGER NOT NULL,
            payload TEXT NOT NULL
        );
        CREATE INDEX IF NOT EXISTS forward_queue_readings ON forward_queue(fault, seq);
    """),
)

LATEST = check_sequence(MIGRATIONS)
