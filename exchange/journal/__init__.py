"""The journal: its SQLite schema, the writer role that appends event batches, the sequencer
that orders them, readers, queries, verify and the `exchange journal` commands. May import
exchange.core, exchange.wire, exchange.config and exchange.errors; never another role.
"""
