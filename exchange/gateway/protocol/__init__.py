"""The client order entry protocol: its messages, the text and ZMQ grammar, and the translation
between client requests and replies and the core's commands and events. Pure: may import
exchange.core and exchange.errors only.
"""
