"""Shared pytest configuration: fixture plugins for the real peers the tests talk to."""

pytest_plugins = [
    "tests.fixtures.netsnmp",
    "tests.fixtures.mqtt_broker",
    "tests.fixtures.helpdesk",
    "tests.fixtures.tsdb",
]
