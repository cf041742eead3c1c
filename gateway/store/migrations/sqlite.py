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
    # Who an API or CLI caller said they acted for; the actor column is the caller itself.
    Migration(5, "timeline_on_behalf_of", """
        ALTER TABLE timeline ADD COLUMN on_behalf_of TEXT NOT NULL DEFAULT '';
    """),
    # After-sales: planned work items (inspections, visits, preventive maintenance; the id is
    # stable per schedule, device and occurrence, so generating again never duplicates) and
    # service records (spare parts, loaners, part replacements, notices given) per device.
    Migration(6, "planned_work", """
        CREATE TABLE planned_work (
            id TEXT PRIMARY KEY,
            schedule TEXT NOT NULL,
            contract TEXT NOT NULL,
            device TEXT NOT NULL,
            kind TEXT NOT NULL,
            due REAL NOT NULL,
            deadline REAL NOT NULL,
            status TEXT NOT NULL,
            data TEXT NOT NULL
        );
        CREATE INDEX planned_work_device ON planned_work(device, due);
        CREATE INDEX planned_work_status ON planned_work(status, deadline);
        CREATE TABLE service_records (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            device TEXT NOT NULL,
            ticket_id INTEGER,
            kind TEXT NOT NULL,
            ts REAL NOT NULL,
            actor TEXT NOT NULL DEFAULT '',
            data TEXT NOT NULL DEFAULT '{}'
        );
        CREATE INDEX service_records_device ON service_records(device, ts);
        CREATE INDEX service_records_ticket ON service_records(ticket_id, id);
    """),
    # People: named accounts, their personal API tokens and board sessions (digests only),
    # and each ticket's owner and team beside it (filters; the ticket's data holds them too).
    Migration(7, "people", """
        CREATE TABLE ticket_owners (
            ticket_id INTEGER PRIMARY KEY,
            owner TEXT NOT NULL DEFAULT '',
            team TEXT NOT NULL DEFAULT ''
        );
        CREATE INDEX ticket_owners_owner ON ticket_owners(owner);
        CREATE TABLE users (
            name TEXT PRIMARY KEY,
            role TEXT NOT NULL,
            display_name TEXT NOT NULL DEFAULT '',
            password_hash TEXT NOT NULL DEFAULT '',
            disabled INTEGER NOT NULL DEFAULT 0,
            scope TEXT NOT NULL DEFAULT '{}',
            created_at REAL NOT NULL,
            updated_at REAL NOT NULL
        );
        CREATE TABLE user_tokens (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            user_name TEXT NOT NULL,
            label TEXT NOT NULL DEFAULT '',
            digest TEXT NOT NULL,
            created_at REAL NOT NULL
        );
        CREATE INDEX user_tokens_user ON user_tokens(user_name);
        CREATE UNIQUE INDEX user_tokens_digest ON user_tokens(digest);
        CREATE TABLE sessions (
            digest TEXT PRIMARY KEY,
            user_name TEXT NOT NULL,
            created_at REAL NOT NULL,
            expires_at REAL NOT NULL
        );
    """),
    # The inventory kept in the store (API, import, adoption), beside the config file's
    # [[devices]]; and who changed which device when.
    Migration(8, "devices", """
        CREATE TABLE devices (
            id TEXT PRIMARY KEY,
            data TEXT NOT NULL,
            updated_at REAL NOT NULL,
            updated_by TEXT NOT NULL
        );
        CREATE TABLE device_changes (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            device TEXT NOT NULL,
            action TEXT NOT NULL,
            at REAL NOT NULL,
            actor TEXT NOT NULL,
            data TEXT NOT NULL
        );
        CREATE INDEX device_changes_device ON device_changes(device, id);
    """),
    # Edge mode: the durable forward queue (rows written with the batch that decided their
    # event; deleted once JetStream acknowledged them). seq never repeats (AUTOINCREMENT):
    # it is the per-edge sequence number in Nats-Msg-Id.
    Migration(9, "forward_queue", """
        CREATE TABLE forward_queue (
            seq INTEGER PRIMARY KEY AUTOINCREMENT,
            ts REAL NOT NULL,
            fault INTEGER NOT NULL,
            payload TEXT NOT NULL
        );
        CREATE INDEX forward_queue_readings ON forward_queue(fault, seq);
    """),
    # Scheduled service reports: one row per (contract, period, notifier) queued, written in
    # the transaction of its outbox row (sent once across restarts); and failed sign-ins,
    # shared by every process on the store (the throttle holds across restarts and in HA).
    Migration(10, "scheduled_reports_sign_in_failures", """
        CREATE TABLE service_reports_sent (
            key TEXT PRIMARY KEY,
            contract TEXT NOT NULL,
            period TEXT NOT NULL,
            connector TEXT NOT NULL,
            queued_at REAL NOT NULL
        );
        CREATE INDEX service_reports_sent_contract ON service_reports_sent(contract, period);
        CREATE TABLE sign_in_failures (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            name TEXT NOT NULL,
            at REAL NOT NULL
        );
        CREATE INDEX sign_in_failures_name ON sign_in_failures(name, at);
    """),
)

LATEST = check_sequence(MIGRATIONS)
