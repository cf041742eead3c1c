"""Pure decision logic: inventory, rules' consequences, alarms, tickets, SLA clocks, calendars,
maintenance, penalties, reports. Takes ``now`` as a parameter; no I/O, no asyncio."""
