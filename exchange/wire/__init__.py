"""What crosses the mesh: the messages roles send each other (messages), the sockets they
send them on (sockets) and the CURVE keys that secure them (security/). May import
exchange.core, exchange.config and exchange.errors; roles talk to each other only through it.
"""
