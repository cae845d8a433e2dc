"""The engine role: the matcher of some instruments, its batches to the journal, and what it
releases once durable. May import exchange.core, exchange.wire, exchange.journal's readers
and handshake, exchange.config and exchange.errors; never another role.
"""
