"""CURVE on the mesh: server key files and socket setup (curve_keys), the process's ZAP
handler for users and roles (zap), and each role's key pair for internal links
(mesh_keys). May import exchange.config and exchange.errors.
"""
