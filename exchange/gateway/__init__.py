"""The gateway role: clients' sessions, login and limits, the text protocol, and routing to
engines. May import exchange.core, exchange.wire, exchange.journal's handshake (the journal writer's
endpoints: it never opens the journal file), exchange.config and exchange.errors; never another role.
"""
